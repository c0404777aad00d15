// Launch helpers shared by the kernels (layers/*.cu, u2pl/losses/*.cu): grid-stride indices, the
// grid for block-per-item kernels, deterministic block reductions (CUB's fixed-order BlockReduce,
// no atomics) and the layout of one workspace block. Only .cu files include this. Covered through
// tests/test_cuda_layers.cpp and tests/test_cuda_losses.cpp.
#pragma once
#include <cub/block/block_reduce.cuh>

#include "engine/cuda/cuda_context.h"
#include "engine/workspace_plan.h"

namespace u2pl {

// for (int64_t i = grid_start(); i < n; i += grid_step()) — 64-bit, so large tensors cannot wrap.
__device__ __forceinline__ int64_t grid_start() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_step() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

// One warp per item: for (int64_t w = warp_start(); w < n; w += warp_step()), lane_id() in [0, 32).
__device__ __forceinline__ int64_t warp_start() { return grid_start() / 32; }
__device__ __forceinline__ int64_t warp_step() { return grid_step() / 32; }
__device__ __forceinline__ int lane_id() { return static_cast<int>(threadIdx.x % 32); }

// Grid for kernels that give each item (channel, plane) one block of kBlock threads and loop
// `for (item = blockIdx.x; item < items; item += gridDim.x)`: min(items, the grid_for cap).
inline unsigned blocks_for(const Context& ctx, int64_t items) {
  return grid_for(ctx, items * static_cast<int64_t>(kBlock));
}

// A 2-D launch over `planes` planes of `hw` elements each (N·C channel planes, say):
// blockIdx.y walks the planes and blockIdx.x·blockDim.x + threadIdx.x the elements of a plane, so
// a kernel computes per-plane values (its channel, its base offset) once per plane and indexes
// within a plane in 32 bits — no 64-bit division or modulo per element:
//   for (int64_t p = blockIdx.y; p < planes; p += gridDim.y)
//     for (int32_t i = plane_start(); i < hw; i += plane_step()) ...
// Enough blocks along x to fill the device when there are few planes (8 per SM in all, as
// grid_for), none beyond the plane's size. Planes of 2^30 or more elements are refused.
inline dim3 plane_grid(const Context& ctx, int64_t planes, int64_t hw) {
  U2PL_CHECK(hw < (int64_t(1) << 30), "cuda: a plane of " << hw << " elements exceeds the kernels' 2^30 limit");
  const int64_t y = planes < 1 ? 1 : (planes < 65535 ? planes : 65535);
  const int64_t per_plane = (hw + kBlock - 1) / kBlock;
  const int64_t want = (int64_t(ctx.cuda().sm_count) * 8 + y - 1) / y;
  const int64_t x = want < per_plane ? want : per_plane;
  return dim3(static_cast<unsigned>(x < 1 ? 1 : x), static_cast<unsigned>(y));
}
__device__ __forceinline__ int32_t plane_start() { return int32_t(blockIdx.x * blockDim.x + threadIdx.x); }
__device__ __forceinline__ int32_t plane_step() { return int32_t(gridDim.x * blockDim.x); }

// A per-channel reduction over x (N, C, HW) split into parts so that small-C, large-HW layers
// still fill the device: part j of channel c covers image n = j / K, elements
// [k·chunk, min(HW, (k + 1)·chunk)) of its plane, k = j % K. channel_partials_kernel sums each
// part in one block; channel_total adds a channel's parts in a fixed order, so the result is
// deterministic on a given device (the split follows its SM count).
struct ChannelSplit {
  int64_t N = 0, C = 0, HW = 0;
  int64_t K = 1, chunk = 1;
  __host__ __device__ int64_t parts() const { return N * K; }
};
inline ChannelSplit channel_split(const Context& ctx, int64_t N, int64_t C, int64_t HW) {
  constexpr int64_t kMinChunk = 2048;  // 8 values a thread at least
  ChannelSplit s;
  s.N = N, s.C = C, s.HW = HW;
  const int64_t target = int64_t(ctx.cuda().sm_count) * 16, have = N * C > 0 ? N * C : 1;
  const int64_t by_size = (HW + kMinChunk - 1) / kMinChunk, by_fill = (target + have - 1) / have;
  s.K = by_size < by_fill ? by_size : by_fill;
  if (s.K < 1) s.K = 1;
  s.chunk = (HW + s.K - 1) / s.K;
  if (s.chunk < 1) s.chunk = 1;
  return s;
}
inline dim3 channel_partials_grid(const ChannelSplit& s) {
  return dim3(static_cast<unsigned>(s.parts() < 1 ? 1 : s.parts()), static_cast<unsigned>(s.C < 65535 ? s.C : 65535));
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

// partial (V, C, parts): each block sums the V values f(c, k, acc) adds for the elements k (flat
// indices into (N, C, HW)) of one part of channel c, in double. Launch with
// channel_partials_grid(s) and kBlock threads.
template <int V, class F>
__global__ void channel_partials_kernel(ChannelSplit s, F f, double* partial) {
  const int64_t j = blockIdx.x, n = j / s.K, lo = (j % s.K) * s.chunk;
  const int64_t hi = lo + s.chunk < s.HW ? lo + s.chunk : s.HW;
  for (int64_t c = blockIdx.y; c < s.C; c += gridDim.y) {
    const int64_t base = (n * s.C + c) * s.HW;
    double acc[V] = {};
    for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) f(c, base + i, acc);
    for (int v = 0; v < V; ++v) {
      const double total = block_sum(acc[v]);
      if (threadIdx.x == 0) partial[(v * s.C + c) * s.parts() + j] = total;
    }
  }
}

// The sum of value v over channel c's parts, in a fixed order, returned to every thread; every
// thread of the block must call it.
__device__ inline double channel_total(const ChannelSplit& s, const double* partial, int v, int64_t c) {
  double acc = 0;
  for (int64_t j = threadIdx.x; j < s.parts(); j += blockDim.x) acc += partial[(v * s.C + c) * s.parts() + j];
  return block_sum(acc);
}


// The "no bad pixel" value of a first-bad-pixel index that kernels lower with atomicMin.
constexpr unsigned long long kNoPixel = ~0ull;

}  // namespace u2pl
