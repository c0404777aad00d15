// BatchNorm2d CPU path and dispatch (layers/batchnorm.h).
#include "layers/batchnorm.h"

#include <cmath>
#include <vector>

#include "engine/comm.h"
#include "engine/math.h"

namespace u2pl {

namespace {

// Per replica g (the batch's `groups` equal slices) and channel c: the count, mean and sum of
// squared deviations of x, in double (the oracle's sums must not drift with the count), into st
// (groups, C, 3).
template <class T>
void bn_replica_stats(Shape xs, const T* x, int groups, double* st) {
  const int64_t N = xs.n(), C = xs.c(), HW = xs.h() * xs.w(), per = N / groups;
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < C; ++c)
    for (int64_t g = 0; g < groups; ++g) {
      double s = 0;
      for (int64_t n = g * per; n < (g + 1) * per; ++n)
        for (int64_t i = 0; i < HW; ++i) s += x[(n * C + c) * HW + i];
      const double count = double(per * HW), m = s / count;
      double v = 0;
      for (int64_t n = g * per; n < (g + 1) * per; ++n)
        for (int64_t i = 0; i < HW; ++i) {
          const double d = x[(n * C + c) * HW + i] - m;
          v += d * d;
        }
      double* o = st + (g * C + c) * 3;
      o[0] = count;
      o[1] = m;
      o[2] = v;
    }
}

// The replicas' statistics (groups, C, 3) merged in replica order (engine/math.h's
// merge_moments) into the count, mean and biased variance of all their values, per channel.
struct BnStats {
  std::vector<double> count, mean, var;
};
BnStats bn_merge(const double* st, int groups, int64_t C) {
  BnStats r;
  for (int64_t c = 0; c < C; ++c) {
    Moments m{st[c * 3], st[c * 3 + 1], st[c * 3 + 2]};
    for (int64_t g = 1; g < groups; ++g) {
      const double* o = st + (g * C + c) * 3;
      m = merge_moments(m, Moments{o[0], o[1], o[2]});
    }
    r.count.push_back(m.count);
    r.mean.push_back(m.mean);
    r.var.push_back(m.m2 / m.count);
  }
  return r;
}

// y = BN(x) with the given statistics (batch_stats: the merged ones, moving the running ones) or
// the running ones.
template <class T>
void bn_apply(Shape xs, const T* x, const T* gamma, const T* beta, T* run_mean, T* run_var, const BnStats* batch,
              T* y, T* save_mean, T* save_invstd) {
  const int64_t N = xs.n(), C = xs.c(), HW = xs.h() * xs.w();
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < C; ++c) {
    T mean, invstd;
    if (batch) {
      const double m = batch->mean[size_t(c)], var = batch->var[size_t(c)], M = batch->count[size_t(c)];
      mean = T(m);
      invstd = T(1.0 / std::sqrt(var + double(kBnEps)));
      run_mean[c] = bn_running_update<T>(run_mean[c], T(m), T(kBnMomentum));
      run_var[c] = bn_running_update<T>(run_var[c], T(var * M / (M - 1)), T(kBnMomentum));
    } else {
      mean = run_mean[c];
      invstd = T(1) / std::sqrt(run_var[c] + T(kBnEps));
    }
    if (save_mean) save_mean[c] = mean;
    if (save_invstd) save_invstd[c] = invstd;
    const BnApply<T> f{mean, invstd, gamma[c], beta[c]};
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) y[(n * C + c) * HW + i] = f(x[(n * C + c) * HW + i]);
  }
}

// Per replica g and channel c: Σdy and Σdy·x̂ over the replica's values, into sums (groups, C, 2).
template <class T>
void bn_replica_grad_sums(Shape xs, const T* x, const T* save_mean, const T* save_invstd, const T* dy, int groups,
                          double* sums) {
  const int64_t N = xs.n(), C = xs.c(), HW = xs.h() * xs.w(), per = N / groups;
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < C; ++c) {
    const T mean = save_mean[c], invstd = save_invstd[c];
    for (int64_t g = 0; g < groups; ++g) {
      double sdy = 0, sdyx = 0;
      for (int64_t n = g * per; n < (g + 1) * per; ++n)
        for (int64_t i = 0; i < HW; ++i) {
          const int64_t k = (n * C + c) * HW + i;
          sdy += dy[k];
          sdyx += double(dy[k]) * double((x[k] - mean) * invstd);
        }
      sums[(g * C + c) * 2] = sdy;
      sums[(g * C + c) * 2 + 1] = sdyx;
    }
  }
}

