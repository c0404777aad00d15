// The supervised loss (u2pl/sup_loss.h).
#include "u2pl/sup_loss.h"

#include "layers/resize.h"

namespace u2pl {

namespace {

template <class T>
View<T> sized(Owned<T>& t, Shape s, Device dev) {
  if (t.shape() != s || t.device() != dev) t = Owned<T>(s, dev);
  return t.view();
}

// One head: upsample, (OHEM-select,) cross-entropy; backward through both when dx is defined.
CeResult head_loss(Context& ctx, TensorView x, LabelView labels, const SupLossOptions& opt, SupLossBuffers& buf,
                   float dloss, TensorView dx, float beta) {
  const Shape up{x.shape.n(), x.shape.c(), labels.shape[1], labels.shape[2]};
  const TensorView logits = buf.logits(up, ctx.device());
  bilinear_forward(ctx, x, logits);
  LabelView target = labels;
  if (opt.ohem) {
    target = buf.kept(labels.shape, ctx.device());
    ohem_select(ctx, logits, labels, opt.thresh, opt.min_kept, target, opt.ignore);
  }
  const CeResult r = cross_entropy_forward(ctx, logits, target, opt.ignore);
  if (dx.defined()) {
    const TensorView g = buf.grad(up, ctx.device());
    cross_entropy_backward(ctx, logits, target, dloss, g, 0.f, opt.ignore);
    bilinear_backward(ctx, g, dx, beta);
  }
  return r;
}

}  // namespace

TensorView SupLossBuffers::logits(Shape s, Device dev) { return sized(logits_, s, dev); }
TensorView SupLossBuffers::grad(Shape s, Device dev) { return sized(grad_, s, dev); }
LabelView SupLossBuffers::kept(Shape s, Device dev) { return sized(kept_, s, dev); }

SupLossResult supervised_loss(Context& ctx, TensorView pred, TensorView aux, LabelView labels,
                              const SupLossOptions& opt, SupLossBuffers& buf, float dloss, TensorView dpred,
                              TensorView daux, float beta) {
  U2PL_CHECK(labels.shape.ndim == 3 && pred.shape.ndim == 4 && labels.shape[0] == pred.shape.n(),
             "supervised loss: expected labels (B, H, W) for logits " << pred.shape.str() << ", got "
                                                                     << labels.shape.str());
  U2PL_CHECK(dpred.defined() == daux.defined() || !aux.defined(),
             "supervised loss: give gradients for both heads or for neither");
  SupLossResult r;
  const CeResult m = head_loss(ctx, pred, labels, opt, buf, dloss, dpred, beta);
  r.main = m.loss;
  r.valid = m.valid;
  r.loss = m.loss;
  if (aux.defined()) {
    const CeResult a = head_loss(ctx, aux, labels, opt, buf, dloss * opt.aux_weight, daux, beta);
    r.aux = a.loss;
    r.loss += opt.aux_weight * a.loss;
  }
  return r;
}

}  // namespace u2pl
