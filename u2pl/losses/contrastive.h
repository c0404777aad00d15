// The U2PL contrastive loss (SPEC §2.3, Eq. 4-16, Algorithm 1) and its Appendix C binary
// alternative, with the gradient w.r.t. the student features, in both presets through the §7
// switches and ablations, on CPU and CUDA. `official` must match compute_contra_memobank_loss of
// the public code bug for bug. Tests: test_unsup_contrastive.cpp (edge cases, ablations, binary,
// finite differences), test_reference.cpp, test_cuda_losses.cpp (CUDA against the CPU).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/context.h"
#include "u2pl/losses/index_source.h"
#include "u2pl/losses/memory_bank.h"
#include "u2pl/losses/semi_math.h"
#include "u2pl/losses/unsup_loss.h"

namespace u2pl {

struct ContrastiveParams {
  int num_classes = 21;
  int num_queries = 50;     // M anchors per class (paper)
  int num_negatives = 256;  // N negatives per anchor (paper)
  float temperature = 0.5f;
  float delta_p = 0.3f;     // anchors need p(c) > delta_p
  float delta_n = 1.0f;     // official negatives need p(c) < delta_n
  int low_rank = 3, high_rank = 20;  // r_l, r_h (probability rank thresholds)
  // §7 switches; false is the paper's choice, true the public code's.
  bool prototype_low_valid = false;      // prototype over low-valid pixels instead of A_c
  bool negatives_label_mask = false;     // negatives need label == c (labeled pixels never)
  bool queue_index_bug = false;          // loop entry i: anchors of class i, queue of list[i]
  bool normalise_valid_classes = false;  // divide by classes with low-valid pixels; 0 if ≤ 1
  bool binary = false;                   // Appendix C BCE instead of InfoNCE
  // Ablations of the paper (§7 end), the same in both presets; the defaults are the method.
  bool memory_bank = true;  // false: negatives from this batch only (each queue emptied first)
  bool prt = true;          // false: negatives at any probability rank (no r_l, r_h conditions)
  NegativeSource negative_source = NegativeSource::Unreliable;  // which unlabeled pixels qualify

