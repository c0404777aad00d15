// u2pl/train/replay.h: a trace recorded here from the engine's own TrainStep (the format of
// tools/pytorch/official_trace.py: init.*, iter.I.{image,label,dropout.SITE,loss,lr}, after.N.*)
// replays to the same losses and states exactly; a trace whose batch was changed shows the
// difference from that iteration on; and every refusal names what differs.
#include <doctest/doctest.h>

#include <cmath>
#include <map>
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

// The poly rate of the config (lr 0.01, 10x for the head on VOC-layout data, power 0.9) over
// 3 epochs of kPerEpoch iterations, written out here instead of asked of TrainStep.
double poly(int it, int group) {
  return (group == 0 ? 0.01 : 0.1) * std::pow(1.0 - double(it) / (3 * kPerEpoch), 0.9);
}

struct TraceOptions {
  std::string format = kTraceFormat;
  bool drop_site = false;        // leave one dropout site out of the metadata
  int changed_label_at = -1;     // record the batch of this iteration, then change its labels
  std::map<std::string, std::string> meta;  // metadata written over the recorder's
  std::string omit;              // a tensor to leave out of the file
  bool short_dropout = false;    // iteration 0's first site: one scale too few
};

// Runs kIters warm-start iterations of the engine on random batches and dropout scales and writes
// them as a trace; snapshots after 1 and kIters iterations.
void record(const TrainConfig& cfg, const std::string& path, const TraceOptions& o = {}) {
  TrainStep ts(cfg, Device::CPU);
  ts.set_iters_per_epoch(kPerEpoch);
  U2plNet& net = ts.student();
  const ParamSet& ps = net.params();
  SafeTensorsWriter w;
  auto add = [&](const std::string& name, DType t, std::vector<int64_t> shape, const void* data) {
    if (name != o.omit) w.add(name, t, std::move(shape), data);
  };
  auto state = [&](const std::string& prefix) {
    for (size_t i = 0; i < ps.decls().size(); ++i)
      if (prefix + ps.decls()[i].name != o.omit) w.add(prefix + ps.decls()[i].name, ps.value(int(i)));
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
      const int64_t cols = slot.numel() / B - (o.short_dropout && it == 0 && site == sites.front() ? 1 : 0);
      std::vector<float> rows;
      for (int64_t n = 0; n < B; ++n) rows.insert(rows.end(), s.begin() + n * (slot.numel() / B), s.begin() + n * (slot.numel() / B) + cols);
      add(p + "dropout." + site, DType::F32, {B, cols}, rows.data());
    }
    const Tensor img = Tensor::from_host(image, px, Device::CPU);
    const Labels lb = Labels::from_host(Shape{B, H, W}, lab, Device::CPU);
    TraceDraws draws(7, it);
    const StepResult r = ts.step(ctx, img.view(), lb.view(), TensorView(), it, 0, draws);
    if (it == o.changed_label_at)
      for (int32_t& v : lab) v = v == 255 ? 255 : (v + 1) % kClasses;
    add(p + "image", DType::F32, {B, 3, H, W}, px.data());
    add(p + "label", DType::I32, {B, H, W}, lab.data());
    const double loss = r.sup;
    const std::vector<double> lrs{poly(it, 0), poly(it, 1)};
    add(p + "loss", DType::F64, {1}, &loss);
    add(p + "lr", DType::F64, {int64_t(lrs.size())}, lrs.data());
    if (it + 1 == 1 || it + 1 == kIters) state("after." + std::to_string(it + 1) + ".");
  }
  w.set_metadata("format", o.format);
  w.set_metadata("source", "tests/test_replay.cpp");
  w.set_metadata("dropout_sites", joined);
  w.set_metadata("groups", "2");
  w.set_metadata("iterations", std::to_string(kIters));
  w.set_metadata("iters_per_epoch", std::to_string(kPerEpoch));
  w.set_metadata("snapshots", "1 " + std::to_string(kIters));
  for (const auto& [k, v] : o.meta) w.set_metadata(k, v);
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
    REQUIRE(s.lrs.size() == 2);
    for (size_t g = 0; g < 2; ++g) CHECK(std::fabs(s.lrs[g] - s.want_lrs[g]) <= 1e-7 * s.want_lrs[g]);
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
  TraceOptions changed;
  changed.changed_label_at = 1;
  record(cfg, path, changed);
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
  auto refused = [&](const TraceOptions& o, const std::string& why) {
    record(cfg, path, o);
    CHECK_THROWS_WITH_AS(replay_trace(cfg, path), doctest::Contains(why.c_str()), Error);
  };
  TraceOptions o;
  o.format = "something-else";
  refused(o, "not a training trace");
  o = TraceOptions();
  o.drop_site = true;
  refused(o, "the network's differ");
  o = TraceOptions();
  o.meta["groups"] = "3";
  refused(o, "3 parameter groups, the engine has 2");
  o.meta = {{"iterations", "3x"}};
  refused(o, "metadata iterations: '3x' is not a count");
  o.meta = {{"snapshots", "1 two"}};
  refused(o, "metadata snapshots: 'two' is not a count");
  o.meta = {{"snapshots", "1 4"}};
  refused(o, "snapshot after 4 of 3 iterations");
  o = TraceOptions();
  o.omit = "after.3.decoder.classifier.8.bias";
  refused(o, "snapshot 3 lacks after.3.decoder.classifier.8.bias");
  o.omit = "iter.1.loss";
  refused(o, "iter.1.loss");
  o = TraceOptions();
  o.short_dropout = true;
  refused(o, "scales, the site");
  record(cfg, path);
  CHECK_THROWS_WITH_AS(replay_trace(config({"trainer.sup_only_epoch=0"}), path),
                       doctest::Contains("past the config's warm start"), Error);
  CHECK_THROWS_WITH_AS(replay_trace(config({"dataset.batch_size=1"}), path),
                       doctest::Contains("the config's batch is (1, 3, 33, 33)"), Error);
  CHECK_THROWS_WITH_AS(replay_trace(cfg, dir.path + "/absent.safetensors"), doctest::Contains("absent.safetensors"),
                       Error);
}
