// The training-step benchmark (bench/step_bench.h). The config is the public VOC recipe
// (pascal_1464_ours.yaml) read by load_train_config with the bench's sizes as command-line
// overrides, so the preset fills num_queries, num_negatives, the contrastive weight and the §7
// switches exactly as for u2pl_train. Iterations run in epoch sup_only_epoch + 1: every term on,
// the teacher an EMA of the student, as in the bulk of a training run.
#include "bench/step_bench.h"

#include <algorithm>
#include <chrono>
#include <iomanip>
#include <iostream>
#include <memory>
#include <numeric>
#include <sstream>
#include <vector>

#include "bench/model_bench.h"
#include "engine/log.h"
#include "engine/profile.h"
#include "engine/rng.h"
#include "u2pl/train/train_step.h"
#include "u2pl/train/trainer.h"

namespace u2pl::bench {

namespace {

// pascal_1464_ours.yaml without its data paths, val crop and the keys the preset sets.
const char* const kRecipe = R"(dataset:
  type: pascal_semi
  train:
    data_root: unused
    data_list: unused/labeled.txt
    crop: {type: rand, size: [513, 513]}
  val:
    data_root: unused
    data_list: unused/val.txt
  batch_size: 4
  ignore_label: 255
trainer:
  epochs: 80
  optimizer: {type: SGD, kwargs: {lr: 0.001, momentum: 0.9, weight_decay: 0.0001}}
  lr_scheduler: {mode: poly, kwargs: {power: 0.9}}
  unsupervised: {drop_percent: 80, apply_aug: cutmix}
  contrastive:
    negative_high_entropy: True
    low_rank: 3
    high_rank: 20
    current_class_threshold: 0.3
    current_class_negative_threshold: 1
    low_entropy_threshold: 20
    temperature: 0.5
criterion: {type: CELoss}
net:
  num_classes: 21
  ema_decay: 0.99
  encoder:
    type: u2pl.models.resnet.resnet101
    kwargs: {multi_grid: True, zero_init_residual: True, replace_stride_with_dilation: [False, True, True]}
  decoder:
    type: u2pl.models.decoder.dec_deeplabv3_plus
    kwargs: {inner_planes: 256, dilations: [12, 24, 36]}
)";

// A random network's softmax is near uniform (p ≈ 1/C, below δp = 0.3): no pixel would be an
// anchor and no contrastive term would form. So the last classifier conv of both networks is
// scaled, as tools/pytorch/torch_u2pl_train.py's LOGIT_GAIN does, and their classes are confident
// like a trained network's.
constexpr float kLogitGain = 6;

void sharpen(U2plNet& net) {
  const int id = net.params().find("decoder.classifier.8.weight");
  U2PL_CHECK(id >= 0, "the network has no decoder.classifier.8.weight");
  const TensorView w = net.params().value(id);
  std::vector<float> h = to_host(w);
  for (float& x : h) x *= kLogitGain;
  copy_tensor(w, Tensor::from_host(w.shape, h, Device::CPU).view());
}

// The profiler's entries per timed iteration, as JSON and as a table on stderr (phases, then the
// operations timed inside them; a convolution's TFLOP/s is its FLOPs over its own time).
nlohmann::json profile_report(const Profiler& p, int iterations, double timed_ms) {
  nlohmann::json rows = nlohmann::json::array();
  std::ostringstream table;
  table << "profile: ms per iteration over " << iterations << " timed iterations (" << timed_ms / iterations
        << " ms each, profiling included)\n";
  table << "  " << std::left << std::setw(36) << "phase / operation" << std::right << std::setw(8) << "calls"
        << std::setw(11) << "ms" << std::setw(9) << "share" << std::setw(10) << "TFLOP/s" << "\n";
  double phases_ms = 0;
  for (const int depth : {0, 1})
    for (const Profiler::Entry& e : p.entries()) {
      if ((depth == 0) != (e.depth == 0)) continue;
      const double ms = e.ms / iterations, share = e.ms / timed_ms;
      const double tflops = e.flops > 0 && e.ms > 0 ? e.flops / (e.ms * 1e-3) / 1e12 : 0;
      if (e.depth == 0) phases_ms += ms;
      rows.push_back({{"name", e.name}, {"depth", e.depth}, {"calls", double(e.calls) / iterations},
                      {"ms_per_iteration", ms}, {"share", share}, {"tflops", tflops}});
      table << "  " << std::left << std::setw(36) << ((e.depth ? "  " : "") + e.name) << std::right << std::fixed
            << std::setprecision(0) << std::setw(8) << double(e.calls) / iterations << std::setprecision(2)
            << std::setw(11) << ms << std::setprecision(1) << std::setw(8) << 100 * share << "%";
      if (tflops > 0) table << std::setprecision(2) << std::setw(10) << tflops;
      table << std::defaultfloat << "\n";
    }
  table << "  phases sum to " << std::fixed << std::setprecision(2) << phases_ms << " ms of "
        << timed_ms / iterations << " ms" << std::defaultfloat << "\nend of profile\n";
  std::cerr << table.str();
  return rows;
}

}  // namespace

