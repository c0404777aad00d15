// Box mixing for CutMix (SPEC §3): out_i = in_{(i+1) mod B} inside image i's box, in_i outside,
// for images (B, C, H, W) and label maps (B, H, W) alike, on CPU and CUDA. Matches the public
// code's generate_unsup_data (mask 0 inside the box). Tests: test_schedule.cpp,
// test_cuda_layers.cpp.
#pragma once
#include <vector>

#include "engine/context.h"

namespace u2pl {

struct Box {
  int x0 = 0, y0 = 0, w = 0, h = 0;  // [y0, y0 + h) × [x0, x0 + w)
};

void box_mix(Context& ctx, const std::vector<Box>& boxes, TensorView in, TensorView out);
void box_mix(Context& ctx, const std::vector<Box>& boxes, LabelView in, LabelView out);

template <class T>
void box_mix_cpu(const std::vector<Box>& boxes, int64_t B, int64_t C, int64_t H, int64_t W, const T* in, T* out);
void box_mix_cuda(Context& ctx, const std::vector<Box>& boxes, int64_t B, int64_t C, int64_t H, int64_t W,
                  const float* in, float* out);
void box_mix_cuda(Context& ctx, const std::vector<Box>& boxes, int64_t B, int64_t C, int64_t H, int64_t W,
                  const int32_t* in, int32_t* out);

}  // namespace u2pl
