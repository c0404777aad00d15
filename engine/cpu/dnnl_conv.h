// The float32 CPU convolution fast path through oneDNN (the library PyTorch itself runs on CPU):
// forward, backward data and backward weights on plain NCHW/OIHW buffers, with reorders to the
// blocked layouts oneDNN prefers carried out in caller-provided scratch. Primitives are cached
// per shape. Where oneDNN's input or weight gradient algorithm would need more than 32 MiB of
// scratchpad (its GEMM path for large dilations: the ASPP's, layer4's at stride 8), it is formed
// by im2col and GEMM one image at a time.
// Checked against the im2col oracle in tests/test_conv_dnnl.cpp.
#pragma once
#include <cstddef>
#include <cstdint>

namespace u2pl::cpu {

struct ConvDims {
  int64_t n, cin, h, w, cout, kh, kw, stride, pad, dilation, oh, ow;
  bool bias;
  bool operator<(const ConvDims& o) const;
};

// Scratch bytes the forward or the backward pass needs (reorder buffers and scratchpads).
size_t dnnl_conv_scratch_bytes(const ConvDims& d, bool backward);
// y (n,cout,oh,ow) = conv(x, w) + b; b may be null when !d.bias.
void dnnl_conv_forward(const ConvDims& d, const float* x, const float* w, const float* b, float* y,
                       void* scratch);
// dx = beta*dx + dL/dx (dx null: skipped); dw += dL/dw; db += dL/db (null: skipped).
void dnnl_conv_backward(const ConvDims& d, const float* x, const float* w, const float* dy, float* dx,
                        float beta, float* dw, float* db, void* scratch);

}  // namespace u2pl::cpu
