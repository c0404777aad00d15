// BatchNorm2d on CUDA with own kernels: per-channel two-pass statistics in double, each channel
// split over many blocks (launch.cuh's ChannelSplit: fixed-order partial sums, deterministic),
// then element-wise BnApply and BnBackward from engine/math.h over plane grids. Same semantics as
// batchnorm_forward_cpu/backward_cpu, i.e. torch.nn.BatchNorm2d in train() and eval(). Covered by
// tests/test_cuda_layers.cpp ("batchnorm").
#include <cmath>

#include "engine/cuda/launch.cuh"
#include "engine/math.h"
#include "layers/batchnorm.h"

namespace u2pl {
namespace {

// Σ x over a part.
struct SumX {
  const float* x;
  __device__ void operator()(int64_t, int64_t k, double* acc) const { acc[0] += x[k]; }
};

// Σ (x − mean_c)² over a part; mean (C) in double.
struct SumSquaredDeviation {
  const float* x;
  const double* mean;
  __device__ void operator()(int64_t c, int64_t k, double* acc) const {
    const double d = x[k] - mean[c];
    acc[0] += d * d;
  }
};

// Σ dy and Σ dy·x̂ over a part, x̂ = (x − mean)·invstd in float as the CPU oracle forms it.
struct SumDy {
  const float *x, *dy, *save_mean, *save_invstd;
  __device__ void operator()(int64_t c, int64_t k, double* acc) const {
    acc[0] += dy[k];
    acc[1] += static_cast<double>(dy[k]) * static_cast<double>((x[k] - save_mean[c]) * save_invstd[c]);
  }
};

// mean (C) = Σ x / M from the parts of SumX.
__global__ void bn_mean_kernel(ChannelSplit s, const double* partial, double* mean) {
  const double M = static_cast<double>(s.N * s.HW);
  for (int64_t c = blockIdx.x; c < s.C; c += gridDim.x) {
    const double total = channel_total(s, partial, 0, c);
    if (threadIdx.x == 0) mean[c] = total / M;
  }
}

// From the parts of SumSquaredDeviation: biased variance to normalise, unbiased into run_var,
// as the CPU oracle computes them (double sums, double sqrt). stat (2, C) receives mean and
// inverse std; save_mean, save_invstd (C) too when not null.
__global__ void bn_batch_stats_kernel(ChannelSplit s, const double* partial, const double* mean, float* run_mean,
                                      float* run_var, float* stat, float* save_mean, float* save_invstd) {
  const double M = static_cast<double>(s.N * s.HW);
  for (int64_t c = blockIdx.x; c < s.C; c += gridDim.x) {
    const double var = channel_total(s, partial, 0, c) / M;
    if (threadIdx.x != 0) continue;
    const float m = static_cast<float>(mean[c]);
    const float invstd = static_cast<float>(1.0 / sqrt(var + static_cast<double>(kBnEps)));
    const double unbiased = var * M / (M - 1);
    run_mean[c] = bn_running_update<float>(run_mean[c], m, kBnMomentum);
    run_var[c] = bn_running_update<float>(run_var[c], static_cast<float>(unbiased), kBnMomentum);
    stat[c] = m;
    stat[s.C + c] = invstd;
    if (save_mean) save_mean[c] = m;
    if (save_invstd) save_invstd[c] = invstd;
  }
}

// Eval mode: stat (2, C) from the running statistics.
__global__ void bn_running_stats_kernel(int64_t C, const float* run_mean, const float* run_var, float* stat,
                                        float* save_mean, float* save_invstd) {
  for (int64_t c = grid_start(); c < C; c += grid_step()) {
    const float m = run_mean[c], invstd = 1.0f / sqrtf(run_var[c] + kBnEps);
    stat[c] = m;
    stat[C + c] = invstd;
    if (save_mean) save_mean[c] = m;
    if (save_invstd) save_invstd[c] = invstd;
  }
}

// x, y (N·C planes of HW); y may alias x.
__global__ void bn_apply_kernel(int64_t planes, int64_t C, int32_t HW, const float* x, const float* stat,
                                const float* gamma, const float* beta, float* y) {
  for (int64_t p = blockIdx.y; p < planes; p += gridDim.y) {
    const int64_t c = p % C;
    const BnApply<float> f{stat[c], stat[C + c], gamma[c], beta[c]};
    const float* xp = x + p * HW;
    float* yp = y + p * HW;
    for (int32_t i = plane_start(); i < HW; i += plane_step()) yp[i] = f(xp[i]);
  }
}

// dgamma += Σ dy·x̂, dbeta += Σ dy from the parts of SumDy; coef (2, C) receives mean_dy and
// mean_dy_xhat for the dx kernel.
__global__ void bn_backward_coef_kernel(ChannelSplit s, const double* partial, float* dgamma, float* dbeta,
                                        float* coef) {
  const double M = static_cast<double>(s.N * s.HW);
  for (int64_t c = blockIdx.x; c < s.C; c += gridDim.x) {
    const double sdy = channel_total(s, partial, 0, c);
    const double sdyx = channel_total(s, partial, 1, c);
    if (threadIdx.x != 0) continue;
    dgamma[c] += static_cast<float>(sdyx);
    dbeta[c] += static_cast<float>(sdy);
    coef[c] = static_cast<float>(sdy / M);
    coef[s.C + c] = static_cast<float>(sdyx / M);
  }
}

// x, dy, dx (N·C planes of HW).
__global__ void bn_backward_dx_kernel(int64_t planes, int64_t C, int32_t HW, const float* x, const float* dy,
                                      const float* gamma, const float* save_mean, const float* save_invstd,
                                      const float* coef, bool batch_stats, float* dx, float beta_dx) {
  for (int64_t p = blockIdx.y; p < planes; p += gridDim.y) {
    const int64_t c = p % C;
    const BnBackward<float> f{save_mean[c], save_invstd[c], gamma[c], coef[c], coef[C + c], batch_stats};
    const int64_t o = p * HW;
    for (int32_t i = plane_start(); i < HW; i += plane_step())
      dx[o + i] = blend(f(x[o + i], dy[o + i]), dx[o + i], beta_dx);
  }
}

}  // namespace

void batchnorm_forward_cuda(Context& ctx, TensorView x, TensorView gamma, TensorView beta,
                            TensorView run_mean, TensorView run_var, bool batch_stats, TensorView y,
                            TensorView save_mean, TensorView save_invstd) {
  const int64_t N = x.shape.n(), C = x.shape.c(), HW = x.shape.h() * x.shape.w();
  if (N * C * HW == 0) return;  // nothing to normalise (and no empty grid to launch)
  const ChannelSplit s = channel_split(ctx, N, C, HW);
  WorkspacePlan plan;
  const size_t at_stat = plan.add(2 * C * sizeof(float)), at_mean = plan.add(C * sizeof(double));
  const size_t at_partial = plan.add(static_cast<size_t>(C * s.parts()) * sizeof(double));
  char* ws = static_cast<char*>(ctx.workspace(plan.bytes()));
  float* stat = reinterpret_cast<float*>(ws + at_stat);
  if (batch_stats) {
    double* mean = reinterpret_cast<double*>(ws + at_mean);
    double* partial = reinterpret_cast<double*>(ws + at_partial);
    channel_partials_kernel<1><<<channel_partials_grid(s), kBlock, 0, stream_of(ctx)>>>(s, SumX{x.data}, partial);
    CUDA_CHECK_LAUNCH();
    bn_mean_kernel<<<blocks_for(ctx, C), kBlock, 0, stream_of(ctx)>>>(s, partial, mean);
    CUDA_CHECK_LAUNCH();
    channel_partials_kernel<1><<<channel_partials_grid(s), kBlock, 0, stream_of(ctx)>>>(
        s, SumSquaredDeviation{x.data, mean}, partial);
    CUDA_CHECK_LAUNCH();
    bn_batch_stats_kernel<<<blocks_for(ctx, C), kBlock, 0, stream_of(ctx)>>>(
        s, partial, mean, run_mean.data, run_var.data, stat, save_mean.data, save_invstd.data);
    CUDA_CHECK_LAUNCH();
  } else {
    bn_running_stats_kernel<<<grid_for(ctx, C), kBlock, 0, stream_of(ctx)>>>(C, run_mean.data, run_var.data, stat,
                                                                              save_mean.data, save_invstd.data);
    CUDA_CHECK_LAUNCH();
  }
  bn_apply_kernel<<<plane_grid(ctx, N * C, HW), kBlock, 0, stream_of(ctx)>>>(N * C, C, int32_t(HW), x.data, stat,
                                                                             gamma.data, beta.data, y.data);
  CUDA_CHECK_LAUNCH();
}

void batchnorm_backward_cuda(Context& ctx, TensorView x, TensorView gamma, TensorView save_mean,
                             TensorView save_invstd, bool batch_stats, TensorView dy, TensorView dx,
                             float beta_dx, TensorView dgamma, TensorView dbeta) {
  const int64_t N = x.shape.n(), C = x.shape.c(), HW = x.shape.h() * x.shape.w();
  if (N * C * HW == 0) return;
  const ChannelSplit s = channel_split(ctx, N, C, HW);
  WorkspacePlan plan;
  const size_t at_coef = plan.add(2 * C * sizeof(float));
  const size_t at_partial = plan.add(static_cast<size_t>(2 * C * s.parts()) * sizeof(double));
  char* ws = static_cast<char*>(ctx.workspace(plan.bytes()));
  float* coef = reinterpret_cast<float*>(ws + at_coef);
  double* partial = reinterpret_cast<double*>(ws + at_partial);
  channel_partials_kernel<2><<<channel_partials_grid(s), kBlock, 0, stream_of(ctx)>>>(
      s, SumDy{x.data, dy.data, save_mean.data, save_invstd.data}, partial);
  CUDA_CHECK_LAUNCH();
  bn_backward_coef_kernel<<<blocks_for(ctx, C), kBlock, 0, stream_of(ctx)>>>(s, partial, dgamma.data, dbeta.data,
                                                                               coef);
  CUDA_CHECK_LAUNCH();
  if (!dx.defined()) return;
  bn_backward_dx_kernel<<<plane_grid(ctx, N * C, HW), kBlock, 0, stream_of(ctx)>>>(
      N * C, C, int32_t(HW), x.data, dy.data, gamma.data, save_mean.data, save_invstd.data, coef, batch_stats,
      dx.data, beta_dx);
  CUDA_CHECK_LAUNCH();
}

}  // namespace u2pl
