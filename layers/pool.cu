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

// x (planes, H, W) -> y (planes, OH, OW).
__global__ void maxpool_forward_kernel(int64_t planes, PoolGeom g, const float* x, float* y) {
  const int32_t OW = int32_t(g.OW), n = int32_t(g.OH * g.OW);
  for (int64_t p = blockIdx.y; p < planes; p += gridDim.y) {
    const float* plane = x + p * g.H * g.W;
    float* out = y + p * n;
    for (int32_t o = plane_start(); o < n; o += plane_step()) {
      const int32_t oh = o / OW, ow = o - oh * OW;
      const PoolWindow win = pool_window(oh, ow, g.k, g.stride, g.pad, g.H, g.W);
      out[o] = plane[pool_argmax(plane, g.W, win)];
    }
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

// x, dx (planes, H, W), dy (planes, OH, OW). Each input pixel sums dy over the windows whose
// first maximum (pool_argmax, as in the forward) it is, in the CPU's row-major window order,
// starting from beta·dx.
__global__ void maxpool_backward_kernel(int64_t planes, PoolGeom g, const float* x, const float* dy,
                                        float* dx, float beta) {
  const int32_t W = int32_t(g.W), n = int32_t(g.H * g.W);
  for (int64_t p = blockIdx.y; p < planes; p += gridDim.y) {
    const float* plane = x + p * n;
    const float* dplane = dy + p * g.OH * g.OW;
    float* dxp = dx + p * n;
    for (int32_t idx = plane_start(); idx < n; idx += plane_step()) {
      const int32_t h = idx / W, w = idx - h * W;
      float acc = blend(0.0f, dxp[idx], beta);
      const int64_t oh1 = last_window(h, g.stride, g.pad, g.OH), ow1 = last_window(w, g.stride, g.pad, g.OW);
      for (int64_t oh = first_window(h, g.k, g.stride, g.pad); oh <= oh1; ++oh)
        for (int64_t ow = first_window(w, g.k, g.stride, g.pad); ow <= ow1; ++ow) {
          const PoolWindow win = pool_window(oh, ow, g.k, g.stride, g.pad, g.H, g.W);
          if (pool_argmax(plane, g.W, win) == int64_t(idx)) acc += dplane[oh * g.OW + ow];
        }
      dxp[idx] = acc;
    }
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

// dy (planes), dx (planes, HW).
__global__ void gap_backward_kernel(int64_t planes, int32_t HW, const float* dy, float* dx, float beta) {
  for (int64_t p = blockIdx.y; p < planes; p += gridDim.y) {
    const float g = dy[p] / static_cast<float>(HW);
    float* dxp = dx + p * HW;
    for (int32_t i = plane_start(); i < HW; i += plane_step()) dxp[i] = blend(g, dxp[i], beta);
  }
}

}  // namespace

void maxpool_forward_cuda(Context& ctx, const MaxPoolSpec& s, TensorView x, TensorView y) {
  const PoolGeom g = pool_geom(s, x.shape);
  const int64_t planes = x.shape.n() * x.shape.c();
  if (planes * g.OH * g.OW == 0) return;
  maxpool_forward_kernel<<<plane_grid(ctx, planes, g.OH * g.OW), kBlock, 0, stream_of(ctx)>>>(planes, g, x.data,
                                                                                              y.data);
  CUDA_CHECK_LAUNCH();
}

void maxpool_backward_cuda(Context& ctx, const MaxPoolSpec& s, TensorView x, TensorView dy,
                           TensorView dx, float beta) {
  const PoolGeom g = pool_geom(s, x.shape);
  const int64_t planes = x.shape.n() * x.shape.c();
  if (planes * g.H * g.W == 0) return;
  maxpool_backward_kernel<<<plane_grid(ctx, planes, g.H * g.W), kBlock, 0, stream_of(ctx)>>>(planes, g, x.data,
                                                                                             dy.data, dx.data, beta);
  CUDA_CHECK_LAUNCH();
}

void global_avgpool_forward_cuda(Context& ctx, TensorView x, TensorView y) {
  const int64_t planes = x.shape.n() * x.shape.c(), HW = x.shape.h() * x.shape.w();
  gap_forward_kernel<<<blocks_for(ctx, planes), kBlock, 0, stream_of(ctx)>>>(planes, HW, x.data, y.data);
  CUDA_CHECK_LAUNCH();
}

void global_avgpool_backward_cuda(Context& ctx, TensorView dy, TensorView dx, float beta) {
  const int64_t planes = dx.shape.n() * dx.shape.c(), HW = dx.shape.h() * dx.shape.w();
  if (planes * HW == 0) return;
  gap_backward_kernel<<<plane_grid(ctx, planes, HW), kBlock, 0, stream_of(ctx)>>>(planes, int32_t(HW), dy.data,
                                                                                  dx.data, beta);
  CUDA_CHECK_LAUNCH();
}

}  // namespace u2pl
