// ConvBn and ResBlock forward and backward (u2pl/net/blocks.h).
#include "u2pl/net/blocks.h"

#include "layers/elementwise.h"

namespace u2pl {

ConvBn::ConvBn(ParamSet& ps, const std::string& conv_name, const std::string& bn_name,
               const Conv2dSpec& spec, bool relu, int group, ConvInit init)
    : conv_(ps, conv_name, spec, group, init), bn_(ps, bn_name, spec.cout, group), relu_(relu) {}

ConvBn::Bufs ConvBn::plan(ActPlan& p, Shape x, const Slot& gc, bool replayed, const Slot& c) const {
  const Shape y = out_shape(x);
  Bufs b;
  b.c = c.defined() ? alias(c, y) : replayed ? p.replayed(y) : p.internal(y);
  if (p.backward()) {
    b.stats = p.state(bn_.saved_shape());
    b.gc = alias(gc, y);
  }
  return b;
}

void ConvBn::forward(Context& ctx, const ActPlan& p, const Bufs& b, TensorView x, TensorView y, RunMode m) const {
  const TensorView c = p.view(b.c);
  conv_.forward(ctx, x, c);
  bn_.forward(ctx, c, y, BatchNormMode{m.batch_stats, m.backward}, p.view(b.stats));
  if (relu_) relu_forward(ctx, y, y);
}

void ConvBn::backward(Context& ctx, const ActPlan& p, const Bufs& b, TensorView x, TensorView y,
                      TensorView dy, TensorView dx, float beta) const {
  if (relu_) relu_backward(ctx, y, dy, dy, 0.f);
  const TensorView gc = p.view(b.gc);
  bn_.backward(ctx, p.view(b.c), p.view(b.stats), true, dy, gc, 0.f);
  conv_.backward(ctx, x, gc, dx, beta);
}

void ConvBn::replay_conv(Context& ctx, const ActPlan& p, const Bufs& b, TensorView x) const {
  conv_.forward(ctx, x, p.view(b.c));
}

void ConvBn::rebuild(Context& ctx, const ActPlan& p, const Bufs& b, TensorView y) const {
  bn_.rebuild(ctx, p.view(b.c), p.view(b.stats), y);
  if (relu_) relu_forward(ctx, y, y);
}

ResBlock::ResBlock(ParamSet& ps, const std::string& name, bool bottleneck, int inplanes, int planes,
                   int stride, int dilation, bool zero_init_last_bn) {
  const std::string n = name + ".";
  auto conv3 = [&](int cin, int cout, int s) { return Conv2dSpec{cin, cout, 3, 3, s, dilation, dilation, false}; };
  if (bottleneck) {
    out_c_ = planes * 4;
    units_.push_back(std::make_unique<ConvBn>(ps, n + "conv1", n + "bn1", Conv2dSpec{inplanes, planes, 1, 1, 1, 0, 1, false}, true, 0));
    units_.push_back(std::make_unique<ConvBn>(ps, n + "conv2", n + "bn2", conv3(planes, planes, stride), true, 0));
    units_.push_back(std::make_unique<ConvBn>(ps, n + "conv3", n + "bn3", Conv2dSpec{planes, out_c_, 1, 1, 1, 0, 1, false}, false, 0));
  } else {
    out_c_ = planes;
    units_.push_back(std::make_unique<ConvBn>(ps, n + "conv1", n + "bn1", conv3(inplanes, planes, stride), true, 0));
    units_.push_back(std::make_unique<ConvBn>(ps, n + "conv2", n + "bn2", conv3(planes, planes, 1), false, 0));
  }
  if (stride != 1 || inplanes != out_c_)
    down_ = std::make_unique<ConvBn>(ps, n + "downsample.0", n + "downsample.1",
                                     Conv2dSpec{inplanes, out_c_, 1, 1, stride, 0, 1, false}, false, 0);
  if (zero_init_last_bn) zero_bn_ = units_.back()->bn_weight_id();
}

Shape ResBlock::out_shape(Shape x) const {
  for (const auto& u : units_) x = u->out_shape(x);
  return x;
}

ResBlock::Bufs ResBlock::plan(ActPlan& p, Shape x, Keep keep, int64_t at) const {
  p.begin_module();
  Bufs b;
  const int n = static_cast<int>(units_.size());
  Shape outs[3];
  for (int i = 0; i < n; ++i) outs[i] = units_[i]->out_shape(i > 0 ? outs[i - 1] : x);
  const Shape s = outs[n - 1];
  // Gradient temporaries: every unit's conv-output gradient in one slot (the last unit's and the
  // shortcut's are the largest); a[]'s gradients in one more, unit i's written by unit i + 1's
  // backward once the gradient it read is done with.
  const Shape inner = largest({outs[0], outs[n - 2]});  // the largest of a[]
  Slot gc, ga;
  if (p.backward()) {
    gc = p.grad_temp(s);
    if (n > 1) ga = p.grad_temp(inner);
  }
  // Without backward, the conv outputs take one slot in turns and the BN outputs a[] and the
  // shortcut's another: each is dead once the next conv (or the add) has read it.
  Slot c, a;
  if (!p.backward()) {
    // The largest conv output (a strided block's first unit's may be).
    c = p.internal(largest(std::vector<Shape>(outs, outs + n)));
    a = p.internal(down_ ? largest({inner, s}) : inner);
  }
  for (int i = 0; i < n; ++i) {
    b.u[i] = units_[i]->plan(p, i > 0 ? outs[i - 1] : x, gc, p.replay(), c);
    if (i < n - 1) b.a[i] = a.defined() ? alias(a, outs[i]) : p.rebuilt(outs[i]);
  }
  if (down_) {
    b.ds = down_->plan(p, x, gc, p.replay(), c);
    const Shape ds = down_->out_shape(x);
    b.dsa = a.defined() ? alias(a, ds) : p.rebuilt(ds);  // backward reads it not at all (no ReLU)
  }
  U2PL_CHECK((keep != Keep::Rebuilt || (p.rebuild() && !p.replay())) && (keep != Keep::Replayed || p.replay()),
             "residual block: an output kept in a way its plan does not support");
  b.out_rebuilt = keep == Keep::Rebuilt || keep == Keep::Replayed;
  b.out = b.out_rebuilt ? p.rebuilt_output(s, at) : p.output(s, keep == Keep::Tapped);
  if (p.backward()) {
    b.gsum = p.grad_temp(s);
    for (int i = 0; i < n - 1; ++i) b.ga[i] = alias(ga, outs[i]);
  }
  return b;
}

void ResBlock::forward(Context& ctx, const ActPlan& p, const Bufs& b, TensorView x, RunMode m) const {
  const int n = static_cast<int>(units_.size());
  const TensorView out = p.view(b.out.value);
  TensorView in = x;
  for (int i = 0; i < n; ++i) {
    const TensorView y = i < n - 1 ? p.view(b.a[i]) : out;  // the last BN writes the sum's buffer
    units_[i]->forward(ctx, p, b.u[i], in, y, m);
    in = y;
  }
  TensorView identity = x;
  if (down_) {
    identity = p.view(b.dsa);
    down_->forward(ctx, p, b.ds, x, identity, m);
  }
  add_forward(ctx, out, identity, out);
  relu_forward(ctx, out, out);
}

void ResBlock::rebuild_output(Context& ctx, const ActPlan& p, const Bufs& b, TensorView x) const {
  const TensorView out = p.view(b.out.value);
  const int n = static_cast<int>(units_.size());
  units_[n - 1]->rebuild(ctx, p, b.u[n - 1], out);  // the last unit has no ReLU: its BN output
  TensorView identity = x;
  if (down_) {
    identity = p.view(b.dsa);
    down_->rebuild(ctx, p, b.ds, identity);
  }
  add_forward(ctx, out, identity, out);
  relu_forward(ctx, out, out);
}

void ResBlock::replay_units(Context& ctx, const ActPlan& p, const Bufs& b, TensorView x) const {
  const int n = static_cast<int>(units_.size());
  TensorView in = x;
  for (int i = 0; i < n; ++i) {
    units_[i]->replay_conv(ctx, p, b.u[i], in);
    if (i == n - 1) break;
    units_[i]->rebuild(ctx, p, b.u[i], p.view(b.a[i]));
    in = p.view(b.a[i]);
  }
  if (down_) down_->replay_conv(ctx, p, b.ds, x);
}

void ResBlock::replay_output(Context& ctx, const ActPlan& p, const Bufs& b, TensorView x) const {
  replay_units(ctx, p, b, x);
  rebuild_output(ctx, p, b, x);
}

void ResBlock::backward(Context& ctx, const ActPlan& p, const Bufs& b, TensorView x, TensorView dx, float beta) const {
  const int n = static_cast<int>(units_.size());
  if (p.replay()) {  // the convolutions again from the kept input, each BN output from its saved state
    replay_units(ctx, p, b, x);
  } else if (p.rebuild()) {
    for (int i = 0; i < n - 1; ++i) units_[i]->rebuild(ctx, p, b.u[i], p.view(b.a[i]));
  }
  const TensorView out = p.view(b.out.value), gsum = p.view(b.gsum);
  relu_backward(ctx, out, p.view(b.out.grad), gsum, 0.f);
  // The last unit has no ReLU, so its output is not needed: pass `out` as a placeholder.
  TensorView g = gsum;
  for (int i = n - 1; i >= 0; --i) {
    const TensorView in = i > 0 ? p.view(b.a[i - 1]) : x;
    const TensorView y = i < n - 1 ? p.view(b.a[i]) : out;
    const TensorView din = i > 0 ? p.view(b.ga[i - 1]) : dx;
    units_[i]->backward(ctx, p, b.u[i], in, y, g, din, i > 0 ? 0.f : beta);
    g = din;
  }
  if (down_)
    down_->backward(ctx, p, b.ds, x, p.view(b.dsa), gsum, dx, 1.f);
  else
    accumulate(ctx, gsum, dx, 1.f);
}

}  // namespace u2pl
