// Entropy, numpy percentile, the filtered pseudo-label loss and the contrastive entropy masks:
// checks, the CPU path and the dispatch to CUDA (u2pl/losses/unsup_loss.h).
#include "u2pl/losses/unsup_loss.h"

#include <algorithm>
#include <cmath>

#include "engine/log.h"
#include "layers/loss.h"
#include "layers/resize.h"
#include "u2pl/losses/semi_math.h"

namespace u2pl {

template <class T>
void entropy_forward_cpu(Shape xs, const T* logits, T* entropy) {
  const int64_t C = xs.c(), HW = xs.h() * xs.w();
#pragma omp parallel for schedule(static)
  for (int64_t k = 0; k < xs.n() * HW; ++k)
    entropy[k] = pixel_entropy(logits + (k / HW) * C * HW + k % HW, C, HW);
}
template void entropy_forward_cpu<float>(Shape, const float*, float*);
template void entropy_forward_cpu<double>(Shape, const double*, double*);

void entropy_forward(Context& ctx, TensorView logits, TensorView entropy) {
  U2PL_CHECK(logits.shape.ndim == 4, "entropy: expected (N, C, H, W) logits, got " << logits.shape.str());
  check_shape(entropy, Shape{logits.shape.n(), logits.shape.h(), logits.shape.w()}, "entropy output");
  check_device(logits, ctx.device(), "entropy logits");
  check_device(entropy, ctx.device(), "entropy output");
  if (ctx.device() == Device::CUDA) return entropy_forward_cuda(ctx, logits, entropy);
  entropy_forward_cpu<float>(logits.shape, logits.data, entropy.data);
}

double percentile_linear(std::vector<float> values, double q) {
  U2PL_CHECK(!values.empty(), "percentile of an empty set");
  U2PL_CHECK(q >= 0 && q <= 100, "percentile: q must lie in [0, 100], got " << q);
  const int64_t n = static_cast<int64_t>(values.size());
  const double rank = (q / 100.0) * double(n - 1);  // numpy: true_divide(q, 100) · (n − 1)
  const int64_t lo = std::min<int64_t>(static_cast<int64_t>(std::floor(rank)), n - 1);
  std::nth_element(values.begin(), values.begin() + lo, values.end());
  const double a = values[size_t(lo)];
  if (lo + 1 >= n) return a;
  const double b = *std::min_element(values.begin() + lo + 1, values.end());
  return numpy_lerp(a, b, rank - double(lo));
}

Percentile masked_percentile(TensorView entropy, LabelView labels, double q) {
  check_device(entropy, Device::CPU, "percentile entropy");
  if (labels.defined()) check_shape(labels, entropy.shape, "percentile labels");
  std::vector<float> v;
  v.reserve(size_t(entropy.numel()));
  for (int64_t k = 0; k < entropy.numel(); ++k)
    if (!labels.defined() || labels.data[k] != kIgnoreLabel) v.push_back(entropy.data[k]);
  Percentile p;
  p.count = static_cast<int64_t>(v.size());
  if (p.count > 0) p.value = percentile_linear(std::move(v), q);
  return p;
}

void masked_percentile(Context& ctx, TensorView entropy, LabelView labels, double q, Percentile* out) {
  U2PL_CHECK(q >= 0 && q <= 100, "percentile: q must lie in [0, 100], got " << q);
  if (ctx.device() == Device::CPU) {
    *out = masked_percentile(entropy, labels, q);
    return;
  }
  check_device(entropy, Device::CUDA, "percentile entropy");
  if (labels.defined()) {
    check_shape(labels, entropy.shape, "percentile labels");
    check_device(labels, Device::CUDA, "percentile labels");
  }
  masked_percentile_cuda(ctx, entropy, labels, q, out);
}

Percentile masked_percentile(Context& ctx, TensorView entropy, LabelView labels, double q) {
  const DeviceSlot<Percentile> slot(ctx.device());
  masked_percentile(ctx, entropy, labels, q, slot.get());
  return slot.read(ctx);
}

void UnsupResult::check() const {
  U2PL_CHECK(bad_pixel < 0, "unsupervised loss: pseudo-label " << bad_label << " at pixel " << bad_pixel
                                                               << " is not a class of the logits and is not 255");
}

// The CPU loss (figures in r); cross_entropy_forward throws on a bad label.
static UnsupResult unsup_loss_cpu(Context& ctx, TensorView predict, LabelView target, TensorView teacher_logits,
                                  const UnsupOptions& opt, TensorView entropy, LabelView filtered, float dloss,
                                  TensorView dpredict, float beta) {
  entropy_forward(ctx, teacher_logits, entropy);
  UnsupResult r;
  const Percentile p = masked_percentile(entropy, target, opt.percent);
  r.thresh = p.value;
  // torch's entropy.ge(thresh) compares in float32
  const float th = static_cast<float>(p.value);
  for (int64_t k = 0; k < target.numel(); ++k) {
    const int32_t y = target.data[k];
    filtered.data[k] = (y != kIgnoreLabel && entropy.data[k] >= th) ? kIgnoreLabel : y;
    r.valid += filtered.data[k] != kIgnoreLabel;
  }
  if (r.valid == 0) {
    if (dpredict.defined()) cross_entropy_backward(ctx, predict, filtered, 0.f, dpredict, beta);
    return r;
  }
  r.weight = double(target.numel()) / double(r.valid);
  const CeResult ce = cross_entropy_forward(ctx, predict, filtered);
  const double scale = opt.scale_by_valid ? r.weight : 1.0;
  r.loss = static_cast<float>(scale * double(ce.loss));
  if (dpredict.defined())
    cross_entropy_backward(ctx, predict, filtered, static_cast<float>(scale * dloss), dpredict, beta);
  return r;
}

void unsup_loss(Context& ctx, TensorView predict, LabelView target, TensorView teacher_logits,
                const UnsupOptions& opt, TensorView entropy, LabelView filtered, float dloss, TensorView dpredict,
                float beta, UnsupResult* out) {
  U2PL_CHECK(predict.shape.ndim == 4 && predict.numel() > 0,
             "unsupervised loss: expected non-empty (B, C, H, W) logits, got " << predict.shape.str());
  check_shape(target, Shape{predict.shape.n(), predict.shape.h(), predict.shape.w()}, "unsupervised loss target");
  check_shape(teacher_logits, predict.shape, "unsupervised loss teacher logits");
  check_shape(filtered, target.shape, "unsupervised loss filtered labels");
  check_shape(entropy, target.shape, "unsupervised loss entropy");
  if (dpredict.defined()) check_shape(dpredict, predict.shape, "unsupervised loss gradient");
  U2PL_CHECK(opt.percent >= 0 && opt.percent <= 100,
             "unsupervised loss: percent must lie in [0, 100], got " << opt.percent);
  const Device dev = ctx.device();
  check_device(predict, dev, "unsupervised loss logits");
  check_device(target, dev, "unsupervised loss target");
  check_device(teacher_logits, dev, "unsupervised loss teacher logits");
  check_device(entropy, dev, "unsupervised loss entropy");
  check_device(filtered, dev, "unsupervised loss filtered labels");
  if (dpredict.defined()) check_device(dpredict, dev, "unsupervised loss gradient");
  if (dev == Device::CUDA)
    return unsup_loss_cuda(ctx, predict, target, teacher_logits, opt, entropy, filtered, dloss, dpredict, beta, out);
  *out = unsup_loss_cpu(ctx, predict, target, teacher_logits, opt, entropy, filtered, dloss, dpredict, beta);
}

UnsupResult unsup_loss(Context& ctx, TensorView predict, LabelView target, TensorView teacher_logits,
                       const UnsupOptions& opt, TensorView entropy, LabelView filtered, float dloss,
                       TensorView dpredict, float beta) {
  const DeviceSlot<UnsupResult> slot(ctx.device());
  unsup_loss(ctx, predict, target, teacher_logits, opt, entropy, filtered, dloss, dpredict, beta, slot.get());
  const UnsupResult r = slot.read(ctx);
  r.check();
  if (r.valid == 0) U2PL_LOG("unsupervised loss: no reliable pseudo-label in the batch; the term is 0");
  return r;
}

// mask (n, H, W) -> out (n, h, w), PyTorch's nearest rule.
static void downsample_mask(Context& ctx, std::vector<uint8_t>& mask, Shape crop, MaskView out) {
  nearest_forward(ctx, MaskView(mask.data(), crop, Device::CPU), out);
}

static EntropyThresholds contrastive_masks_cpu(Context& ctx, LabelView label_l, TensorView entropy_u,
                                               LabelView crop_label_u, double alpha_t, LowMaskRule rule,
                                               MaskView low, MaskView high) {
  const int64_t nl = label_l.shape[0];
  for (int64_t k = 0; k < label_l.numel(); ++k) low.data[k] = high.data[k] = label_l.data[k] != kIgnoreLabel;
  EntropyThresholds t;
  if (entropy_u.shape[0] == 0) return t;
  const Percentile hi = masked_percentile(entropy_u, crop_label_u, 100.0 - alpha_t);
  t.count = hi.count;
  t.high = hi.value;
  t.low = rule == LowMaskRule::Reliable ? hi.value : masked_percentile(entropy_u, crop_label_u, alpha_t).value;
  const float lo_th = static_cast<float>(t.low), hi_th = static_cast<float>(t.high);
  std::vector<uint8_t> lo_crop(size_t(entropy_u.numel())), hi_crop(size_t(entropy_u.numel()));
  for (int64_t k = 0; k < entropy_u.numel(); ++k) {
    const bool labelled = !crop_label_u.defined() || crop_label_u.data[k] != kIgnoreLabel;
    const float e = entropy_u.data[k];
    lo_crop[size_t(k)] = labelled && (rule == LowMaskRule::Reliable ? e < lo_th : e <= lo_th);
    hi_crop[size_t(k)] = labelled && e >= hi_th;
  }
  downsample_mask(ctx, lo_crop, entropy_u.shape, low.batch_slice(nl, entropy_u.shape[0]));
  downsample_mask(ctx, hi_crop, entropy_u.shape, high.batch_slice(nl, entropy_u.shape[0]));
  return t;
}

void contrastive_masks(Context& ctx, LabelView label_l, TensorView entropy_u, LabelView crop_label_u,
                       double alpha_t, LowMaskRule rule, MaskView low, MaskView high, EntropyThresholds* out) {
  U2PL_CHECK(label_l.shape.ndim == 3 && entropy_u.shape.ndim == 3,
             "contrastive masks: expected (n, h, w) labels and (n, H, W) entropies, got "
                 << label_l.shape.str() << " and " << entropy_u.shape.str());
  const int64_t nl = label_l.shape[0], nu = entropy_u.shape[0], h = label_l.shape[1], w = label_l.shape[2];
  check_shape(low, Shape{nl + nu, h, w}, "contrastive low mask");
  check_shape(high, Shape{nl + nu, h, w}, "contrastive high mask");
  if (crop_label_u.defined()) check_shape(crop_label_u, entropy_u.shape, "contrastive crop pseudo-labels");
  const Device dev = ctx.device();
  check_device(label_l, dev, "contrastive labels");
  check_device(entropy_u, dev, "contrastive entropies");
  if (crop_label_u.defined()) check_device(crop_label_u, dev, "contrastive crop pseudo-labels");
  check_device(low, dev, "contrastive low mask");
  check_device(high, dev, "contrastive high mask");
  U2PL_CHECK(alpha_t >= 0 && alpha_t <= 100, "contrastive masks: alpha_t must lie in [0, 100], got " << alpha_t);
  if (dev == Device::CUDA)
    return contrastive_masks_cuda(ctx, label_l, entropy_u, crop_label_u, alpha_t, rule, low, high, out);
  *out = contrastive_masks_cpu(ctx, label_l, entropy_u, crop_label_u, alpha_t, rule, low, high);
}

EntropyThresholds contrastive_masks(Context& ctx, LabelView label_l, TensorView entropy_u,
                                    LabelView crop_label_u, double alpha_t, LowMaskRule rule,
                                    MaskView low, MaskView high) {
  const DeviceSlot<EntropyThresholds> slot(ctx.device());
  contrastive_masks(ctx, label_l, entropy_u, crop_label_u, alpha_t, rule, low, high, slot.get());
  return slot.read(ctx);
}

}  // namespace u2pl
