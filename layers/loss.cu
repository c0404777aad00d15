// Softmax, cross-entropy and OHEM selection on CUDA over the per-pixel math of
// layers/loss_math.h. Must match F.softmax(dim=1), nn.CrossEntropyLoss(ignore_index) and the
// public code's ProbOhemCrossEntropy2d. The loss sum is a fixed-order double reduction (two
// kernels, no float atomics) whose last thread writes the figures to device memory; the OHEM
// order statistic comes from a CUB radix sort and the select decision stays on the device.
// Covered by tests/test_cuda_layers.cpp ("softmax", "cross-entropy", "ohem", device variants).
#include <cub/device/device_radix_sort.cuh>

#include "engine/cuda/launch.cuh"
#include "layers/loss.h"
#include "layers/loss_math.h"

namespace u2pl {
namespace {

struct PixelGeom {
  int64_t C, HW, P;  // channels, pixels per image, pixels in all
};

PixelGeom pixel_geom(Shape s) { return {s.c(), s.h() * s.w(), s.n() * s.h() * s.w()}; }

// Offset of channel 0 of pixel k in an (N, C, HW) tensor.
__device__ int64_t pixel_base(const PixelGeom& g, int64_t k) { return (k / g.HW) * g.C * g.HW + k % g.HW; }

// x, y (N, C, HW); one thread per pixel.
__global__ void softmax_forward_kernel(PixelGeom g, const float* x, float* y) {
  for (int64_t k = grid_start(); k < g.P; k += grid_step()) {
    const int64_t base = pixel_base(g, k);
    const PixelSoftmax<float> sm = pixel_softmax(x + base, g.C, g.HW);
    for (int64_t c = 0; c < g.C; ++c) y[base + c * g.HW] = pixel_prob(x + base, g.HW, sm, int(c));
  }
}

// x (N, C, HW), labels (N, HW); one thread per pixel.
__global__ void argmax_kernel(PixelGeom g, const float* x, int32_t* labels) {
  for (int64_t k = grid_start(); k < g.P; k += grid_step()) labels[k] = pixel_argmax(x + pixel_base(g, k), g.C, g.HW);
}

// y, dy, dx (N, C, HW): dx = beta·dx + y ⊙ (dy − Σ_c y·dy).
__global__ void softmax_backward_kernel(PixelGeom g, const float* y, const float* dy, float* dx, float beta) {
  for (int64_t k = grid_start(); k < g.P; k += grid_step()) {
    const int64_t base = pixel_base(g, k);
    float dot = 0;
    for (int64_t c = 0; c < g.C; ++c) dot += y[base + c * g.HW] * dy[base + c * g.HW];
    for (int64_t c = 0; c < g.C; ++c) {
      const int64_t j = base + c * g.HW;
      dx[j] = blend(y[j] * (dy[j] - dot), dx[j], beta);
    }
  }
}

// Cross-entropy partial sums. Trivial (shared memory); `first_bad` is P when no label is bad.
struct CeStats {
  double sum;
  long long valid, bad, first_bad;
};
struct CeCombine {
  __device__ CeStats operator()(const CeStats& a, const CeStats& b) const {
    return {a.sum + b.sum, a.valid + b.valid, a.bad + b.bad, a.first_bad < b.first_bad ? a.first_bad : b.first_bad};
  }
};

// logits (N, C, HW), labels (P); partial[blockIdx.x] = this block's CeStats.
__global__ void ce_partial_kernel(PixelGeom g, const float* logits, const int32_t* labels, int ignore,
                                  CeStats* partial) {
  CeStats acc{0.0, 0, 0, g.P};
  for (int64_t k = grid_start(); k < g.P; k += grid_step()) {
    const int label = labels[k];
    if (!label_ok(label, int(g.C), ignore)) {
      ++acc.bad;
      acc.first_bad = k < acc.first_bad ? k : acc.first_bad;
    } else if (label != ignore) {
      const float* px = logits + pixel_base(g, k);
      acc.sum += static_cast<double>(pixel_ce(px, g.HW, pixel_softmax(px, g.C, g.HW), label));
      ++acc.valid;
    }
  }
  acc = block_reduce(acc, CeCombine{});
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// One block: the blocks' partials combined in a fixed order, then *out = the mean (the CPU's
// float(sum / valid), 0 when none is valid), the count and the first bad label.
__global__ void ce_total_kernel(int64_t blocks, PixelGeom g, const CeStats* partial, const int32_t* labels,
                                CeResult* out) {
  CeStats acc{0.0, 0, 0, g.P};
  for (int64_t b = threadIdx.x; b < blocks; b += blockDim.x) acc = CeCombine{}(acc, partial[b]);
  acc = block_reduce(acc, CeCombine{});
  if (threadIdx.x != 0) return;
  CeResult r;
  r.valid = static_cast<int64_t>(acc.valid);
  r.loss = acc.valid ? static_cast<float>(acc.sum / static_cast<double>(acc.valid)) : 0.f;
  if (acc.bad) {
    r.bad_pixel = static_cast<int64_t>(acc.first_bad);
    r.bad_label = labels[acc.first_bad];
  }
  *out = r;
}

// *out = ce_heads(*main, aux, ...): one thread.
__global__ void ce_heads_kernel(const CeResult* main, const CeResult* aux, float aux_weight, int C, int ignore,
                                CeHeadsResult* out) {
  *out = ce_heads(*main, aux, aux_weight, C, ignore);
}

// labels (P): *valid += #pixels not ignored (integer atomics: exact, order-free), bad labels
// included as in the CPU backward; *first_bad = min index of a label outside [0, C) ∪ {ignore}.
__global__ void count_labels_kernel(PixelGeom g, const int32_t* labels, int ignore,
                                    unsigned long long* valid, unsigned long long* first_bad) {
  unsigned long long n = 0, bad = ~0ull;
  for (int64_t k = grid_start(); k < g.P; k += grid_step()) {
    const int label = labels[k];
    if (!label_ok(label, int(g.C), ignore)) bad = static_cast<unsigned long long>(k) < bad ? k : bad;
    if (label != ignore) ++n;
  }
  n = block_sum(n);
  if (threadIdx.x == 0) atomicAdd(valid, n);
  if (bad != ~0ull) atomicMin(first_bad, bad);
}

// logits, dlogits (N, C, HW), labels (P): dlogits = beta·dlogits + dloss·(softmax − onehot)/valid.
__global__ void ce_backward_kernel(PixelGeom g, const float* logits, const int32_t* labels, int ignore,
                                   const unsigned long long* valid_count, float dloss, float* dlogits,
                                   float beta) {
  const unsigned long long valid = *valid_count;
  const float scale = valid ? dloss / static_cast<float>(valid) : 0.0f;
  for (int64_t k = grid_start(); k < g.P; k += grid_step()) {
    const int64_t base = pixel_base(g, k);
    const int label = labels[k];
    const bool on = label != ignore && valid > 0;
    const PixelSoftmax<float> sm = pixel_softmax(logits + base, g.C, g.HW);
    for (int64_t c = 0; c < g.C; ++c) {
      const float gr = on ? scale * (pixel_prob(logits + base, g.HW, sm, int(c)) - float(c == label)) : 0.0f;
      dlogits[base + c * g.HW] = blend(gr, dlogits[base + c * g.HW], beta);
    }
  }
}

// pgt (P) = softmax probability of the label, 1 for ignored (and bad) pixels.
__global__ void ohem_prob_kernel(PixelGeom g, const float* logits, const int32_t* labels, int ignore,
                                 float* pgt) {
  for (int64_t k = grid_start(); k < g.P; k += grid_step()) {
    const int label = labels[k];
    float p = 1.0f;
    if (label != ignore && label_ok(label, int(g.C), ignore)) {
      const float* px = logits + pixel_base(g, k);
      p = pixel_prob(px, g.HW, pixel_softmax(px, g.C, g.HW), label);
    }
    pgt[k] = p;
  }
}

// The OHEM cut: select and, when selecting, the threshold p_gt is compared with.
struct OhemCut {
  float threshold;
  int select;
};

// select = min_kept > 0 && valid > 0 && min_kept ≤ valid with valid = *valid_count (the CPU's
// rule); then threshold = max(thresh, sorted[min_kept − 1]) with std::max's rule. `sorted` is
// only read when selecting, which implies min_kept ≤ valid ≤ P. One thread.
__global__ void ohem_threshold_kernel(const float* sorted, const unsigned long long* valid_count, int64_t min_kept,
                                      float thresh, OhemCut* cut) {
  const unsigned long long valid = *valid_count;
  const bool select = min_kept > 0 && valid > 0 && static_cast<unsigned long long>(min_kept) <= valid;
  float threshold = 0.0f;
  if (select) {
    const float kth = sorted[min_kept - 1];
    threshold = thresh < kth ? kth : thresh;
  }
  *cut = OhemCut{threshold, select ? 1 : 0};
}

// kept (P) = labels where p_gt ≤ threshold (every valid pixel when !select), else ignore; a label
// outside [0, C) ∪ {ignore} is copied unchanged, so that the cross-entropy on kept reports it.
__global__ void ohem_keep_kernel(PixelGeom g, const int32_t* labels, const float* pgt, const OhemCut* cut,
                                 int ignore, int32_t* kept) {
  const bool select = cut->select != 0;
  const float thr = cut->threshold;
  for (int64_t k = grid_start(); k < g.P; k += grid_step()) {
    const int label = labels[k];
    const bool keep = !label_ok(label, int(g.C), ignore) || (label != ignore && (!select || pgt[k] <= thr));
    kept[k] = keep ? label : ignore;
  }
}

// Valid-pixel count and first bad label index on device (two words at `counts`).
void count_labels(Context& ctx, const PixelGeom& g, const int32_t* labels, int ignore,
                  unsigned long long* counts) {
  CUDA_CHECK(cudaMemsetAsync(counts, 0, sizeof(unsigned long long), stream_of(ctx)));
  CUDA_CHECK(cudaMemsetAsync(counts + 1, 0xff, sizeof(unsigned long long), stream_of(ctx)));
  count_labels_kernel<<<grid_for(ctx, g.P), kBlock, 0, stream_of(ctx)>>>(g, labels, ignore, counts,
                                                                          counts + 1);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void argmax_channels_cuda(Context& ctx, TensorView x, LabelView labels) {
  const PixelGeom g = pixel_geom(x.shape);
  argmax_kernel<<<grid_for(ctx, g.P), kBlock, 0, stream_of(ctx)>>>(g, x.data, labels.data);
  CUDA_CHECK_LAUNCH();
}

void softmax_forward_cuda(Context& ctx, TensorView x, TensorView y) {
  const PixelGeom g = pixel_geom(x.shape);
  softmax_forward_kernel<<<grid_for(ctx, g.P), kBlock, 0, stream_of(ctx)>>>(g, x.data, y.data);
  CUDA_CHECK_LAUNCH();
}

void softmax_backward_cuda(Context& ctx, TensorView y, TensorView dy, TensorView dx, float beta) {
  const PixelGeom g = pixel_geom(y.shape);
  softmax_backward_kernel<<<grid_for(ctx, g.P), kBlock, 0, stream_of(ctx)>>>(g, y.data, dy.data, dx.data, beta);
  CUDA_CHECK_LAUNCH();
}

void cross_entropy_forward_cuda(Context& ctx, TensorView logits, LabelView labels, int ignore, CeResult* out) {
  const PixelGeom g = pixel_geom(logits.shape);
  const unsigned blocks = grid_for(ctx, g.P);
  auto* partial = static_cast<CeStats*>(ctx.workspace(blocks * sizeof(CeStats)));
  ce_partial_kernel<<<blocks, kBlock, 0, stream_of(ctx)>>>(g, logits.data, labels.data, ignore, partial);
  CUDA_CHECK_LAUNCH();
  ce_total_kernel<<<1, kBlock, 0, stream_of(ctx)>>>(blocks, g, partial, labels.data, out);
  CUDA_CHECK_LAUNCH();
}

CeResult cross_entropy_forward_cuda(Context& ctx, TensorView logits, LabelView labels, int ignore) {
  const PixelGeom g = pixel_geom(logits.shape);
  const unsigned blocks = grid_for(ctx, g.P);
  // Workspace: [partials (blocks)] [the result]; sized here so the queued call does not grow it.
  WorkspacePlan plan;
  plan.add(blocks * sizeof(CeStats));
  const size_t at = plan.add(sizeof(CeResult));
  auto* slot = reinterpret_cast<CeResult*>(static_cast<char*>(ctx.workspace(plan.bytes())) + at);
  cross_entropy_forward_cuda(ctx, logits, labels, ignore, slot);
  CeResult r;
  CUDA_CHECK(cudaMemcpyAsync(&r, slot, sizeof(CeResult), cudaMemcpyDeviceToHost, stream_of(ctx)));
  CUDA_CHECK(cudaStreamSynchronize(stream_of(ctx)));
  r.check(int(g.C), ignore);
  return r;
}

void cross_entropy_heads_cuda(Context& ctx, const CeResult* main, const CeResult* aux, float aux_weight, int C,
                              int ignore, CeHeadsResult* out) {
  ce_heads_kernel<<<1, 1, 0, stream_of(ctx)>>>(main, aux, aux_weight, C, ignore, out);
  CUDA_CHECK_LAUNCH();
}

void cross_entropy_backward_cuda(Context& ctx, TensorView logits, LabelView labels, int ignore,
                                 float dloss, TensorView dlogits, float beta) {
  const PixelGeom g = pixel_geom(logits.shape);
  auto* counts = static_cast<unsigned long long*>(ctx.workspace(2 * sizeof(unsigned long long)));
  count_labels(ctx, g, labels.data, ignore, counts);
  ce_backward_kernel<<<grid_for(ctx, g.P), kBlock, 0, stream_of(ctx)>>>(g, logits.data, labels.data, ignore,
                                                                         counts, dloss, dlogits.data, beta);
  CUDA_CHECK_LAUNCH();
}

void check_labels_cuda(Context& ctx, LabelView labels, int C, int ignore) {
  const PixelGeom g{C, labels.shape[1] * labels.shape[2], labels.numel()};
  auto* counts = static_cast<unsigned long long*>(ctx.workspace(2 * sizeof(unsigned long long)));
  count_labels(ctx, g, labels.data, ignore, counts);
  unsigned long long first_bad = kNoPixel;
  CUDA_CHECK(cudaMemcpyAsync(&first_bad, counts + 1, sizeof(first_bad), cudaMemcpyDeviceToHost, stream_of(ctx)));
  CUDA_CHECK(cudaStreamSynchronize(stream_of(ctx)));
  if (first_bad == kNoPixel) return;
  CeResult r;
  r.bad_pixel = static_cast<int64_t>(first_bad);
  CUDA_CHECK(cudaMemcpyAsync(&r.bad_label, labels.data + first_bad, sizeof(int32_t), cudaMemcpyDeviceToHost,
                             stream_of(ctx)));
  CUDA_CHECK(cudaStreamSynchronize(stream_of(ctx)));
  r.check(C, ignore);
}

void ohem_select_cuda(Context& ctx, TensorView logits, LabelView labels, float thresh,
                      int64_t min_kept, LabelView kept, int ignore) {
  const PixelGeom g = pixel_geom(logits.shape);
  U2PL_CHECK(g.P < (int64_t(1) << 31), "ohem: " << g.P << " pixels exceed the sort's int range");
  cudaStream_t st = stream_of(ctx);
  const int items = static_cast<int>(g.P);
  size_t sort_bytes = 0;
  CUDA_CHECK(cub::DeviceRadixSort::SortKeys(nullptr, sort_bytes, static_cast<const float*>(nullptr),
                                            static_cast<float*>(nullptr), items, 0, 32, st));
  // Workspace: [counts (2 words)] [cut] [pgt (P)] [sorted pgt (P)] [sort scratch].
  WorkspacePlan plan;
  const size_t at_counts = plan.add(2 * sizeof(unsigned long long)), at_cut = plan.add(sizeof(OhemCut));
  const size_t at_pgt = plan.add(static_cast<size_t>(g.P) * sizeof(float));
  const size_t at_sorted = plan.add(static_cast<size_t>(g.P) * sizeof(float)), at_tmp = plan.add(sort_bytes);
  char* ws = static_cast<char*>(ctx.workspace(plan.bytes()));
  auto* counts = reinterpret_cast<unsigned long long*>(ws + at_counts);
  auto* cut = reinterpret_cast<OhemCut*>(ws + at_cut);
  float* pgt = reinterpret_cast<float*>(ws + at_pgt);
  float* sorted = reinterpret_cast<float*>(ws + at_sorted);

  count_labels(ctx, g, labels.data, ignore, counts);
  ohem_prob_kernel<<<grid_for(ctx, g.P), kBlock, 0, st>>>(g, logits.data, labels.data, ignore, pgt);
  CUDA_CHECK_LAUNCH();
  // Whether to select depends on the valid count, which stays on the device: sort whenever
  // selecting is possible at all (1 ≤ min_kept ≤ P) and let the threshold kernel decide.
  if (min_kept > 0 && min_kept <= g.P)
    CUDA_CHECK(cub::DeviceRadixSort::SortKeys(ws + at_tmp, sort_bytes, pgt, sorted, items, 0, 32, st));
  ohem_threshold_kernel<<<1, 1, 0, st>>>(sorted, counts, min_kept, thresh, cut);
  CUDA_CHECK_LAUNCH();
  ohem_keep_kernel<<<grid_for(ctx, g.P), kBlock, 0, st>>>(g, labels.data, pgt, cut, ignore, kept.data);
  CUDA_CHECK_LAUNCH();
}

}  // namespace u2pl
