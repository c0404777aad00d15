// Row-major GEMM for float and double through OpenBLAS's CBLAS, and im2col/col2im with stride,
// padding and dilation (the CPU convolution path; tests/test_layers_grad.cpp covers both).
#pragma once
#include <cstdint>

namespace u2pl::cpu {

// C[M,N] = alpha * op(A) * op(B) + beta * C, row-major, op = transpose when ta / tb.
template <class T>
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, const T* B,
          T beta, T* C);

struct ConvGeom {
  int64_t C, H, W;        // input channels and size (one image)
  int64_t kh, kw, stride, pad, dilation;
  int64_t OH, OW;         // output size
};

// col[(c*kh + i)*kw + j][oh*OW + ow] = x[c][oh*s - p + i*d][ow*s - p + j*d] (0 outside).
template <class T>
void im2col(const ConvGeom& g, const T* x, T* col);
// The adjoint: dx[c][..] += col[..]; dx must be initialised by the caller.
template <class T>
void col2im(const ConvGeom& g, const T* col, T* dx);

}  // namespace u2pl::cpu
