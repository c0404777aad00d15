// BatchNorm2d on CUDA with own kernels: per-channel two-pass statistics in double, each channel
// split over many blocks (launch.cuh's ChannelSplit: fixed-order partial sums, deterministic),
// then element-wise BnApply and BnBackward from engine/math.h over plane grids. Same semantics as
// batchnorm_forward_cpu/backward_cpu, i.e. torch.nn.BatchNorm2d in train() and eval(). SyncBN
// (several replicas): each replica's moments and gradient sums, each replica split as a batch of
// its own (the sums do not depend on how the replicas are spread over processes), the other
// processes' gathered through NCCL, merged in replica order as the CPU path of
// layers/batchnorm.cpp. Covered by tests/test_cuda_layers.cpp ("batchnorm", "SyncBN").
#include <cmath>

#include "engine/cuda/launch.cuh"
#include "engine/math.h"
#include "engine/nccl.h"
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

// Channel c of C normalised with batch mean `mean` and biased variance `var` over M values: the
// running statistics move (unbiased variance), stat (2, C) and save_* (when not null) receive the
// mean and inverse std, as the CPU oracle computes them (double, double sqrt).
__device__ void write_batch_stats(int64_t c, int64_t C, double mean, double var, double M, float* run_mean,
                                  float* run_var, float* stat, float* save_mean, float* save_invstd) {
  const float m = static_cast<float>(mean);
  const float invstd = static_cast<float>(1.0 / sqrt(var + static_cast<double>(kBnEps)));
  const double unbiased = var * M / (M - 1);
  run_mean[c] = bn_running_update<float>(run_mean[c], m, kBnMomentum);
  run_var[c] = bn_running_update<float>(run_var[c], static_cast<float>(unbiased), kBnMomentum);
  stat[c] = m;
  stat[C + c] = invstd;
  if (save_mean) save_mean[c] = m;
  if (save_invstd) save_invstd[c] = invstd;
}

