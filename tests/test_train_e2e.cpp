// Tier 4 (STYLE 15): four U2PL iterations of u2pl::TrainStep on the CPU against a PyTorch dump of
// the same steps (tools/pytorch/torch_u2pl_train.py: tools/pytorch/torch_u2pl_net.py plus the
// losses of SPEC §2, in the order of the public train_semi.py), one dump per preset:
// tests/fixtures/train_e2e_{paper,official}.safetensors. Iteration 0 is the warm start, 1 the
// handover, 2-3 the EMA teacher (decay 0.5, 2/3); CutMix on in iterations 1 and 3, off in 2;
// queues wrap. The dump's random inputs are replayed: Dropout2d scales set into the plans
// (StepDraws returns no Rng), the CutMix boxes, the contrastive draws (ReplayIndexSource).
// Compared: each iteration's loss terms, γ_t, the contrastive thresholds, the reliable-pixel count
// and term count; after the last one every student and teacher parameter and BN buffer, the SGD
// momentum and the bank.
//
// Tolerances. The expected values come from a float64 run. PyTorch's own float32 replay of the
// same inputs lands within ~3e-7 (relative) of it on every loss term, ~1e-6 on the thresholds,
// ~1e-6 of each tensor's largest value on every parameter, BN buffer and queue row, and ~2e-6
// absolute on the momentum (the generator prints these); the engine's float32 step lands in the
// same range (2.5e-7, 1.1e-6, 9e-7, 7e-6; the test prints the share of each tolerance it used:
// at most ~0.15). The tolerances sit about 10x above:
// loss terms rel 1e-5, thresholds abs 1e-5, parameters, buffers and queues 1e-5 of each tensor's
// largest value plus 1e-7. The momentum is a sum of gradients, whose float32 noise (~1e-6
// absolute) is large next to a few small ones: the single-channel BNs of width/64 and six conv
// biases right before a train-mode BN, whose gradient is zero in exact arithmetic; so abs 2e-5 +
// 1e-4 of the tensor's largest value (weight decay alone adds ~3e-3·|w| to it, far above).
// Counts are exact: the generator keeps only a seed whose every discrete decision (argmax
// pseudo-labels, entropy percentiles, δp, probability ranks) lies 10x the float32 noise away from
// its threshold. Should the engine take another branch anyway, the replay refuses the first draw
// whose candidate list differs and the test names the iteration.
#include <doctest/doctest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <sstream>

#include "tests/config_test_util.h"
#include "tests/test_util.h"
#include "u2pl/losses/index_source.h"
#include "u2pl/train/train_step.h"

using namespace u2pl;
using namespace u2pl::test;

namespace {

constexpr double kLossRel = 1e-5;   // loss terms, relative
constexpr double kThreshAbs = 1e-5;  // γ_t and the contrastive mask thresholds (entropies ~1)
constexpr Tol kState{1e-7, 1e-5, true};     // parameters, BN buffers, queue rows (normwise)
constexpr Tol kMomentum{2e-5, 1e-4, true};  // momentum: a sum of gradients (see the top)

// The largest share of its tolerance a deviation used, per kind, printed once per preset.
struct Worst {
  double loss = 0, thresh = 0, state = 0, momentum = 0;
};

// max |got − want| / (abs + rel · max |want|) of a normwise tolerance.
double tolerance_used(const std::vector<float>& got, const std::vector<float>& want, Tol tol) {
  double err = 0, scale = 0;
  for (size_t i = 0; i < got.size() && i < want.size(); ++i) {
    err = std::max(err, std::fabs(double(got[i]) - double(want[i])));
    scale = std::max(scale, std::fabs(double(want[i])));
  }
  return err / (tol.abs + tol.rel * scale);
}

std::vector<std::string> split(const std::string& s, char sep = ',') {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string t; std::getline(ss, t, sep);) out.push_back(t);
  return out;
}

// The replica count a dump simulates (the public code's GPU count; dumps before replicas: 1).
int replicas_of(const SafeTensorsFile& f) {
  const auto it = f.metadata().find("replicas");
  return it == f.metadata().end() ? 1 : std::stoi(it->second);
}

