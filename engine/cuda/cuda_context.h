// The CUDA handles a Context owns: one stream, with cuDNN and cuBLAS bound to it, and the
// grid-stride launch shape shared by our element-wise kernels.
#pragma once
#include <cstdint>

#include "engine/context.h"
#include "engine/cuda/cuda_check.h"

namespace u2pl {

struct CudaHandles {
  cudaStream_t stream = nullptr;
  cudnnHandle_t cudnn = nullptr;
  cublasHandle_t cublas = nullptr;
  int sm_count = 0;
  bool deterministic = false;
};

inline cudaStream_t stream_of(const Context& ctx) { return ctx.cuda().stream; }

// Grid for a grid-stride loop over n elements with 256 threads a block: enough blocks to fill
// the device (8 per SM) without launching more than the work needs.
inline unsigned grid_for(const Context& ctx, int64_t n) {
  const int64_t blocks = (n + 255) / 256;
  const int64_t cap = static_cast<int64_t>(ctx.cuda().sm_count) * 8;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks < cap ? blocks : cap));
}
constexpr unsigned kBlock = 256;

}  // namespace u2pl