nlohmann::json run_step_bench(const StepBenchOptions& o) {
  U2PL_CHECK(o.preset == "paper" || o.preset == "official",
             "--preset: expected paper or official, got '" << o.preset << "'");
  U2PL_CHECK(o.output_stride == 8 || o.output_stride == 16, "--os: expected 8 or 16, got " << o.output_stride);
  const bool os8 = o.output_stride == 8;
  const std::string crop = std::to_string(o.crop);
  const TrainConfig cfg = load_train_config_text(
      kRecipe, "u2pl_bench step",
      {"trainer.preset=" + o.preset, "dataset.batch_size=" + std::to_string(o.batch),
       "trainer.replicas=" + std::to_string(o.replicas), "trainer.memory=" + o.memory,
       "dataset.train.crop.size=[" + crop + ", " + crop + "]", "net.num_classes=" + std::to_string(o.classes),
       "net.encoder.type=u2pl.models.resnet.resnet" + std::to_string(o.depth),
       "net.encoder.kwargs.width_divisor=" + std::to_string(o.width_divisor),
       std::string("net.encoder.kwargs.replace_stride_with_dilation=") +
           (os8 ? "[False, True, True]" : "[False, False, True]"),
       std::string("net.decoder.kwargs.dilations=") + (os8 ? "[12, 24, 36]" : "[6, 12, 18]")},
      nullptr);
  Comm& comm = world();  // under mpirun: this process's share of the replicas
  if (o.device == Device::CUDA) use_process_device(comm);
  const RunPlan plan = check_runnable(cfg, o.device, comm.size());

  TrainStep ts(cfg, o.device, comm);
  ts.student().set_memory_mode(plan.memory);
  // The iterations run from the start of epoch sup_only_epoch + 1, an epoch long enough to hold
  // them all and the EMA decay then at its cap (0.99), as in the bulk of a run.
  ts.set_iters_per_epoch(std::max(1000, o.repeat + 1));
  const int epoch = cfg.sup_only_epoch + 1;
  U2PL_CHECK(ts.semi_phase(epoch) && ts.uses_contrastive(), "the recipe must run every U2PL term");
  sharpen(ts.student());
  sharpen(*ts.teacher());

  // The loader's output, in host memory as in training: normalised images in [-1, 1), labels
  // in [0, C) with ~5 % ignored (255); this process's positions of the global batch.
  const int C = o.classes, B = o.batch * ts.local_replicas();  // this process's images
  const Shape image{B, 3, o.crop, o.crop};
  const size_t first = size_t(ts.first_replica()) * size_t(o.batch) * size_t(o.crop) * size_t(o.crop);
  std::vector<float> xl(static_cast<size_t>(image.numel())), xu(xl.size());
  for (size_t i = 0; i < xl.size(); ++i) {
    xl[i] = 2.f * philox_uniform(3, 0, 3 * first + i) - 1.f;
    xu[i] = 2.f * philox_uniform(4, 0, 3 * first + i) - 1.f;
  }
  std::vector<int32_t> y(static_cast<size_t>(B) * o.crop * o.crop);
  for (size_t i = 0; i < y.size(); ++i)
    y[i] = philox_uniform(5, 0, first + i) < 0.05f ? 255
                                                    : std::min(C - 1, int(philox_uniform(6, 0, first + i) * float(C)));
  const Tensor img_l = Tensor::from_host(image, xl, Device::CPU), img_u = Tensor::from_host(image, xu, Device::CPU);
  const Labels lab_l = Labels::from_host(Shape{B, o.crop, o.crop}, y, Device::CPU);

  const bool say = comm.root();  // rank 0 reports
  const int G = o.batch * o.replicas;  // the global batch
  if (say)
    std::cerr << "u2pl_bench step: " << o.preset << ", ResNet-" << o.depth << " OS" << o.output_stride << ", batch "
              << G << " + " << G << (o.replicas > 1 ? " (" + std::to_string(o.replicas) + " replicas)" : "")
              << (comm.size() > 1 ? " in " + std::to_string(comm.size()) + " processes" : "") << ", crop " << o.crop
              << ", " << C << " classes, device " << device_name(o.device) << "\n";
  Context ctx(o.device);
  ctx.set_workspace_cap(size_t(cfg.conv_workspace_mib) << 20);
  int64_t it = int64_t(epoch) * ts.iters_per_epoch();
  StepResult last;
  auto iteration = [&] {
    PhiloxStepDraws draws(cfg.seed, it, cfg.replicas);
    last = ts.step(ctx, img_l.view(), lab_l.view(), img_u.view(), it, epoch, draws);  // synchronous
    draws.check_budget();
    ++it;
  };
  iteration();  // warm-up: plans, primitives, the workspace and the scratch buffers are built here
  std::unique_ptr<Profiler> profiler = o.profile ? std::make_unique<Profiler>(ctx) : nullptr;
  std::vector<double> t, waits;
  const int64_t sent0 = comm.bytes_sent();
  for (int r = 0; r < o.repeat; ++r) {
    comm.barrier();  // every process starts the iteration together
    const auto a = std::chrono::steady_clock::now();
    iteration();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count());
    if (ts.reducer()) waits.push_back(ts.reducer()->wait_ms());
    if (profiler) profiler->collect();
    if (say)
      std::cerr << "  run " << r + 1 << "/" << o.repeat << ": " << t.back() << " ms (loss " << last.total << ", "
                << last.contra_terms << " contrastive terms)\n";
  }
  const double sent_per_iteration = double(comm.bytes_sent() - sent0) / o.repeat;
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.0 : v[v.size() / 2];
  };
  // Over several processes: what the gradient's all-reduce costs alone (blocking, the whole
  // arena at once) against what the step waited for it after backward; the rest was hidden. On
  // CUDA the sums go through NCCL on the device and no host thread waits for them: the time alone
  // is reported, what is hidden shows in the step time; bytes_sent counts host (MPI) bytes only.
  nlohmann::json processes = {{"count", comm.size()}, {"bytes_sent_per_iteration", sent_per_iteration}};
  if (const GradientReducer* red = ts.reducer()) {
    const TensorView g = ts.student().params().grads().all();
    std::vector<double> blocking;
    for (int r = 0; r < 3; ++r) {
      comm.barrier();
      const auto a = std::chrono::steady_clock::now();
      if (NcclComm* nccl = ts.device_comm()) {
        nccl->allreduce_sum(ctx, g.data, g.numel());
        ctx.synchronize();
      } else {
        comm.allreduce_sum(g.data, g.numel());
      }
      blocking.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count());
    }
    const double block_ms = median(blocking);
    processes["gradient_bytes"] = g.numel() * int64_t(sizeof(float));
    processes["buckets"] = red->buckets();
    processes["buckets_started_during_backward"] = red->started_early();
    processes["allreduce_blocking_ms"] = block_ms;
    if (!ts.device_comm()) {
      const double wait_ms = median(waits);
      processes["allreduce_wait_ms"] = wait_ms;
      processes["allreduce_hidden_share"] = block_ms > 0 ? std::clamp(1.0 - wait_ms / block_ms, 0.0, 1.0) : 0.0;
    }
    if (say)
      std::cerr << "  " << comm.size() << " processes: " << sent_per_iteration / double(1 << 20)
                << " MiB sent per iteration by each through MPI; gradient all-reduce " << block_ms << " ms alone"
                << (ts.device_comm() ? " (NCCL)"
                                     : ", " + std::to_string(median(waits)) + " ms waited after backward")
                << " (" << red->started_early() << " of " << red->buckets() << " buckets started during backward)\n";
  }
  const double timed_ms = std::accumulate(t.begin(), t.end(), 0.0);
  const double ms = median(t);

  U2plNet& s = ts.student();
  U2plNet& te = *ts.teacher();
  const size_t peak_rss = peak_rss_bytes();  // before anything below could allocate
  const Shape two{2 * B, 3, o.crop, o.crop};
  const MemoryBank& bank = *ts.bank();
  const nlohmann::json arenas = {
      {"parameters", s.params().values().bytes()},
      {"gradients", s.params().grads().bytes()},
      {"momentum", size_t(ts.momentum().numel()) * sizeof(float)},
      {"bn_buffers", s.params().buffers().bytes() + te.params().buffers().bytes()},
      {"teacher_parameters", te.params().values().bytes()},
      // the student's plan, with the idle memory it reserves for the teacher's plans and the losses'
      // buffers; the teacher's plans (laid out there, not allocated: not to be added)
      {"student_activations", s.estimate_plan_bytes(two, NetMode::Train)},
      {"teacher_activations",
       te.estimate_plan_bytes(image, NetMode::Eval) + te.estimate_plan_bytes(two, NetMode::TrainStats)},
      {"memory_bank", size_t(bank.total_capacity() * bank.dim()) * sizeof(float)},
      {"workspace", ctx.workspace_bytes()}};
  nlohmann::json result = {{"preset", o.preset},
          {"memory", memory_mode_name(plan.memory)},
          {"depth", o.depth},
          {"output_stride", o.output_stride},
          {"width_divisor", o.width_divisor},
          {"batch", o.batch},
          {"replicas", o.replicas},
          {"processes", processes},
          {"crop", o.crop},
          {"classes", C},
          {"device", device_name(o.device)},
          {"ms", ms},
          {"iterations_per_s", 1000.0 / ms},
          {"peak_rss_bytes", peak_rss},
          {"arena_bytes", arenas},
          {"last", {{"sup", last.sup}, {"unsup", last.unsup}, {"contra", last.contra}, {"total", last.total},
                    {"contra_terms", last.contra_terms}, {"ema", last.ema}}}};
  if (profiler && say) result["profile"] = profile_report(*profiler, o.repeat, timed_ms);
  return result;
}

}  // namespace u2pl::bench