// The TrainConfig the dump was made with, as a config.yaml (the public tree and key names).
TrainConfig config_of(const SafeTensorsFile& f) {
  auto m = [&](const char* k) { return f.meta(k); };
  std::string t = R"(dataset:
  type: pascal_semi
  train:
    data_root: unused
    data_list: unused/labeled.txt
    crop: {type: rand, size: [@height, @width]}
  val:
    data_root: unused
    data_list: unused/val.txt
  batch_size: @batch
  ignore_label: 255
trainer:
  preset: @preset
  replicas: REPLICAS
  epochs: @epochs
  sup_only_epoch: @sup_only_epoch
  optimizer: {type: SGD, kwargs: {lr: @lr, momentum: @momentum, weight_decay: @weight_decay}}
  lr_scheduler: {mode: poly, kwargs: {power: @lr_power}}
  unsupervised: {drop_percent: @unsup_drop_percent, apply_aug: cutmix, loss_weight: @unsup_loss_weight}
  contrastive:
    low_rank: @contra_low_rank
    high_rank: @contra_high_rank
    current_class_threshold: @contra_delta_p
    current_class_negative_threshold: @contra_delta_n
    low_entropy_threshold: @contra_low_entropy_threshold
    num_negatives: @contra_num_negatives
    num_queries: @contra_num_queries
    temperature: @contra_temperature
    loss_weight: @contra_loss_weight
    queue_size: @contra_queue_size
    queue_size_background: @contra_queue_size_background
net:
  num_classes: @num_classes
  ema_decay: @ema_decay
  encoder:
    type: u2pl.models.resnet.resnet@depth
    kwargs:
      stem: @stem
      width_divisor: @width_divisor
      multi_grid: @multi_grid_py
      replace_stride_with_dilation: [False, False, @os16_py]
  decoder:
    type: u2pl.models.decoder.dec_deeplabv3_plus
    kwargs: {inner_planes: @inner_planes, dilations: [@dilations], rep_head: @rep_head_py}
)";
  auto py = [](const std::string& v) { return std::string(v == "1" ? "True" : "False"); };
  REQUIRE(m("output_stride") == "16");
  REQUIRE(m("aux") == "0");
  const std::vector<std::pair<std::string, std::string>> subs = {
      {"@multi_grid_py", py(m("multi_grid"))}, {"@os16_py", "True"}, {"@rep_head_py", py(m("rep_head"))}};
  for (const auto& [key, v] : subs) t = replace_once(t, key, v);
  t = replace_once(t, "REPLICAS", std::to_string(replicas_of(f)));
  for (size_t at; (at = t.find('@')) != std::string::npos;) {
    size_t end = at + 1;
    while (end < t.size() && (std::isalnum(static_cast<unsigned char>(t[end])) || t[end] == '_')) ++end;
    t.replace(at, end - at, f.meta(t.substr(at + 1, end - at - 1)));
  }
  return load_train_config(write_yaml("train_e2e_" + m("preset"), t), {}, nullptr);
}

// The recorded draws of one iteration: CutMix boxes (or none) and the contrastive indices; the
// dropout scales are already in the plans.
// The dump's draws of one iteration: per replica its CutMix boxes (or none), and the contrastive
// draws of all replicas in the order they were made (replica 0's terms first).
class DumpDraws : public StepDraws {
 public:
  DumpDraws(std::vector<std::optional<std::vector<Box>>> boxes, std::vector<std::vector<int64_t>> draws,
            std::vector<int64_t> highs)
      : boxes_(std::move(boxes)), replay_(std::move(draws), std::move(highs)) {}
  Rng* student_dropout() override { return nullptr; }
  Rng* teacher_dropout() override { return nullptr; }
  std::optional<std::vector<Box>> cutmix(int replica, int batch, int, int) override {
    ++cutmix_calls;
    REQUIRE(size_t(replica) < boxes_.size());
    const std::optional<std::vector<Box>>& b = boxes_[size_t(replica)];
    if (b) CHECK(int(b->size()) == batch);
    return b;
  }
  IndexSource& contrastive(int) override { return replay_; }
  const ReplayIndexSource& replay() const { return replay_; }
  int cutmix_calls = 0;

 private:
  std::vector<std::optional<std::vector<Box>>> boxes_;
  ReplayIndexSource replay_;
};

