// The unsupervised part of U2PL (SPEC §2.2): per-pixel entropy of the teacher's softmax, numpy's
// percentile, the filtered pseudo-label loss with its gradient, and the entropy masks the
// contrastive loss uses (SPEC §2.3), on CPU and CUDA (thresholds kept in device memory). Must match
// compute_unsupervised_loss and the mask code of the public train_semi.py.
// Tests: test_unsup_contrastive.cpp, test_reference.cpp (unsupervised, contrastive),
// test_cuda_losses.cpp.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/context.h"

namespace u2pl {

// One T in the memory of a device (host memory on the CPU), where the device variants below write
// their figures, so that a CUDA step needs no host round trip. read() waits for ctx's stream and
// copies the value back: the logging read.
template <class T>
class DeviceSlot {
 public:
  explicit DeviceSlot(Device dev) : buf_(dev, sizeof(T)) { buf_.zero(); }
  T* get() const { return static_cast<T*>(buf_.data()); }
  Device device() const { return buf_.device(); }
  T read(const Context& ctx) const {
    ctx.synchronize();
    T v;
    copy_bytes(&v, Device::CPU, buf_.data(), buf_.device(), sizeof(T));
    return v;
  }

 private:
  Buffer buf_;
};

// entropy (N,H,W) = −Σ_c p log(p + 1e-10), p = softmax over C of logits (N,C,H,W).
void entropy_forward(Context& ctx, TensorView logits, TensorView entropy);
template <class T>
void entropy_forward_cpu(Shape xs, const T* logits, T* entropy);

// numpy.percentile(values, q) with the default 'linear' method: sort, rank q/100·(n − 1),
// interpolate between the neighbours. values must be non-empty, q in [0, 100].
double percentile_linear(std::vector<float> values, double q);

// The percentile of entropy (N,H,W) over the pixels whose label (N,H,W) is not 255; an
// undefined `labels` view counts every pixel. count 0 gives value 0.
struct Percentile {
  double value = 0;
  int64_t count = 0;
};
Percentile masked_percentile(TensorView entropy, LabelView labels, double q);  // CPU views
// The same on ctx's device, into *out in that device's memory (a DeviceSlot): on CUDA no host
// round trip, and the next kernels read the threshold from there.
void masked_percentile(Context& ctx, TensorView entropy, LabelView labels, double q, Percentile* out);
Percentile masked_percentile(Context& ctx, TensorView entropy, LabelView labels, double q);  // read back

struct UnsupOptions {
  double percent = 80;          // 100 − α_t: pixels with entropy at or above it are dropped
  bool scale_by_valid = false;  // official: L_u = (B·H·W / N_valid) × mean CE; paper: mean CE
};

struct UnsupResult {
  float loss = 0;
  double thresh = 0;   // the entropy percentile (0 when no pixel is valid)
  double weight = 0;   // B·H·W / N_valid (0 when none is valid)
  int64_t valid = 0;   // reliable pixels left in `filtered`
  // CUDA: the first pixel of `filtered` whose label is outside [0, C) ∪ {255}, −1 if none (the
  // CPU throws at once); check() throws the same error.
  int64_t bad_pixel = -1;
  int32_t bad_label = 0;
  void check() const;
};

// predict (B,C,H,W) student logits; target (B,H,W) pseudo-labels (255 = none); teacher_logits
// (B,C,H,W). Writes entropy (B,H,W) and filtered (B,H,W) = target with H ≥ thresh set to 255;
// dpredict (B,C,H,W) = beta·dpredict + dloss·dL/dpredict unless undefined. No valid pixel: loss
// 0, zero gradient and a logged note. On CUDA the figures are read back (one synchronisation).
UnsupResult unsup_loss(Context& ctx, TensorView predict, LabelView target, TensorView teacher_logits,
                       const UnsupOptions& opt, TensorView entropy, LabelView filtered, float dloss,
                       TensorView dpredict, float beta);
// The same with the figures written to *out in ctx's device memory (a DeviceSlot), without the
// note and, on CUDA, without a host round trip; read the slot and check() it to log.
void unsup_loss(Context& ctx, TensorView predict, LabelView target, TensorView teacher_logits,
                const UnsupOptions& opt, TensorView entropy, LabelView filtered, float dloss, TensorView dpredict,
                float beta, UnsupResult* out);

// Which unlabeled pixels may give anchors (§7, first row).
enum class LowMaskRule {
  Reliable,     // paper: H < percentile(100 − α_t)
  LowestAlpha,  // official: H ≤ percentile(α_t)
};

struct EntropyThresholds {
  double low = 0, high = 0;  // the low-mask and high-mask thresholds
  int64_t count = 0;         // pixels the percentiles were taken over
};

// The contrastive masks at feature resolution for the batch [labeled | unlabeled]: low (B,h,w)
// and high (B,h,w). Labeled images (label_l (n_l,h,w)): both masks are label ≠ 255. Unlabeled
// images, from the crop-size entropy_u (n_u,H,W) and pseudo-labels crop_label_u (n_u,H,W; an
// undefined view counts every pixel as labelled): low per `rule`, high = H ≥ percentile(100 − α_t),
// both only where the label is not 255, then nearest-downsampled to (h,w).
EntropyThresholds contrastive_masks(Context& ctx, LabelView label_l, TensorView entropy_u,
                                    LabelView crop_label_u, double alpha_t, LowMaskRule rule,
                                    MaskView low, MaskView high);
// The same with the thresholds written to *out in ctx's device memory (a DeviceSlot, which the
// queued mask kernel reads: keep it alive until the stream has passed it).
void contrastive_masks(Context& ctx, LabelView label_l, TensorView entropy_u, LabelView crop_label_u,
                       double alpha_t, LowMaskRule rule, MaskView low, MaskView high, EntropyThresholds* out);

// CUDA backends (u2pl/losses/unsup_loss.cu), called after the checks above; `out` in device memory.
void entropy_forward_cuda(Context& ctx, TensorView logits, TensorView entropy);
void masked_percentile_cuda(Context& ctx, TensorView entropy, LabelView labels, double q, Percentile* out);
void unsup_loss_cuda(Context& ctx, TensorView predict, LabelView target, TensorView teacher_logits,
                     const UnsupOptions& opt, TensorView entropy, LabelView filtered, float dloss,
                     TensorView dpredict, float beta, UnsupResult* out);
void contrastive_masks_cuda(Context& ctx, LabelView label_l, TensorView entropy_u, LabelView crop_label_u,
                            double alpha_t, LowMaskRule rule, MaskView low, MaskView high, EntropyThresholds* out);

}  // namespace u2pl
