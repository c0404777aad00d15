// GEMM (OpenBLAS) and im2col/col2im (engine/cpu/blas.h).
#include "engine/cpu/blas.h"

#include <cblas.h>

namespace u2pl::cpu {

template <>
void gemm<float>(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                 const float* B, float beta, float* C) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<int>(M), static_cast<int>(N), static_cast<int>(K), alpha, A,
              static_cast<int>(ta ? M : K), B, static_cast<int>(tb ? K : N), beta, C,
              static_cast<int>(N));
}

template <>
void gemm<double>(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A,
                  const double* B, double beta, double* C) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<int>(M), static_cast<int>(N), static_cast<int>(K), alpha, A,
              static_cast<int>(ta ? M : K), B, static_cast<int>(tb ? K : N), beta, C,
              static_cast<int>(N));
}

template <class T>
void im2col(const ConvGeom& g, const T* x, T* col) {
  const int64_t rows = g.C * g.kh * g.kw, plane = g.OH * g.OW;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t c = r / (g.kh * g.kw), i = (r / g.kw) % g.kh, j = r % g.kw;
    const T* xc = x + c * g.H * g.W;
    T* out = col + r * plane;
    for (int64_t oh = 0; oh < g.OH; ++oh) {
      const int64_t ih = oh * g.stride - g.pad + i * g.dilation;
      T* orow = out + oh * g.OW;
      if (ih < 0 || ih >= g.H) {
        for (int64_t ow = 0; ow < g.OW; ++ow) orow[ow] = T(0);
        continue;
      }
      const T* xrow = xc + ih * g.W;
      for (int64_t ow = 0; ow < g.OW; ++ow) {
        const int64_t iw = ow * g.stride - g.pad + j * g.dilation;
        orow[ow] = (iw >= 0 && iw < g.W) ? xrow[iw] : T(0);
      }
    }
  }
}

template <class T>
void col2im(const ConvGeom& g, const T* col, T* dx) {
  const int64_t plane = g.OH * g.OW;
  // Parallel over channels: each thread owns the dx plane it writes.
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < g.C; ++c) {
    T* dxc = dx + c * g.H * g.W;
    for (int64_t i = 0; i < g.kh; ++i)
      for (int64_t j = 0; j < g.kw; ++j) {
        const T* in = col + ((c * g.kh + i) * g.kw + j) * plane;
        for (int64_t oh = 0; oh < g.OH; ++oh) {
          const int64_t ih = oh * g.stride - g.pad + i * g.dilation;
          if (ih < 0 || ih >= g.H) continue;
          T* dxrow = dxc + ih * g.W;
          const T* irow = in + oh * g.OW;
          for (int64_t ow = 0; ow < g.OW; ++ow) {
            const int64_t iw = ow * g.stride - g.pad + j * g.dilation;
            if (iw >= 0 && iw < g.W) dxrow[iw] += irow[ow];
          }
        }
      }
  }
}

template void im2col<float>(const ConvGeom&, const float*, float*);
template void im2col<double>(const ConvGeom&, const double*, double*);
template void col2im<float>(const ConvGeom&, const float*, float*);
template void col2im<double>(const ConvGeom&, const double*, double*);

}  // namespace u2pl::cpu
