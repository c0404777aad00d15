// DeepLabv3+ decoder, heads and dropout sites (u2pl/net/decoder.h).
#include "u2pl/net/decoder.h"

#include <algorithm>

#include "layers/concat.h"
#include "layers/elementwise.h"
#include "layers/pool.h"
#include "layers/resize.h"

namespace u2pl {

// The public decoder and heads set no init of their own: every conv keeps nn.Conv2d's default.
constexpr ConvInit kInit = ConvInit::TorchDefault;

void dropout_site_forward(Context& ctx, TensorView x, TensorView scale, TensorView y, bool active, Rng* rng) {
  if (!active) {
    if (y.data != x.data) copy_tensor(y, x);
    return;
  }
  if (rng) {
    const int64_t n = scale.shape[0], per_image = scale.numel() / n;
    const int64_t total = rng->image_total() > 0 ? rng->image_total() : n;
    U2PL_CHECK(rng->image_first() + n <= total, "dropout: images [" << rng->image_first() << ", "
                                                    << rng->image_first() + n << ") of a batch of " << total);
    const uint64_t off = rng->reserve(static_cast<uint64_t>(total * per_image));
    dropout2d_make_scale(ctx, kDropoutP, rng->seed(), off, scale,
                         static_cast<uint64_t>(rng->image_first() * per_image));
  }
  dropout2d_forward(ctx, x, scale, y);
}

Head::Head(ParamSet& ps, const std::string& name, int cin, int hidden, int cout, int units, int group)
    : name_(name) {
  for (int i = 0; i < units; ++i) {
    const std::string c = name + "." + std::to_string(4 * i), n = name + "." + std::to_string(4 * i + 1);
    units_.push_back(std::make_unique<ConvBn>(ps, c, n, Conv2dSpec{i ? hidden : cin, hidden, 3, 3, 1, 1, 1, true}, true, group,
                                              kInit));
  }
  final_ = std::make_unique<Conv2d>(ps, name + "." + std::to_string(4 * units), Conv2dSpec{hidden, cout, 1, 1, 1, 0, 1, true}, group,
                                    kInit);
}

std::vector<std::string> Head::dropout_sites() const {
  std::vector<std::string> s;
  for (size_t i = 0; i < units_.size(); ++i) s.push_back(name_ + "." + std::to_string(4 * i + 3));
  return s;
}

Slot Head::scale_slot(const Bufs& b, const std::string& site) const {
  const auto sites = dropout_sites();
  for (size_t i = 0; i < sites.size(); ++i)
    if (sites[i] == site) return b.scale[i];
  return Slot();
}

// Each head is a module scope: its internals and gradient temporaries reuse memory that the
// decoder's internals (forward, dead once the concatenation is made) and gradient temporaries
// (backward, written only after both heads' backward) also use.
Head::Bufs Head::plan(ActPlan& p, Shape x) const {
  p.begin_module();
  Bufs b;
  // Rebuilding plans form each unit's outputs just before its backward needs them: the units'
  // BN outputs take two slots in turn and their dropout outputs one (see backward).
  Slot a_slot[2], drop_slot;
  // Backward's gradients: the units' conv-output gradients in one slot, and those of a[] and
  // drop[] in turns in another (each is done with when the next is written; see backward). The
  // units' outputs all have the first one's shape.
  Slot gc, g;
  if (p.backward()) {
    gc = p.grad_temp(units_[0]->out_shape(x));
    g = p.grad_temp(units_[0]->out_shape(x));
  }
  // Without backward, the conv outputs take one slot in turns, and the BN and dropout outputs
  // (dropout in place) another: each is dead once the next conv has read it.
  Slot c, y;
  if (!p.backward()) {
    c = p.internal(units_[0]->out_shape(x));
    y = p.internal(units_[0]->out_shape(x));
  }
  for (size_t i = 0; i < units_.size(); ++i) {
    b.u.push_back(units_[i]->plan(p, x, gc, false, c));
    x = units_[i]->out_shape(x);
    if (y.defined()) {
      b.a.push_back(y);
      b.drop.push_back(y);
    } else if (p.rebuild()) {
      if (i < 2) a_slot[i] = p.rebuilt(x);
      if (i == 0) drop_slot = p.rebuilt(x);
      b.a.push_back(a_slot[i % 2]);
      b.drop.push_back(drop_slot);
    } else {
      b.a.push_back(p.internal(x));
      b.drop.push_back(p.internal(x));
    }
    b.scale.push_back(p.state(Shape{x.n(), x.c()}));
    if (p.backward()) {
      b.ga.push_back(alias(g, x));
      b.gd.push_back(alias(g, x));
    }
  }
  b.out = p.result(final_->out_shape(x));
  return b;
}

void Head::forward(Context& ctx, const ActPlan& p, const Bufs& b, TensorView x, RunMode m, Rng* rng) const {
  for (size_t i = 0; i < units_.size(); ++i) {
    units_[i]->forward(ctx, p, b.u[i], x, p.view(b.a[i]), m);
    dropout_site_forward(ctx, p.view(b.a[i]), p.view(b.scale[i]), p.view(b.drop[i]), m.dropout, rng);
    x = p.view(b.drop[i]);
  }
  final_->forward(ctx, x, p.view(b.out));
}

void Head::backward(Context& ctx, const ActPlan& p, const Bufs& b, TensorView x, TensorView dout, TensorView dx,
                    float beta) const {
  const int n = static_cast<int>(units_.size());
  // Rebuilding plans: unit i's outputs are formed when they are next read (a train forward:
  // dropout was active); by then the slots they share hold only outputs that are done with.
  auto rebuild = [&](int i) {
    if (!p.rebuild()) return;
    units_[i]->rebuild(ctx, p, b.u[i], p.view(b.a[i]));
    dropout2d_forward(ctx, p.view(b.a[i]), p.view(b.scale[i]), p.view(b.drop[i]));
  };
  rebuild(n - 1);
  final_->backward(ctx, p.view(b.drop[n - 1]), dout, p.view(b.gd[n - 1]), 0.f);
  for (int i = n - 1; i >= 0; --i) {
    dropout2d_backward(ctx, p.view(b.scale[i]), p.view(b.gd[i]), p.view(b.ga[i]), 0.f);
    if (i > 0) rebuild(i - 1);
    const TensorView in = i > 0 ? p.view(b.drop[i - 1]) : x;
    const TensorView din = i > 0 ? p.view(b.gd[i - 1]) : dx;
    units_[i]->backward(ctx, p, b.u[i], in, p.view(b.a[i]), p.view(b.ga[i]), din, i > 0 ? 0.f : beta);
  }
}

Decoder::Decoder(ParamSet& ps, const NetConfig& cfg, int c1, int c4) {
  const int inner = cfg.inner_planes, w = 256 / cfg.width_divisor;
  U2PL_CHECK(cfg.dilations.size() == 3, "decoder: expected 3 ASPP dilations, got " << cfg.dilations.size());
  const std::string a = "decoder.aspp.conv";
  branch_[0] = std::make_unique<ConvBn>(ps, a + "1.1", a + "1.2", Conv2dSpec{c4, inner, 1, 1, 1, 0, 1, false}, true, 1, kInit);
  branch_[1] = std::make_unique<ConvBn>(ps, a + "2.0", a + "2.1", Conv2dSpec{c4, inner, 1, 1, 1, 0, 1, false}, true, 1, kInit);
  for (int k = 0; k < 3; ++k) {
    const int d = cfg.dilations[k];
    const std::string n = a + std::to_string(k + 3);
    branch_[k + 2] = std::make_unique<ConvBn>(ps, n + ".0", n + ".1", Conv2dSpec{c4, inner, 3, 3, 1, d, d, false}, true, 1, kInit);
  }
  head_ = std::make_unique<ConvBn>(ps, "decoder.head.0", "decoder.head.1", Conv2dSpec{5 * inner, w, 3, 3, 1, 1, 1, false}, true, 1, kInit);
  low_ = std::make_unique<ConvBn>(ps, "decoder.low_conv.0", "decoder.low_conv.1", Conv2dSpec{c1, w, 1, 1, 1, 0, 1, true}, true, 1, kInit);
  cls_ = std::make_unique<Head>(ps, "decoder.classifier", 2 * w, w, cfg.num_classes, 2, 1);
  if (cfg.rep_head) rep_ = std::make_unique<Head>(ps, "decoder.representation", 2 * w, w, w, 2, 1);
}

std::vector<std::string> Decoder::dropout_sites() const {
  std::vector<std::string> s{"decoder.head.3"};
  for (const auto& x : cls_->dropout_sites()) s.push_back(x);
  if (rep_)
    for (const auto& x : rep_->dropout_sites()) s.push_back(x);
  return s;
}

Slot Decoder::scale_slot(const Bufs& b, const std::string& site) const {
  if (site == "decoder.head.3") return b.head_scale;
  const Slot s = cls_->scale_slot(b.cls, site);
  if (s.defined() || !rep_) return s;
  return rep_->scale_slot(b.rep, site);
}

Decoder::Bufs Decoder::plan(ActPlan& p, Shape x1, Shape x4) const {
  p.begin_module();
  Bufs b;
  const Shape pooled = Shape::nchw(x4.n(), x4.c(), 1, 1);
  const Shape asp = Shape::nchw(x4.n(), 5 * branch_[1]->out_channels(), x4.h(), x4.w());
  const Shape hs = head_->out_shape(asp);
  const Shape ups = Shape::nchw(hs.n(), hs.c(), x1.h(), x1.w()), ls = low_->out_shape(x1);
  const Shape bs = branch_[1]->out_shape(x4);
  // The conv-output gradient of every ConvBn unit, one slot: the largest of their outputs; and
  // without backward, the conv outputs themselves, in turns (each dead once its BN has read it).
  const Shape widest = largest({bs, hs, ls});
  Slot gc, c;
  if (p.backward())
    gc = p.grad_temp(widest);
  else
    c = p.internal(widest);
  // Without backward, the branches' outputs are dead once concatenated: the upsampled head output
  // and the low-level features take their memory after them.
  Slot parts;
  if (!p.backward()) parts = p.internal(Shape{std::max(5 * slot_floats(bs), slot_floats(ups) + ls.numel())});
  b.pooled = p.internal(pooled);
  b.branch[0] = branch_[0]->plan(p, pooled, gc, false, c);
  b.b1small = p.rebuilt(branch_[0]->out_shape(pooled));
  for (int k = 0; k < 5; ++k) {
    if (k > 0) b.branch[k] = branch_[k]->plan(p, x4, gc, false, c);
    b.branch_out[k] = parts.defined() ? alias(parts, bs, k * slot_floats(bs)) : p.rebuilt(bs);
  }
  b.aspp = p.internal(asp);
  b.head = head_->plan(p, asp, gc, false, c);
  b.head_a = p.rebuilt(hs);
  // Backward reads neither the dropout output nor `up` (bilinear backward needs no input); without
  // backward, dropout runs in place.
  b.head_drop = parts.defined() ? b.head_a : p.rebuilt(hs);
  b.head_scale = p.state(Shape{hs.n(), hs.c()});
  b.up = parts.defined() ? alias(parts, ups) : p.rebuilt(ups);
  b.low = low_->plan(p, x1, gc, false, c);
  b.low_a = parts.defined() ? alias(parts, ls, slot_floats(ups)) : p.rebuilt(ls);
  // The decoder's own gradient temporaries, in its scope beside those of its ConvBn units (the
  // ASPP branches' gradients must outlive the other branches' backward). The heads' scopes come
  // after and reuse this memory: their backward runs first, before any of these is written.
  if (p.backward()) {
    for (int k = 0; k < 5; ++k) b.g_branch[k] = p.grad_temp(b.branch_out[k].shape);
    b.g_b1small = p.grad_temp(b.b1small.shape);
    b.g_pooled = p.grad_temp(pooled);
    b.g_aspp = p.grad_temp(asp);
    b.g_head_a = p.grad_temp(hs);
    b.g_head_drop = p.grad_temp(hs);
    b.g_up = p.grad_temp(ups);
    b.g_low = p.grad_temp(ls);
  }
  const Shape cs = Shape::nchw(x1.n(), ls.c() + ups.c(), x1.h(), x1.w());
  // Both heads read the concatenation and add into its gradient, so it outlives their scopes.
  const OutSlot cat = p.output(cs, /*tapped=*/true);
  b.cat = cat.value;
  b.g_cat = cat.grad;
  b.cls = cls_->plan(p, cs);
  if (rep_) b.rep = rep_->plan(p, cs);
  return b;
}

void Decoder::forward(Context& ctx, const ActPlan& p, const Bufs& b, TensorView x1, TensorView x4, RunMode m,
                      Rng* rng) const {
  // ASPP: the pooled branch, then the four convolution branches, concatenated in order.
  global_avgpool_forward(ctx, x4, p.view(b.pooled));
  branch_[0]->forward(ctx, p, b.branch[0], p.view(b.pooled), p.view(b.b1small), m);
  bilinear_forward(ctx, p.view(b.b1small), p.view(b.branch_out[0]));
  for (int k = 1; k < 5; ++k) branch_[k]->forward(ctx, p, b.branch[k], x4, p.view(b.branch_out[k]), m);
  std::vector<TensorView> parts;
  for (const Slot& s : b.branch_out) parts.push_back(p.view(s));
  concat_channels(ctx, parts, p.view(b.aspp));
  head_->forward(ctx, p, b.head, p.view(b.aspp), p.view(b.head_a), m);
  dropout_site_forward(ctx, p.view(b.head_a), p.view(b.head_scale), p.view(b.head_drop), m.dropout, rng);
  bilinear_forward(ctx, p.view(b.head_drop), p.view(b.up));
  low_->forward(ctx, p, b.low, x1, p.view(b.low_a), m);
  concat_channels(ctx, {p.view(b.low_a), p.view(b.up)}, p.view(b.cat));
  cls_->forward(ctx, p, b.cls, p.view(b.cat), m, rng);
  if (rep_) rep_->forward(ctx, p, b.rep, p.view(b.cat), m, rng);
}

void Decoder::backward(Context& ctx, const ActPlan& p, const Bufs& b, TensorView x1, TensorView x4, TensorView dpred,
                       TensorView drep, TensorView dx1, TensorView dx4) const {
  const TensorView gcat = p.view(b.g_cat);
  cls_->backward(ctx, p, b.cls, p.view(b.cat), dpred, gcat, 0.f);
  if (rep_ && drep.defined()) rep_->backward(ctx, p, b.rep, p.view(b.cat), drep, gcat, 1.f);
  // The heads' rebuilt tensors shared this scratch; the decoder's own are formed now.
  if (p.rebuild()) {
    for (int k = 0; k < 5; ++k)
      branch_[k]->rebuild(ctx, p, b.branch[k], p.view(k == 0 ? b.b1small : b.branch_out[k]));
    head_->rebuild(ctx, p, b.head, p.view(b.head_a));
    low_->rebuild(ctx, p, b.low, p.view(b.low_a));
  }
  split_channels(ctx, gcat, {p.view(b.g_low), p.view(b.g_up)}, 0.f);
  low_->backward(ctx, p, b.low, x1, p.view(b.low_a), p.view(b.g_low), dx1, 0.f);
  bilinear_backward(ctx, p.view(b.g_up), p.view(b.g_head_drop), 0.f);
  dropout2d_backward(ctx, p.view(b.head_scale), p.view(b.g_head_drop), p.view(b.g_head_a), 0.f);
  head_->backward(ctx, p, b.head, p.view(b.aspp), p.view(b.head_a), p.view(b.g_head_a), p.view(b.g_aspp), 0.f);
  std::vector<TensorView> gparts;
  for (const Slot& s : b.g_branch) gparts.push_back(p.view(s));
  split_channels(ctx, p.view(b.g_aspp), gparts, 0.f);
  for (int k = 1; k < 5; ++k)
    branch_[k]->backward(ctx, p, b.branch[k], x4, p.view(b.branch_out[k]), gparts[k], dx4, k == 1 ? 0.f : 1.f);
  bilinear_backward(ctx, gparts[0], p.view(b.g_b1small), 0.f);
  branch_[0]->backward(ctx, p, b.branch[0], p.view(b.pooled), p.view(b.b1small), p.view(b.g_b1small),
                       p.view(b.g_pooled), 0.f);
  global_avgpool_backward(ctx, p.view(b.g_pooled), dx4, 1.f);
}

}  // namespace u2pl