// A dump's initial states (U8 q + 128 and a power-of-two scale per tensor) and flat final states,
// laid out over `keys` (parameters then buffers) in the order of the metadata.
struct Layout {
  std::vector<std::string> params, buffers, keys;
  std::vector<int64_t> numel;
  explicit Layout(const SafeTensorsFile& f)
      : params(split(f.meta("param_keys"))), buffers(split(f.meta("buffer_keys"))) {
    keys = params;
    keys.insert(keys.end(), buffers.begin(), buffers.end());
    for (const std::string& n : split(f.meta("numels"))) numel.push_back(std::stoll(n));
    REQUIRE(numel.size() == keys.size());
  }
};

void load_init(const SafeTensorsFile& f, const Layout& l, const std::string& who, U2plNet& net) {
  const std::vector<uint8_t> q = f.bytes("init." + who + ".q");
  const std::vector<float> scale = f.floats("init." + who + ".scale");
  REQUIRE(scale.size() == l.keys.size());
  REQUIRE(l.keys.size() == net.params().decls().size());  // every parameter and buffer, once
  size_t at = 0;
  for (size_t i = 0; i < l.keys.size(); ++i) {
    const int id = net.params().find(l.keys[i]);
    REQUIRE_MESSAGE(id >= 0, l.keys[i]);
    const TensorView v = net.params().value(id);
    REQUIRE_MESSAGE(v.numel() == l.numel[i], l.keys[i]);
    std::vector<float> x(size_t(v.numel()));
    for (float& e : x) e = float(int(q[at++]) - 128) * scale[i];  // exact: |q| ≤ 127, scale 2^k
    copy_tensor(v, TensorView(x.data(), v.shape, Device::CPU));
  }
  REQUIRE(at == q.size());
}

// The flat final state `name` against net's tensors (or the momentum arena at their offsets).
void expect_state(const SafeTensorsFile& f, const std::string& name, U2plNet& net,
                  const std::vector<std::string>& keys, double& worst, TensorView momentum = TensorView()) {
  const std::vector<float> want = f.floats(name);
  size_t at = 0;
  for (const std::string& k : keys) {
    const TensorView v = net.params().value(net.params().find(k));
    TensorView got = v;
    if (momentum.defined())  // the momentum arena has the value arena's layout
      got = TensorView(momentum.data + (v.data - net.params().values().all().data), v.shape, Device::CPU);
    const std::vector<float> w(want.begin() + int64_t(at), want.begin() + int64_t(at) + v.numel());
    at += size_t(v.numel());
    const std::vector<float> g = to_host(got);
    const Tol tol = momentum.defined() ? kMomentum : kState;
    check_close(name + " " + k, g, w, tol);
    worst = std::max(worst, tolerance_used(g, w, tol));
  }
  CHECK(at == want.size());
}

// Pool images (n, 3, H, W) uint8 → the picked ones normalised as the loader does (float32).
Tensor images(const SafeTensorsFile& f, const std::string& pool, const std::vector<int32_t>& pick) {
  const std::vector<uint8_t> px = f.bytes(pool);
  const Shape s = f.shape(pool);
  const std::vector<std::string> mean = split(f.meta("mean")), stdv = split(f.meta("std"));
  const int64_t plane = s.h() * s.w(), image = 3 * plane;
  std::vector<float> out;
  for (const int32_t i : pick)
    for (int64_t c = 0; c < 3; ++c) {
      const float m = float(std::stod(mean[size_t(c)])), d = float(std::stod(stdv[size_t(c)]));
      for (int64_t k = 0; k < plane; ++k) out.push_back((float(px[size_t(i * image + c * plane + k)]) - m) / d);
    }
  return Tensor::from_host(Shape{int64_t(pick.size()), 3, s.h(), s.w()}, out, Device::CPU);
}

Labels labels(const SafeTensorsFile& f, const std::vector<int32_t>& pick) {
  const std::vector<int32_t> all = f.ints("pool.labels_l");
  const Shape s = f.shape("pool.labels_l");
  std::vector<int32_t> out;
  const int64_t n = s[1] * s[2];
  for (const int32_t i : pick) out.insert(out.end(), all.begin() + i * n, all.begin() + (i + 1) * n);
  return Labels::from_host(Shape{int64_t(pick.size()), s[1], s[2]}, out, Device::CPU);
}

