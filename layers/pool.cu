// MaxPool2d (ceil mode included) and global average pooling on CUDA, own kernels over the shared
// window math of layers/pool_math.h (cuDNN pooling has no ceil mode). Must match nn.MaxPool2d and
// nn.AdaptiveAvgPool2d(1). Backward gathers per input pixel: deterministic, no atomics. Covered
// by tests/test_cuda_layers.cpp ("maxpool", "global average pool").
#include "engine/cuda/launch.cuh"
#include "engine/math.h"
#include "layers/pool.h"
#include "layers/pool_math.h"

namespace u2pl {
namespace {

struct PoolGeom {
  int k, stride, pad;
  int64_t H, W, OH, OW;
};

PoolGeom pool_geom(const MaxPoolSpec& s, Shape xs) {
  const Shape ys = maxpool_out_shape(s, xs);
  return {s.k, s.stride, s.pad, xs.h(), xs.w(), ys.h(), ys.w()};
}

// x (planes, H, W) -> y (planes, OH, OW); n = planes·OH·OW.
__global__ void maxpool_forward_kernel(int64_t n, PoolGeom g, const float* x, float* y) {
  for (int64_t o = grid_start(); o < n; o += grid_step()) {
    const int64_t ow = o % g.OW, oh = (o / g.OW) % g.OH, p = o / (g.OW * g.OH);
    const float* plane = x + p * g.H * g.W;
    const PoolWindow win = pool_window(oh, ow, g.k, g.stride, g.pad, g.H, g.W);
    y[o] = plane[pool_argmax(plane, g.W, win)];
  }
}

// Output indices whose window [o·stride − pad, o·stride − pad + k) contains input index i:
// o ∈ [ceil((i + pad − k + 1) / stride), floor((i + pad) / stride)] ∩ [0, out).
__device__ int64_t first_window(int64_t i, int k, int stride, int pad) {
  const int64_t a = i + pad - k + 1;
  return a <= 0 ? 0 : (a + stride - 1) / stride;
}
__device__ int64_t last_window(int64_t i, int stride, int pad, int64_t out) {
  const int64_t b = (i + pad) / stride;
  return b < out - 1 ? b : out - 1;
}

// x, dx (planes, H, W), dy (planes, OH, OW); n = planes·H·W. Each input pixel sums dy over the
// windows whose first maximum (pool_argmax, as in the forward) it is, in the CPU's row-major
// window order, starting from beta·dx.
__global__ void maxpool_backward_kernel(int64_t n, PoolGeom g, const float* x, const float* dy,
                                        float* dx, float beta) {
  for (int64_t idx = grid_start(); idx < n; idx += grid_step()) {
    const int64_t w = idx % g.W, h = (idx / g.W) % g.H, p = idx / (g.W * g.H);
    const float* plane = x + p * g.H * g.W;
    const float* dplane = dy + p * g.OH * g.OW;
    float acc = blend(0.0f, dx[idx], beta);
    const int64_t oh1 = last_window(h, g.stride, g.pad, g.OH), ow1 = last_window(w, g.stride, g.pad, g.OW);
    for (int64_t oh = first_window(h, g.k, g.stride, g.pad); oh <= oh1; ++oh)
      for (int64_t ow = first_window(w, g.k, g.stride, g.pad); ow <= ow1; ++ow) {
        const PoolWindow win = pool_window(oh, ow, g.k, g.stride, g.pad, g.H, g.W);
        if (pool_argmax(plane, g.W, win) == h * g.W + w) acc += dplane[oh * g.OW + ow];
      }
    dx[idx] = acc;
  }
}

// x (planes, HW) -> y (planes): one block per plane, summed in double as the CPU oracle does.
__global__ void gap_forward_kernel(int64_t planes, int64_t HW, const float* x, float* y) {
  for (int64_t p = blockIdx.x; p < planes; p += gridDim.x) {
    double acc = 0;
    for (int64_t i = threadIdx.x; i < HW; i += blockDim.x) acc += x[p * HW + i];
    acc = block_sum(acc);
    if (threadIdx.x == 0) y[p] = static_cast<float>(acc / static_cast<double>(HW));
  }
}

// dy (planes), dx (planes, HW); n = planes·HW.
__global__ void gap_backward_kernel(int64_t n, int64_t HW, const float* dy, float* dx, float beta) {
  for (int64_t i = grid_start(); i < n; i += grid_step())
    dx[i] = blend(dy[i / HW] / static_cast<float>(HW), dx[i], beta);
}

}  // namespace

void maxpool_forward_cuda(Context& ctx, const MaxPoolSpec& s, TensorView x, TensorView y) {
  const PoolGeom g = pool_geom(s, x.shape);
  const int64_t n = y.numel();
  maxpool_forward_kernel<<<grid_for(ctx, n), kBlock, 0, stream_of(ctx)>>>(n, g, x.data, y.data);
  CUDA_CHECK_LAUNCH();
}

void maxpool_backward_cuda(Context& ctx, const MaxPoolSpec& s, TensorView x, TensorView dy,
                           TensorView dx, float beta) {
  const PoolGeom g = pool_geom(s, x.shape);
  const int64_t n = dx.numel();
  maxpool_backward_kernel<<<grid_for(ctx, n), kBlock, 0, stream_of(ctx)>>>(n, g, x.data, dy.data,
                                                                            dx.data, beta);
  CUDA_CHECK_LAUNCH();
}

void global_avgpool_forward_cuda(Context& ctx, TensorView x, TensorView y) {
  const int64_t planes = x.shape.n() * x.shape.c(), HW = x.shape.h() * x.shape.w();
  gap_forward_kernel<<<blocks_for(ctx, planes), kBlock, 0, stream_of(ctx)>>>(planes, HW, x.data, y.data);
  CUDA_CHECK_LAUNCH();
}

void global_avgpool_backward_cuda(Context& ctx, TensorView dy, TensorView dx, float beta) {
  const int64_t n = dx.numel(), HW = dx.shape.h() * dx.shape.w();
  gap_backward_kernel<<<grid_for(ctx, n), kBlock, 0, stream_of(ctx)>>>(n, HW, dy.data, dx.data, beta);
  CUDA_CHECK_LAUNCH();
}

}  // namespace u2pl
