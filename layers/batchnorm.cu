// BatchNorm2d on CUDA with own kernels: per-channel two-pass statistics in double (one block per
// channel, CUB's fixed-order block reduction: deterministic), then element-wise BnApply and
// BnBackward from engine/math.h. Same semantics as batchnorm_forward_cpu/backward_cpu, i.e.
// torch.nn.BatchNorm2d in train() and eval(). Covered by tests/test_cuda_layers.cpp ("batchnorm").
#include <cmath>

#include "engine/cuda/launch.cuh"
#include "engine/math.h"
#include "layers/batchnorm.h"

namespace u2pl {
namespace {

struct BnGeom {
  int64_t N, C, HW;
};

BnGeom bn_geom(Shape s) { return {s.n(), s.c(), s.h() * s.w()}; }

// x (N, C, HW). stat (2, C) receives mean and inverse std; save_mean, save_invstd (C) too when
// not null. Batch statistics: biased variance to normalise, unbiased into run_var, as the CPU
// oracle computes them (double sums, double sqrt). Otherwise the running statistics.
__global__ void bn_stats_kernel(BnGeom g, const float* x, float* run_mean, float* run_var,
                                bool batch_stats, float* stat, float* save_mean, float* save_invstd) {
  const int64_t M = g.N * g.HW;
  for (int64_t c = blockIdx.x; c < g.C; c += gridDim.x) {
    float mean, invstd;
    if (batch_stats) {
      double s = 0;
      for (int64_t n = 0; n < g.N; ++n)
        for (int64_t i = threadIdx.x; i < g.HW; i += blockDim.x) s += x[(n * g.C + c) * g.HW + i];
      const double m = block_sum(s) / static_cast<double>(M);
      double v = 0;
      for (int64_t n = 0; n < g.N; ++n)
        for (int64_t i = threadIdx.x; i < g.HW; i += blockDim.x) {
          const double d = x[(n * g.C + c) * g.HW + i] - m;
          v += d * d;
        }
      const double var = block_sum(v) / static_cast<double>(M);
      mean = static_cast<float>(m);
      invstd = static_cast<float>(1.0 / sqrt(var + static_cast<double>(kBnEps)));
      if (threadIdx.x == 0) {
        const double unbiased = var * static_cast<double>(M) / static_cast<double>(M - 1);
        run_mean[c] = bn_running_update<float>(run_mean[c], mean, kBnMomentum);
        run_var[c] = bn_running_update<float>(run_var[c], static_cast<float>(unbiased), kBnMomentum);
      }
    } else {
      mean = run_mean[c];
      invstd = 1.0f / sqrtf(run_var[c] + kBnEps);
    }
    if (threadIdx.x == 0) {
      stat[c] = mean;
      stat[g.C + c] = invstd;
      if (save_mean) save_mean[c] = mean;
      if (save_invstd) save_invstd[c] = invstd;
    }
  }
}

// x, y (N, C, HW); y may alias x. n = N·C·HW.
__global__ void bn_apply_kernel(int64_t n, BnGeom g, const float* x, const float* stat,
                                const float* gamma, const float* beta, float* y) {
  for (int64_t k = grid_start(); k < n; k += grid_step()) {
    const int64_t c = (k / g.HW) % g.C;
    y[k] = BnApply<float>{stat[c], stat[g.C + c], gamma[c], beta[c]}(x[k]);
  }
}

// x, dy (N, C, HW). dgamma += Σ dy·x̂, dbeta += Σ dy (double sums); coef (2, C) receives
// mean_dy and mean_dy_xhat for the dx kernel.
__global__ void bn_backward_reduce_kernel(BnGeom g, const float* x, const float* dy,
                                          const float* save_mean, const float* save_invstd,
                                          float* dgamma, float* dbeta, float* coef) {
  const int64_t M = g.N * g.HW;
  for (int64_t c = blockIdx.x; c < g.C; c += gridDim.x) {
    const float mean = save_mean[c], invstd = save_invstd[c];
    double sdy = 0, sdyx = 0;
    for (int64_t n = 0; n < g.N; ++n)
      for (int64_t i = threadIdx.x; i < g.HW; i += blockDim.x) {
        const int64_t k = (n * g.C + c) * g.HW + i;
        sdy += dy[k];
        sdyx += static_cast<double>(dy[k]) * static_cast<double>((x[k] - mean) * invstd);
      }
    sdy = block_sum(sdy);
    sdyx = block_sum(sdyx);
    if (threadIdx.x == 0) {
      dgamma[c] += static_cast<float>(sdyx);
      dbeta[c] += static_cast<float>(sdy);
      coef[c] = static_cast<float>(sdy / static_cast<double>(M));
      coef[g.C + c] = static_cast<float>(sdyx / static_cast<double>(M));
    }
  }
}

// x, dy, dx (N, C, HW); n = N·C·HW.
__global__ void bn_backward_dx_kernel(int64_t n, BnGeom g, const float* x, const float* dy,
                                      const float* gamma, const float* save_mean,
                                      const float* save_invstd, const float* coef, bool batch_stats,
                                      float* dx, float beta_dx) {
  for (int64_t k = grid_start(); k < n; k += grid_step()) {
    const int64_t c = (k / g.HW) % g.C;
    const BnBackward<float> f{save_mean[c], save_invstd[c], gamma[c], coef[c], coef[g.C + c], batch_stats};
    dx[k] = blend(f(x[k], dy[k]), dx[k], beta_dx);
  }
}

}  // namespace

void batchnorm_forward_cuda(Context& ctx, TensorView x, TensorView gamma, TensorView beta,
                            TensorView run_mean, TensorView run_var, bool batch_stats, TensorView y,
                            TensorView save_mean, TensorView save_invstd) {
  const BnGeom g = bn_geom(x.shape);
  float* stat = static_cast<float*>(ctx.workspace(2 * g.C * sizeof(float)));
  bn_stats_kernel<<<blocks_for(ctx, g.C), kBlock, 0, stream_of(ctx)>>>(
      g, x.data, run_mean.data, run_var.data, batch_stats, stat, save_mean.data, save_invstd.data);
  CUDA_CHECK_LAUNCH();
  const int64_t n = x.numel();
  bn_apply_kernel<<<grid_for(ctx, n), kBlock, 0, stream_of(ctx)>>>(n, g, x.data, stat, gamma.data,
                                                                    beta.data, y.data);
  CUDA_CHECK_LAUNCH();
}

void batchnorm_backward_cuda(Context& ctx, TensorView x, TensorView gamma, TensorView save_mean,
                             TensorView save_invstd, bool batch_stats, TensorView dy, TensorView dx,
                             float beta_dx, TensorView dgamma, TensorView dbeta) {
  const BnGeom g = bn_geom(x.shape);
  float* coef = static_cast<float*>(ctx.workspace(2 * g.C * sizeof(float)));
  bn_backward_reduce_kernel<<<blocks_for(ctx, g.C), kBlock, 0, stream_of(ctx)>>>(
      g, x.data, dy.data, save_mean.data, save_invstd.data, dgamma.data, dbeta.data, coef);
  CUDA_CHECK_LAUNCH();
  if (!dx.defined()) return;
  const int64_t n = x.numel();
  bn_backward_dx_kernel<<<grid_for(ctx, n), kBlock, 0, stream_of(ctx)>>>(
      n, g, x.data, dy.data, gamma.data, save_mean.data, save_invstd.data, coef, batch_stats,
      dx.data, beta_dx);
  CUDA_CHECK_LAUNCH();
}

}  // namespace u2pl