// The (N, Σ C) scales of one forward, split by site into the plan of that shape and mode.
void set_dropout(const SafeTensorsFile& f, const std::string& name, U2plNet& net, Shape image, NetMode mode) {
  const std::vector<float> all = f.floats(name);
  const Shape s = f.shape(name);
  REQUIRE(s[0] == image.n());
  int64_t col = 0;
  for (const std::string& entry : split(f.meta("dropout_sites"))) {
    const size_t colon = entry.rfind(':');
    const std::string site = entry.substr(0, colon);
    const int64_t C = std::stoll(entry.substr(colon + 1));
    std::vector<float> v;
    for (int64_t n = 0; n < s[0]; ++n)
      for (int64_t c = 0; c < C; ++c) v.push_back(all[size_t(n * s[1] + col + c)]);
    const TensorView slot = net.dropout_scale(image, mode, site);
    REQUIRE_MESSAGE(slot.numel() == int64_t(v.size()), site);
    copy_tensor(slot, TensorView(v.data(), slot.shape, Device::CPU));
    col += C;
  }
  REQUIRE(col == s[1]);
  REQUIRE(net.dropout_sites().size() == split(f.meta("dropout_sites")).size());
}

void check_loss(const char* what, int it, double got, double want, Worst& worst) {
  CHECK_MESSAGE(std::fabs(got - want) <= kLossRel * std::fabs(want),
                "iteration " << it << " " << what << ": got " << got << ", expected " << want);
  if (want != 0) worst.loss = std::max(worst.loss, std::fabs(got - want) / (kLossRel * std::fabs(want)));
}

void check_thresh(const char* what, int it, double got, double want, Worst& worst) {
  CHECK_MESSAGE(std::fabs(got - want) <= kThreshAbs,
                "iteration " << it << " " << what << ": got " << got << ", expected " << want);
  worst.thresh = std::max(worst.thresh, std::fabs(got - want) / kThreshAbs);
}

