// Box mixing on CUDA (layers/mix.h): one grid-stride kernel over the output; the boxes travel by
// value in a small fixed table (batches up to kMaxMixBatch images per call). Covered by
// tests/test_cuda_layers.cpp ("box mix").
#include "engine/cuda/launch.cuh"
#include "layers/mix.h"

namespace u2pl {
namespace {

constexpr int kMaxMixBatch = 64;
struct BoxTable {
  Box b[kMaxMixBatch];
};

template <class T>
__global__ void box_mix_kernel(BoxTable boxes, int64_t B, int64_t C, int64_t H, int64_t W, const T* in, T* out) {
  const int64_t n = B * C * H * W;
  for (int64_t i = grid_start(); i < n; i += grid_step()) {
    const int64_t x = i % W, y = (i / W) % H, p = i / (H * W), b = p / C, c = p % C;
    const Box& bx = boxes.b[b];
    const bool inside = y >= bx.y0 && y < bx.y0 + bx.h && x >= bx.x0 && x < bx.x0 + bx.w;
    out[i] = in[((inside ? ((b + 1) % B) * C + c : p) * H + y) * W + x];
  }
}

template <class T>
void launch(Context& ctx, const std::vector<Box>& boxes, int64_t B, int64_t C, int64_t H, int64_t W, const T* in,
            T* out) {
  U2PL_CHECK(B <= kMaxMixBatch, "box mix on cuda: at most " << kMaxMixBatch << " images per call, got " << B);
  BoxTable t{};
  for (int64_t i = 0; i < B; ++i) t.b[i] = boxes[i];
  const int64_t n = B * C * H * W;
  box_mix_kernel<T><<<grid_for(ctx, n), kBlock, 0, stream_of(ctx)>>>(t, B, C, H, W, in, out);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void box_mix_cuda(Context& ctx, const std::vector<Box>& boxes, int64_t B, int64_t C, int64_t H, int64_t W,
                  const float* in, float* out) {
  launch(ctx, boxes, B, C, H, W, in, out);
}
void box_mix_cuda(Context& ctx, const std::vector<Box>& boxes, int64_t B, int64_t C, int64_t H, int64_t W,
                  const int32_t* in, int32_t* out) {
  launch(ctx, boxes, B, C, H, W, in, out);
}

}  // namespace u2pl
