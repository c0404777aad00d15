// Pushes into the device ring buffers of a CUDA memory bank (u2pl/losses/memory_bank.h): the plan
// (which rows survive, where they land) comes from the device head and size through ring_push, the
// CPU push's own arithmetic, so no host round trip is needed. Covered by
// tests/test_cuda_losses.cpp.
#include "engine/cuda/launch.cuh"
#include "u2pl/losses/memory_bank.h"

namespace u2pl {
namespace {

// One thread: plan the push of n rows into queue c (plan = first, tail) and commit head and size.
__global__ void plan_push_kernel(DeviceQueues q, int c, int64_t n, int64_t* plan) {
  const RingPush r = ring_push(q.capacity[c], q.head[c], q.size[c], n);
  plan[0] = r.first;
  plan[1] = r.tail;
  q.head[c] = r.head;
  q.size[c] = r.size;
}

// rows (n, dim) -> queue c: rows [first, n) of the batch, row i at (tail + i − first) % capacity,
// one warp per surviving row (only those: the others would be overwritten within this push).
// They are at most the capacity, so no two land on the same slot.
__global__ void copy_push_kernel(DeviceQueues q, int c, const float* rows, int64_t n, const int64_t* plan) {
  const int64_t first = plan[0], tail = plan[1], cap = q.capacity[c], D = q.dim;
  float* base = q.data + q.offset[c] * D;
  for (int64_t j = warp_start(); j < n - first; j += warp_step()) {
    const float* src = rows + (first + j) * D;
    float* dst = base + ((tail + j) % cap) * D;
    for (int64_t e = lane_id(); e < D; e += 32) dst[e] = src[e];
  }
}

}  // namespace

void bank_push_cuda(Context& ctx, const DeviceQueues& q, int c, const float* rows, int64_t n) {
  auto* plan = static_cast<int64_t*>(ctx.workspace(2 * sizeof(int64_t)));
  plan_push_kernel<<<1, 1, 0, stream_of(ctx)>>>(q, c, n, plan);
  CUDA_CHECK_LAUNCH();
  copy_push_kernel<<<grid_for(ctx, n * 32), kBlock, 0, stream_of(ctx)>>>(q, c, rows, n, plan);
  CUDA_CHECK_LAUNCH();
}

}  // namespace u2pl
