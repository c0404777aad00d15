// The supervised loss of U2PL (SPEC §2.1): stride-4 logits upsampled bilinearly (align_corners)
// to the crop size, then cross-entropy with ignore 255 (VOC) or OHEM cross-entropy (Cityscapes,
// thresh 0.7, min_kept 100000) on the main head plus aux_weight × the same on the aux head. Must
// match the public code's Criterion / CriterionOhem. Covered by tests/test_sup_loss.cpp.
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

struct SupLossResult {
  float loss = 0;      // main + aux_weight · aux
  float main = 0, aux = 0;
  int64_t valid = 0;   // pixels the main term averaged over
};

// Crop-size scratch, sized on first use and reused (a fixed-shape loop never reallocates).
class SupLossBuffers {
 public:
  TensorView logits(Shape s, Device dev);  // upsampled logits
  TensorView grad(Shape s, Device dev);    // their gradient
  LabelView kept(Shape s, Device dev);     // OHEM's kept labels

 private:
  Tensor logits_, grad_;
  Labels kept_;
};

// pred (B,C,h,w); aux (B,C,h',w') or undefined; labels (B,H,W) at crop size. With dpred (and
// daux) defined, writes dpred = beta·dpred + dloss·dL/dpred (the same for daux).
SupLossResult supervised_loss(Context& ctx, TensorView pred, TensorView aux, LabelView labels,
                              const SupLossOptions& opt, SupLossBuffers& buf, float dloss, TensorView dpred,
                              TensorView daux, float beta);

}  // namespace u2pl
