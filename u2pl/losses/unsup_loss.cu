// The unsupervised loss and the contrastive entropy masks on CUDA (u2pl/losses/unsup_loss.h), over
// the per-pixel math of u2pl/losses/semi_math.h and layers/loss_math.h. Percentiles: the valid
// values (others keyed +inf) through a CUB radix sort, numpy's interpolation in a one-thread
// kernel, the result left in device memory for the kernels that compare against it. Sums are
// fixed-order double reductions, counts integer atomics: no float atomics. Covered by
// tests/test_cuda_losses.cpp.
#include <cub/device/device_radix_sort.cuh>

#include <cmath>

#include "engine/cuda/launch.cuh"
#include "layers/loss.h"
#include "u2pl/losses/semi_math.h"
#include "u2pl/losses/unsup_loss.h"

namespace u2pl {
namespace {

using ull = unsigned long long;

// logits (N, C, HW) -> entropy (P = N·HW).
__global__ void entropy_kernel(int64_t P, int64_t C, int64_t HW, const float* logits, float* entropy) {
  for (int64_t k = grid_start(); k < P; k += grid_step())
    entropy[k] = pixel_entropy(logits + (k / HW) * C * HW + k % HW, C, HW);
}

// keys (n) = values where labels (n; null: all) are not 255, +inf elsewhere, so the sorted keys
// start with the valid values in order; *count += their number.
__global__ void percentile_keys_kernel(int64_t n, const float* values, const int32_t* labels, float* keys,
                                       ull* count) {
  ull c = 0;
  for (int64_t k = grid_start(); k < n; k += grid_step()) {
    const bool valid = !labels || labels[k] != kIgnoreLabel;
    keys[k] = valid ? values[k] : INFINITY;
    c += valid;
  }
  c = block_sum(c);
  if (threadIdx.x == 0 && c) atomicAdd(count, c);
}

// numpy.percentile(linear) at q of the first n entries of sorted; percentile_linear's arithmetic.
__device__ double percentile_of(const float* sorted, int64_t n, double q) {
  if (n == 0) return 0;
  const double rank = (q / 100.0) * double(n - 1);
  int64_t lo = static_cast<int64_t>(floor(rank));
  lo = lo < n - 1 ? lo : n - 1;
  const double a = sorted[lo];
  return lo + 1 >= n ? a : numpy_lerp(a, double(sorted[lo + 1]), rank - double(lo));
}

__global__ void percentile_kernel(const float* sorted, const ull* count, double q, Percentile* out) {
  const int64_t n = static_cast<int64_t>(*count);
  Percentile p;
  p.value = percentile_of(sorted, n, q);
  p.count = n;
  *out = p;
}

// High threshold at q_high; the low one at q_low, or equal to the high one when `same`.
__global__ void thresholds_kernel(const float* sorted, const ull* count, double q_high, double q_low, bool same,
                                  EntropyThresholds* out) {
  const int64_t n = static_cast<int64_t>(*count);
  EntropyThresholds t;
  t.high = percentile_of(sorted, n, q_high);
  t.low = same ? t.high : percentile_of(sorted, n, q_low);
  t.count = n;
  *out = t;
}

// The valid entries of (n) values, sorted ascending to the front of `sorted` (the rest +inf),
// with their count: four pieces of one workspace, planned here, used after ctx.workspace().
class ValueSort {
 public:
  ValueSort(WorkspacePlan& w, int64_t n) : n_(n) {
    CUDA_CHECK(cub::DeviceRadixSort::SortKeys(nullptr, tmp_bytes_, static_cast<const float*>(nullptr),
                                              static_cast<float*>(nullptr), n_, 0, 32));
    keys_ = w.add(size_t(n) * sizeof(float));
    sorted_ = w.add(size_t(n) * sizeof(float));
    count_ = w.add(sizeof(ull));
    tmp_ = w.add(tmp_bytes_);
  }
  // values, labels (n) in device memory; labels null counts every entry.
  void run(Context& ctx, char* ws, const float* values, const int32_t* labels) const {
    cudaStream_t st = stream_of(ctx);
    float* keys = reinterpret_cast<float*>(ws + keys_);
    CUDA_CHECK(cudaMemsetAsync(count(ws), 0, sizeof(ull), st));
    percentile_keys_kernel<<<grid_for(ctx, n_), kBlock, 0, st>>>(n_, values, labels, keys, count(ws));
    CUDA_CHECK_LAUNCH();
    size_t bytes = tmp_bytes_;
    CUDA_CHECK(cub::DeviceRadixSort::SortKeys(ws + tmp_, bytes, keys, sorted(ws), n_, 0, 32, st));
    CUDA_CHECK_LAUNCH();
  }
  float* sorted(char* ws) const { return reinterpret_cast<float*>(ws + sorted_); }
  ull* count(char* ws) const { return reinterpret_cast<ull*>(ws + count_); }

