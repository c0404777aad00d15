// The encoder `encoder.*`: ResNet-18/34/50/101/152 with the public U2PL deep stem (or the
// torchvision 7x7 stem), MaxPool(3, 2, 1, ceil_mode), output stride 8 or 16 with multi-grid as
// the public _make_layer builds it (SPEC §1.1), and a width divisor for small runs. Outputs
// layer1, layer3 and layer4. Covered by tests/test_model.cpp.
#pragma once
#include <memory>
#include <vector>

#include "layers/pool.h"
#include "u2pl/net/blocks.h"
#include "u2pl/net/net_config.h"

namespace u2pl {

class ResNet {
 public:
  ResNet(ParamSet& ps, const NetConfig& cfg);
  int layer1_channels() const { return c1_; }
  int layer3_channels() const { return c3_; }
  int layer4_channels() const { return c4_; }

  struct Bufs {
    std::vector<ConvBn::Bufs> stem;
    std::vector<Slot> stem_out;       // outputs of the stem units
    OutSlot pool;                     // after the max-pool
    Slot gpool_in;                    // backward: gradient of the pool input
    std::vector<Slot> stem_gin;       // backward: gradients of the earlier stem unit outputs (one slot in turns)
    std::vector<ResBlock::Bufs> blocks;
    int last[4] = {0, 0, 0, 0};       // index of each layer's last block
  };
  Bufs plan(ActPlan& p, Shape image) const;
  void forward(Context& ctx, const ActPlan& p, const Bufs& b, TensorView image, RunMode m) const;
  // Outputs of layer1/3/4 (views into the plan); their gradients are the plan's grad slots.
  const OutSlot& layer_out(const Bufs& b, int layer) const { return b.blocks[b.last[layer - 1]].out; }
  // Backward from the gradients in the layer1/3/4 grad slots (beta 0 where nothing was written:
  // see the flags), down to the stem's parameters; no image gradient.
  void backward(Context& ctx, const ActPlan& p, const Bufs& b, TensorView image, bool l3_has_grad) const;
  std::vector<int> zero_init_bn_ids() const;

 private:
  std::vector<std::unique_ptr<ConvBn>> stem_;
  MaxPoolSpec pool_{3, 2, 1, true};
  std::vector<std::unique_ptr<ResBlock>> blocks_;
  int layer_end_[4] = {0, 0, 0, 0};  // one past each layer's last block
  int c1_ = 0, c3_ = 0, c4_ = 0;
};

}  // namespace u2pl
