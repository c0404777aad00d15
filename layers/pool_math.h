// Max-pool window arithmetic shared by the CPU loops and the CUDA kernels (STYLE 9).
#pragma once
#include <cstdint>

#include "engine/hd.h"

namespace u2pl {

struct PoolWindow {
  int64_t h0, h1, w0, w1;  // [h0, h1) × [w0, w1), clipped to the input: padded cells never win
};

U2PL_HD PoolWindow pool_window(int64_t oh, int64_t ow, int k, int stride, int pad, int64_t H,
                               int64_t W) {
  int64_t h0 = oh * stride - pad, w0 = ow * stride - pad;
  int64_t h1 = h0 + k < H ? h0 + k : H, w1 = w0 + k < W ? w0 + k : W;
  h0 = h0 > 0 ? h0 : 0;
  w0 = w0 > 0 ? w0 : 0;
  return {h0, h1, w0, w1};
}

// Index (within the plane) of the first maximum of the window in row-major order; NaN wins, as
// in PyTorch.
template <class T>
U2PL_HD int64_t pool_argmax(const T* plane, int64_t W, const PoolWindow& win) {
  int64_t best = win.h0 * W + win.w0;
  T m = plane[best];
  for (int64_t h = win.h0; h < win.h1; ++h)
    for (int64_t w = win.w0; w < win.w1; ++w) {
      const T v = plane[h * W + w];
      if (v > m || v != v) {
        m = v;
        best = h * W + w;
        if (v != v) return best;
      }
    }
  return best;
}

}  // namespace u2pl
