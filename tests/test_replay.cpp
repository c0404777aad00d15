// u2pl/train/replay.h: a trace recorded here from the engine's own TrainStep (the format of
// tools/pytorch/official_trace.py: init.*, iter.I.{image,label,dropout.SITE,loss,lr}, after.N.*)
// replays to the same losses and states exactly; a trace whose batch was changed shows the
// difference from that iteration on; and every refusal names what differs.
#include <doctest/doctest.h>

#include <random>

#include "engine/safetensors.h"
#include "tests/config_test_util.h"
#include "tests/temp_dir.h"
#include "u2pl/train/replay.h"
#include "u2pl/train/train_step.h"

using namespace u2pl;
using namespace u2pl::test;

namespace {

constexpr int kClasses = 4, kIters = 3, kPerEpoch = 3;

TrainConfig config(const std::vector<std::string>& overrides = {}) {
  return load_train_config(write_yaml("replay", tiny_train_config("unused", kClasses, "u2pl")), overrides, nullptr);
}

// The student's dropout scales from the plans (set by the recorder), the teacher's from Philox.
class PlanDraws : public PhiloxStepDraws {
 public:
  explicit PlanDraws(int64_t it) : PhiloxStepDraws(7, it) {}
  Rng* student_dropout() override { return nullptr; }
};

struct TraceOptions {
  std::string format = kTraceFormat;
  bool drop_site = false;        // leave one dropout site out of the metadata
  int changed_label_at = -1;     // record the batch of this iteration, then change its labels
  int groups = 2;
};

// Runs kIters warm-start iterations of the engine on random batches and dropout scales and writes
// them as a trace; snapshots after 1 and kIters iterations.
void record(const TrainConfig& cfg, const std::string& path, const TraceOptions& o = {}) {
  TrainStep ts(cfg, Device::CPU);
  ts.set_iters_per_epoch(kPerEpoch);
  U2plNet& net = ts.student();
  const ParamSet& ps = net.params();
  SafeTensorsWriter w;
  auto state = [&](const std::string& prefix) {
    for (size_t i = 0; i < ps.decls().size(); ++i) w.add(prefix + ps.decls()[i].name, ps.value(int(i)));
  };
  state("init.");
  std::vector<std::string> sites = net.dropout_sites();
  std::string joined;
  for (size_t i = o.drop_site ? 1 : 0; i < sites.size(); ++i) joined += (joined.empty() ? "" : ",") + sites[i];
  std::mt19937 gen(11);
  std::normal_distribution<float> normal;
  std::uniform_int_distribution<int> cls(0, kClasses - 1);
  std::bernoulli_distribution keep(0.9);
  const int64_t B = cfg.data.batch_size, H = cfg.data.train.crop.size[0], W = cfg.data.train.crop.size[1];
  const Shape image{B, 3, H, W};
  Context ctx(Device::CPU);
  for (int it = 0; it < kIters; ++it) {
    const std::string p = "iter." + std::to_string(it) + ".";
    std::vector<float> px(size_t(image.numel()));
    for (float& v : px) v = normal(gen);
    std::vector<int32_t> lab(size_t(B * H * W));
    for (int32_t& v : lab) v = keep(gen) ? cls(gen) : 255;
    for (const std::string& site : sites) {
      const TensorView slot = net.dropout_scale(image, NetMode::Train, site);
      std::vector<float> s(size_t(slot.numel()));
      for (float& v : s) v = keep(gen) ? 1.f / 0.9f : 0.f;
      copy_tensor(slot, TensorView(s.data(), slot.shape, Device::CPU));
      w.add(p + "dropout." + site, DType::F32, {B, slot.numel() / B}, s.data());
    }
    const Tensor img = Tensor::from_host(image, px, Device::CPU);
    const Labels lb = Labels::from_host(Shape{B, H, W}, lab, Device::CPU);
    PlanDraws draws(it);
    const StepResult r = ts.step(ctx, img.view(), lb.view(), TensorView(), it, 0, draws);
    if (it == o.changed_label_at)
      for (int32_t& v : lab) v = v == 255 ? 255 : (v + 1) % kClasses;
    w.add(p + "image", DType::F32, {B, 3, H, W}, px.data());
    w.add(p + "label", DType::I32, {B, H, W}, lab.data());
    const double loss = r.sup;
    const std::vector<double> lrs{ts.lr_at(it, 0), ts.lr_at(it, 1)};
    w.add(p + "loss", DType::F64, {1}, &loss);
    w.add(p + "lr", DType::F64, {int64_t(lrs.size())}, lrs.data());
    if (it + 1 == 1 || it + 1 == kIters) state("after." + std::to_string(it + 1) + ".");
  }
  w.set_metadata("format", o.format);
  w.set_metadata("source", "tests/test_replay.cpp");
  w.set_metadata("dropout_sites", joined);
  w.set_metadata("groups", std::to_string(o.groups));
  w.set_metadata("iterations", std::to_string(kIters));
  w.set_metadata("iters_per_epoch", std::to_string(kPerEpoch));
  w.set_metadata("snapshots", "1 " + std::to_string(kIters));
  w.write(path);
}

}  // namespace

