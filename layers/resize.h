// Bilinear resize with align_corners=True (any sizes, forward and backward) and nearest resize
// for float maps, int32 labels and uint8 masks, on CPU and CUDA. Must match
// F.interpolate(mode="bilinear", align_corners=True) and F.interpolate(mode="nearest") with
// PyTorch's float32 index rule (SPEC, top). Tests: test_layers_grad.cpp, test_layers_fixtures.cpp,
// test_cuda_layers.cpp.
#pragma once
#include "engine/context.h"

namespace u2pl {

// x (N,C,H,W) -> y (N,C,OH,OW); the output shape comes from y.
void bilinear_forward(Context& ctx, TensorView x, TensorView y);
// dx = beta*dx + adjoint(dy). The CUDA kernel gathers per input pixel (no atomics), so it is
// deterministic.
void bilinear_backward(Context& ctx, TensorView dy, TensorView dx, float beta);

// Nearest: (N,C,H,W) -> (N,C,OH,OW) for maps; (N,H,W) -> (N,OH,OW) for labels and masks.
void nearest_forward(Context& ctx, TensorView x, TensorView y);
void nearest_forward(Context& ctx, LabelView x, LabelView y);
void nearest_forward(Context& ctx, MaskView x, MaskView y);

template <class T>
void bilinear_forward_cpu(Shape xs, Shape ys, const T* x, T* y);
template <class T>
void bilinear_backward_cpu(Shape xs, Shape ys, const T* dy, T* dx, T beta);
// planes × (H,W) -> planes × (OH,OW)
template <class T>
void nearest_forward_cpu(int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW, const T* x,
                         T* y);

void bilinear_forward_cuda(Context& ctx, TensorView x, TensorView y);
void bilinear_backward_cuda(Context& ctx, TensorView dy, TensorView dx, float beta);
void nearest_forward_cuda(Context& ctx, int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW,
                          const float* x, float* y);
void nearest_forward_cuda(Context& ctx, int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW,
                          const int32_t* x, int32_t* y);
void nearest_forward_cuda(Context& ctx, int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW,
                          const uint8_t* x, uint8_t* y);

}  // namespace u2pl
