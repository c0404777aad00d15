// One U2PL training iteration (SPEC §3) and the state it updates: student, EMA teacher, SGD
// momentum with the backbone / head learning-rate groups, and the contrastive memory bank. The
// iteration's random draws (dropout scales, the CutMix decision and boxes, the contrastive
// samples) come through StepDraws: Philox counters derived from (seed, iteration) in training
// (PhiloxStepDraws), recorded draws in the end-to-end comparison with PyTorch. Used by
// u2pl/train/trainer.cpp. Covered by tests/test_trainer.cpp and tests/test_train_e2e.cpp.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "engine/comm.h"
#include "engine/nccl.h"
#include "layers/mix.h"
#include "u2pl/losses/contrastive.h"
#include "u2pl/losses/sup_loss.h"
#include "u2pl/losses/unsup_loss.h"
#include "u2pl/net/model.h"
#include "u2pl/train/grad_reduce.h"
#include "u2pl/train/train_config.h"

namespace u2pl {

class StepDraws {
 public:
  virtual ~StepDraws() = default;
  // Dropout scales of the student's train forward and of the teacher's train-statistics forward
  // over every replica's images; null: the scales already in the plans (set through
  // U2plNet::dropout_scale).
  virtual Rng* student_dropout() = 0;
  virtual Rng* teacher_dropout() = 0;
  // The CutMix boxes of replica `replica`'s unlabeled images (`batch` of them), or none when the
  // replica does not mix this iteration (probability 1/2 in training, each replica its own coin,
  // as each GPU of the public code).
  virtual std::optional<std::vector<Box>> cutmix(int replica, int batch, int height, int width) = 0;
  // The contrastive samples of replica `replica`.
  virtual IndexSource& contrastive(int replica) = 0;
};

// The memory of one iteration past the warm start for this process's `batch` labeled (and as
// many unlabeled) images in `memory` mode. Activations: the student's Train plan on [labeled |
// unlabeled] (the labeled alone without a teacher), which reserves room in the memory it leaves
// idle before its forward and between its forward and backward for the teacher's Eval plan on the
// unlabeled images and its TrainStats plan on both, and for the losses' upsampled logits and
// gradients. Buffers: the step's own (the upload slots, the mixed batch, the labels, the
// gradients handed to backward, the contrastive masks). Workspace: the CUDA context's scratch
// block, the larger of the convolutions' cap (trainer.conv_workspace_mib) and the losses' scratch
// (CUB sorts of a replica's crop-sized pixels, the contrastive loss's rows; the CPU's oneDNN
// scratch is neither capped nor counted).
struct StepMemory {
  size_t activations = 0, buffers = 0, workspace = 0;
};
StepMemory step_memory(const TrainConfig& cfg, const U2plNet& net, Shape batch, MemoryMode memory);

// Philox streams 2-5 of trainer.seed (the loaders use 0 and 1), 2^24 counters per iteration each.
// The CutMix and contrastive streams are per replica: replica 0 under the run's seed (one replica
// draws exactly as before replicas existed), replica r under a key of its own (replica_key).
class PhiloxStepDraws : public StepDraws {
 public:
  PhiloxStepDraws(uint64_t seed, int64_t iteration, int replicas = 1);
  Rng* student_dropout() override { return &drop_s_; }
  Rng* teacher_dropout() override { return &drop_t_; }
  std::optional<std::vector<Box>> cutmix(int replica, int batch, int height, int width) override;
  IndexSource& contrastive(int replica) override;
  // Throws when a stream used more counters than its iteration owns.
  void check_budget() const;

