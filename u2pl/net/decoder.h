// The DeepLabv3+ decoder `decoder.*` of SPEC §1.2 (ASPP with five branches, head, low_conv,
// classifier → "pred", representation → "rep") and the aux head `auxor.aux.*`, with
// hand-written backward. Dropout2d sites draw (N, C) channel scales kept in the plan, so the
// backward and tests see the mask. Covered by tests/test_model.cpp.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "engine/rng.h"
#include "u2pl/net/blocks.h"
#include "u2pl/net/net_config.h"

namespace u2pl {

constexpr float kDropoutP = 0.1f;

// A stack of (conv → BN → ReLU → Dropout2d) units and a final 1x1 conv with bias: the classifier
// and representation heads (two units, keys .0 .1 .4 .5 .8) and the aux head (one unit, .0 .1 .4).
class Head {
 public:
  Head(ParamSet& ps, const std::string& name, int cin, int hidden, int cout, int units, int group);
  struct Bufs {
    std::vector<ConvBn::Bufs> u;
    std::vector<Slot> a, drop, scale;  // unit outputs, dropout outputs, channel scales
    Slot out;                          // final output (kept: the model's result)
    std::vector<Slot> ga, gd;          // backward: gradients of a[], drop[] (one slot in turns)
  };
  Bufs plan(ActPlan& p, Shape x) const;
  void forward(Context& ctx, const ActPlan& p, const Bufs& b, TensorView x, RunMode m, Rng* rng) const;
  void backward(Context& ctx, const ActPlan& p, const Bufs& b, TensorView x, TensorView dout, TensorView dx,
                float beta) const;
  std::vector<std::string> dropout_sites() const;
  Slot scale_slot(const Bufs& b, const std::string& site) const;  // undefined when not ours

 private:
  std::string name_;
  std::vector<std::unique_ptr<ConvBn>> units_;
  std::unique_ptr<Conv2d> final_;
};

// Draws (or, with rng null, keeps) a Dropout2d channel scale and applies it (identity when off);
// y may be x.
void dropout_site_forward(Context& ctx, TensorView x, TensorView scale, TensorView y, bool active, Rng* rng);

class Decoder {
 public:
  Decoder(ParamSet& ps, const NetConfig& cfg, int c1, int c4);
  struct Bufs {
    ConvBn::Bufs branch[5];
    Slot pooled, b1small, branch_out[5], aspp;
    ConvBn::Bufs head;
    Slot head_a, head_drop, head_scale, up;
    ConvBn::Bufs low;
    Slot low_a, cat;
    Head::Bufs cls, rep;
    // backward
    Slot g_branch[5], g_b1small, g_pooled, g_aspp, g_head_a, g_head_drop, g_up, g_low, g_cat;
  };
  Bufs plan(ActPlan& p, Shape x1, Shape x4) const;
  void forward(Context& ctx, const ActPlan& p, const Bufs& b, TensorView x1, TensorView x4, RunMode m, Rng* rng) const;
  // dx1, dx4 are overwritten (beta 0); drep may be undefined when there is no rep head.
  void backward(Context& ctx, const ActPlan& p, const Bufs& b, TensorView x1, TensorView x4, TensorView dpred,
                TensorView drep, TensorView dx1, TensorView dx4) const;
  bool has_rep() const { return rep_ != nullptr; }
  std::vector<std::string> dropout_sites() const;
  // (N, C) scale slot of a dropout site, by name ("decoder.head.3", "decoder.classifier.7", ...).
  Slot scale_slot(const Bufs& b, const std::string& site) const;

 private:
  std::unique_ptr<ConvBn> branch_[5];
  std::unique_ptr<ConvBn> head_, low_;
  std::unique_ptr<Head> cls_, rep_;
};

}  // namespace u2pl