// dgamma, dbeta += this batch's sums (`local`, (C, 2)); dx = beta_dx·dx + the gradient with the
// sums of all replicas (`all`, (C, 2)) over M values per channel.
template <class T>
void bn_backward_apply(Shape xs, const T* x, const T* gamma, const T* save_mean, const T* save_invstd,
                       bool batch_stats, const T* dy, T* dx, T beta_dx, T* dgamma, T* dbeta, const double* local,
                       const double* all, double M) {
  const int64_t N = xs.n(), C = xs.c(), HW = xs.h() * xs.w();
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < C; ++c) {
    dgamma[c] += T(local[c * 2 + 1]);
    dbeta[c] += T(local[c * 2]);
    if (!dx) continue;
    const BnBackward<T> f{save_mean[c], save_invstd[c], gamma[c], T(all[c * 2] / M), T(all[c * 2 + 1] / M),
                          batch_stats};
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) {
        const int64_t k = (n * C + c) * HW + i;
        dx[k] = blend(f(x[k], dy[k]), dx[k], beta_dx);
      }
  }
}

}  // namespace

template <class T>
void batchnorm_forward_cpu(Shape xs, const T* x, const T* gamma, const T* beta, T* run_mean,
                           T* run_var, bool batch_stats, T* y, T* save_mean, T* save_invstd) {
  if (!batch_stats) return bn_apply<T>(xs, x, gamma, beta, run_mean, run_var, nullptr, y, save_mean, save_invstd);
  std::vector<double> st(size_t(xs.c()) * 3);
  bn_replica_stats<T>(xs, x, 1, st.data());
  const BnStats b = bn_merge(st.data(), 1, xs.c());
  bn_apply<T>(xs, x, gamma, beta, run_mean, run_var, &b, y, save_mean, save_invstd);
}

template <class T>
void batchnorm_backward_cpu(Shape xs, const T* x, const T* gamma, const T* save_mean,
                            const T* save_invstd, bool batch_stats, const T* dy, T* dx, T beta_dx,
                            T* dgamma, T* dbeta) {
  std::vector<double> sums(size_t(xs.c()) * 2);
  bn_replica_grad_sums<T>(xs, x, save_mean, save_invstd, dy, 1, sums.data());
  bn_backward_apply<T>(xs, x, gamma, save_mean, save_invstd, batch_stats, dy, dx, beta_dx, dgamma, dbeta,
                       sums.data(), sums.data(), double(xs.n() * xs.h() * xs.w()));
}

template <class T>
void batchnorm_apply_cpu(Shape xs, const T* x, const T* stat, const T* gamma, const T* beta, T* y) {
  const int64_t N = xs.n(), C = xs.c(), HW = xs.h() * xs.w();
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < C; ++c) {
    const BnApply<T> f{stat[c], stat[C + c], gamma[c], beta[c]};
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) y[(n * C + c) * HW + i] = f(x[(n * C + c) * HW + i]);
  }
}

template void batchnorm_apply_cpu<float>(Shape, const float*, const float*, const float*, const float*, float*);
template void batchnorm_forward_cpu<float>(Shape, const float*, const float*, const float*, float*,
                                           float*, bool, float*, float*, float*);
template void batchnorm_forward_cpu<double>(Shape, const double*, const double*, const double*,
                                            double*, double*, bool, double*, double*, double*);
template void batchnorm_backward_cpu<float>(Shape, const float*, const float*, const float*,
                                            const float*, bool, const float*, float*, float, float*,
                                            float*);
template void batchnorm_backward_cpu<double>(Shape, const double*, const double*, const double*,
                                             const double*, bool, const double*, double*, double,
                                             double*, double*);