 private:
  int64_t it_;
  Rng drop_s_, drop_t_;
  std::vector<Rng> mix_, contra_;          // per replica
  std::vector<PhiloxIndexSource> draws_;  // per replica, over contra_ (which must not move)
};

// The replicas each of `processes` processes runs: trainer.replicas / processes, refused (naming
// the key) unless that divides.
int replicas_per_process(const TrainConfig& cfg, int processes);

// The Philox key of replica r's own draws: the seed itself for replica 0, distinct for each other.
uint64_t replica_key(uint64_t seed, int replica);

// The pseudo-labels of unlabeled pixels scored against their own labels (the diagnostic
// trainer.unsupervised.score_pseudo_labels): pixels with a label (not ignore_label), those whose
// pseudo-label is right, and of them the reliable ones (kept by the entropy filter); with the
// contrastive loss, also the unreliable pixels whose own class the teacher ranks among the
// negative ranks [r_l, r_h) (count_true_in_ranks), those the loss pushes away from their class.
struct PseudoLabelCounts {
  int64_t pixels = 0, correct = 0, reliable = 0, reliable_correct = 0, unreliable_true_negative = 0;
  PseudoLabelCounts& operator+=(const PseudoLabelCounts& o);
};
// Counts over n pixels: truth (labels, ignore_label where unknown), pseudo (the pseudo-labels),
// filtered (the pseudo-labels with the unreliable ones set to 255, as unsup_loss writes them).
PseudoLabelCounts count_pseudo_labels(const int32_t* truth, const int32_t* pseudo, const int32_t* filtered, int64_t n,
                                      int ignore_label);

// Of n_images (C, hw) logit maps: the pixels with a label (truth ≠ ignore_label) that are
// unreliable (filtered 255) and whose true class has a 0-based rank in [low_rank, high_rank) by
// descending logit (the contrastive loss's rule for the negatives of unlabeled pixels).
int64_t count_true_in_ranks(const int32_t* truth, const float* logits, const int32_t* filtered, int64_t n_images,
                            int64_t C, int64_t hw, int64_t low_rank, int64_t high_rank, int ignore_label);

struct StepResult {
  double sup = 0, unsup = 0, contra = 0, total = 0;  // loss terms and Σ with the weights
  double thresh = 0;    // γ_t, the entropy percentile of the unsupervised filter
  double reliable = 0;  // share of the unlabeled crop pixels kept as pseudo-labels
  double contra_low = 0, contra_high = 0;  // the contrastive masks' entropy thresholds
  int contra_terms = 0;                    // classes (loop entries) that formed a contrastive term
  double ema = -1;                         // the EMA decay applied; 0 at the handover; -1 none
  bool semi = false;                       // the semi-supervised terms ran (past the warm start)
  PseudoLabelCounts pseudo;                // all replicas'; pixels 0 unless step() had truth_u
};

class TrainStep {
 public:
  // Allocates and initialises the student (trainer.seed), the teacher when the config has an
  // unsupervised term (seed + 1: its own random head; the backbone weights when given), the
  // momentum and the memory bank when the contrastive loss is on. The run's processes are `comm`:
  // this one runs trainer.replicas / comm.size() of the replicas (refused unless that divides),
  // the replicas from comm.rank() times that on; every process holds the same weights and bank.
  TrainStep(const TrainConfig& cfg, Device dev, Comm& comm = self_comm());

  bool has_teacher() const { return teacher_ != nullptr; }
  bool uses_contrastive() const { return bank_ != nullptr; }
  // Past the warm start: the teacher exists and epoch ≥ sup_only_epoch.
  bool semi_phase(int epoch) const { return teacher_ && epoch >= cfg_.sup_only_epoch; }
  int64_t iters_per_epoch() const { return iters_per_epoch_; }
  Comm& comm() const { return comm_; }
  int local_replicas() const { return local_; }  // replicas this process runs
  int first_replica() const { return first_; }
  // Over several processes: the gradient all-reduce and its figures of the last step; else null.
  const GradientReducer* reducer() const { return reducer_.get(); }
  // Over several processes on CUDA: the NCCL communicator of the device tensors; else null.
  NcclComm* device_comm() const { return nccl_.get(); }
  int64_t total_iters() const { return iters_per_epoch_ * cfg_.epochs; }
  void set_iters_per_epoch(int64_t n) { iters_per_epoch_ = n; }
  // The learning rate of group `group` (0 backbone, 1 decoder and heads) at iteration `it` (poly
  // schedule).
  double lr_at(int64_t it, int group = 0) const;
  int lr_groups() const { return static_cast<int>(base_lrs_.size()); }