  static ContrastiveParams paper(int num_classes);
  static ContrastiveParams official(int num_classes);  // (M, N) = (256, 50) and every switch on
  // For config-facing values: a copy with the ranks fitted to the class count by fit_ranks (each
  // change logged), after checking every field.
  ContrastiveParams validated() const;
  // What the loss requires (validated() output passes); throws with the reason otherwise.
  void check() const;
};

// The few-classes rule (custom data with 2 or 3 classes), shared by validated() and the config
// reader: the public code silently forms no term when the rank thresholds exceed the class count.
// low_rank ≥ C becomes C − 1 (the unlabeled negatives of class c are then the pixels where c ranks
// last), high_rank > C becomes C. Returns one line per change, naming the field ("low_rank 3 >=
// net.num_classes 2: set to 1 ..."); empty when both fit.
std::vector<std::string> fit_ranks(int num_classes, int& low_rank, int& high_rank);

// Everything at feature resolution, for the batch [labeled | unlabeled] (n_l + n_u = B).
struct ContrastiveInputs {
  TensorView rep;          // (B, D, h, w) student features: the gradient is taken w.r.t. these
  TensorView rep_teacher;  // (B, D, h, w) teacher features (no gradient)
  TensorView prob_l;       // (n_l, C, h, w) teacher softmax on the labeled images
  TensorView prob_u;       // (n_u, C, h, w) teacher softmax on the unlabeled images
  LabelView label_l;       // (n_l, h, w) ground truth, 255 = none
  LabelView label_u;       // (n_u, h, w) pseudo-labels, 255 = none
  MaskView low, high;      // (B, h, w) entropy masks from contrastive_masks (u2pl/losses/unsup_loss.h)
};

// What one call does with the memory bank. The public code all-gathers every GPU's negatives into
// the bank before any GPU samples, so a step of several replicas runs PushOnly for each replica in
// replica order, then LossOnly for each (u2pl/train/train_step.cpp); one replica runs both at once.
enum class ContrastivePhase {
  PushThenLoss,  // push this batch's negatives (emptying the queues first without the memory
                 // bank), then form the terms
  PushOnly,      // push only (never empties: the caller does, once a step); no draws, no result
  LossOnly,      // form the terms from the bank as it is (this batch's roles, no push)
};

struct ContrastiveResult {
  double loss = 0;     // accumulated in double (gradient checks difference it)
  int terms = 0;       // loop entries that formed a loss term
  int normaliser = 0;  // classes the InfoNCE sum is divided by
  // CUDA: the first pixel of the batch whose label is outside [0, C) ∪ {255}, −1 if none (it then
  // takes no role; the CPU throws at once); check() throws the same error.
  int64_t bad_pixel = -1;
  int32_t bad_label = 0;
  void check() const;
};

// Pushes each class's negatives (teacher rows, pixel order) into `bank` (emptied first when
// p.memory_bank is off), then samples anchors and queue rows through `draws`, in the order: per
// term, M anchor indices, then M·N negative indices, within one draws.begin_step(C, M, N) ...
// end_step(). drep (B,D,h,w) = beta·drep + dloss·dL/drep (skipped when undefined). Inputs, bank
// and drep on ctx's device; on CUDA `draws` must be a PhiloxIndexSource (indices equal to the
// CPU's) and the figures are read back (one synchronisation). `phase` splits the push from the
// terms (see ContrastivePhase); PushOnly leaves drep, draws and the result alone.
ContrastiveResult contrastive_loss(Context& ctx, const ContrastiveParams& p, const ContrastiveInputs& in,
                                   MemoryBank& bank, IndexSource& draws, float dloss, TensorView drep,
                                   float beta, ContrastivePhase phase = ContrastivePhase::PushThenLoss);
// The same with the figures written to *out in ctx's device memory (a DeviceSlot): on CUDA no
// host round trip; read the slot and check() it to log. PushOnly writes no figures (out may be null):
// on CUDA a label outside the classes is reported by the LossOnly call of the same batch (the
// CPU throws at once).
void contrastive_loss(Context& ctx, const ContrastiveParams& p, const ContrastiveInputs& in, MemoryBank& bank,
                      IndexSource& draws, float dloss, TensorView drep, float beta, ContrastiveResult* out,
                      ContrastivePhase phase = ContrastivePhase::PushThenLoss);

// The rows a PushOnly call would push, per class (n_c rows of D teacher floats, pixel order), the
// bank untouched: in a run over several processes each process's replicas' negatives, which every
// process then pushes in replica order after an all-gather (u2pl/train/train_step.cpp). On CUDA
// the rows are pushed into `staging` (a CUDA bank with the run bank's capacities, emptied first)
// and read back: a queue keeps only its newest rows, so per class the newest `capacity` rows of
// each replica's are all that any later push of them can leave in the bank. CPU: `staging` unused.
std::vector<std::vector<float>> contrastive_negatives(Context& ctx, const ContrastiveParams& p,
                                                      const ContrastiveInputs& in, MemoryBank* staging = nullptr);

struct ContrastiveDims {
  int64_t n_l = 0, n_u = 0, dim = 0, h = 0, w = 0;
};
// The CPU oracle, templated on the student features (double for gradient checks); pointers as
// in ContrastiveInputs, drep may be null.
template <class T>
ContrastiveResult contrastive_loss_cpu(const ContrastiveParams& p, const ContrastiveDims& d, const T* rep,
                                       const float* rep_teacher, const float* prob_l, const float* prob_u,
                                       const int32_t* label_l, const int32_t* label_u, const uint8_t* low,
                                       const uint8_t* high, MemoryBank& bank, IndexSource& draws, T dloss,
                                       T* drep, T beta, ContrastivePhase phase = ContrastivePhase::PushThenLoss);

// The CUDA backend (u2pl/losses/contrastive.cu) after the checks of contrastive_loss: draws at
// `step`.
void contrastive_loss_cuda(Context& ctx, const ContrastiveParams& p, const ContrastiveInputs& in, MemoryBank& bank,
                           const PhiloxStep& step, float dloss, TensorView drep, float beta, ContrastiveResult* out,
                           ContrastivePhase phase);

}  // namespace u2pl
