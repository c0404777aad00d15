// MaxPool2d and global average pooling: shapes, CPU path, dispatch (layers/pool.h).
#include "layers/pool.h"

#include "engine/math.h"
#include "layers/pool_math.h"

namespace u2pl {

int64_t maxpool_out_size(int64_t in, const MaxPoolSpec& s) {
  const int64_t span = in + 2 * s.pad - s.k;
  U2PL_CHECK(span >= 0, "maxpool: input size " << in << " is smaller than kernel " << s.k
                                                << " with padding " << s.pad);
  int64_t out = (s.ceil_mode ? (span + s.stride - 1) / s.stride : span / s.stride) + 1;
  if (s.ceil_mode && (out - 1) * s.stride >= in + s.pad) --out;
  return out;
}

Shape maxpool_out_shape(const MaxPoolSpec& s, Shape x) {
  U2PL_CHECK(x.ndim == 4 && x.numel() > 0, "maxpool: expected a non-empty 4-D input, got " << x.str());
  U2PL_CHECK(s.k > 0 && s.stride > 0 && s.pad >= 0 && 2 * s.pad <= s.k,
             "maxpool: invalid kernel " << s.k << ", stride " << s.stride << ", padding " << s.pad
                                        << " (padding must be at most half the kernel)");
  return Shape::nchw(x.n(), x.c(), maxpool_out_size(x.h(), s), maxpool_out_size(x.w(), s));
}

template <class T>
void maxpool_forward_cpu(const MaxPoolSpec& s, Shape xs, const T* x, T* y) {
  const Shape ys = maxpool_out_shape(s, xs);
  const int64_t H = xs.h(), W = xs.w(), OH = ys.h(), OW = ys.w();
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < xs.n() * xs.c(); ++p) {
    const T* plane = x + p * H * W;
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow) {
        const PoolWindow win = pool_window(oh, ow, s.k, s.stride, s.pad, H, W);
        y[(p * OH + oh) * OW + ow] = plane[pool_argmax(plane, W, win)];
      }
  }
}

template <class T>
void maxpool_backward_cpu(const MaxPoolSpec& s, Shape xs, const T* x, const T* dy, T* dx, T beta) {
  const Shape ys = maxpool_out_shape(s, xs);
  const int64_t H = xs.h(), W = xs.w(), OH = ys.h(), OW = ys.w();
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < xs.n() * xs.c(); ++p) {
    const T* plane = x + p * H * W;
    T* dplane = dx + p * H * W;
    for (int64_t i = 0; i < H * W; ++i) dplane[i] = blend(T(0), dplane[i], beta);
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow) {
        const PoolWindow win = pool_window(oh, ow, s.k, s.stride, s.pad, H, W);
        dplane[pool_argmax(plane, W, win)] += dy[(p * OH + oh) * OW + ow];
      }
  }
}

template <class T>
void global_avgpool_forward_cpu(Shape xs, const T* x, T* y) {
  const int64_t HW = xs.h() * xs.w();
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < xs.n() * xs.c(); ++p) {
    double acc = 0;
    for (int64_t i = 0; i < HW; ++i) acc += x[p * HW + i];
    y[p] = T(acc / double(HW));
  }
}

template <class T>
void global_avgpool_backward_cpu(Shape xs, const T* dy, T* dx, T beta) {
  const int64_t HW = xs.h() * xs.w();
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < xs.n() * xs.c(); ++p) {
    const T g = dy[p] / T(HW);
    for (int64_t i = 0; i < HW; ++i) dx[p * HW + i] = blend(g, dx[p * HW + i], beta);
  }
}

template void maxpool_forward_cpu<float>(const MaxPoolSpec&, Shape, const float*, float*);
template void maxpool_forward_cpu<double>(const MaxPoolSpec&, Shape, const double*, double*);
template void maxpool_backward_cpu<float>(const MaxPoolSpec&, Shape, const float*, const float*,
                                          float*, float);
template void maxpool_backward_cpu<double>(const MaxPoolSpec&, Shape, const double*, const double*,
                                           double*, double);
template void global_avgpool_forward_cpu<float>(Shape, const float*, float*);
template void global_avgpool_forward_cpu<double>(Shape, const double*, double*);
template void global_avgpool_backward_cpu<float>(Shape, const float*, float*, float);
template void global_avgpool_backward_cpu<double>(Shape, const double*, double*, double);

void maxpool_forward(Context& ctx, const MaxPoolSpec& s, TensorView x, TensorView y) {
  check_shape(y, maxpool_out_shape(s, x.shape), "maxpool output");
  check_device(x, ctx.device(), "maxpool input");
  check_device(y, ctx.device(), "maxpool output");
  if (ctx.device() == Device::CUDA) return maxpool_forward_cuda(ctx, s, x, y);
  maxpool_forward_cpu<float>(s, x.shape, x.data, y.data);
}

void maxpool_backward(Context& ctx, const MaxPoolSpec& s, TensorView x, TensorView dy,
                      TensorView dx, float beta) {
  check_shape(dy, maxpool_out_shape(s, x.shape), "maxpool output gradient");
  check_shape(dx, x.shape, "maxpool input gradient");
  check_device(dy, ctx.device(), "maxpool output gradient");
  check_device(dx, ctx.device(), "maxpool input gradient");
  if (ctx.device() == Device::CUDA) return maxpool_backward_cuda(ctx, s, x, dy, dx, beta);
  maxpool_backward_cpu<float>(s, x.shape, x.data, dy.data, dx.data, beta);
}

static Shape gap_shape(const TensorView& x) {
  U2PL_CHECK(x.shape.ndim == 4 && x.numel() > 0,
             "global average pool: expected a non-empty 4-D input, got " << x.shape.str());
  return Shape::nchw(x.shape.n(), x.shape.c(), 1, 1);
}

void global_avgpool_forward(Context& ctx, TensorView x, TensorView y) {
  check_shape(y, gap_shape(x), "global average pool output");
  check_device(x, ctx.device(), "global average pool input");
  check_device(y, ctx.device(), "global average pool output");
  if (ctx.device() == Device::CUDA) return global_avgpool_forward_cuda(ctx, x, y);
  global_avgpool_forward_cpu<float>(x.shape, x.data, y.data);
}

void global_avgpool_backward(Context& ctx, TensorView dy, TensorView dx, float beta) {
  check_shape(dy, gap_shape(dx), "global average pool output gradient");
  check_device(dy, ctx.device(), "global average pool output gradient");
  check_device(dx, ctx.device(), "global average pool input gradient");
  if (ctx.device() == Device::CUDA) return global_avgpool_backward_cuda(ctx, dy, dx, beta);
  global_avgpool_backward_cpu<float>(dx.shape, dy.data, dx.data, beta);
}

}  // namespace u2pl