BatchNorm2d::BatchNorm2d(ParamSet& ps, const std::string& name, int channels, int group)
    : ps_(&ps), c_(channels) {
  w_ = ps.declare(name + ".weight", Shape{channels}, Init::Ones, group);
  b_ = ps.declare(name + ".bias", Shape{channels}, Init::Zeros, group);
  rm_ = ps.declare_buffer(name + ".running_mean", Shape{channels}, Init::Zeros);
  rv_ = ps.declare_buffer(name + ".running_var", Shape{channels}, Init::Ones);
}

// `copies`: how many batches like x the statistics are over (SyncBN: the other processes' too).
static void check_bn_input(const TensorView& x, int c, bool batch_stats, int64_t copies = 1) {
  U2PL_CHECK(x.shape.ndim == 4 && x.shape.c() == c,
             "batchnorm: expected (N, " << c << ", H, W), got " << x.shape.str());
  U2PL_CHECK(x.numel() > 0, "batchnorm: empty input " << x.shape.str());
  U2PL_CHECK(!batch_stats || copies * x.shape.n() * x.shape.h() * x.shape.w() > 1,
             "batchnorm: expected more than 1 value per channel when using batch statistics, got "
             "input " << x.shape.str());
}

// The replicas a batch-statistics pass on ctx merges over, or null for the batch alone; the
// gathered per-replica figures (`width` doubles per channel) of every replica, in replica order.
static const ReplicaSync* replica_sync(const Context& ctx, const TensorView& x) {
  const ReplicaSync* s = ctx.replica_sync();
  if (!s || s->total <= 1) return nullptr;
  const int processes = s->comm ? s->comm->size() : 1;
  U2PL_CHECK(s->local >= 1 && s->total == s->local * processes,
             "batchnorm: " << s->local << " replicas in each of " << processes << " processes are not " << s->total);
  U2PL_CHECK(x.shape.n() % s->local == 0,
             "batchnorm: a batch of " << x.shape.n() << " does not split into " << s->local << " replicas");
  U2PL_CHECK(ctx.device() == Device::CPU || processes == 1 || s->device_comm,
             "batchnorm: statistics across " << processes << " processes on CUDA need an NCCL communicator "
                                               "(ReplicaSync::device_comm)");
  return s;
}

static std::vector<double> gather_replicas(const ReplicaSync& s, std::vector<double> mine) {
  if (!s.comm || s.comm->size() == 1) return mine;
  std::vector<double> all(mine.size() * size_t(s.comm->size()));
  s.comm->allgather(mine.data(), mine.size() * sizeof(double), all.data());
  return all;
}

// The number of processes whose batches a batch-statistics pass on ctx merges with this one's.
static int64_t synced_processes(const Context& ctx) {
  const ReplicaSync* s = ctx.replica_sync();
  return s && s->comm ? s->comm->size() : 1;
}

void BatchNorm2d::forward(Context& ctx, TensorView x, TensorView y, BatchNormMode mode,
                          TensorView saved) const {
  check_bn_input(x, c_, mode.batch_stats, synced_processes(ctx));
  check_shape(y, x.shape, "batchnorm output");
  check_device(x, ctx.device(), "batchnorm input");
  check_device(y, ctx.device(), "batchnorm output");
  U2PL_CHECK(!mode.keep_state || x.data != y.data,
             "batchnorm: in-place forward cannot keep state for backward");
  TensorView sm, si;
  if (mode.keep_state) {
    check_shape(saved, saved_shape(), "batchnorm saved state");
    check_device(saved, ctx.device(), "batchnorm saved state");
    sm = TensorView(saved.data, Shape{c_}, saved.device);
    si = TensorView(saved.data + c_, Shape{c_}, saved.device);
  }
  const TensorView g = ps_->value(w_), b = ps_->value(b_), rm = ps_->value(rm_), rv = ps_->value(rv_);
  const ReplicaSync* sync = mode.batch_stats ? replica_sync(ctx, x) : nullptr;
  if (ctx.device() == Device::CUDA) {
    if (sync) return batchnorm_forward_cuda_sync(ctx, *sync, x, g, b, rm, rv, y, sm, si);
    return batchnorm_forward_cuda(ctx, x, g, b, rm, rv, mode.batch_stats, y, sm, si);
  }
  if (sync) {  // SyncBN: each replica's statistics, merged in replica order
    std::vector<double> mine(size_t(sync->local) * size_t(c_) * 3);
    bn_replica_stats<float>(x.shape, x.data, sync->local, mine.data());
    const std::vector<double> all = gather_replicas(*sync, std::move(mine));
    const BnStats st = bn_merge(all.data(), sync->total, c_);
    return bn_apply<float>(x.shape, x.data, g.data, b.data, rm.data, rv.data, &st, y.data, sm.data, si.data);
  }
  batchnorm_forward_cpu<float>(x.shape, x.data, g.data, b.data, rm.data, rv.data, mode.batch_stats,
                               y.data, sm.data, si.data);
}

