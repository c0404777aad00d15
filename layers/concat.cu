// Channel-block copy on CUDA, the one kernel behind concat and split. Must match torch.cat(dim=1)
// and its adjoint. Covered by tests/test_cuda_layers.cpp ("concat and split").
#include "engine/cuda/launch.cuh"
#include "engine/math.h"
#include "layers/concat.h"

namespace u2pl {
namespace {

// src (N, src_c, HW), dst (N, dst_c, HW): dst[:, d0 + ch] = src[:, s0 + ch] + beta·dst[:, d0 + ch]
// for ch < c; one plane of the grid per copied (image, channel).
__global__ void channel_block_kernel(int64_t planes, int64_t c, int32_t HW, const float* src, int64_t src_c,
                                     int64_t s0, float* dst, int64_t dst_c, int64_t d0, float beta) {
  for (int64_t p = blockIdx.y; p < planes; p += gridDim.y) {
    const int64_t b = p / c, ch = p % c;
    const float* sp = src + (b * src_c + s0 + ch) * HW;
    float* dp = dst + (b * dst_c + d0 + ch) * HW;
    for (int32_t i = plane_start(); i < HW; i += plane_step()) dp[i] = blend(sp[i], dp[i], beta);
  }
}

}  // namespace

void channel_block_copy_cuda(Context& ctx, int64_t N, int64_t c, int64_t HW, const float* src,
                             int64_t src_c, int64_t s0, float* dst, int64_t dst_c, int64_t d0,
                             float beta) {
  if (N * c * HW == 0) return;  // c or HW is 0: no division by them
  channel_block_kernel<<<plane_grid(ctx, N * c, HW), kBlock, 0, stream_of(ctx)>>>(N * c, c, int32_t(HW), src, src_c,
                                                                                  s0, dst, dst_c, d0, beta);
  CUDA_CHECK_LAUNCH();
}

}  // namespace u2pl
