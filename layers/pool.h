// MaxPool2d (any kernel, stride, padding, ceil_mode as PyTorch defines it) and global average
// pooling, forward and backward on CPU and CUDA (own kernels: cuDNN pooling has no ceil mode).
// Must match nn.MaxPool2d and nn.AdaptiveAvgPool2d(1). Tests: test_layers_grad.cpp,
// test_layers_fixtures.cpp, test_cuda_layers.cpp.
#pragma once
#include "engine/context.h"

namespace u2pl {

struct MaxPoolSpec {
  int k = 3, stride = 2, pad = 1;
  bool ceil_mode = true;
};

// PyTorch's rule: out = ceil_or_floor((in + 2·pad − k) / stride) + 1, less one under ceil_mode
// when the last window would start at or past in + pad.
int64_t maxpool_out_size(int64_t in, const MaxPoolSpec& s);
Shape maxpool_out_shape(const MaxPoolSpec& s, Shape x);

void maxpool_forward(Context& ctx, const MaxPoolSpec& s, TensorView x, TensorView y);
// The gradient goes to the first maximum of each window in row-major order (PyTorch's CPU
// choice), found again from x: no index state is kept. dx = beta*dx + scatter.
void maxpool_backward(Context& ctx, const MaxPoolSpec& s, TensorView x, TensorView dy,
                      TensorView dx, float beta);

// y (N,C,1,1) = mean over H×W of x (N,C,H,W); dx = beta*dx + dy / (H·W).
void global_avgpool_forward(Context& ctx, TensorView x, TensorView y);
void global_avgpool_backward(Context& ctx, TensorView dy, TensorView dx, float beta);

template <class T>
void maxpool_forward_cpu(const MaxPoolSpec& s, Shape xs, const T* x, T* y);
template <class T>
void maxpool_backward_cpu(const MaxPoolSpec& s, Shape xs, const T* x, const T* dy, T* dx, T beta);
template <class T>
void global_avgpool_forward_cpu(Shape xs, const T* x, T* y);
template <class T>
void global_avgpool_backward_cpu(Shape xs, const T* dy, T* dx, T beta);

void maxpool_forward_cuda(Context& ctx, const MaxPoolSpec& s, TensorView x, TensorView y);
void maxpool_backward_cuda(Context& ctx, const MaxPoolSpec& s, TensorView x, TensorView dy,
                           TensorView dx, float beta);
void global_avgpool_forward_cuda(Context& ctx, TensorView x, TensorView y);
void global_avgpool_backward_cuda(Context& ctx, TensorView dy, TensorView dx, float beta);

}  // namespace u2pl
