// Replays a recorded trace of warm-start training iterations through TrainStep (issue 16): the
// public U2PL code's own iterations, written by tools/pytorch/official_trace.py, so that the two
// training pipelines are compared step by step from the same start instead of by their curves.
// The trace holds the student's initial parameters and BN buffers (init.KEY), each iteration's
// labeled batch as the public loader gave it (iter.I.image, iter.I.label), the student's Dropout2d
// scales (iter.I.dropout.SITE), the supervised loss (iter.I.loss) and the learning rate of each
// parameter group (iter.I.lr), and the student's state after some iterations (after.N.KEY, N
// among the metadata's "snapshots"). The replay starts the engine's student from init.*, sets the
// same scales into its plans, runs the same batches and compares. Used by apps/u2pl_replay.cpp.
// Covered by tests/test_replay.cpp.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "u2pl/train/train_config.h"
#include "u2pl/train/train_step.h"

namespace u2pl {

// The "format" metadata of a trace.
constexpr const char* kTraceFormat = "u2pl-official-trace";

// The draws of a replayed warm-start iteration: the student's dropout scales are already in its
// plans (null); the teacher's train-statistics forward draws its own (Philox), which the student
// never sees; CutMix and contrastive draws are refused (a trace has no semi-supervised iteration).
class TraceDraws : public PhiloxStepDraws {
 public:
  TraceDraws(uint64_t seed, int64_t it) : PhiloxStepDraws(seed, it) {}
  Rng* student_dropout() override { return nullptr; }
  std::optional<std::vector<Box>> cutmix(int replica, int batch, int height, int width) override;
  IndexSource& contrastive(int replica) override;
};

struct ReplayStep {
  int64_t it = 0;
  double loss = 0, want_loss = 0;         // the supervised loss: the engine's, the trace's
  std::vector<double> lrs, want_lrs;      // per parameter group (backbone, decoder and heads)
};

// One tensor's deviation against how far the recorded run moved it: ‖engine − trace‖ /
// ‖trace − initial‖ (‖engine − trace‖ itself where the trace did not move it). After the first
// iteration this is the relative error of the tensor's whole update (learning rate, gradient,
// weight decay).
struct TensorGap {
  std::string name;
  double diff = 0, moved = 0;  // ‖engine − trace‖, ‖trace − initial‖
  double rel() const { return moved > 0 ? diff / moved : diff; }
};

struct ReplaySnapshot {
  int64_t after = 0;  // iterations done
  // ‖engine − trace‖ / ‖trace − initial‖ over all parameters (over all BN running statistics):
  // the engine's deviation against how far the recorded run moved them.
  double params_rel = 0, buffers_rel = 0;
  std::vector<TensorGap> worst;  // the tensors of largest rel(), largest first (at most 8)
};

struct ReplayReport {
  std::string trace, source;  // the trace's path and its "source" metadata
  int64_t iterations = 0, iters_per_epoch = 0;
  std::vector<ReplayStep> steps;
  std::vector<ReplaySnapshot> snapshots;
};

// Replays the trace at `path` with `cfg` (the config the trace was recorded with, its preset
// chosen by the caller) on the CPU. Refuses, naming the file and what differs: another format, a
// network whose tensors or dropout sites differ from the trace's, another number of parameter
// groups, batches of another shape than the config's, iterations past the warm start.
// `on_step` is called after each iteration.
ReplayReport replay_trace(const TrainConfig& cfg, const std::string& path,
                          const std::function<void(const ReplayStep&)>& on_step = {});

// The report as Markdown: the loss and learning rates per iteration, then the snapshots.
std::string format_replay(const ReplayReport& r);

}  // namespace u2pl
