// Network building blocks with hand-written backward (STYLE 8): ConvBn (conv → BN → optional
// ReLU, the Sequential(conv, bn, relu) units of the public code) and the ResNet residual block
// (Bottleneck v1.5 and BasicBlock). Buffers come from an ActPlan; the blocks hold only layers.
// Covered by tests/test_model.cpp (PyTorch parity of the whole network, every mode).
#pragma once
#include <memory>
#include <string>

#include "layers/batchnorm.h"
#include "layers/conv2d.h"
#include "u2pl/net/act_plan.h"

namespace u2pl {

// How a forward runs: train (batch-statistics BN, dropout, state kept for backward), the
// teacher's train-statistics pass (same, no backward), or eval (running statistics, no dropout).
struct RunMode {
  bool batch_stats = true;
  bool dropout = true;
  bool backward = true;
};

// conv → BN → (ReLU). The output y is the caller's (an internal slot or a module output).
class ConvBn {
 public:
  ConvBn(ParamSet& ps, const std::string& conv_name, const std::string& bn_name, const Conv2dSpec& spec,
         bool relu, int group, ConvInit init = ConvInit::KaimingFanOut);
  struct Bufs {
    Slot c, stats;   // conv output (BN input), BN statistics
    Slot gc;         // backward: gradient of the conv output, alive only inside backward()
  };
  Shape out_shape(Shape x) const { return conv_.out_shape(x); }
  int out_channels() const { return conv_.spec().cout; }
  int bn_weight_id() const { return bn_.weight_id(); }
  // replayed: the conv output is formed again in backward (a block of a replaying plan). gc: the
  // gradient temporary the units of a module share (backward calls never overlap), at least as
  // large as this unit's output. c, when defined: where the conv output goes (a plan without
  // backward: a slot the module's units take in turns).
  Bufs plan(ActPlan& p, Shape x, const Slot& gc, bool replayed = false, const Slot& c = Slot()) const;
  void forward(Context& ctx, const ActPlan& p, const Bufs& b, TensorView x, TensorView y, RunMode m) const;
  // The conv output again, from the same input (a replaying plan's backward; bit for bit).
  void replay_conv(Context& ctx, const ActPlan& p, const Bufs& b, TensorView x) const;
  // dx = beta*dx + dL/dx (dx may be undefined: only parameter gradients). dy is used as scratch
  // (the ReLU's gradient is formed in place) and dx may be the same memory.
  void backward(Context& ctx, const ActPlan& p, const Bufs& b, TensorView x, TensorView y, TensorView dy,
                TensorView dx, float beta) const;
  // y = the output the train forward wrote, formed again from the kept conv output and BN state.
  void rebuild(Context& ctx, const ActPlan& p, const Bufs& b, TensorView y) const;

 private:
  Conv2d conv_;
  BatchNorm2d bn_;
  bool relu_;
};

// Bottleneck: 1x1 → 3x3(stride, dilation) → 1x1(×4), each conv → BN (→ ReLU), plus the
// downsample shortcut when the stride or width changes; add; ReLU. BasicBlock: 3x3 → 3x3.
class ResBlock {
 public:
  ResBlock(ParamSet& ps, const std::string& name, bool bottleneck, int inplanes, int planes, int stride,
           int dilation, bool zero_init_last_bn);
  int out_channels() const { return out_c_; }
  struct Bufs {
    ConvBn::Bufs u[3], ds;
    Slot a[2], dsa;          // outputs of the first (two) units, of the shortcut BN
    OutSlot out;
    Slot ga[2], gsum;        // backward: gradients of a[], of the pre-ReLU sum
    bool out_rebuilt = false;  // out is an ActPlan::rebuilt_output (formed again before it is read)
  };
  Shape out_shape(Shape x) const;
  // How the output is kept for backward: as a module output (tapped: a later module reads it
  // too); rebuilt (a rebuilding plan) from the last unit's kept conv output and the input, which
  // must stay kept; or replayed (a replaying plan) with the other blocks of its segment from the
  // segment's kept input, at float `at` of the rebuilt outputs' region (ActPlan::rebuilt_output).
  enum class Keep { Output, Tapped, Rebuilt, Replayed };
  Bufs plan(ActPlan& p, Shape x, Keep keep, int64_t at = 0) const;
  void forward(Context& ctx, const ActPlan& p, const Bufs& b, TensorView x, RunMode m) const;
  // dy: the plan's gradient of this block's output; dx = beta*dx + dL/dx.
  void backward(Context& ctx, const ActPlan& p, const Bufs& b, TensorView x, TensorView dx, float beta) const;
  // out = the train forward's output, formed again from the last unit's kept convolution output
  // and BN state and the identity (x, or the shortcut's output rebuilt), bit for bit.
  void rebuild_output(Context& ctx, const ActPlan& p, const Bufs& b, TensorView x) const;
  // The same in a replaying plan, the convolutions replayed from the input x first.
  void replay_output(Context& ctx, const ActPlan& p, const Bufs& b, TensorView x) const;
  int zero_init_bn_weight_id() const { return zero_bn_; }

 private:
  // A replaying plan's convolutions again from the kept input x, and a[] from them (the units' and
  // the shortcut's conv outputs, the earlier units' BN outputs), bit for bit.
  void replay_units(Context& ctx, const ActPlan& p, const Bufs& b, TensorView x) const;

  std::vector<std::unique_ptr<ConvBn>> units_;
  std::unique_ptr<ConvBn> down_;
  int out_c_;
  int zero_bn_ = -1;  // the last BN weight, zeroed by zero_init_residual
};

}  // namespace u2pl
