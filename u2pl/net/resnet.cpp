// ResNet encoder (u2pl/net/resnet.h).
#include "u2pl/net/resnet.h"

#include <algorithm>
#include <limits>

namespace u2pl {

namespace {
struct DepthSpec {
  int depth;
  bool bottleneck;
  int blocks[4];
};
const DepthSpec kDepths[] = {{18, false, {2, 2, 2, 2}},
                             {34, false, {3, 4, 6, 3}},
                             {50, true, {3, 4, 6, 3}},
                             {101, true, {3, 4, 23, 3}},
                             {152, true, {3, 8, 36, 3}}};
// Where a replaying plan puts each block's output: -1 keeps it (the tapped ones always), else the
// float offset in the region of replayed outputs. Runs of replayed blocks ("segments") are formed
// again together in backward from the kept output before them, so the region is the largest
// run's size; the budget per run is the one that minimises the kept outputs plus the region
// (with outputs of one size, runs of about √n blocks). Greedy per budget: a block joins the run
// while it fits, else it is kept and ends the run.
std::vector<int64_t> replay_segments(const std::vector<int64_t>& floats, const std::vector<bool>& tapped) {
  const size_t n = floats.size();
  std::vector<int64_t> budgets{0};
  for (const int64_t f : floats)
    for (size_t k = 1; k <= n; ++k) budgets.push_back(f * int64_t(k));
  std::sort(budgets.begin(), budgets.end());
  std::vector<int64_t> best;
  int64_t best_cost = std::numeric_limits<int64_t>::max();
  for (const int64_t budget : budgets) {
    std::vector<int64_t> at(n, -1);
    int64_t run = 0, kept = 0, region = 0;
    for (size_t i = 0; i < n; ++i) {
      if (!tapped[i] && run + floats[i] <= budget) {
        at[i] = run;
        run += floats[i];
        region = std::max(region, run);
      } else {
        kept += floats[i];
        run = 0;
      }
    }
    if (kept + region < best_cost) {  // ties: the smaller budget (fewer blocks replayed)
      best_cost = kept + region;
      best = at;
    }
  }
  return best;
}

}  // namespace

ResNet::ResNet(ParamSet& ps, const NetConfig& cfg) {
  const DepthSpec* spec = nullptr;
  for (const auto& d : kDepths)
    if (d.depth == cfg.depth) spec = &d;
  U2PL_CHECK(spec, "resnet: unsupported depth " << cfg.depth << " (expected 18, 34, 50, 101 or 152)");
  const int div = cfg.width_divisor;
  U2PL_CHECK(div > 0 && 64 % div == 0, "resnet: width divisor " << div << " must divide 64");
  const int w64 = 64 / div;
  int inplanes;
  if (cfg.stem == "deep") {
    inplanes = 128 / div;
    stem_.push_back(std::make_unique<ConvBn>(ps, "encoder.conv1.0", "encoder.conv1.1", Conv2dSpec{3, w64, 3, 3, 2, 1, 1, false}, true, 0));
    stem_.push_back(std::make_unique<ConvBn>(ps, "encoder.conv1.3", "encoder.conv1.4", Conv2dSpec{w64, w64, 3, 3, 1, 1, 1, false}, true, 0));
    stem_.push_back(std::make_unique<ConvBn>(ps, "encoder.conv1.6", "encoder.bn1", Conv2dSpec{w64, inplanes, 3, 3, 1, 1, 1, false}, true, 0));
  } else {
    U2PL_CHECK(cfg.stem == "standard", "resnet: stem '" << cfg.stem << "' (expected 'deep' or 'standard')");
    inplanes = w64;
    stem_.push_back(std::make_unique<ConvBn>(ps, "encoder.conv1", "encoder.bn1", Conv2dSpec{3, w64, 7, 7, 2, 3, 1, false}, true, 0));
  }
  // Strides and dilations of the public _make_layer: a dilated layer multiplies the running
  // dilation by its stride and keeps stride 1; block 0 uses the previous dilation (times the
  // first multi-grid factor in layer4), later blocks the new dilation (times their factor).
  int dilation = 1;
  const int grid[3] = {2, 2, 4};
  for (int l = 0; l < 4; ++l) {
    const int planes = (64 << l) / div;
    int stride = l == 0 ? 1 : 2;
    const int previous = dilation;
    if (l > 0 && cfg.replace_stride_with_dilation[l - 1]) {
      dilation *= stride;
      stride = 1;
    }
    const bool mg = l == 3 && cfg.multi_grid;
    // The public grids [2, 2, 4] index layer4's blocks: ResNet-18 (2 blocks) uses the first two.
    for (int i = 0; i < spec->blocks[l]; ++i) {
      const int d = (i == 0 ? previous : dilation) * (mg ? grid[i] : 1);
      blocks_.push_back(std::make_unique<ResBlock>(ps, "encoder.layer" + std::to_string(l + 1) + "." + std::to_string(i),
                                                   spec->bottleneck, inplanes, planes, i == 0 ? stride : 1, d,
                                                   cfg.zero_init_residual));
      inplanes = blocks_.back()->out_channels();
    }
    layer_end_[l] = static_cast<int>(blocks_.size());
  }
  c1_ = blocks_[layer_end_[0] - 1]->out_channels();
  c3_ = blocks_[layer_end_[2] - 1]->out_channels();
  c4_ = blocks_[layer_end_[3] - 1]->out_channels();
}

std::vector<int> ResNet::zero_init_bn_ids() const {
  std::vector<int> ids;
  for (const auto& b : blocks_)
    if (b->zero_init_bn_weight_id() >= 0) ids.push_back(b->zero_init_bn_weight_id());
  return ids;
}

ResNet::Bufs ResNet::plan(ActPlan& p, Shape image) const {
  U2PL_CHECK(image.ndim == 4 && image.c() == 3, "resnet: expected an (N, 3, H, W) image batch, got " << image.str());
  Bufs b;
  p.begin_module();
  Shape s = image;
  std::vector<Shape> outs;
  for (const auto& u : stem_) {
    s = u->out_shape(s);
    outs.push_back(s);
  }
  // Backward's gradients: the conv-output gradient of every unit in one slot, and the gradient of
  // each unit's output (the pool's input, then the earlier units' outputs) in turns in another:
  // a unit writes its input's gradient once its own is done with.
  const Shape widest = largest(outs);
  Slot gc, gout;
  if (p.backward()) {
    gc = p.grad_temp(widest);
    gout = p.grad_temp(widest);
  }
  // Without backward, the units' conv outputs take one slot in turns and their outputs another.
  Slot c, a;
  if (!p.backward()) {
    c = p.internal(widest);
    a = p.internal(widest);
  }
  s = image;
  for (size_t i = 0; i < stem_.size(); ++i) {
    b.stem.push_back(stem_[i]->plan(p, s, gc, false, c));
    s = outs[i];
  }
  if (a.defined()) {
    for (const Shape& o : outs) b.stem_out.push_back(alias(a, o));
  } else if (p.rebuild() && outs.size() == 3) {
    // Rebuilt in turns: the first unit's output is dead once the second's is made (forward) and
    // is formed again only after the third unit's backward (backward), so the third's shares it.
    const Slot shared = p.rebuilt(largest({outs[0], outs[2]}));
    b.stem_out = {Slot{shared.region, shared.offset, outs[0]}, p.rebuilt(outs[1]),
                  Slot{shared.region, shared.offset, outs[2]}};
  } else {
    for (const Shape& o : outs) b.stem_out.push_back(p.rebuilt(o));
  }
  if (p.backward()) {
    b.gpool_in = alias(gout, s);
    for (size_t i = 0; i + 1 < b.stem_out.size(); ++i) b.stem_gin.push_back(alias(gout, b.stem_out[i].shape));
  }
  b.pool = p.output(maxpool_out_shape(pool_, s));
  s = b.pool.value.shape;
  // The tapped outputs (layer1, 3, 4: the heads read them) are kept. Rebuilding plans keep every
  // other block output: a block's output is formed again from its input, so that input must be
  // kept. Replaying plans keep the outputs that end their segments (replay_segments).
  const size_t n = blocks_.size();
  std::vector<bool> tapped(n);
  std::vector<int64_t> floats(n);
  for (size_t i = 0; i < n; ++i) {
    const int end = static_cast<int>(i) + 1;
    tapped[i] = end == layer_end_[0] || end == layer_end_[2] || end == layer_end_[3];
    s = blocks_[i]->out_shape(s);
    floats[i] = slot_floats(s);
  }
  const std::vector<int64_t> at = p.replay() ? replay_segments(floats, tapped) : std::vector<int64_t>(n, -1);
  s = b.pool.value.shape;
  bool input_kept = true;  // the pool's output
  for (size_t i = 0; i < n; ++i) {
    using Keep = ResBlock::Keep;
    Keep keep = tapped[i] ? Keep::Tapped : Keep::Output;
    if (at[i] >= 0)
      keep = Keep::Replayed;
    else if (p.rebuild() && !p.replay() && !tapped[i] && input_kept && i + 1 < n)
      keep = Keep::Rebuilt;
    b.blocks.push_back(blocks_[i]->plan(p, s, keep, std::max<int64_t>(at[i], 0)));
    input_kept = keep != Keep::Rebuilt;
    s = b.blocks.back().out.value.shape;
  }
  for (int l = 0; l < 4; ++l) b.last[l] = layer_end_[l] - 1;
  return b;
}

void ResNet::forward(Context& ctx, const ActPlan& p, const Bufs& b, TensorView image, RunMode m) const {
  TensorView in = image;
  for (size_t i = 0; i < stem_.size(); ++i) {
    const TensorView y = p.view(b.stem_out[i]);
    stem_[i]->forward(ctx, p, b.stem[i], in, y, m);
    in = y;
  }
  maxpool_forward(ctx, pool_, in, p.view(b.pool.value));
  in = p.view(b.pool.value);
  for (size_t i = 0; i < blocks_.size(); ++i) {
    blocks_[i]->forward(ctx, p, b.blocks[i], in, m);
    in = p.view(b.blocks[i].out.value);
  }
}

void ResNet::backward(Context& ctx, const ActPlan& p, const Bufs& b, TensorView image, bool l3_has_grad) const {
  const auto input = [&](int i) { return p.view(i > 0 ? b.blocks[i - 1].out.value : b.pool.value); };
  for (int i = static_cast<int>(blocks_.size()) - 1; i >= 0; --i) {
    const OutSlot& in = i > 0 ? b.blocks[i - 1].out : b.pool;
    // Its input formed again: rebuilding, from that block's own input (kept); replaying, with the
    // segment it ends, from the kept output before the segment (this block is kept or tapped).
    if (i > 0 && b.blocks[i - 1].out_rebuilt && !p.replay()) {
      blocks_[i - 1]->rebuild_output(ctx, p, b.blocks[i - 1], input(i - 1));
    } else if (i > 0 && b.blocks[i - 1].out_rebuilt && !b.blocks[i].out_rebuilt) {
      int first = i - 1;
      while (first > 0 && b.blocks[first - 1].out_rebuilt) --first;
      for (int j = first; j < i; ++j) blocks_[j]->replay_output(ctx, p, b.blocks[j], input(j));
    }
    // Tapped inputs already hold a gradient from the heads: layer1 (low_conv) and layer3 (aux).
    const bool accumulate = i == layer_end_[0] || (i == layer_end_[2] && l3_has_grad);
    blocks_[i]->backward(ctx, p, b.blocks[i], p.view(in.value), p.view(in.grad), accumulate ? 1.f : 0.f);
  }
  const int n = static_cast<int>(stem_.size());
  if (p.rebuild()) stem_[n - 1]->rebuild(ctx, p, b.stem[n - 1], p.view(b.stem_out[n - 1]));
  maxpool_backward(ctx, pool_, p.view(b.stem_out[n - 1]), p.view(b.pool.grad), p.view(b.gpool_in), 0.f);
  TensorView g = p.view(b.gpool_in);
  for (int i = n - 1; i >= 0; --i) {
    // Rebuilding plans form each unit's input just before its backward (the units after it are
    // done: the first unit's output may share the third's memory).
    if (p.rebuild() && i > 0) stem_[i - 1]->rebuild(ctx, p, b.stem[i - 1], p.view(b.stem_out[i - 1]));
    const TensorView in = i > 0 ? p.view(b.stem_out[i - 1]) : image;
    const TensorView din = i > 0 ? p.view(b.stem_gin[i - 1]) : TensorView();
    stem_[i]->backward(ctx, p, b.stem[i], in, p.view(b.stem_out[i]), g, din, 0.f);
    g = din;
  }
}

}  // namespace u2pl
