// Box mixing on CUDA (layers/mix.h): one kernel over a plane grid of the output; the boxes travel by
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

// in, out (B·C planes of H·W): inside image b's box, plane (b, c) takes image (b + 1) mod B's.
template <class T>
__global__ void box_mix_kernel(BoxTable boxes, int64_t B, int64_t C, int32_t H, int32_t W, const T* in, T* out) {
  const int64_t planes = B * C;
  const int32_t HW = H * W;
  for (int64_t p = blockIdx.y; p < planes; p += gridDim.y) {
    const int64_t b = p / C, c = p % C;
    const Box& bx = boxes.b[b];
    const T* own = in + p * HW;
    const T* next = in + (((b + 1) % B) * C + c) * HW;
    T* o = out + p * HW;
    for (int32_t i = plane_start(); i < HW; i += plane_step()) {
      const int32_t y = i / W, x = i - y * W;
      const bool inside = y >= bx.y0 && y < bx.y0 + bx.h && x >= bx.x0 && x < bx.x0 + bx.w;
      o[i] = inside ? next[i] : own[i];
    }
  }
}

template <class T>
void launch(Context& ctx, const std::vector<Box>& boxes, int64_t B, int64_t C, int64_t H, int64_t W, const T* in,
            T* out) {
  U2PL_CHECK(B <= kMaxMixBatch, "box mix on cuda: at most " << kMaxMixBatch << " images per call, got " << B);
  BoxTable t{};
  for (int64_t i = 0; i < B; ++i) t.b[i] = boxes[i];
  box_mix_kernel<T><<<plane_grid(ctx, B * C, H * W), kBlock, 0, stream_of(ctx)>>>(t, B, C, int32_t(H), int32_t(W),
                                                                                  in, out);
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
