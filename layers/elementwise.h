// ReLU (in place where safe), residual add, Dropout2d and the EMA update, on CPU and CUDA.
// Must match torch.relu, a + b and nn.Dropout2d(p) in train mode with the mask given. Tests:
// test_layers_grad.cpp, test_layers_fixtures.cpp, test_cuda_layers.cpp.
#pragma once
#include <cstdint>

#include "engine/context.h"

namespace u2pl {

// y = max(x, 0); y may alias x.
void relu_forward(Context& ctx, TensorView x, TensorView y);
// dx = beta*dx + dy·[y > 0], from the output y (so the in-place forward is backward-safe); dx
// may alias dy.
void relu_backward(Context& ctx, TensorView y, TensorView dy, TensorView dx, float beta);

// y = a + b; y may alias a or b. The backward of a fan-in is beta = 1 accumulation upstream.
void add_forward(Context& ctx, TensorView a, TensorView b, TensorView y);
// dx = beta*dx + dy (the gradient pass-through of one add operand or a fan-out branch).
void accumulate(Context& ctx, TensorView dy, TensorView dx, float beta);

// Dropout2d: scale (N, C) holds 0 or 1/(1 − p) per channel, drawn from Philox(seed, offset):
// channel k = n·C + c survives when uniform(seed, offset, first + k) ≥ p (`first`: where this
// batch's images start in a larger batch drawn as one, SyncBN-style replicas over processes).
void dropout2d_make_scale(Context& ctx, float p, uint64_t seed, uint64_t offset, TensorView scale,
                          uint64_t first = 0);
// y = x · scale[n, c]; y may alias x.
void dropout2d_forward(Context& ctx, TensorView x, TensorView scale, TensorView y);
// dx = beta*dx + dy · scale[n, c]; dx may alias dy.
void dropout2d_backward(Context& ctx, TensorView scale, TensorView dy, TensorView dx, float beta);

// The EMA teacher update over a whole parameter arena: t = ema·t + (1 − ema)·s (views of equal
// length). One loop (one kernel on CUDA) per step.
void ema_update(Context& ctx, TensorView teacher, TensorView student, float ema);

// CPU oracles (double in the gradient checks).
template <class T>
void relu_forward_cpu(int64_t n, const T* x, T* y);
template <class T>
void relu_backward_cpu(int64_t n, const T* y, const T* dy, T* dx, T beta);
template <class T>
void channel_scale_cpu(Shape xs, const T* x, const T* scale, T* y, T beta);  // y = x·s + beta·y

void relu_forward_cuda(Context& ctx, TensorView x, TensorView y);
void relu_backward_cuda(Context& ctx, TensorView y, TensorView dy, TensorView dx, float beta);
void add_forward_cuda(Context& ctx, TensorView a, TensorView b, TensorView y);
void accumulate_cuda(Context& ctx, TensorView dy, TensorView dx, float beta);
void dropout2d_make_scale_cuda(Context& ctx, float p, uint64_t seed, uint64_t offset, uint64_t first,
                               TensorView scale);
void channel_scale_cuda(Context& ctx, TensorView x, TensorView scale, TensorView y, float beta);
void ema_update_cuda(Context& ctx, TensorView teacher, TensorView student, float ema);

}  // namespace u2pl