TEST_CASE("replay: the engine's own trace replays to the same losses and states, exactly") {
  TempDir dir("replay_same");
  const TrainConfig cfg = config();
  const std::string path = dir.path + "/trace.safetensors";
  record(cfg, path);
  int called = 0;
  const ReplayReport r = replay_trace(cfg, path, [&](const ReplayStep&) { ++called; });
  CHECK(called == kIters);
  REQUIRE(r.steps.size() == size_t(kIters));
  for (const ReplayStep& s : r.steps) {
    CHECK(s.loss == s.want_loss);
    CHECK(s.lrs == s.want_lrs);
  }
  REQUIRE(r.snapshots.size() == 2);
  CHECK(r.snapshots[0].after == 1);
  CHECK(r.snapshots[1].after == kIters);
  for (const ReplaySnapshot& s : r.snapshots) {
    CHECK(s.params_rel == 0);
    CHECK(s.buffers_rel == 0);
    REQUIRE(!s.worst.empty());
    CHECK(s.worst.front().diff == 0);
  }
  const std::string text = format_replay(r);
  CHECK(text.find("| 2 | ") != std::string::npos);
  CHECK(text.find("After 3 iterations") != std::string::npos);
}

TEST_CASE("replay: a batch that differs from the one trained on shows from its iteration on") {
  TempDir dir("replay_changed");
  const TrainConfig cfg = config();
  const std::string path = dir.path + "/trace.safetensors";
  record(cfg, path, TraceOptions{kTraceFormat, false, 1});
  const ReplayReport r = replay_trace(cfg, path);
  REQUIRE(r.steps.size() == size_t(kIters));
  CHECK(r.steps[0].loss == r.steps[0].want_loss);
  CHECK(r.snapshots[0].params_rel == 0);
  CHECK(std::fabs(r.steps[1].loss - r.steps[1].want_loss) > 1e-4 * r.steps[1].want_loss);  // ~5e-4 at the start
  CHECK(std::fabs(r.steps[2].loss - r.steps[2].want_loss) > 1e-4 * r.steps[2].want_loss);
  CHECK(r.snapshots[1].params_rel > 1e-3);
  CHECK(r.snapshots[1].worst.front().rel() > 1e-3);
}

TEST_CASE("replay: refusals name the trace and what differs") {
  TempDir dir("replay_bad");
  const TrainConfig cfg = config();
  const std::string path = dir.path + "/trace.safetensors";
  record(cfg, path, TraceOptions{"something-else"});
  CHECK_THROWS_WITH_AS(replay_trace(cfg, path), doctest::Contains("not a training trace"), Error);
  record(cfg, path, TraceOptions{kTraceFormat, true});
  CHECK_THROWS_WITH_AS(replay_trace(cfg, path), doctest::Contains("the network's differ"), Error);
  record(cfg, path, TraceOptions{kTraceFormat, false, -1, 3});
  CHECK_THROWS_WITH_AS(replay_trace(cfg, path), doctest::Contains("3 parameter groups, the engine has 2"), Error);
  record(cfg, path);
  CHECK_THROWS_WITH_AS(replay_trace(config({"trainer.sup_only_epoch=0"}), path),
                       doctest::Contains("past the config's warm start"), Error);
  CHECK_THROWS_WITH_AS(replay_trace(config({"dataset.batch_size=1"}), path),
                       doctest::Contains("the config's batch is (1, 3, 33, 33)"), Error);
  CHECK_THROWS_WITH_AS(replay_trace(cfg, dir.path + "/absent.safetensors"), doctest::Contains("absent.safetensors"),
                       Error);
}
