// BatchNorm2d CPU path and dispatch (layers/batchnorm.h).
#include "layers/batchnorm.h"

#include <cmath>

#include "engine/math.h"

namespace u2pl {

template <class T>
void batchnorm_forward_cpu(Shape xs, const T* x, const T* gamma, const T* beta, T* run_mean,
                           T* run_var, bool batch_stats, T* y, T* save_mean, T* save_invstd) {
  const int64_t N = xs.n(), C = xs.c(), HW = xs.h() * xs.w(), M = N * HW;
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < C; ++c) {
    T mean, invstd;
    if (batch_stats) {
      double s = 0;  // double accumulation: the oracle's sums must not drift with M
      for (int64_t n = 0; n < N; ++n)
        for (int64_t i = 0; i < HW; ++i) s += x[(n * C + c) * HW + i];
      const double m = s / double(M);
      double v = 0;
      for (int64_t n = 0; n < N; ++n)
        for (int64_t i = 0; i < HW; ++i) {
          const double d = x[(n * C + c) * HW + i] - m;
          v += d * d;
        }
      const double var = v / double(M);  // biased: normalisation
      mean = T(m);
      invstd = T(1.0 / std::sqrt(var + double(kBnEps)));
      run_mean[c] = bn_running_update<T>(run_mean[c], T(m), T(kBnMomentum));
      run_var[c] = bn_running_update<T>(run_var[c], T(var * double(M) / double(M - 1)), T(kBnMomentum));
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

template <class T>
void batchnorm_backward_cpu(Shape xs, const T* x, const T* gamma, const T* save_mean,
                            const T* save_invstd, bool batch_stats, const T* dy, T* dx, T beta_dx,
                            T* dgamma, T* dbeta) {
  const int64_t N = xs.n(), C = xs.c(), HW = xs.h() * xs.w(), M = N * HW;
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < C; ++c) {
    const T mean = save_mean[c], invstd = save_invstd[c];
    double sdy = 0, sdyx = 0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) {
        const int64_t k = (n * C + c) * HW + i;
        sdy += dy[k];
        sdyx += double(dy[k]) * double((x[k] - mean) * invstd);
      }
    dgamma[c] += T(sdyx);
    dbeta[c] += T(sdy);
    if (!dx) continue;
    const BnBackward<T> f{mean, invstd, gamma[c], T(sdy / double(M)), T(sdyx / double(M)), batch_stats};
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) {
        const int64_t k = (n * C + c) * HW + i;
        dx[k] = blend(f(x[k], dy[k]), dx[k], beta_dx);
      }
  }
}

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

static void check_bn_input(const TensorView& x, int c, bool batch_stats) {
  U2PL_CHECK(x.shape.ndim == 4 && x.shape.c() == c,
             "batchnorm: expected (N, " << c << ", H, W), got " << x.shape.str());
  U2PL_CHECK(x.numel() > 0, "batchnorm: empty input " << x.shape.str());
  U2PL_CHECK(!batch_stats || x.shape.n() * x.shape.h() * x.shape.w() > 1,
             "batchnorm: expected more than 1 value per channel when using batch statistics, got "
             "input " << x.shape.str());
}

void BatchNorm2d::forward(Context& ctx, TensorView x, TensorView y, BatchNormMode mode,
                          TensorView saved) const {
  check_bn_input(x, c_, mode.batch_stats);
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
  if (ctx.device() == Device::CUDA)
    return batchnorm_forward_cuda(ctx, x, g, b, rm, rv, mode.batch_stats, y, sm, si);
  batchnorm_forward_cpu<float>(x.shape, x.data, g.data, b.data, rm.data, rv.data, mode.batch_stats,
                               y.data, sm.data, si.data);
}

void BatchNorm2d::backward(Context& ctx, TensorView x, TensorView saved, bool batch_stats,
                           TensorView dy, TensorView dx, float beta) const {
  check_bn_input(x, c_, batch_stats);
  check_shape(dy, x.shape, "batchnorm output gradient");
  if (dx.defined()) check_shape(dx, x.shape, "batchnorm input gradient");
  check_shape(saved, saved_shape(), "batchnorm saved state");
  check_device(dy, ctx.device(), "batchnorm output gradient");
  const TensorView sm(saved.data, Shape{c_}, saved.device), si(saved.data + c_, Shape{c_}, saved.device);
  const TensorView g = ps_->value(w_), dg = ps_->grad(w_), db = ps_->grad(b_);
  if (ctx.device() == Device::CUDA)
    return batchnorm_backward_cuda(ctx, x, g, sm, si, batch_stats, dy, dx, beta, dg, db);
  batchnorm_backward_cpu<float>(x.shape, x.data, g.data, sm.data, si.data, batch_stats, dy.data,
                                dx.data, beta, dg.data, db.data);
}

}  // namespace u2pl
