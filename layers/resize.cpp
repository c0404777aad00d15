// Bilinear (align_corners=True) and nearest resize: CPU path and dispatch (layers/resize.h).
#include "layers/resize.h"

#include "engine/math.h"

namespace u2pl {

template <class T>
void bilinear_forward_cpu(Shape xs, Shape ys, const T* x, T* y) {
  const int64_t H = xs.h(), W = xs.w(), OH = ys.h(), OW = ys.w();
  const float sh = align_corners_scale(H, OH), sw = align_corners_scale(W, OW);
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < xs.n() * xs.c(); ++p) {
    const T* plane = x + p * H * W;
    for (int64_t oh = 0; oh < OH; ++oh) {
      const LinearTap th = linear_tap(oh, sh, H);
      for (int64_t ow = 0; ow < OW; ++ow) {
        const LinearTap tw = linear_tap(ow, sw, W);
        const T lh = T(th.l1), lw = T(tw.l1);
        y[(p * OH + oh) * OW + ow] =
            (T(1) - lh) * ((T(1) - lw) * plane[th.i0 * W + tw.i0] + lw * plane[th.i0 * W + tw.i1]) +
            lh * ((T(1) - lw) * plane[th.i1 * W + tw.i0] + lw * plane[th.i1 * W + tw.i1]);
      }
    }
  }
}

template <class T>
void bilinear_backward_cpu(Shape xs, Shape ys, const T* dy, T* dx, T beta) {
  const int64_t H = xs.h(), W = xs.w(), OH = ys.h(), OW = ys.w();
  const float sh = align_corners_scale(H, OH), sw = align_corners_scale(W, OW);
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < xs.n() * xs.c(); ++p) {
    T* plane = dx + p * H * W;
    for (int64_t i = 0; i < H * W; ++i) plane[i] = blend(T(0), plane[i], beta);
    for (int64_t oh = 0; oh < OH; ++oh) {
      const LinearTap th = linear_tap(oh, sh, H);
      for (int64_t ow = 0; ow < OW; ++ow) {
        const LinearTap tw = linear_tap(ow, sw, W);
        const T g = dy[(p * OH + oh) * OW + ow], lh = T(th.l1), lw = T(tw.l1);
        plane[th.i0 * W + tw.i0] += (T(1) - lh) * (T(1) - lw) * g;
        plane[th.i0 * W + tw.i1] += (T(1) - lh) * lw * g;
        plane[th.i1 * W + tw.i0] += lh * (T(1) - lw) * g;
        plane[th.i1 * W + tw.i1] += lh * lw * g;
      }
    }
  }
}

template <class T>
void nearest_forward_cpu(int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW, const T* x,
                         T* y) {
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t oh = 0; oh < OH; ++oh) {
      const int64_t ih = nearest_src(oh, H, OH);
      for (int64_t ow = 0; ow < OW; ++ow)
        y[(p * OH + oh) * OW + ow] = x[(p * H + ih) * W + nearest_src(ow, W, OW)];
    }
}

template void bilinear_forward_cpu<float>(Shape, Shape, const float*, float*);
template void bilinear_forward_cpu<double>(Shape, Shape, const double*, double*);
template void bilinear_backward_cpu<float>(Shape, Shape, const float*, float*, float);
template void bilinear_backward_cpu<double>(Shape, Shape, const double*, double*, double);
template void nearest_forward_cpu<float>(int64_t, int64_t, int64_t, int64_t, int64_t, const float*, float*);
template void nearest_forward_cpu<int32_t>(int64_t, int64_t, int64_t, int64_t, int64_t, const int32_t*,
                                           int32_t*);
template void nearest_forward_cpu<uint8_t>(int64_t, int64_t, int64_t, int64_t, int64_t, const uint8_t*,
                                           uint8_t*);

static void check_resize(const Shape& in, const Shape& out, int ndim, const char* op) {
  U2PL_CHECK(in.ndim == ndim && out.ndim == ndim, op << ": expected " << ndim << "-D tensors, got "
                                                     << in.str() << " -> " << out.str());
  for (int i = 0; i < ndim - 2; ++i)
    U2PL_CHECK(in[i] == out[i], op << ": leading dimensions differ, " << in.str() << " -> " << out.str());
  U2PL_CHECK(in.numel() > 0 && out.numel() > 0, op << ": empty tensor, " << in.str() << " -> " << out.str());
}

void bilinear_forward(Context& ctx, TensorView x, TensorView y) {
  check_resize(x.shape, y.shape, 4, "bilinear resize");
  check_device(x, ctx.device(), "bilinear input");
  check_device(y, ctx.device(), "bilinear output");
  if (ctx.device() == Device::CUDA) return bilinear_forward_cuda(ctx, x, y);
  bilinear_forward_cpu<float>(x.shape, y.shape, x.data, y.data);
}

void bilinear_backward(Context& ctx, TensorView dy, TensorView dx, float beta) {
  check_resize(dx.shape, dy.shape, 4, "bilinear resize backward");
  check_device(dy, ctx.device(), "bilinear output gradient");
  check_device(dx, ctx.device(), "bilinear input gradient");
  if (ctx.device() == Device::CUDA) return bilinear_backward_cuda(ctx, dy, dx, beta);
  bilinear_backward_cpu<float>(dx.shape, dy.shape, dy.data, dx.data, beta);
}

template <class T>
static void nearest_dispatch(Context& ctx, View<T> x, View<T> y, int ndim) {
  check_resize(x.shape, y.shape, ndim, "nearest resize");
  check_device(x, ctx.device(), "nearest input");
  check_device(y, ctx.device(), "nearest output");
  const int64_t H = x.shape[ndim - 2], W = x.shape[ndim - 1];
  const int64_t OH = y.shape[ndim - 2], OW = y.shape[ndim - 1];
  const int64_t planes = x.numel() / (H * W);
  if (ctx.device() == Device::CUDA) return nearest_forward_cuda(ctx, planes, H, W, OH, OW, x.data, y.data);
  nearest_forward_cpu<T>(planes, H, W, OH, OW, x.data, y.data);
}

void nearest_forward(Context& ctx, TensorView x, TensorView y) { nearest_dispatch(ctx, x, y, 4); }
void nearest_forward(Context& ctx, LabelView x, LabelView y) { nearest_dispatch(ctx, x, y, 3); }
void nearest_forward(Context& ctx, MaskView x, MaskView y) { nearest_dispatch(ctx, x, y, 3); }

}  // namespace u2pl
