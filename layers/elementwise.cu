// ReLU, add, gradient accumulation, Dropout2d and the EMA update on CUDA: grid-stride kernels (the
// channel scale over a plane grid) around the shared functors of engine/math.h. Must match
// torch.relu, a + b and nn.Dropout2d(p) with the mask given. Covered by tests/test_cuda_layers.cpp
// ("relu, add, accumulate", "dropout2d").
#include "engine/cuda/launch.cuh"
#include "engine/math.h"
#include "engine/rng.h"
#include "layers/elementwise.h"

namespace u2pl {
namespace {

// x, y (n); y may alias x.
__global__ void relu_forward_kernel(int64_t n, const float* x, float* y) {
  const ReluForward f;
  for (int64_t i = grid_start(); i < n; i += grid_step()) y[i] = f(x[i]);
}

// y, dy, dx (n)
__global__ void relu_backward_kernel(int64_t n, const float* y, const float* dy, float* dx, float beta) {
  const ReluBackward f;
  for (int64_t i = grid_start(); i < n; i += grid_step()) dx[i] = blend(f(y[i], dy[i]), dx[i], beta);
}

// a, b, y (n); y may alias a or b.
__global__ void add_kernel(int64_t n, const float* a, const float* b, float* y) {
  for (int64_t i = grid_start(); i < n; i += grid_step()) y[i] = a[i] + b[i];
}

// dy, dx (n)
__global__ void accumulate_kernel(int64_t n, const float* dy, float* dx, float beta) {
  for (int64_t i = grid_start(); i < n; i += grid_step()) dx[i] = blend(dy[i], dx[i], beta);
}

// scale (n = N·C): channel k's keep-scale from word k of the Philox stream (seed, offset).
__global__ void dropout_scale_kernel(int64_t n, float p, uint64_t seed, uint64_t offset, uint64_t first,
                                     float* scale) {
  for (int64_t k = grid_start(); k < n; k += grid_step())
    scale[k] = dropout_scale(philox_uniform(seed, offset, first + static_cast<uint64_t>(k)), p);
}

// x, y (N·C planes of HW); scale (N·C). y = x·scale + beta·y; y may alias x.
__global__ void channel_scale_kernel(int64_t planes, int32_t HW, const float* x, const float* scale, float* y,
                                     float beta) {
  for (int64_t p = blockIdx.y; p < planes; p += gridDim.y) {
    const float s = scale[p];
    const int64_t o = p * HW;
    for (int32_t i = plane_start(); i < HW; i += plane_step()) y[o + i] = blend(x[o + i] * s, y[o + i], beta);
  }
}

// t, s (n): the EMA teacher update.
__global__ void ema_kernel(int64_t n, float ema, float* t, const float* s) {
  const EmaUpdate f{ema};
  for (int64_t i = grid_start(); i < n; i += grid_step()) t[i] = f(t[i], s[i]);
}

}  // namespace

void relu_forward_cuda(Context& ctx, TensorView x, TensorView y) {
  const int64_t n = x.numel();
  relu_forward_kernel<<<grid_for(ctx, n), kBlock, 0, stream_of(ctx)>>>(n, x.data, y.data);
  CUDA_CHECK_LAUNCH();
}

void relu_backward_cuda(Context& ctx, TensorView y, TensorView dy, TensorView dx, float beta) {
  const int64_t n = y.numel();
  relu_backward_kernel<<<grid_for(ctx, n), kBlock, 0, stream_of(ctx)>>>(n, y.data, dy.data, dx.data, beta);
  CUDA_CHECK_LAUNCH();
}

void add_forward_cuda(Context& ctx, TensorView a, TensorView b, TensorView y) {
  const int64_t n = a.numel();
  add_kernel<<<grid_for(ctx, n), kBlock, 0, stream_of(ctx)>>>(n, a.data, b.data, y.data);
  CUDA_CHECK_LAUNCH();
}

void accumulate_cuda(Context& ctx, TensorView dy, TensorView dx, float beta) {
  const int64_t n = dy.numel();
  accumulate_kernel<<<grid_for(ctx, n), kBlock, 0, stream_of(ctx)>>>(n, dy.data, dx.data, beta);
  CUDA_CHECK_LAUNCH();
}

void dropout2d_make_scale_cuda(Context& ctx, float p, uint64_t seed, uint64_t offset, uint64_t first,
                               TensorView scale) {
  const int64_t n = scale.numel();
  dropout_scale_kernel<<<grid_for(ctx, n), kBlock, 0, stream_of(ctx)>>>(n, p, seed, offset, first, scale.data);
  CUDA_CHECK_LAUNCH();
}

void channel_scale_cuda(Context& ctx, TensorView x, TensorView scale, TensorView y, float beta) {
  const int64_t planes = x.shape.n() * x.shape.c(), HW = x.shape.h() * x.shape.w();
  if (planes * HW == 0) return;
  channel_scale_kernel<<<plane_grid(ctx, planes, HW), kBlock, 0, stream_of(ctx)>>>(planes, int32_t(HW), x.data,
                                                                                   scale.data, y.data, beta);
  CUDA_CHECK_LAUNCH();
}

void ema_update_cuda(Context& ctx, TensorView teacher, TensorView student, float ema) {
  const int64_t n = teacher.numel();
  ema_kernel<<<grid_for(ctx, n), kBlock, 0, stream_of(ctx)>>>(n, ema, teacher.data, student.data);
  CUDA_CHECK_LAUNCH();
}

}  // namespace u2pl