void BatchNorm2d::rebuild(Context& ctx, TensorView x, TensorView saved, TensorView y) const {
  check_bn_input(x, c_, false);
  check_shape(y, x.shape, "batchnorm rebuilt output");
  check_shape(saved, saved_shape(), "batchnorm saved state");
  check_device(x, ctx.device(), "batchnorm input");
  check_device(y, ctx.device(), "batchnorm rebuilt output");
  check_device(saved, ctx.device(), "batchnorm saved state");
  const TensorView g = ps_->value(w_), b = ps_->value(b_);
  if (ctx.device() == Device::CUDA) return batchnorm_apply_cuda(ctx, x, saved, g, b, y);
  batchnorm_apply_cpu<float>(x.shape, x.data, saved.data, g.data, b.data, y.data);
}

void BatchNorm2d::backward(Context& ctx, TensorView x, TensorView saved, bool batch_stats,
                           TensorView dy, TensorView dx, float beta) const {
  check_bn_input(x, c_, batch_stats, synced_processes(ctx));
  check_shape(dy, x.shape, "batchnorm output gradient");
  if (dx.defined()) check_shape(dx, x.shape, "batchnorm input gradient");
  check_shape(saved, saved_shape(), "batchnorm saved state");
  check_device(dy, ctx.device(), "batchnorm output gradient");
  const TensorView sm(saved.data, Shape{c_}, saved.device), si(saved.data + c_, Shape{c_}, saved.device);
  const TensorView g = ps_->value(w_), dg = ps_->grad(w_), db = ps_->grad(b_);
  const ReplicaSync* sync = batch_stats ? replica_sync(ctx, x) : nullptr;
  if (ctx.device() == Device::CUDA && sync) {
    batchnorm_backward_cuda_sync(ctx, *sync, x, g, sm, si, dy, dx, beta, dg, db);
  } else if (ctx.device() == Device::CUDA) {
    batchnorm_backward_cuda(ctx, x, g, sm, si, batch_stats, dy, dx, beta, dg, db);
  } else if (sync) {  // the sums through the batch statistics are over every replica, in replica order
    const size_t C = size_t(c_);
    std::vector<double> mine(size_t(sync->local) * C * 2);
    bn_replica_grad_sums<float>(x.shape, x.data, sm.data, si.data, dy.data, sync->local, mine.data());
    std::vector<double> local(C * 2, 0.0), all(C * 2, 0.0);
    for (int r = 0; r < sync->local; ++r)
      for (size_t k = 0; k < C * 2; ++k) local[k] += mine[size_t(r) * C * 2 + k];
    const std::vector<double> every = gather_replicas(*sync, std::move(mine));
    for (int r = 0; r < sync->total; ++r)
      for (size_t k = 0; k < C * 2; ++k) all[k] += every[size_t(r) * C * 2 + k];
    const double M = double(x.shape.n() / sync->local * x.shape.h() * x.shape.w()) * sync->total;
    bn_backward_apply<float>(x.shape, x.data, g.data, sm.data, si.data, batch_stats, dy.data, dx.data, beta, dg.data,
                             db.data, local.data(), all.data(), M);
  } else {
    batchnorm_backward_cpu<float>(x.shape, x.data, g.data, sm.data, si.data, batch_stats, dy.data, dx.data, beta,
                                  dg.data, db.data);
  }
  ctx.grad_ready(dg);
  ctx.grad_ready(db);
}

}  // namespace u2pl