// Replays the dump train_e2e_<name>.safetensors of `preset`.
void run_dump(const std::string& preset, const std::string& name) {
  const SafeTensorsFile f(std::string(U2PL_FIXTURE_DIR) + "/train_e2e_" + name + ".safetensors");
  REQUIRE(f.meta("format") == "u2pl-train-e2e");
  REQUIRE(f.meta("preset") == preset);
  const TrainConfig cfg = config_of(f);
  REQUIRE(cfg.preset == preset);
  CHECK(cfg.switches.teacher_copy_bn == (f.meta("teacher_copy_bn") == "1"));
  TrainStep ts(cfg, Device::CPU);
  REQUIRE(ts.has_teacher());
  REQUIRE(ts.uses_contrastive());
  ts.set_iters_per_epoch(std::stoll(f.meta("iters_per_epoch")));
  const int iters = std::stoi(f.meta("iterations"));
  REQUIRE(ts.total_iters() == iters);
  const Layout layout(f);
  load_init(f, layout, "student", ts.student());
  load_init(f, layout, "teacher", *ts.teacher());

  const std::vector<std::string> fields = split(f.meta("out_fields"));
  const int64_t B = std::stoll(f.meta("batch")), H = std::stoll(f.meta("height")), W = std::stoll(f.meta("width"));
  const int R = replicas_of(f);
  REQUIRE(cfg.replicas == R);
  Context ctx(Device::CPU);
  Worst worst;
  for (int it = 0; it < iters; ++it) {
    const std::string p = "iter." + std::to_string(it) + ".";
    const int epoch = int(it / ts.iters_per_epoch());
    const bool semi = f.has(p + "unlabeled");
    REQUIRE(semi == ts.semi_phase(epoch));
    const Tensor img_l = images(f, "pool.images_l", f.ints(p + "labeled"));
    const Labels lab_l = labels(f, f.ints(p + "labeled"));
    const Tensor img_u = semi ? images(f, "pool.images_u", f.ints(p + "unlabeled")) : Tensor();
    const Shape image{R * (semi ? 2 * B : B), 3, H, W};
    set_dropout(f, p + "dropout.student", ts.student(), image, NetMode::Train);
    set_dropout(f, p + "dropout.teacher", *ts.teacher(), image, NetMode::TrainStats);
    std::vector<std::optional<std::vector<Box>>> boxes(static_cast<size_t>(R));
    for (int r = 0; r < R; ++r) {
      const std::string key = p + (R == 1 ? "boxes" : "boxes." + std::to_string(r));
      if (!f.has(key)) continue;
      const std::vector<int32_t> b = f.ints(key);
      boxes[size_t(r)].emplace();
      for (size_t i = 0; i + 3 < b.size(); i += 4) boxes[size_t(r)]->push_back(Box{b[i], b[i + 1], b[i + 2], b[i + 3]});
    }
    const std::vector<int32_t> flat = f.ints(p + "draws"), sizes = f.ints(p + "draw_sizes"),
                               highs = f.ints(p + "draw_highs");
    std::vector<std::vector<int64_t>> draws;
    size_t at = 0;
    for (const int32_t n : sizes) {
      draws.emplace_back(flat.begin() + int64_t(at), flat.begin() + int64_t(at) + n);
      at += size_t(n);
    }
    DumpDraws dd(boxes, draws, std::vector<int64_t>(highs.begin(), highs.end()));
    INFO("dump " << name << ", iteration " << it);
    StepResult r;
    try {
      r = ts.step(ctx, img_l, lab_l, img_u, it, epoch, dd);
    } catch (const Error& e) {
      // The replay refuses a draw whose candidate list differs from PyTorch's: the engine took
      // another branch (a mask, a class list or a queue length differs).
      FAIL("the step diverged from the PyTorch run: " << std::string(e.what()));
    }

    const std::vector<double> want = f.doubles(p + "out");
    auto out = [&](const char* name) {
      for (size_t i = 0; i < fields.size(); ++i)
        if (fields[i] == name) return want[i];
      FAIL("no field " << name);
      return 0.0;
    };
    CHECK(r.semi == semi);
    CHECK(dd.cutmix_calls == (semi ? R : 0));
    CHECK(dd.replay().used() == dd.replay().recorded());
    check_loss("sup", it, r.sup, out("sup"), worst);
    check_loss("unsup", it, r.unsup, out("unsup"), worst);
    check_loss("contra", it, r.contra, out("contra"), worst);
    check_thresh("gamma", it, r.thresh, out("thresh"), worst);
    check_thresh("contra_low", it, r.contra_low, out("contra_low"), worst);
    check_thresh("contra_high", it, r.contra_high, out("contra_high"), worst);
    CHECK(std::llround(r.reliable * double(R * B * H * W)) == std::llround(out("reliable")));
    CHECK(r.contra_terms == int(out("terms")));
    CHECK(std::fabs(r.ema - out("ema")) <= 1e-6);
    CHECK(std::fabs(ts.lr_at(it) - out("lr")) <= 1e-6 * out("lr"));
  }
  expect_state(f, "final.student", ts.student(), layout.keys, worst.state);
  expect_state(f, "final.teacher", *ts.teacher(), layout.keys, worst.state);
  expect_state(f, "final.momentum", ts.student(), layout.params, worst.momentum, ts.momentum());
  MemoryBank& bank = *ts.bank();
  for (int c = 0; c < bank.classes(); ++c) {
    const std::string name = "final.bank." + std::to_string(c);
    REQUIRE_MESSAGE(bank.size(c) == f.shape(name)[0], name);
    if (bank.size(c) == 0) continue;
    check_close(name, bank.contents(c), f.floats(name), kState);
    worst.state = std::max(worst.state, tolerance_used(bank.contents(c), f.floats(name), kState));
  }
  MESSAGE("train e2e " << name << ": largest share of the tolerance used: loss terms " << worst.loss
                       << ", thresholds " << worst.thresh << ", parameters / buffers / queues " << worst.state
                       << ", momentum " << worst.momentum);
}

}  // namespace

TEST_CASE("train e2e: four TrainStep iterations match the PyTorch dump (paper preset)") { run_dump("paper", "paper"); }

TEST_CASE("train e2e: four TrainStep iterations match the PyTorch dump (official preset)") {
  run_dump("official", "official");
}

// Two replicas (the public code on two GPUs) in one process: SyncBN over both, the losses per
// replica, the mean gradient, both replicas' negatives pushed before either samples, λc / 2.
TEST_CASE("train e2e: two replicas match the PyTorch dump of two simulated GPUs (paper preset)") {
  run_dump("paper", "paper_r2");
}

TEST_CASE("train e2e: two replicas match the PyTorch dump of two simulated GPUs (official preset)") {
  run_dump("official", "official_r2");
}
