// Conv2d shape logic, CPU path and dispatch (layers/conv2d.h).
#include "layers/conv2d.h"

#include <cmath>
#include <vector>

#include "engine/cpu/blas.h"
#include "engine/cpu/dnnl_conv.h"
#include "engine/profile.h"

namespace u2pl {

Shape conv2d_out_shape(const Conv2dSpec& s, Shape x) {
  U2PL_CHECK(x.ndim == 4, "conv2d: expected a 4-D NCHW input, got " << x.str());
  U2PL_CHECK(x.c() == s.cin, "conv2d: expected " << s.cin << " input channels, got " << x.str());
  U2PL_CHECK(s.cin > 0 && s.cout > 0 && s.kh > 0 && s.kw > 0 && s.stride > 0 && s.pad >= 0 &&
                 s.dilation > 0,
             "conv2d: invalid spec cin " << s.cin << " cout " << s.cout << " k " << s.kh << "x"
                                         << s.kw << " stride " << s.stride << " pad " << s.pad
                                         << " dilation " << s.dilation);
  const int64_t eh = int64_t(s.dilation) * (s.kh - 1) + 1, ew = int64_t(s.dilation) * (s.kw - 1) + 1;
  const int64_t oh = (x.h() + 2 * s.pad - eh) / s.stride + 1;
  const int64_t ow = (x.w() + 2 * s.pad - ew) / s.stride + 1;
  U2PL_CHECK(x.n() > 0 && x.h() + 2 * s.pad >= eh && x.w() + 2 * s.pad >= ew,
             "conv2d: input " << x.str() << " is smaller than the dilated kernel " << eh << "x" << ew
                              << " with padding " << s.pad);
  return Shape::nchw(x.n(), s.cout, oh, ow);
}

static bool is_pointwise(const Conv2dSpec& s) {
  return s.kh == 1 && s.kw == 1 && s.stride == 1 && s.pad == 0;
}

int64_t conv2d_col_floats(const Conv2dSpec& s, Shape x) {
  if (is_pointwise(s)) return 0;
  const Shape y = conv2d_out_shape(s, x);
  return int64_t(s.cin) * s.kh * s.kw * y.h() * y.w();
}

static cpu::ConvGeom geom(const Conv2dSpec& s, Shape xs) {
  const Shape ys = conv2d_out_shape(s, xs);
  return {xs.c(), xs.h(), xs.w(), s.kh, s.kw, s.stride, s.pad, s.dilation, ys.h(), ys.w()};
}

template <class T>
void conv2d_forward_cpu(const Conv2dSpec& s, Shape xs, const T* x, const T* w, const T* b, T* y,
                        T* col) {
  const cpu::ConvGeom g = geom(s, xs);
  const int64_t K = int64_t(s.cin) * s.kh * s.kw, P = g.OH * g.OW;
  for (int64_t n = 0; n < xs.n(); ++n) {
    const T* xn = x + n * s.cin * g.H * g.W;
    T* yn = y + n * s.cout * P;
    const T* B = xn;
    if (!is_pointwise(s)) {
      cpu::im2col(g, xn, col);
      B = col;
    }
    cpu::gemm<T>(false, false, s.cout, P, K, T(1), w, B, T(0), yn);  // y[co,p] = w[co,k] col[k,p]
    if (b) {
#pragma omp parallel for schedule(static)
      for (int64_t co = 0; co < s.cout; ++co)
        for (int64_t p = 0; p < P; ++p) yn[co * P + p] += b[co];
    }
  }
}

template <class T>
void conv2d_backward_cpu(const Conv2dSpec& s, Shape xs, const T* x, const T* w, const T* dy, T* dx,
                         T beta, T* dw, T* db, T* col) {
  const cpu::ConvGeom g = geom(s, xs);
  const int64_t K = int64_t(s.cin) * s.kh * s.kw, P = g.OH * g.OW, X = s.cin * g.H * g.W;
  for (int64_t n = 0; n < xs.n(); ++n) {
    const T* xn = x + n * X;
    const T* dyn = dy + n * s.cout * P;
    if (db) {
      for (int64_t co = 0; co < s.cout; ++co) {
        T acc = 0;
        for (int64_t p = 0; p < P; ++p) acc += dyn[co * P + p];
        db[co] += acc;
      }
    }
    if (is_pointwise(s)) {
      cpu::gemm<T>(false, true, s.cout, K, P, T(1), dyn, xn, T(1), dw);  // dw += dy x^T
      if (dx) cpu::gemm<T>(true, false, K, P, s.cout, T(1), w, dyn, beta, dx + n * X);
      continue;
    }
    cpu::im2col(g, xn, col);
    cpu::gemm<T>(false, true, s.cout, K, P, T(1), dyn, col, T(1), dw);  // dw += dy col^T
    if (dx) {
      T* dxn = dx + n * X;
      cpu::gemm<T>(true, false, K, P, s.cout, T(1), w, dyn, T(0), col);  // dcol = w^T dy
      if (beta == T(0))
        for (int64_t i = 0; i < X; ++i) dxn[i] = T(0);
      else if (beta != T(1))
        for (int64_t i = 0; i < X; ++i) dxn[i] *= beta;
      cpu::col2im(g, col, dxn);
    }
  }
}

template void conv2d_forward_cpu<float>(const Conv2dSpec&, Shape, const float*, const float*,
                                        const float*, float*, float*);
template void conv2d_forward_cpu<double>(const Conv2dSpec&, Shape, const double*, const double*,
                                         const double*, double*, double*);
template void conv2d_backward_cpu<float>(const Conv2dSpec&, Shape, const float*, const float*,
                                         const float*, float*, float, float*, float*, float*);
template void conv2d_backward_cpu<double>(const Conv2dSpec&, Shape, const double*, const double*,
                                          const double*, double*, double, double*, double*, double*);

cpu::ConvDims conv2d_dnnl_dims(const Conv2dSpec& s, Shape x) {
  const Shape y = conv2d_out_shape(s, x);
  return {x.n(), s.cin, x.h(), x.w(), s.cout, s.kh, s.kw, s.stride, s.pad, s.dilation, y.h(), y.w(), s.bias};
}

Conv2d::Conv2d(ParamSet& ps, const std::string& name, const Conv2dSpec& spec, int group, ConvInit init)
    : ps_(&ps), spec_(spec) {
  const Shape w = Shape::nchw(spec.cout, spec.cin, spec.kh, spec.kw);
  if (init == ConvInit::KaimingFanOut) {
    w_ = ps.declare(name + ".weight", w, Init::KaimingNormalFanOut, group);
    if (spec.bias) b_ = ps.declare(name + ".bias", Shape{spec.cout}, Init::Zeros, group);
    return;
  }
  const float bound = static_cast<float>(1.0 / std::sqrt(double(spec.cin) * spec.kh * spec.kw));
  w_ = ps.declare(name + ".weight", w, Init::Uniform, group, bound);
  if (spec.bias) b_ = ps.declare(name + ".bias", Shape{spec.cout}, Init::Uniform, group, bound);
}

double conv2d_flops(const Conv2dSpec& s, Shape x) {
  const Shape y = conv2d_out_shape(s, x);
  return 2.0 * double(y.n()) * double(s.cout) * double(y.h()) * double(y.w()) * double(s.cin) * double(s.kh) *
         double(s.kw);
}

void Conv2d::forward(Context& ctx, TensorView x, TensorView y) const {
  check_shape(y, out_shape(x.shape), "conv2d output");
  check_device(x, ctx.device(), "conv2d input");
  check_device(y, ctx.device(), "conv2d output");
  U2PL_CHECK(!overlaps(x, y), "conv2d: the output " << y.shape.str() << " shares memory with the input");
  const ProfileScope prof(ctx, "convolution forward", ctx.profiler() ? conv2d_flops(spec_, x.shape) : 0);
  const TensorView w = ps_->value(w_);
  const TensorView b = b_ >= 0 ? ps_->value(b_) : TensorView();
  if (ctx.device() == Device::CUDA) return conv2d_forward_cuda(ctx, spec_, x, w, b, y);
  const cpu::ConvDims d = conv2d_dnnl_dims(spec_, x.shape);
  cpu::dnnl_conv_forward(d, x.data, w.data, b.data, y.data, ctx.workspace(cpu::dnnl_conv_scratch_bytes(d, false)));
}

void Conv2d::backward(Context& ctx, TensorView x, TensorView dy, TensorView dx, float beta) const {
  check_shape(dy, out_shape(x.shape), "conv2d output gradient");
  if (dx.defined()) check_shape(dx, x.shape, "conv2d input gradient");
  check_device(x, ctx.device(), "conv2d input");
  check_device(dy, ctx.device(), "conv2d output gradient");
  U2PL_CHECK(!overlaps(dx, dy) && !overlaps(dx, x), "conv2d: the input gradient " << dx.shape.str()
                                                         << " shares memory with the output gradient or the input");
  const ProfileScope prof(ctx, "convolution backward",
                          ctx.profiler() ? (dx.defined() ? 2 : 1) * conv2d_flops(spec_, x.shape) : 0);
  const TensorView w = ps_->value(w_), dw = ps_->grad(w_);
  const TensorView db = b_ >= 0 ? ps_->grad(b_) : TensorView();
  if (ctx.device() == Device::CUDA) {
    conv2d_backward_cuda(ctx, spec_, x, w, dy, dx, beta, dw, db);
  } else {
    const cpu::ConvDims d = conv2d_dnnl_dims(spec_, x.shape);
    cpu::dnnl_conv_backward(d, x.data, w.data, dy.data, dx.data, beta, dw.data, db.data,
                            ctx.workspace(cpu::dnnl_conv_scratch_bytes(d, true)));
  }
  ctx.grad_ready(dw);
  if (db.defined()) ctx.grad_ready(db);
}

}  // namespace u2pl