 private:
  int64_t n_;
  size_t tmp_bytes_ = 0, keys_, sorted_, count_, tmp_;
};

// Filtered-label cross-entropy partials. Trivial (it lives in shared memory).
struct CeSum {
  double sum;
  ull valid;  // filtered labels other than 255 (bad ones included, as the CPU counts them)
};
struct CeSumOp {
  __device__ CeSum operator()(const CeSum& a, const CeSum& b) const { return {a.sum + b.sum, a.valid + b.valid}; }
};

struct PixelGeom {
  int64_t C, HW, P;
};

// filtered (P) = target with entropy ≥ float32(thresh) set to 255; partial[blockIdx.x] = the block's
// CE sum over valid labels and its count; *first_bad = min pixel with a label outside [0, C) ∪ {255}.
__global__ void filter_ce_kernel(PixelGeom g, const float* predict, const int32_t* target, const float* entropy,
                                 const Percentile* thresh, int32_t* filtered, CeSum* partial, ull* first_bad) {
  const float th = static_cast<float>(thresh->value);  // torch's entropy.ge(thresh) in float32
  CeSum acc{0.0, 0};
  ull bad = kNoPixel;
  for (int64_t k = grid_start(); k < g.P; k += grid_step()) {
    const int32_t y = target[k];
    const int32_t f = (y != kIgnoreLabel && entropy[k] >= th) ? kIgnoreLabel : y;
    filtered[k] = f;
    if (f == kIgnoreLabel) continue;
    ++acc.valid;
    if (!label_ok(f, int(g.C), kIgnoreLabel)) {
      bad = static_cast<ull>(k) < bad ? static_cast<ull>(k) : bad;
      continue;
    }
    const float* px = predict + (k / g.HW) * g.C * g.HW + k % g.HW;
    acc.sum += static_cast<double>(pixel_ce(px, g.HW, pixel_softmax(px, g.C, g.HW), f));
  }
  acc = block_reduce(acc, CeSumOp{});
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
  if (bad != kNoPixel) atomicMin(first_bad, bad);
}

// One block: the partials in a fixed order, then the figures (unsup_loss_cpu's arithmetic) and
// the backward scale *gscale = float32(scale·dloss) / valid.
__global__ void unsup_finish_kernel(int64_t blocks, int64_t P, const CeSum* partial, const Percentile* thresh,
                                    const ull* first_bad, const int32_t* filtered, bool scale_by_valid, float dloss,
                                    ull* valid_out, float* gscale, UnsupResult* out) {
  CeSum acc{0.0, 0};
  for (int64_t b = threadIdx.x; b < blocks; b += blockDim.x) acc = CeSumOp{}(acc, partial[b]);
  acc = block_reduce(acc, CeSumOp{});
  if (threadIdx.x != 0) return;
  UnsupResult r;
  r.thresh = thresh->value;
  r.valid = static_cast<int64_t>(acc.valid);
  float gs = 0.f;
  if (acc.valid > 0) {
    r.weight = double(P) / double(acc.valid);
    const float mean = static_cast<float>(acc.sum / double(acc.valid));
    const double scale = scale_by_valid ? r.weight : 1.0;
    r.loss = static_cast<float>(scale * double(mean));
    gs = static_cast<float>(scale * double(dloss)) / static_cast<float>(acc.valid);
  }
  if (*first_bad != kNoPixel) {
    r.bad_pixel = static_cast<int64_t>(*first_bad);
    r.bad_label = filtered[*first_bad];
  }
  *valid_out = acc.valid;
  *gscale = gs;
  *out = r;
}

// dpredict (B, C, HW) = beta·dpredict + gscale·(softmax − onehot) at valid pixels, 0 elsewhere
// (cross_entropy_backward_cpu's expression).
__global__ void unsup_backward_kernel(PixelGeom g, const float* predict, const int32_t* filtered, const ull* valid,
                                      const float* gscale, float* dpredict, float beta) {
  const bool any = *valid > 0;
  const float s = *gscale;
  for (int64_t k = grid_start(); k < g.P; k += grid_step()) {
    const int64_t base = (k / g.HW) * g.C * g.HW + k % g.HW;
    const int label = filtered[k];
    const bool on = label != kIgnoreLabel && any;
    const PixelSoftmax<float> sm = pixel_softmax(predict + base, g.C, g.HW);
    for (int64_t c = 0; c < g.C; ++c) {
      const float gr = on ? s * (pixel_prob(predict + base, g.HW, sm, int(c)) - float(c == label)) : 0.0f;
      dpredict[base + c * g.HW] = blend(gr, dpredict[base + c * g.HW], beta);
    }
  }
}

// Labeled images: low = high = label ≠ 255 over n entries.
__global__ void labeled_masks_kernel(int64_t n, const int32_t* label, uint8_t* low, uint8_t* high) {
  for (int64_t k = grid_start(); k < n; k += grid_step()) low[k] = high[k] = label[k] != kIgnoreLabel;
}

struct MaskGeom {
  int64_t n, H, W, h, w;  // unlabeled images, crop size, feature size
};

// Unlabeled images: the crop-size masks (contrastive_masks_cpu) sampled at PyTorch's nearest
// sources, so low, high (n, h, w) equal the CPU's downsampled crop masks.
__global__ void unlabeled_masks_kernel(MaskGeom g, const float* entropy, const int32_t* crop_label,
                                       const EntropyThresholds* t, bool reliable, uint8_t* low, uint8_t* high) {
  const float lo = static_cast<float>(t->low), hi = static_cast<float>(t->high);
  const int64_t total = g.n * g.h * g.w;
  for (int64_t o = grid_start(); o < total; o += grid_step()) {
    const int64_t x = o % g.w, y = (o / g.w) % g.h, i = o / (g.w * g.h);
    const int64_t src = (i * g.H + nearest_src(y, g.H, g.h)) * g.W + nearest_src(x, g.W, g.w);
    const bool labelled = !crop_label || crop_label[src] != kIgnoreLabel;
    const float e = entropy[src];
    low[o] = labelled && (reliable ? e < lo : e <= lo);
    high[o] = labelled && e >= hi;
  }
}

}  // namespace

void entropy_forward_cuda(Context& ctx, TensorView logits, TensorView entropy) {
  const int64_t HW = logits.shape.h() * logits.shape.w(), P = logits.shape.n() * HW;
  entropy_kernel<<<grid_for(ctx, P), kBlock, 0, stream_of(ctx)>>>(P, logits.shape.c(), HW, logits.data, entropy.data);
  CUDA_CHECK_LAUNCH();
}

void masked_percentile_cuda(Context& ctx, TensorView entropy, LabelView labels, double q, Percentile* out) {
  WorkspacePlan w;
  const ValueSort sort(w, entropy.numel());
  char* ws = static_cast<char*>(ctx.workspace(w.bytes()));
  sort.run(ctx, ws, entropy.data, labels.defined() ? labels.data : nullptr);
  percentile_kernel<<<1, 1, 0, stream_of(ctx)>>>(sort.sorted(ws), sort.count(ws), q, out);
  CUDA_CHECK_LAUNCH();
}

void unsup_loss_cuda(Context& ctx, TensorView predict, LabelView target, TensorView teacher_logits,
                     const UnsupOptions& opt, TensorView entropy, LabelView filtered, float dloss,
                     TensorView dpredict, float beta, UnsupResult* out) {
  const PixelGeom g{predict.shape.c(), predict.shape.h() * predict.shape.w(), target.numel()};
  cudaStream_t st = stream_of(ctx);
  const unsigned blocks = grid_for(ctx, g.P);
  // Workspace: [sorted values] [threshold] [CE partials] [first bad, valid] [backward scale].
  WorkspacePlan w;
  const ValueSort sort(w, g.P);
  const size_t o_th = w.add(sizeof(Percentile)), o_part = w.add(blocks * sizeof(CeSum)),
               o_counts = w.add(2 * sizeof(ull)), o_gscale = w.add(sizeof(float));
  char* ws = static_cast<char*>(ctx.workspace(w.bytes()));
  auto* th = reinterpret_cast<Percentile*>(ws + o_th);
  auto* partial = reinterpret_cast<CeSum*>(ws + o_part);
  auto* counts = reinterpret_cast<ull*>(ws + o_counts);  // first bad pixel, valid pixels
  auto* gscale = reinterpret_cast<float*>(ws + o_gscale);

  entropy_forward_cuda(ctx, teacher_logits, entropy);
  sort.run(ctx, ws, entropy.data, target.data);
  percentile_kernel<<<1, 1, 0, st>>>(sort.sorted(ws), sort.count(ws), opt.percent, th);
  CUDA_CHECK_LAUNCH();
  CUDA_CHECK(cudaMemsetAsync(counts, 0xff, sizeof(ull), st));  // kNoPixel
  filter_ce_kernel<<<blocks, kBlock, 0, st>>>(g, predict.data, target.data, entropy.data, th, filtered.data, partial,
                                              counts);
  CUDA_CHECK_LAUNCH();
  unsup_finish_kernel<<<1, kBlock, 0, st>>>(blocks, g.P, partial, th, counts, filtered.data, opt.scale_by_valid,
                                            dloss, counts + 1, gscale, out);
  CUDA_CHECK_LAUNCH();
  if (!dpredict.defined()) return;
  unsup_backward_kernel<<<grid_for(ctx, g.P), kBlock, 0, st>>>(g, predict.data, filtered.data, counts + 1, gscale,
                                                               dpredict.data, beta);
  CUDA_CHECK_LAUNCH();
}

void contrastive_masks_cuda(Context& ctx, LabelView label_l, TensorView entropy_u, LabelView crop_label_u,
                            double alpha_t, LowMaskRule rule, MaskView low, MaskView high, EntropyThresholds* out) {
  cudaStream_t st = stream_of(ctx);
  const int64_t nl = label_l.numel();
  if (nl > 0) {
    labeled_masks_kernel<<<grid_for(ctx, nl), kBlock, 0, st>>>(nl, label_l.data, low.data, high.data);
    CUDA_CHECK_LAUNCH();
  }
  const MaskGeom g{entropy_u.shape[0], entropy_u.shape[1], entropy_u.shape[2], label_l.shape[1], label_l.shape[2]};
  if (g.n == 0) {  // no unlabeled image: the thresholds stay 0
    CUDA_CHECK(cudaMemsetAsync(out, 0, sizeof(EntropyThresholds), st));
    return;
  }
  WorkspacePlan w;
  const ValueSort sort(w, entropy_u.numel());
  char* ws = static_cast<char*>(ctx.workspace(w.bytes()));
  sort.run(ctx, ws, entropy_u.data, crop_label_u.defined() ? crop_label_u.data : nullptr);
  const bool reliable = rule == LowMaskRule::Reliable;
  thresholds_kernel<<<1, 1, 0, st>>>(sort.sorted(ws), sort.count(ws), 100.0 - alpha_t, alpha_t, reliable, out);
  CUDA_CHECK_LAUNCH();
  const int64_t off = nl;  // the unlabeled images follow the labeled ones in low and high
  unlabeled_masks_kernel<<<grid_for(ctx, g.n * g.h * g.w), kBlock, 0, st>>>(
      g, entropy_u.data, crop_label_u.defined() ? crop_label_u.data : nullptr, out, reliable, low.data + off,
      high.data + off);
  CUDA_CHECK_LAUNCH();
}

}  // namespace u2pl