// From the parts of SumSquaredDeviation: biased variance to normalise, unbiased into run_var.
__global__ void bn_batch_stats_kernel(ChannelSplit s, const double* partial, const double* mean, float* run_mean,
                                      float* run_var, float* stat, float* save_mean, float* save_invstd) {
  const double M = static_cast<double>(s.N * s.HW);
  for (int64_t c = blockIdx.x; c < s.C; c += gridDim.x) {
    const double var = channel_total(s, partial, 0, c) / M;
    if (threadIdx.x == 0) write_batch_stats(c, s.C, mean[c], var, M, run_mean, run_var, stat, save_mean, save_invstd);
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

// SyncBN. The local batch holds `local` replicas of s.N images each, every replica split as one
// batch of its own (so its sums do not depend on how many replicas a process holds); partial
// holds `local` blocks of V·C·parts doubles. Per replica and channel: item g·C + c.

// mean (local, C) = each replica's Σ x / (N·HW), from the parts of SumX.
__global__ void bn_replica_mean_kernel(ChannelSplit s, const double* partial, int64_t local, double* mean) {
  for (int64_t item = blockIdx.x; item < local * s.C; item += gridDim.x) {
    const double total = channel_total(s, partial + (item / s.C) * s.C * s.parts(), 0, item % s.C);
    if (threadIdx.x == 0) mean[item] = total / static_cast<double>(s.N * s.HW);
  }
}

// st (local, C, 3): each replica's count, mean and Σ (x − mean)², from the parts of
// SumSquaredDeviation.
__global__ void bn_replica_moments_kernel(ChannelSplit s, const double* partial, int64_t local, const double* mean,
                                          double* st) {
  for (int64_t item = blockIdx.x; item < local * s.C; item += gridDim.x) {
    const double m2 = channel_total(s, partial + (item / s.C) * s.C * s.parts(), 0, item % s.C);
    if (threadIdx.x != 0) continue;
    st[item * 3] = static_cast<double>(s.N * s.HW);
    st[item * 3 + 1] = mean[item];
    st[item * 3 + 2] = m2;
  }
}

// Every replica's moments st (total, C, 3) merged in replica order (engine/math.h, as the CPU
// oracle), then the batch statistics of each channel.
__global__ void bn_merged_stats_kernel(int64_t C, int64_t total, const double* st, float* run_mean, float* run_var,
                                       float* stat, float* save_mean, float* save_invstd) {
  for (int64_t c = grid_start(); c < C; c += grid_step()) {
    Moments m{st[c * 3], st[c * 3 + 1], st[c * 3 + 2]};
    for (int64_t g = 1; g < total; ++g) {
      const double* o = st + (g * C + c) * 3;
      m = merge_moments(m, Moments{o[0], o[1], o[2]});
    }
    write_batch_stats(c, C, m.mean, m.m2 / m.count, m.count, run_mean, run_var, stat, save_mean, save_invstd);
  }
}

// sums (local, C, 2): each replica's Σ dy and Σ dy·x̂, from the parts of SumDy.
__global__ void bn_replica_grad_sums_kernel(ChannelSplit s, const double* partial, int64_t local, double* sums) {
  for (int64_t item = blockIdx.x; item < local * s.C; item += gridDim.x) {
    const double* mine = partial + (item / s.C) * 2 * s.C * s.parts();
    const double sdy = channel_total(s, mine, 0, item % s.C);
    const double sdyx = channel_total(s, mine, 1, item % s.C);
    if (threadIdx.x != 0) continue;
    sums[item * 2] = sdy;
    sums[item * 2 + 1] = sdyx;
  }
}

// From every replica's sums (total, C, 2): dgamma, dbeta += this process's replicas' [first,
// first + local), summed in order; coef (2, C) = all replicas' sums, in order, over M values.
__global__ void bn_sync_coef_kernel(int64_t C, int64_t first, int64_t local, int64_t total, const double* sums,
                                    double M, float* dgamma, float* dbeta, float* coef) {
  for (int64_t c = grid_start(); c < C; c += grid_step()) {
    double mine_dy = 0, mine_dyx = 0, all_dy = 0, all_dyx = 0;
    for (int64_t g = first; g < first + local; ++g) {
      mine_dy += sums[(g * C + c) * 2];
      mine_dyx += sums[(g * C + c) * 2 + 1];
    }
    for (int64_t g = 0; g < total; ++g) {
      all_dy += sums[(g * C + c) * 2];
      all_dyx += sums[(g * C + c) * 2 + 1];
    }
    dgamma[c] += static_cast<float>(mine_dyx);
    dbeta[c] += static_cast<float>(mine_dy);
    coef[c] = static_cast<float>(all_dy / M);
    coef[C + c] = static_cast<float>(all_dyx / M);
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

void batchnorm_apply_cuda(Context& ctx, TensorView x, TensorView stat, TensorView gamma, TensorView beta,
                          TensorView y) {
  const int64_t N = x.shape.n(), C = x.shape.c(), HW = x.shape.h() * x.shape.w();
  if (N * C * HW == 0) return;
  bn_apply_kernel<<<plane_grid(ctx, N * C, HW), kBlock, 0, stream_of(ctx)>>>(N * C, C, int32_t(HW), x.data, stat.data,
                                                                             gamma.data, beta.data, y.data);
  CUDA_CHECK_LAUNCH();
}

namespace {

// channel_partials_kernel<V> over each of `local` replicas: part sums of functor make(g) into
// partial + g·P (P doubles a replica).
template <int V, class Make>
void replica_partials(Context& ctx, const ChannelSplit& s, int64_t local, int64_t P, Make make, double* partial) {
  for (int64_t g = 0; g < local; ++g) {
    channel_partials_kernel<V><<<channel_partials_grid(s), kBlock, 0, stream_of(ctx)>>>(s, make(g), partial + g * P);
    CUDA_CHECK_LAUNCH();
  }
}

}  // namespace

void batchnorm_forward_cuda_sync(Context& ctx, const ReplicaSync& sync, TensorView x, TensorView gamma,
                                 TensorView beta, TensorView run_mean, TensorView run_var, TensorView y,
                                 TensorView save_mean, TensorView save_invstd) {
  const int64_t N = x.shape.n(), C = x.shape.c(), HW = x.shape.h() * x.shape.w();
  const int64_t local = sync.local, total = sync.total, per = N / local, floats = per * C * HW;
  const ChannelSplit s = channel_split(ctx, per, C, HW);  // one replica's images
  const int64_t P = C * s.parts();                        // partial doubles per replica
  WorkspacePlan plan;
  const size_t at_stat = plan.add(2 * C * sizeof(float)), at_mean = plan.add(local * C * sizeof(double));
  const size_t at_partial = plan.add(static_cast<size_t>(local * P) * sizeof(double));
  const size_t at_st = plan.add(static_cast<size_t>(total * C * 3) * sizeof(double));
  char* ws = static_cast<char*>(ctx.workspace(plan.bytes()));
  float* stat = reinterpret_cast<float*>(ws + at_stat);
  double* mean = reinterpret_cast<double*>(ws + at_mean);
  double* partial = reinterpret_cast<double*>(ws + at_partial);
  double* st = reinterpret_cast<double*>(ws + at_st);
  double* mine = st + sync.first * C * 3;  // this process's replicas' rows of st
  replica_partials<1>(ctx, s, local, P, [&](int64_t g) { return SumX{x.data + g * floats}; }, partial);
  bn_replica_mean_kernel<<<blocks_for(ctx, local * C), kBlock, 0, stream_of(ctx)>>>(s, partial, local, mean);
  CUDA_CHECK_LAUNCH();
  replica_partials<1>(
      ctx, s, local, P, [&](int64_t g) { return SumSquaredDeviation{x.data + g * floats, mean + g * C}; }, partial);
  bn_replica_moments_kernel<<<blocks_for(ctx, local * C), kBlock, 0, stream_of(ctx)>>>(s, partial, local, mean,
                                                                                       mine);
  CUDA_CHECK_LAUNCH();
  if (sync.device_comm) sync.device_comm->allgather(ctx, mine, local * C * 3, st);  // in place, rank order
  bn_merged_stats_kernel<<<grid_for(ctx, C), kBlock, 0, stream_of(ctx)>>>(
      C, total, st, run_mean.data, run_var.data, stat, save_mean.data, save_invstd.data);
  CUDA_CHECK_LAUNCH();
  bn_apply_kernel<<<plane_grid(ctx, N * C, HW), kBlock, 0, stream_of(ctx)>>>(N * C, C, int32_t(HW), x.data, stat,
                                                                             gamma.data, beta.data, y.data);
  CUDA_CHECK_LAUNCH();
}

void batchnorm_backward_cuda_sync(Context& ctx, const ReplicaSync& sync, TensorView x, TensorView gamma,
                                  TensorView save_mean, TensorView save_invstd, TensorView dy, TensorView dx,
                                  float beta_dx, TensorView dgamma, TensorView dbeta) {
  const int64_t N = x.shape.n(), C = x.shape.c(), HW = x.shape.h() * x.shape.w();
  const int64_t local = sync.local, total = sync.total, per = N / local, floats = per * C * HW;
  const ChannelSplit s = channel_split(ctx, per, C, HW);
  const int64_t P = 2 * C * s.parts();
  WorkspacePlan plan;
  const size_t at_coef = plan.add(2 * C * sizeof(float));
  const size_t at_partial = plan.add(static_cast<size_t>(local * P) * sizeof(double));
  const size_t at_sums = plan.add(static_cast<size_t>(total * C * 2) * sizeof(double));
  char* ws = static_cast<char*>(ctx.workspace(plan.bytes()));
  float* coef = reinterpret_cast<float*>(ws + at_coef);
  double* partial = reinterpret_cast<double*>(ws + at_partial);
  double* sums = reinterpret_cast<double*>(ws + at_sums);
  double* mine = sums + sync.first * C * 2;
  replica_partials<2>(
      ctx, s, local, P,
      [&](int64_t g) { return SumDy{x.data + g * floats, dy.data + g * floats, save_mean.data, save_invstd.data}; },
      partial);
  bn_replica_grad_sums_kernel<<<blocks_for(ctx, local * C), kBlock, 0, stream_of(ctx)>>>(s, partial, local, mine);
  CUDA_CHECK_LAUNCH();
  if (sync.device_comm) sync.device_comm->allgather(ctx, mine, local * C * 2, sums);
  const double M = static_cast<double>(per * HW * total);
  bn_sync_coef_kernel<<<grid_for(ctx, C), kBlock, 0, stream_of(ctx)>>>(C, sync.first, local, total, sums, M,
                                                                      dgamma.data, dbeta.data, coef);
  CUDA_CHECK_LAUNCH();
  if (!dx.defined()) return;
  bn_backward_dx_kernel<<<plane_grid(ctx, N * C, HW), kBlock, 0, stream_of(ctx)>>>(
      N * C, C, int32_t(HW), x.data, dy.data, gamma.data, save_mean.data, save_invstd.data, coef, true, dx.data,
      beta_dx);
  CUDA_CHECK_LAUNCH();
}

}  // namespace u2pl
