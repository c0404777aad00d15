// The supervised loss of U2PL (SPEC §2.1): stride-4 logits upsampled bilinearly (align_corners)
// to the crop size, then cross-entropy with ignore 255 (VOC) or OHEM cross-entropy (Cityscapes,
// thresh 0.7, min_kept 100000) on the main head plus aux_weight × the same on the aux head. Must
// match the public code's Criterion / CriterionOhem. Covered by tests/test_sup_loss.cpp and, the
// CUDA device variant, tests/test_cuda_layers.cpp.
#pragma once
#include "layers/loss.h"

namespace u2pl {

struct SupLossOptions {
  bool ohem = false;
  float thresh = 0.7f;
  int64_t min_kept = 100000;
  float aux_weight = 0.4f;  // used when an aux head is given
  int ignore = kIgnoreLabel;
};

// loss = main + aux_weight · aux (aux 0 without an aux head), valid of the main term and, from the
// device variant on CUDA, a deferred bad label that check() throws (layers/loss.h).
using SupLossResult = CeHeadsResult;

// Crop-size scratch, sized on first use and reused (a fixed-shape loop never reallocates).
class SupLossBuffers {
 public:
  // Until the next lend(): the logits and their gradient in `memory` (another plan's idle memory)
  // when it holds both, else in buffers of their own; lend(TensorView()) ends it.
  void lend(TensorView memory) { lent_ = memory; }
  TensorView logits(Shape s, Device dev);  // upsampled logits
  TensorView grad(Shape s, Device dev);    // their gradient
  LabelView kept(Shape s, Device dev);     // OHEM's kept labels
  CeResult* terms(Device dev);             // the main and aux terms (2) in dev's memory
  SupLossResult* result(Device dev);       // the host-returning variant's figures in dev's memory

 private:
  // The logits at lent_'s start and their gradient after them (256-byte aligned), when lent_ holds both.
  bool use_lent(Shape s, Device dev) const;
  Tensor logits_, grad_;
  TensorView lent_;
  Labels kept_;
  Buffer terms_, result_;
};

// pred (B,C,h,w); aux (B,C,h',w') or undefined; labels (B,H,W) at crop size. With dpred (and
// daux) defined, writes dpred = beta·dpred + dloss·dL/dpred (the same for daux).
// On CUDA the figures are read back (one synchronisation) and a bad label throws.
SupLossResult supervised_loss(Context& ctx, TensorView pred, TensorView aux, LabelView labels,
                              const SupLossOptions& opt, SupLossBuffers& buf, float dloss, TensorView dpred,
                              TensorView daux, float beta);
// The same with the figures written to *out in ctx's device memory (a DeviceSlot; host memory on
// CPU): on CUDA no host round trip, and a bad label is recorded for out->check() instead of
// thrown (the CPU throws at once). Read the slot and check() it at the end of the step.
void supervised_loss(Context& ctx, TensorView pred, TensorView aux, LabelView labels, const SupLossOptions& opt,
                     SupLossBuffers& buf, float dloss, TensorView dpred, TensorView daux, float beta,
                     SupLossResult* out);

}  // namespace u2pl
