// Bilinear (align_corners=True) and nearest resize on CUDA over the shared tap math of
// engine/math.h. Must match F.interpolate(mode="bilinear", align_corners=True) and
// F.interpolate(mode="nearest"). The bilinear backward gathers per input pixel (no atomics), so
// it is deterministic. Covered by tests/test_cuda_layers.cpp ("bilinear", "nearest").
#include <cmath>

#include "engine/cuda/launch.cuh"
#include "engine/math.h"
#include "layers/resize.h"

namespace u2pl {
namespace {

struct ResizeGeom {
  int64_t H, W, OH, OW;
  float sh, sw;  // align_corners_scale per axis
};

ResizeGeom resize_geom(Shape xs, Shape ys) {
  return {xs.h(), xs.w(), ys.h(), ys.w(), align_corners_scale(xs.h(), ys.h()),
          align_corners_scale(xs.w(), ys.w())};
}

// x (planes, H, W) -> y (planes, OH, OW). The CPU oracle's expression.
__global__ void bilinear_forward_kernel(int64_t planes, ResizeGeom g, const float* x, float* y) {
  const int32_t OW = int32_t(g.OW), n = int32_t(g.OH * g.OW);
  for (int64_t p = blockIdx.y; p < planes; p += gridDim.y) {
    const float* plane = x + p * g.H * g.W;
    float* out = y + p * n;
    for (int32_t o = plane_start(); o < n; o += plane_step()) {
      const int32_t oh = o / OW, ow = o - oh * OW;
      const LinearTap th = linear_tap(oh, g.sh, g.H), tw = linear_tap(ow, g.sw, g.W);
      const float lh = th.l1, lw = tw.l1;
      out[o] = (1.0f - lh) * ((1.0f - lw) * plane[th.i0 * g.W + tw.i0] + lw * plane[th.i0 * g.W + tw.i1]) +
               lh * ((1.0f - lw) * plane[th.i1 * g.W + tw.i0] + lw * plane[th.i1 * g.W + tw.i1]);
    }
  }
}

// The output indices whose taps may touch input index i: taps are floor(scale·o) and the one
// after it, so o lies near [(i − 1) / scale, (i + 1) / scale]; two extra indices each side
// absorb float rounding of scale·o. Every candidate is then tested with linear_tap itself.
// scale 0 (output or input size 1): every output reads input 0 (and 1), so all are candidates.
struct Candidates {
  int64_t lo, hi;  // inclusive
};
__device__ Candidates candidates(int64_t i, float scale, int64_t out) {
  if (scale == 0.0f) return {0, out - 1};
  const double lo = floor(static_cast<double>(i - 1) / scale) - 2;
  const double hi = ceil(static_cast<double>(i + 1) / scale) + 2;
  const double last = static_cast<double>(out - 1);
  return {static_cast<int64_t>(lo < 0 ? 0 : lo), static_cast<int64_t>(hi > last ? last : hi)};
}

// dy (planes, OH, OW), dx (planes, H, W). Each input pixel adds the terms the CPU scatter would
// add to it, in the same (oh, ow, tap) order, starting from beta·dx.
__global__ void bilinear_backward_kernel(int64_t planes, ResizeGeom g, const float* dy, float* dx, float beta) {
  const int32_t W = int32_t(g.W), n = int32_t(g.H * g.W);
  for (int64_t p = blockIdx.y; p < planes; p += gridDim.y) {
    const float* dplane = dy + p * g.OH * g.OW;
    float* dxp = dx + p * n;
    for (int32_t idx = plane_start(); idx < n; idx += plane_step()) {
      const int32_t h = idx / W, w = idx - h * W;
      float acc = blend(0.0f, dxp[idx], beta);
      const Candidates ch = candidates(h, g.sh, g.OH), cw = candidates(w, g.sw, g.OW);
      for (int64_t oh = ch.lo; oh <= ch.hi; ++oh) {
        const LinearTap th = linear_tap(oh, g.sh, g.H);
        if (th.i0 != h && th.i1 != h) continue;
        for (int64_t ow = cw.lo; ow <= cw.hi; ++ow) {
          const LinearTap tw = linear_tap(ow, g.sw, g.W);
          if (tw.i0 != w && tw.i1 != w) continue;
          const float gr = dplane[oh * g.OW + ow], lh = th.l1, lw = tw.l1;
          if (th.i0 == h && tw.i0 == w) acc += (1.0f - lh) * (1.0f - lw) * gr;
          if (th.i0 == h && tw.i1 == w) acc += (1.0f - lh) * lw * gr;
          if (th.i1 == h && tw.i0 == w) acc += lh * (1.0f - lw) * gr;
          if (th.i1 == h && tw.i1 == w) acc += lh * lw * gr;
        }
      }
      dxp[idx] = acc;
    }
  }
}

// x (planes, H, W) -> y (planes, OH, OW).
template <class T>
__global__ void nearest_kernel(int64_t planes, int64_t H, int64_t W, int64_t OH, int32_t OW, const T* x, T* y) {
  const int32_t n = int32_t(OH * OW);
  for (int64_t p = blockIdx.y; p < planes; p += gridDim.y) {
    const T* plane = x + p * H * W;
    T* out = y + p * n;
    for (int32_t o = plane_start(); o < n; o += plane_step()) {
      const int32_t oh = o / OW, ow = o - oh * OW;
      out[o] = plane[nearest_src(oh, H, OH) * W + nearest_src(ow, W, int64_t(OW))];
    }
  }
}

template <class T>
void nearest_launch(Context& ctx, int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW,
                    const T* x, T* y) {
  if (planes * OH * OW == 0) return;
  nearest_kernel<T><<<plane_grid(ctx, planes, OH * OW), kBlock, 0, stream_of(ctx)>>>(planes, H, W, OH, int32_t(OW),
                                                                                       x, y);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void bilinear_forward_cuda(Context& ctx, TensorView x, TensorView y) {
  const ResizeGeom g = resize_geom(x.shape, y.shape);
  const int64_t planes = x.shape.n() * x.shape.c();
  if (planes * g.OH * g.OW == 0) return;
  bilinear_forward_kernel<<<plane_grid(ctx, planes, g.OH * g.OW), kBlock, 0, stream_of(ctx)>>>(planes, g, x.data,
                                                                                               y.data);
  CUDA_CHECK_LAUNCH();
}

void bilinear_backward_cuda(Context& ctx, TensorView dy, TensorView dx, float beta) {
  const ResizeGeom g = resize_geom(dx.shape, dy.shape);
  const int64_t planes = dx.shape.n() * dx.shape.c();
  if (planes * g.H * g.W == 0) return;
  bilinear_backward_kernel<<<plane_grid(ctx, planes, g.H * g.W), kBlock, 0, stream_of(ctx)>>>(planes, g, dy.data,
                                                                                              dx.data, beta);
  CUDA_CHECK_LAUNCH();
}

void nearest_forward_cuda(Context& ctx, int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW,
                          const float* x, float* y) {
  nearest_launch(ctx, planes, H, W, OH, OW, x, y);
}
void nearest_forward_cuda(Context& ctx, int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW,
                          const int32_t* x, int32_t* y) {
  nearest_launch(ctx, planes, H, W, OH, OW, x, y);
}
void nearest_forward_cuda(Context& ctx, int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW,
                          const uint8_t* x, uint8_t* y) {
  nearest_launch(ctx, planes, H, W, OH, OW, x, y);
}

}  // namespace u2pl