  U2plNet& student() { return student_; }
  U2plNet* teacher() { return teacher_.get(); }
  MemoryBank* bank() { return bank_.get(); }
  TensorView momentum() const { return momentum_.view(); }

  // One iteration on ctx's device: img_l (B,3,H,W), lab_l (B,H,W), img_u (B,3,H,W) with B this
  // process's batch (local_replicas() · batch_size; its replica r's images at [r·b, (r+1)·b));
  // img_u may be undefined in the warm start or without a teacher; any device: views on another
  // device are copied, synchronously). The figures are read back once, at the end (on CUDA the step's only
  // synchronisation, for the log); `while_running`, when given, is called just before that, when
  // the whole iteration is queued, so host work there (the next batch) overlaps the device's. A
  // non-finite loss term throws naming `it` and the term; the weights have then taken that step,
  // so the caller must not save them. Over several processes every process calls step() for the
  // same iteration: the BN statistics, the bank's new rows, the gradient and the figures cross
  // between them, and the figures returned are those of all replicas, on every process. An
  // exception on one process leaves the others waiting in a collective: a caller over several
  // processes ends the run on any error (Comm::abort), as u2pl_train does. truth_u, when defined
  // (a CPU view of img_u's labels), is scored against the pseudo-labels in StepResult::pseudo.
  StepResult step(Context& ctx, TensorView img_l, LabelView lab_l, TensorView img_u, int64_t it, int epoch,
                  StepDraws& draws, const std::function<void()>& while_running = {}, LabelView truth_u = {});

 private:
  // Over several processes: every replica's new negatives into the bank, in replica order (each
  // process gathers its own replicas' from `ins`, then all of them cross).
  void push_all_negatives(Context& ctx, const std::vector<ContrastiveInputs>& ins);

  const TrainConfig& cfg_;
  Device dev_;
  Comm& comm_;
  int local_ = 1, first_ = 0;  // this process's replicas: [first_, first_ + local_)
  ReplicaSync sync_;           // SyncBN over every replica, set on the context during a step
  std::unique_ptr<NcclComm> nccl_;            // several processes on CUDA
  std::unique_ptr<GradientReducer> reducer_;  // several processes only
  int64_t iters_per_epoch_ = 1;
  U2plNet student_;
  std::unique_ptr<U2plNet> teacher_;
  Tensor momentum_;
  Mask groups_;
  std::vector<float> base_lrs_;
  std::unique_ptr<MemoryBank> bank_;
  std::unique_ptr<MemoryBank> staging_;  // several processes on CUDA: a replica's new negatives
  ContrastiveParams cparams_;
  SupLossOptions sup_opt_;
  SupLossBuffers sup_buf_;
  // Device scratch, sized on first use.
  Buffer neg_rows_;  // several processes on CUDA: every replica's new negatives
  Tensor img_l_, img_u_, img_all_, entropy_, prob_, dpred_, drep_, daux_;
  Labels lab_l_, lab_u_, lab_mix_, filtered_, lab_l_small_, lab_u_small_;
  Mask low_, high_;
  // The losses' figures per replica, in ctx's device memory until read.
  std::vector<DeviceSlot<SupLossResult>> sup_out_;
  std::vector<DeviceSlot<UnsupResult>> unsup_out_;
  std::vector<DeviceSlot<EntropyThresholds>> masks_out_;
  std::vector<DeviceSlot<ContrastiveResult>> contra_out_;
};

}  // namespace u2pl
