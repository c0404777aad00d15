// The supervised loss (u2pl/losses/sup_loss.h).
#include "u2pl/losses/sup_loss.h"

#include "layers/resize.h"

namespace u2pl {

namespace {

int64_t aligned(int64_t floats) { return (floats + 63) / 64 * 64; }  // 256-byte steps

template <class T>
View<T> sized(Owned<T>& t, Shape s, Device dev) {
  if (t.shape() != s || t.device() != dev) t = Owned<T>(s, dev);
  return t.view();
}

template <class T>
T* slots(Buffer& b, size_t n, Device dev) {
  if (b.bytes() != n * sizeof(T) || b.device() != dev) b = Buffer(dev, n * sizeof(T));
  return static_cast<T*>(b.data());
}

// One head: upsample, (OHEM-select,) cross-entropy into *ce in ctx's device memory; backward
// through both when dx is defined.
void head_loss(Context& ctx, TensorView x, LabelView labels, const SupLossOptions& opt, SupLossBuffers& buf,
               float dloss, TensorView dx, float beta, CeResult* ce) {
  const Shape up{x.shape.n(), x.shape.c(), labels.shape[1], labels.shape[2]};
  const TensorView logits = buf.logits(up, ctx.device());
  bilinear_forward(ctx, x, logits);
  LabelView target = labels;
  if (opt.ohem) {
    target = buf.kept(labels.shape, ctx.device());
    ohem_select_deferred(ctx, logits, labels, opt.thresh, opt.min_kept, target, opt.ignore);
  }
  cross_entropy_forward(ctx, logits, target, ce, opt.ignore);
  if (dx.defined()) {
    const TensorView g = buf.grad(up, ctx.device());
    cross_entropy_backward(ctx, logits, target, dloss, g, 0.f, opt.ignore);
    bilinear_backward(ctx, g, dx, beta);
  }
}

}  // namespace

bool SupLossBuffers::use_lent(Shape s, Device dev) const {
  return lent_.defined() && lent_.device == dev && lent_.numel() >= aligned(s.numel()) + s.numel();
}
TensorView SupLossBuffers::logits(Shape s, Device dev) {
  return use_lent(s, dev) ? TensorView(lent_.data, s, dev) : sized(logits_, s, dev);
}
TensorView SupLossBuffers::grad(Shape s, Device dev) {
  return use_lent(s, dev) ? TensorView(lent_.data + aligned(s.numel()), s, dev) : sized(grad_, s, dev);
}
LabelView SupLossBuffers::kept(Shape s, Device dev) { return sized(kept_, s, dev); }
CeResult* SupLossBuffers::terms(Device dev) { return slots<CeResult>(terms_, 2, dev); }
SupLossResult* SupLossBuffers::result(Device dev) { return slots<SupLossResult>(result_, 1, dev); }

void supervised_loss(Context& ctx, TensorView pred, TensorView aux, LabelView labels, const SupLossOptions& opt,
                     SupLossBuffers& buf, float dloss, TensorView dpred, TensorView daux, float beta,
                     SupLossResult* out) {
  U2PL_CHECK(labels.shape.ndim == 3 && pred.shape.ndim == 4 && labels.shape[0] == pred.shape.n(),
             "supervised loss: expected labels (B, H, W) for logits " << pred.shape.str() << ", got "
                                                                     << labels.shape.str());
  U2PL_CHECK(dpred.defined() == daux.defined() || !aux.defined(),
             "supervised loss: give gradients for both heads or for neither");
  U2PL_CHECK(out != nullptr, "supervised loss: no result slot given");
  CeResult* terms = buf.terms(ctx.device());
  head_loss(ctx, pred, labels, opt, buf, dloss, dpred, beta, terms);
  if (aux.defined()) head_loss(ctx, aux, labels, opt, buf, dloss * opt.aux_weight, daux, beta, terms + 1);
  cross_entropy_heads(ctx, terms, aux.defined() ? terms + 1 : nullptr, opt.aux_weight, int(pred.shape.c()),
                      opt.ignore, out);
}

SupLossResult supervised_loss(Context& ctx, TensorView pred, TensorView aux, LabelView labels,
                              const SupLossOptions& opt, SupLossBuffers& buf, float dloss, TensorView dpred,
                              TensorView daux, float beta) {
  SupLossResult* slot = buf.result(ctx.device());
  supervised_loss(ctx, pred, aux, labels, opt, buf, dloss, dpred, daux, beta, slot);
  ctx.synchronize();
  SupLossResult r;
  copy_bytes(&r, Device::CPU, slot, ctx.device(), sizeof(SupLossResult));
  r.check();
  return r;
}

}  // namespace u2pl
