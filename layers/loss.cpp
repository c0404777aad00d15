// Softmax, cross-entropy and OHEM selection: CPU path and dispatch (layers/loss.h).
#include "layers/loss.h"

#include <algorithm>
#include <vector>

#include "layers/loss_math.h"

namespace u2pl {

template <class T>
void softmax_forward_cpu(Shape xs, const T* x, T* y) {
  const int64_t C = xs.c(), HW = xs.h() * xs.w();
#pragma omp parallel for schedule(static)
  for (int64_t k = 0; k < xs.n() * HW; ++k) {
    const int64_t n = k / HW, i = k % HW;
    const T* px = x + n * C * HW + i;
    const PixelSoftmax<T> sm = pixel_softmax(px, C, HW);
    for (int64_t c = 0; c < C; ++c) y[n * C * HW + c * HW + i] = pixel_prob(px, HW, sm, int(c));
  }
}

template <class T>
void softmax_backward_cpu(Shape xs, const T* y, const T* dy, T* dx, T beta) {
  const int64_t C = xs.c(), HW = xs.h() * xs.w();
#pragma omp parallel for schedule(static)
  for (int64_t k = 0; k < xs.n() * HW; ++k) {
    const int64_t base = (k / HW) * C * HW + k % HW;
    T dot = 0;
    for (int64_t c = 0; c < C; ++c) dot += y[base + c * HW] * dy[base + c * HW];
    for (int64_t c = 0; c < C; ++c) {
      const int64_t j = base + c * HW;
      dx[j] = blend(y[j] * (dy[j] - dot), dx[j], beta);
    }
  }
}

// The first label outside [0, C) ∪ {ignore}, or -1.
static int64_t first_bad_label(int64_t n, const int32_t* labels, int C, int ignore) {
  for (int64_t i = 0; i < n; ++i)
    if (!label_ok(labels[i], C, ignore)) return i;
  return -1;
}

[[noreturn]] static void throw_bad_label(int64_t at, int32_t label, int C, int ignore) {
  U2PL_FAIL("cross-entropy: label " << label << " at pixel " << at << " is outside [0, " << C
                                    << ") and is not the ignore index " << ignore);
}

void CeResult::check(int C, int ignore) const {
  if (bad_pixel >= 0) throw_bad_label(bad_pixel, bad_label, C, ignore);
}

void CeHeadsResult::check() const {
  if (bad_pixel >= 0) throw_bad_label(bad_pixel, bad_label, classes, ignore);
}

template <class T>
CeResult cross_entropy_forward_cpu(Shape xs, const T* logits, const int32_t* labels, int ignore) {
  const int64_t C = xs.c(), HW = xs.h() * xs.w(), P = xs.n() * HW;
  const int64_t bad = first_bad_label(P, labels, int(C), ignore);
  if (bad >= 0) throw_bad_label(bad, labels[bad], int(C), ignore);
  double sum = 0;
  int64_t valid = 0;
#pragma omp parallel for schedule(static) reduction(+ : sum, valid)
  for (int64_t k = 0; k < P; ++k) {
    if (labels[k] == ignore) continue;
    const T* px = logits + (k / HW) * C * HW + k % HW;
    sum += double(pixel_ce(px, HW, pixel_softmax(px, C, HW), labels[k]));
    ++valid;
  }
  CeResult r;
  r.loss = valid ? float(sum / double(valid)) : 0.f;
  r.valid = valid;
  return r;
}

template <class T>
void cross_entropy_backward_cpu(Shape xs, const T* logits, const int32_t* labels, int ignore,
                                int64_t valid, T dloss, T* dlogits, T beta) {
  const int64_t C = xs.c(), HW = xs.h() * xs.w();
  const T scale = valid ? dloss / T(valid) : T(0);
#pragma omp parallel for schedule(static)
  for (int64_t k = 0; k < xs.n() * HW; ++k) {
    const int64_t base = (k / HW) * C * HW + k % HW;
    const int label = labels[k];
    const bool on = label != ignore && valid > 0;
    const PixelSoftmax<T> sm = pixel_softmax(logits + base, C, HW);
    for (int64_t c = 0; c < C; ++c) {
      const T g = on ? scale * (pixel_prob(logits + base, HW, sm, int(c)) - T(c == label)) : T(0);
      dlogits[base + c * HW] = blend(g, dlogits[base + c * HW], beta);
    }
  }
}

template void softmax_forward_cpu<float>(Shape, const float*, float*);
template void softmax_forward_cpu<double>(Shape, const double*, double*);
template void softmax_backward_cpu<float>(Shape, const float*, const float*, float*, float);
template void softmax_backward_cpu<double>(Shape, const double*, const double*, double*, double);
template CeResult cross_entropy_forward_cpu<float>(Shape, const float*, const int32_t*, int);
template CeResult cross_entropy_forward_cpu<double>(Shape, const double*, const int32_t*, int);
template void cross_entropy_backward_cpu<float>(Shape, const float*, const int32_t*, int, int64_t,
                                                float, float*, float);
template void cross_entropy_backward_cpu<double>(Shape, const double*, const int32_t*, int, int64_t,
                                                 double, double*, double);

static void check_logits(const TensorView& x, Device dev, const char* op) {
  U2PL_CHECK(x.shape.ndim == 4 && x.numel() > 0,
             op << ": expected non-empty (N, C, H, W) logits, got " << x.shape.str());
  check_device(x, dev, op);
}

static void check_labels(const TensorView& logits, const LabelView& labels, Device dev, const char* op) {
  check_logits(logits, dev, op);
  check_shape(labels, Shape{logits.shape.n(), logits.shape.h(), logits.shape.w()}, op);
  check_device(labels, dev, op);
}

void argmax_channels(Context& ctx, TensorView x, LabelView labels) {
  check_labels(x, labels, ctx.device(), "argmax labels");
  if (ctx.device() == Device::CUDA) return argmax_channels_cuda(ctx, x, labels);
  const int64_t C = x.shape.c(), HW = x.shape.h() * x.shape.w();
#pragma omp parallel for schedule(static)
  for (int64_t k = 0; k < labels.numel(); ++k)
    labels.data[k] = pixel_argmax(x.data + (k / HW) * C * HW + k % HW, C, HW);
}

void softmax_forward(Context& ctx, TensorView x, TensorView y) {
  check_logits(x, ctx.device(), "softmax");
  check_shape(y, x.shape, "softmax output");
  check_device(y, ctx.device(), "softmax output");
  if (ctx.device() == Device::CUDA) return softmax_forward_cuda(ctx, x, y);
  softmax_forward_cpu<float>(x.shape, x.data, y.data);
}

void softmax_backward(Context& ctx, TensorView y, TensorView dy, TensorView dx, float beta) {
  check_logits(y, ctx.device(), "softmax backward");
  check_shape(dy, y.shape, "softmax output gradient");
  check_shape(dx, y.shape, "softmax input gradient");
  check_device(dy, ctx.device(), "softmax output gradient");
  check_device(dx, ctx.device(), "softmax input gradient");
  if (ctx.device() == Device::CUDA) return softmax_backward_cuda(ctx, y, dy, dx, beta);
  softmax_backward_cpu<float>(y.shape, y.data, dy.data, dx.data, beta);
}

CeResult cross_entropy_forward(Context& ctx, TensorView logits, LabelView labels, int ignore) {
  check_labels(logits, labels, ctx.device(), "cross-entropy labels");
  if (ctx.device() == Device::CUDA) return cross_entropy_forward_cuda(ctx, logits, labels, ignore);
  return cross_entropy_forward_cpu<float>(logits.shape, logits.data, labels.data, ignore);
}

void cross_entropy_forward(Context& ctx, TensorView logits, LabelView labels, CeResult* out, int ignore) {
  check_labels(logits, labels, ctx.device(), "cross-entropy labels");
  U2PL_CHECK(out != nullptr, "cross-entropy: no result slot given");
  if (ctx.device() == Device::CUDA) return cross_entropy_forward_cuda(ctx, logits, labels, ignore, out);
  *out = cross_entropy_forward_cpu<float>(logits.shape, logits.data, labels.data, ignore);
}

void cross_entropy_heads(Context& ctx, const CeResult* main, const CeResult* aux, float aux_weight, int C,
                         int ignore, CeHeadsResult* out) {
  U2PL_CHECK(main != nullptr && out != nullptr, "cross-entropy heads: no main term or result slot given");
  if (ctx.device() == Device::CUDA) return cross_entropy_heads_cuda(ctx, main, aux, aux_weight, C, ignore, out);
  *out = ce_heads(*main, aux, aux_weight, C, ignore);
}

void cross_entropy_backward(Context& ctx, TensorView logits, LabelView labels, float dloss,
                            TensorView dlogits, float beta, int ignore) {
  check_labels(logits, labels, ctx.device(), "cross-entropy labels");
  check_shape(dlogits, logits.shape, "cross-entropy logits gradient");
  check_device(dlogits, ctx.device(), "cross-entropy logits gradient");
  if (ctx.device() == Device::CUDA)
    return cross_entropy_backward_cuda(ctx, logits, labels, ignore, dloss, dlogits, beta);
  const int64_t P = labels.numel();
  const int64_t valid = P - std::count(labels.data, labels.data + P, ignore);
  cross_entropy_backward_cpu<float>(logits.shape, logits.data, labels.data, ignore, valid, dloss,
                                    dlogits.data, beta);
}

// kept (N,H,W) from logits (N,C,H,W) and labels (N,H,W), checked (ohem_select's CPU path).
static void ohem_select_cpu(TensorView logits, LabelView labels, float thresh, int64_t min_kept, LabelView kept,
                            int ignore) {
  const int64_t C = logits.shape.c(), HW = logits.shape.h() * logits.shape.w(), P = labels.numel();
  const int64_t bad = first_bad_label(P, labels.data, int(C), ignore);
  if (bad >= 0) throw_bad_label(bad, labels.data[bad], int(C), ignore);
  std::vector<float> pgt(static_cast<size_t>(P), 1.0f);  // ignored pixels count with p = 1
  int64_t valid = 0;
  for (int64_t k = 0; k < P; ++k) {
    if (labels.data[k] == ignore) continue;
    ++valid;
    const float* px = logits.data + (k / HW) * C * HW + k % HW;
    pgt[k] = pixel_prob(px, HW, pixel_softmax(px, C, HW), labels.data[k]);
  }
  float threshold = thresh;
  const bool select = min_kept > 0 && valid > 0 && min_kept <= valid;
  if (select) {
    std::vector<float> sorted = pgt;
    std::nth_element(sorted.begin(), sorted.begin() + (min_kept - 1), sorted.end());
    threshold = std::max(thresh, sorted[static_cast<size_t>(min_kept - 1)]);
  }
  for (int64_t k = 0; k < P; ++k)
    kept.data[k] = (labels.data[k] != ignore && (!select || pgt[k] <= threshold)) ? labels.data[k] : ignore;
}

static void check_ohem(Context& ctx, const TensorView& logits, const LabelView& labels, const LabelView& kept) {
  check_labels(logits, labels, ctx.device(), "ohem labels");
  check_shape(kept, labels.shape, "ohem kept labels");
  check_device(kept, ctx.device(), "ohem kept labels");
}

void ohem_select(Context& ctx, TensorView logits, LabelView labels, float thresh, int64_t min_kept,
                 LabelView kept, int ignore) {
  check_ohem(ctx, logits, labels, kept);
  if (ctx.device() == Device::CUDA) {
    check_labels_cuda(ctx, labels, int(logits.shape.c()), ignore);
    return ohem_select_cuda(ctx, logits, labels, thresh, min_kept, kept, ignore);
  }
  ohem_select_cpu(logits, labels, thresh, min_kept, kept, ignore);
}

void ohem_select_deferred(Context& ctx, TensorView logits, LabelView labels, float thresh, int64_t min_kept,
                          LabelView kept, int ignore) {
  check_ohem(ctx, logits, labels, kept);
  if (ctx.device() == Device::CUDA) return ohem_select_cuda(ctx, logits, labels, thresh, min_kept, kept, ignore);
  ohem_select_cpu(logits, labels, thresh, min_kept, kept, ignore);
}

}  // namespace u2pl
