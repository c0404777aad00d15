// Conv2d: any kernel size, stride, padding, dilation, optional bias; forward and hand-written
// backward on CPU and CUDA (cuDNN). The CPU layer runs oneDNN in float32; the templated
// im2col + OpenBLAS GEMM path is the oracle (double gradient checks) that oneDNN is compared
// with. Must match torch.nn.Conv2d (groups = 1). Tests: test_layers_grad.cpp (gradients,
// oneDNN vs oracle), test_layers_fixtures.cpp, test_cuda_layers.cpp.
#pragma once
#include <string>

#include "engine/params.h"

namespace u2pl {

struct Conv2dSpec {
  int cin = 0, cout = 0;
  int kh = 1, kw = 1;
  int stride = 1, pad = 0, dilation = 1;
  bool bias = false;
};

Shape conv2d_out_shape(const Conv2dSpec& s, Shape x);  // checks the spec against x
// Multiply-adds ×2 of one forward pass on x (each of backward-data and backward-filter costs as
// much): what the profiler's convolution throughput counts.
double conv2d_flops(const Conv2dSpec& s, Shape x);
// Floats of im2col scratch for one image (0 for 1x1, stride 1, no padding).
int64_t conv2d_col_floats(const Conv2dSpec& s, Shape x);

// CPU oracle, templated for double gradient checks. x (N,cin,H,W), w (cout,cin,kh,kw),
// b (cout) or null, y (N,cout,OH,OW), col: conv2d_col_floats scratch.
template <class T>
void conv2d_forward_cpu(const Conv2dSpec& s, Shape xs, const T* x, const T* w, const T* b, T* y,
                        T* col);
// dx = beta*dx + dL/dx (dx may be null); dw += dL/dw; db += dL/db (db may be null).
template <class T>
void conv2d_backward_cpu(const Conv2dSpec& s, Shape xs, const T* x, const T* w, const T* dy, T* dx,
                         T beta, T* dw, T* db, T* col);

void conv2d_forward_cuda(Context& ctx, const Conv2dSpec& s, TensorView x, TensorView w,
                         TensorView b, TensorView y);
void conv2d_backward_cuda(Context& ctx, const Conv2dSpec& s, TensorView x, TensorView w,
                          TensorView dy, TensorView dx, float beta, TensorView dw, TensorView db);

// How a Conv2d's parameters start when no weights are loaded. KaimingFanOut: the public ResNet's
// loop over the encoder (weight N(0, 2 / fan_out), bias 0). TorchDefault: nn.Conv2d's own
// reset_parameters, which the public decoder and heads keep (kaiming_uniform with a = √5, i.e.
// weight and bias U(−1/√fan_in, 1/√fan_in), fan_in = cin·kh·kw).
enum class ConvInit { KaimingFanOut, TorchDefault };

// The layer: declares `<name>.weight` and `<name>.bias` in a ParamSet, started as `init` says.
class Conv2d {
 public:
  Conv2d(ParamSet& ps, const std::string& name, const Conv2dSpec& spec, int group = 0,
         ConvInit init = ConvInit::KaimingFanOut);
  const Conv2dSpec& spec() const { return spec_; }
  Shape out_shape(Shape x) const { return conv2d_out_shape(spec_, x); }
  void forward(Context& ctx, TensorView x, TensorView y) const;
  void backward(Context& ctx, TensorView x, TensorView dy, TensorView dx, float beta) const;
  int weight_id() const { return w_; }
  int bias_id() const { return b_; }

 private:
  ParamSet* ps_;
  Conv2dSpec spec_;
  int w_ = -1, b_ = -1;
};

}  // namespace u2pl
