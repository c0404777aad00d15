// ReLU, add, Dropout2d: CPU path and dispatch (layers/elementwise.h).
#include "layers/elementwise.h"

#include "engine/math.h"
#include "engine/rng.h"

namespace u2pl {

template <class T>
void relu_forward_cpu(int64_t n, const T* x, T* y) {
  const ReluForward f;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) y[i] = f(x[i]);
}

template <class T>
void relu_backward_cpu(int64_t n, const T* y, const T* dy, T* dx, T beta) {
  const ReluBackward f;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) dx[i] = blend(f(y[i], dy[i]), dx[i], beta);
}

template <class T>
void channel_scale_cpu(Shape xs, const T* x, const T* scale, T* y, T beta) {
  const int64_t NC = xs.n() * xs.c(), HW = xs.h() * xs.w();
#pragma omp parallel for schedule(static)
  for (int64_t k = 0; k < NC; ++k)
    for (int64_t i = 0; i < HW; ++i) y[k * HW + i] = blend(x[k * HW + i] * scale[k], y[k * HW + i], beta);
}

template void relu_forward_cpu<float>(int64_t, const float*, float*);
template void relu_forward_cpu<double>(int64_t, const double*, double*);
template void relu_backward_cpu<float>(int64_t, const float*, const float*, float*, float);
template void relu_backward_cpu<double>(int64_t, const double*, const double*, double*, double);
template void channel_scale_cpu<float>(Shape, const float*, const float*, float*, float);
template void channel_scale_cpu<double>(Shape, const double*, const double*, double*, double);

static void same(const TensorView& a, const TensorView& b, Device dev, const char* op) {
  U2PL_CHECK(a.shape == b.shape, op << ": shapes differ, " << a.shape.str() << " vs " << b.shape.str());
  check_device(a, dev, op);
  check_device(b, dev, op);
}

void relu_forward(Context& ctx, TensorView x, TensorView y) {
  same(x, y, ctx.device(), "relu");
  if (ctx.device() == Device::CUDA) return relu_forward_cuda(ctx, x, y);
  relu_forward_cpu<float>(x.numel(), x.data, y.data);
}

void relu_backward(Context& ctx, TensorView y, TensorView dy, TensorView dx, float beta) {
  same(y, dy, ctx.device(), "relu backward");
  same(dy, dx, ctx.device(), "relu backward");
  if (ctx.device() == Device::CUDA) return relu_backward_cuda(ctx, y, dy, dx, beta);
  relu_backward_cpu<float>(y.numel(), y.data, dy.data, dx.data, beta);
}

void add_forward(Context& ctx, TensorView a, TensorView b, TensorView y) {
  same(a, b, ctx.device(), "add");
  same(a, y, ctx.device(), "add");
  if (ctx.device() == Device::CUDA) return add_forward_cuda(ctx, a, b, y);
  const int64_t n = a.numel();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) y.data[i] = a.data[i] + b.data[i];
}

void accumulate(Context& ctx, TensorView dy, TensorView dx, float beta) {
  same(dy, dx, ctx.device(), "gradient accumulate");
  if (ctx.device() == Device::CUDA) return accumulate_cuda(ctx, dy, dx, beta);
  const int64_t n = dy.numel();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) dx.data[i] = blend(dy.data[i], dx.data[i], beta);
}

static void check_scale(const TensorView& x, const TensorView& scale, Device dev) {
  U2PL_CHECK(x.shape.ndim == 4, "dropout2d: expected a 4-D input, got " << x.shape.str());
  check_shape(scale, Shape{x.shape.n(), x.shape.c()}, "dropout2d channel scale");
  check_device(scale, dev, "dropout2d channel scale");
}

void dropout2d_make_scale(Context& ctx, float p, uint64_t seed, uint64_t offset, TensorView scale, uint64_t first) {
  U2PL_CHECK(p >= 0.f && p < 1.f, "dropout2d: p must be in [0, 1), got " << p);
  check_device(scale, ctx.device(), "dropout2d channel scale");
  if (ctx.device() == Device::CUDA) return dropout2d_make_scale_cuda(ctx, p, seed, offset, first, scale);
  for (int64_t k = 0; k < scale.numel(); ++k)
    scale.data[k] = dropout_scale(philox_uniform(seed, offset, first + static_cast<uint64_t>(k)), p);
}

void dropout2d_forward(Context& ctx, TensorView x, TensorView scale, TensorView y) {
  same(x, y, ctx.device(), "dropout2d");
  check_scale(x, scale, ctx.device());
  if (ctx.device() == Device::CUDA) return channel_scale_cuda(ctx, x, scale, y, 0.f);
  channel_scale_cpu<float>(x.shape, x.data, scale.data, y.data, 0.f);
}

void dropout2d_backward(Context& ctx, TensorView scale, TensorView dy, TensorView dx, float beta) {
  same(dy, dx, ctx.device(), "dropout2d backward");
  check_scale(dy, scale, ctx.device());
  if (ctx.device() == Device::CUDA) return channel_scale_cuda(ctx, dy, scale, dx, beta);
  channel_scale_cpu<float>(dy.shape, dy.data, scale.data, dx.data, beta);
}

void ema_update(Context& ctx, TensorView teacher, TensorView student, float ema) {
  U2PL_CHECK(teacher.numel() == student.numel(), "ema: teacher has " << teacher.numel() << " values, student "
                                                                    << student.numel());
  U2PL_CHECK(ema >= 0.f && ema <= 1.f, "ema: decay must be in [0, 1], got " << ema);
  check_device(teacher, ctx.device(), "ema teacher");
  check_device(student, ctx.device(), "ema student");
  if (ctx.device() == Device::CUDA) return ema_update_cuda(ctx, teacher, student, ema);
  const EmaUpdate f{ema};
  const int64_t n = teacher.numel();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) teacher.data[i] = f(teacher.data[i], student.data[i]);
}

}  // namespace u2pl
