// Channel-block copy on CUDA, the one kernel behind concat and split. Must match torch.cat(dim=1)
// and its adjoint. Covered by tests/test_cuda_layers.cpp ("concat and split").
#include "engine/cuda/launch.cuh"
#include "engine/math.h"
#include "layers/concat.h"

namespace u2pl {
namespace {

// src (N, src_c, HW), dst (N, dst_c, HW): dst[:, d0 + ch] = src[:, s0 + ch] + beta·dst[:, d0 + ch]
// for ch < c; the loop runs over the N·c·HW copied elements.
__global__ void channel_block_kernel(int64_t n, int64_t c, int64_t HW, const float* src, int64_t src_c,
                                     int64_t s0, float* dst, int64_t dst_c, int64_t d0, float beta) {
  for (int64_t k = grid_start(); k < n; k += grid_step()) {
    const int64_t i = k % HW, plane = k / HW, ch = plane % c, b = plane / c;
    float& d = dst[(b * dst_c + d0 + ch) * HW + i];
    d = blend(src[(b * src_c + s0 + ch) * HW + i], d, beta);
  }
}

}  // namespace

void channel_block_copy_cuda(Context& ctx, int64_t N, int64_t c, int64_t HW, const float* src,
                             int64_t src_c, int64_t s0, float* dst, int64_t dst_c, int64_t d0,
                             float beta) {
  const int64_t n = N * c * HW;
  if (n == 0) return;  // c or HW is 0: no division by them
  channel_block_kernel<<<grid_for(ctx, n), kBlock, 0, stream_of(ctx)>>>(n, c, HW, src, src_c, s0, dst,
                                                                         dst_c, d0, beta);
  CUDA_CHECK_LAUNCH();
}

}  // namespace u2pl
