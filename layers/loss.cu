// Softmax, cross-entropy and OHEM selection on CUDA over the per-pixel math of
// layers/loss_math.h. Must match F.softmax(dim=1), nn.CrossEntropyLoss(ignore_index) and the
// public code's ProbOhemCrossEntropy2d. The loss sum is a fixed-order double reduction (two
// kernels, no float atomics); the OHEM order statistic comes from a CUB radix sort. Covered by
// tests/test_cuda_parity.cpp ("softmax", "cross-entropy", "ohem").
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
  int bad_label;
};
struct CeCombine {
  __device__ CeStats operator()(const CeStats& a, const CeStats& b) const {
    return {a.sum + b.sum, a.valid + b.valid, a.bad + b.bad,
            a.first_bad < b.first_bad ? a.first_bad : b.first_bad, 0};
  }
};

// logits (N, C, HW), labels (P); partial[blockIdx.x] = this block's CeStats.
__global__ void ce_partial_kernel(PixelGeom g, const float* logits, const int32_t* labels, int ignore,
                                  CeStats* partial) {
  CeStats acc{0.0, 0, 0, g.P, 0};
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

// One block: *total = the blocks' partials combined in a fixed order, with the first bad label.
__global__ void ce_total_kernel(int64_t blocks, PixelGeom g, const CeStats* partial,
                                const int32_t* labels, CeStats* total) {
  CeStats acc{0.0, 0, 0, g.P, 0};
  for (int64_t b = threadIdx.x; b < blocks; b += blockDim.x) acc = CeCombine{}(acc, partial[b]);
  acc = block_reduce(acc, CeCombine{});
  if (threadIdx.x == 0) {
    acc.bad_label = acc.bad ? labels[acc.first_bad] : 0;
    *total = acc;
  }
}

[[noreturn]] void throw_bad_label(long long at, int label, int64_t C, int ignore) {
  U2PL_FAIL("cross-entropy: label " << label << " at pixel " << at << " is outside [0, " << C
                                    << ") and is not the ignore index " << ignore);
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

// *threshold = max(thresh, sorted[min_kept − 1]) with std::max's rule, as the CPU code.
__global__ void ohem_threshold_kernel(const float* sorted, int64_t min_kept, float thresh, float* threshold) {
  const float kth = sorted[min_kept - 1];
  *threshold = thresh < kth ? kth : thresh;
}

// kept (P) = labels where p_gt ≤ threshold (every valid pixel when !select), else ignore.
__global__ void ohem_keep_kernel(int64_t P, const int32_t* labels, const float* pgt, bool select,
                                 const float* threshold, int ignore, int32_t* kept) {
  const float thr = select ? *threshold : 0.0f;
  for (int64_t k = grid_start(); k < P; k += grid_step()) {
    const int label = labels[k];
    kept[k] = (label != ignore && (!select || pgt[k] <= thr)) ? label : ignore;
  }
}

size_t align256(size_t bytes) { return (bytes + 255) / 256 * 256; }

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

CeResult cross_entropy_forward_cuda(Context& ctx, TensorView logits, LabelView labels, int ignore) {
  const PixelGeom g = pixel_geom(logits.shape);
  const unsigned blocks = grid_for(ctx, g.P);
  auto* partial = static_cast<CeStats*>(ctx.workspace((blocks + 1) * sizeof(CeStats)));
  CeStats* total = partial + blocks;
  ce_partial_kernel<<<blocks, kBlock, 0, stream_of(ctx)>>>(g, logits.data, labels.data, ignore, partial);
  CUDA_CHECK_LAUNCH();
  ce_total_kernel<<<1, kBlock, 0, stream_of(ctx)>>>(blocks, g, partial, labels.data, total);
  CUDA_CHECK_LAUNCH();
  CeStats r;
  CUDA_CHECK(cudaMemcpyAsync(&r, total, sizeof(CeStats), cudaMemcpyDeviceToHost, stream_of(ctx)));
  CUDA_CHECK(cudaStreamSynchronize(stream_of(ctx)));
  if (r.bad) throw_bad_label(r.first_bad, r.bad_label, g.C, ignore);
  return {r.valid ? static_cast<float>(r.sum / static_cast<double>(r.valid)) : 0.f,
          static_cast<int64_t>(r.valid)};
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

void ohem_select_cuda(Context& ctx, TensorView logits, LabelView labels, float thresh,
                      int64_t min_kept, LabelView kept, int ignore) {
  const PixelGeom g = pixel_geom(logits.shape);
  U2PL_CHECK(g.P < (int64_t(1) << 31), "ohem: " << g.P << " pixels exceed the sort's int range");
  cudaStream_t st = stream_of(ctx);
  const int items = static_cast<int>(g.P);
  size_t sort_bytes = 0;
  CUDA_CHECK(cub::DeviceRadixSort::SortKeys(nullptr, sort_bytes, static_cast<const float*>(nullptr),
                                            static_cast<float*>(nullptr), items, 0, 32, st));
  // Workspace: [counts (2 words) | threshold] [pgt (P)] [sorted pgt (P)] [sort scratch].
  const size_t head = 256, vec = align256(static_cast<size_t>(g.P) * sizeof(float));
  char* ws = static_cast<char*>(ctx.workspace(head + 2 * vec + sort_bytes));
  auto* counts = reinterpret_cast<unsigned long long*>(ws);
  float* threshold = reinterpret_cast<float*>(ws + 2 * sizeof(unsigned long long));
  float* pgt = reinterpret_cast<float*>(ws + head);
  float* sorted = reinterpret_cast<float*>(ws + head + vec);
  void* sort_tmp = ws + head + 2 * vec;

  count_labels(ctx, g, labels.data, ignore, counts);
  ohem_prob_kernel<<<grid_for(ctx, g.P), kBlock, 0, st>>>(g, logits.data, labels.data, ignore, pgt);
  CUDA_CHECK_LAUNCH();
  unsigned long long host[2];
  CUDA_CHECK(cudaMemcpyAsync(host, counts, sizeof(host), cudaMemcpyDeviceToHost, st));
  CUDA_CHECK(cudaStreamSynchronize(st));
  if (host[1] != ~0ull) {
    int32_t label = 0;
    CUDA_CHECK(cudaMemcpyAsync(&label, labels.data + host[1], sizeof(label), cudaMemcpyDeviceToHost, st));
    CUDA_CHECK(cudaStreamSynchronize(st));
    throw_bad_label(static_cast<long long>(host[1]), label, g.C, ignore);
  }
  const int64_t valid = static_cast<int64_t>(host[0]);
  const bool select = min_kept > 0 && valid > 0 && min_kept <= valid;
  if (select) {
    CUDA_CHECK(cub::DeviceRadixSort::SortKeys(sort_tmp, sort_bytes, pgt, sorted, items, 0, 32, st));
    ohem_threshold_kernel<<<1, 1, 0, st>>>(sorted, min_kept, thresh, threshold);
    CUDA_CHECK_LAUNCH();
  }
  ohem_keep_kernel<<<grid_for(ctx, g.P), kBlock, 0, st>>>(g.P, labels.data, pgt, select, threshold,
                                                           ignore, kept.data);
  CUDA_CHECK_LAUNCH();
}

}  // namespace u2pl
