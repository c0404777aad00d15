// The model benchmark (bench/model_bench.h).
#include "bench/model_bench.h"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <iostream>
#include <vector>

#include "engine/log.h"
#include "u2pl/train/train_step.h"
#include "u2pl/train/trainer.h"

namespace u2pl::bench {

namespace {

Tensor random_tensor(Shape s, uint64_t seed, Device dev) {
  std::vector<float> v(static_cast<size_t>(s.numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = 2.f * philox_uniform(seed, 0, i) - 1.f;
  return Tensor::from_host(s, v, dev);
}

double median_ms(Context& ctx, int repeat, const std::function<void()>& step) {
  step();  // warm-up: plans, primitives and the workspace are built here
  ctx.synchronize();
  std::vector<double> t;
  for (int r = 0; r < repeat; ++r) {
    const auto a = std::chrono::steady_clock::now();
    step();
    ctx.synchronize();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count());
    std::cerr << "  run " << r + 1 << "/" << repeat << ": " << t.back() << " ms\n";
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

size_t param_bytes(const U2plNet& n) { return n.params().values().bytes(); }

}  // namespace

NetConfig bench_net_config(const ModelBenchOptions& o) {
  NetConfig c;
  c.depth = o.depth;
  c.width_divisor = o.width_divisor;
  c.replace_stride_with_dilation = o.output_stride == 8 ? std::array<bool, 3>{false, true, true}
                                                        : std::array<bool, 3>{false, false, true};
  U2PL_CHECK(o.output_stride == 8 || o.output_stride == 16, "--os: expected 8 or 16, got " << o.output_stride);
  if (o.output_stride == 16) c.dilations = {6, 12, 18};
  return c;  // VOC: 21 classes, rep head, no aux
}

nlohmann::json run_model_bench(const ModelBenchOptions& o) {
  const NetConfig cfg = bench_net_config(o);
  U2plNet student(cfg);
  student.allocate(o.device, 1, /*trainable=*/o.mode != "eval");
  std::unique_ptr<U2plNet> teacher;
  const bool u2pl = o.mode == "u2pl";
  U2PL_CHECK(u2pl || o.mode == "train" || o.mode == "eval", "--mode: expected eval, train or u2pl, got '" << o.mode << "'");
  if (u2pl) {
    teacher = std::make_unique<U2plNet>(cfg);
    teacher->allocate(o.device, 2, /*trainable=*/false);  // the EMA teacher has no gradients
  }
  Context ctx(o.device);
  const int B = o.batch;
  const Shape one = Shape{B, 3, o.crop, o.crop}, two = Shape{2 * B, 3, o.crop, o.crop};
  const Tensor x1 = random_tensor(one, 3, o.device);
  const Tensor x2 = random_tensor(u2pl ? two : one, 4, o.device);
  Rng rng(7);
  // Output gradients stand in for the loss: random, fixed, the shapes of pred and rep.
  Tensor dpred, drep;
  auto train_step = [&](const Tensor& x) {
    const NetOutputs out = student.forward(ctx, x, NetMode::Train, &rng);
    if (!dpred.numel()) {
      dpred = random_tensor(out.pred.shape, 5, o.device);
      drep = random_tensor(out.rep.shape, 6, o.device);
    }
    student.params().zero_grad();
    student.backward(ctx, dpred, drep, TensorView());
  };
  std::function<void()> step;
  int images = B;
  if (o.mode == "eval") {
    step = [&] { student.forward(ctx, x1, NetMode::Eval, nullptr); };
  } else if (o.mode == "train") {
    step = [&] { train_step(x1); };
  } else {
    images = 2 * B;
    step = [&] {
      teacher->forward(ctx, x1, NetMode::Eval, nullptr);
      train_step(x2);
      teacher->forward(ctx, x2, NetMode::TrainStats, &rng);
    };
  }
  std::cerr << "u2pl_bench model: " << o.mode << ", ResNet-" << o.depth << " OS" << o.output_stride << ", batch "
            << B << ", crop " << o.crop << ", device " << device_name(o.device) << "\n";
  const double ms = median_ms(ctx, o.repeat, step);
  nlohmann::json arenas = {{"parameters", param_bytes(student)},
                           {"gradients", o.mode == "eval" ? size_t(0) : student.params().grads().bytes()},
                           {"bn_buffers", student.params().buffers().bytes()},
                           {"workspace", ctx.workspace_bytes()}};
  if (o.mode == "eval") arenas["activations_eval"] = student.plan_bytes(one, NetMode::Eval);
  else arenas["activations_train"] = student.plan_bytes(u2pl ? two : one, NetMode::Train);
  if (u2pl) {
    arenas["teacher_parameters"] = param_bytes(*teacher) + teacher->params().buffers().bytes();
    arenas["teacher_activations"] = teacher->plan_bytes(one, NetMode::Eval) + teacher->plan_bytes(two, NetMode::TrainStats);
  }
  return {{"mode", o.mode},       {"depth", o.depth}, {"output_stride", o.output_stride}, {"batch", B},
          {"crop", o.crop},       {"device", device_name(o.device)}, {"ms", ms},
          {"images_per_s", images * 1000.0 / ms}, {"peak_rss_bytes", peak_rss_bytes()}, {"arena_bytes", arenas}};
}

size_t peak_rss_bytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<size_t>(u.ru_maxrss) * 1024;  // Linux reports KiB
}

nlohmann::json plan_memory(const ModelBenchOptions& o) {
  const NetConfig cfg = bench_net_config(o);
  const U2plNet net(cfg);  // declared, not allocated
  const ParamSet& ps = net.params();
  const int B = o.batch;
  const Shape one{B, 3, o.crop, o.crop}, two{2 * B, 3, o.crop, o.crop};
  const size_t p = ps.values().bytes(), g = ps.grads().bytes(), b = ps.buffers().bytes();
  const size_t student_act = net.estimate_plan_bytes(two, NetMode::Train);
  const size_t teacher_act = net.estimate_plan_bytes(one, NetMode::Eval) + net.estimate_plan_bytes(two, NetMode::TrainStats);
  TrainConfig voc;  // U2PL with the public configs' queue sizes, one replica of B + B, at this network's width
  voc.net = cfg;
  voc.data.batch_size = B;
  voc.unsup.enabled = voc.contrastive.enabled = true;
  const size_t bank = memory_bank_bytes(voc, ps.decls()[size_t(ps.find("decoder.representation.8.weight"))].shape[0]);
  const size_t fixed = 3 * p + g + 2 * b + bank;  // student, momentum, teacher, bank
  nlohmann::json modes = nlohmann::json::object();  // memory mode → total bytes
  nlohmann::json pick;                               // what trainer.memory auto picks (null: none fits)
  size_t total = 0, buffers = 0, workspace = 0;     // keep's; the step's own buffers and CUDA scratch (any mode)
  for (const MemoryMode m : kMemoryModes) {
    const StepMemory step = step_memory(voc, net, one, m);
    const size_t bytes = fixed + step.activations + step.buffers + step.workspace;
    if (m == MemoryMode::Keep) total = bytes;
    modes[memory_mode_name(m)] = bytes;
    buffers = step.buffers;
    workspace = step.workspace;
    if (pick.is_null() && double(bytes) <= kAutoMemoryShare * o.device_memory_gib * double(1 << 30))
      pick = memory_mode_name(m);
  }
  nlohmann::json r = {{"batch_labeled", B},       {"batch_unlabeled", B},        {"crop", o.crop},
          {"parameters", p},          {"gradients", g},              {"momentum", p},
          {"teacher_parameters", p},  {"bn_buffers", 2 * b},         {"student_activations", student_act},
          {"teacher_activations", teacher_act}, {"memory_bank", bank}, {"step_buffers", buffers},
          {"cuda_workspace", workspace}, {"total", total},
          {"total_text", format_bytes(double(total))},
          {"modes", modes}};
  if (o.device_memory_gib > 0) {
    r["device_memory_gib"] = o.device_memory_gib;
    r["auto"] = pick;
  }
  return r;
}

}  // namespace u2pl::bench
