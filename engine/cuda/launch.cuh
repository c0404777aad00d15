// Launch helpers shared by the kernels (layers/*.cu, u2pl/losses/*.cu): grid-stride indices, the
// grid for block-per-item kernels, deterministic block reductions (CUB's fixed-order BlockReduce,
// no atomics) and the layout of one workspace block. Only .cu files include this. Covered through
// tests/test_cuda_layers.cpp and tests/test_cuda_losses.cpp.
#pragma once
#include <cub/block/block_reduce.cuh>

#include "engine/cuda/cuda_context.h"

namespace u2pl {

// for (int64_t i = grid_start(); i < n; i += grid_step()) — 64-bit, so large tensors cannot wrap.
__device__ __forceinline__ int64_t grid_start() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_step() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

// Grid for kernels that give each item (channel, plane) one block of kBlock threads and loop
// `for (item = blockIdx.x; item < items; item += gridDim.x)`: min(items, the grid_for cap).
inline unsigned blocks_for(const Context& ctx, int64_t items) {
  return grid_for(ctx, items * static_cast<int64_t>(kBlock));
}

// Reduces v over the kBlock threads of the block with `op` in a fixed order and returns the
// result to every thread. Every thread of the block must call it (it synchronises). T must be
// trivially constructible (it lives in shared memory).
template <class T, class Op>
__device__ T block_reduce(T v, Op op) {
  using Reduce = cub::BlockReduce<T, static_cast<int>(kBlock)>;
  __shared__ typename Reduce::TempStorage tmp;
  __shared__ T total;
  const T r = Reduce(tmp).Reduce(v, op);
  if (threadIdx.x == 0) total = r;
  __syncthreads();
  const T out = total;
  __syncthreads();  // the next call may overwrite tmp and total
  return out;
}

struct SumOp {
  template <class T>
  __device__ T operator()(T a, T b) const { return a + b; }
};

template <class T>
__device__ T block_sum(T v) { return block_reduce(v, SumOp{}); }

// Byte offsets of 256-byte aligned pieces of one ctx.workspace() block.
class WorkspacePlan {
 public:
  size_t add(size_t bytes) {
    const size_t at = total_;
    total_ += (bytes + 255) / 256 * 256;
    return at;
  }
  size_t bytes() const { return total_; }

 private:
  size_t total_ = 0;
};

// The "no bad pixel" value of a first-bad-pixel index that kernels lower with atomicMin.
constexpr unsigned long long kNoPixel = ~0ull;

}  // namespace u2pl
