// The CUDA side of engine/upload.h: per (slot, part) a pinned host buffer and a device buffer,
// each grown when a larger upload comes; one non-blocking copy stream; per slot an event for
// "its copies are done" and one for "the compute stream no longer reads it" (recorded by done(),
// or by the next upload when the slot is still in use).
#include <cstring>
#include <vector>

#include "engine/cuda/cuda_context.h"
#include "engine/upload.h"

namespace u2pl {

namespace {
constexpr int kParts = 16;
}  // namespace

struct CudaUploads {
  struct Part {
    void* pinned = nullptr;
    size_t pinned_bytes = 0;
    Buffer device;
  };
  cudaStream_t copy = nullptr;
  std::vector<cudaEvent_t> copied, released;  // per slot
  std::vector<char> in_use;                   // per slot: made ready, not yet done
  std::vector<Part> parts;                    // slot · kParts + part
};

CudaUploads* create_cuda_uploads(const CudaHandles&, int slots) {
  auto* u = new CudaUploads();
  try {
    CUDA_CHECK(cudaStreamCreateWithFlags(&u->copy, cudaStreamNonBlocking));
    u->copied.assign(static_cast<size_t>(slots), nullptr);
    u->released.assign(static_cast<size_t>(slots), nullptr);
    u->in_use.assign(static_cast<size_t>(slots), 0);
    for (int s = 0; s < slots; ++s) {
      CUDA_CHECK(cudaEventCreateWithFlags(&u->copied[s], cudaEventDisableTiming));
      CUDA_CHECK(cudaEventCreateWithFlags(&u->released[s], cudaEventDisableTiming));
    }
    u->parts.resize(static_cast<size_t>(slots) * kParts);
  } catch (...) {
    destroy_cuda_uploads(u);
    throw;
  }
  return u;
}

void destroy_cuda_uploads(CudaUploads* u) noexcept {
  if (!u) return;
  if (u->copy) cudaStreamSynchronize(u->copy);
  for (CudaUploads::Part& p : u->parts)
    if (p.pinned) cudaFreeHost(p.pinned);
  for (cudaEvent_t e : u->copied)
    if (e) cudaEventDestroy(e);
  for (cudaEvent_t e : u->released)
    if (e) cudaEventDestroy(e);
  if (u->copy) cudaStreamDestroy(u->copy);
  delete u;
}

void* cuda_upload(CudaUploads& u, Context& ctx, const void* src, size_t bytes, int slot, int part) {
  if (bytes == 0) return nullptr;  // an empty view (no labels, say)
  CudaUploads::Part& p = u.parts[static_cast<size_t>(slot) * kParts + part];
  // The slot's previous copies must be done before its pinned memory is rewritten.
  CUDA_CHECK(cudaEventSynchronize(u.copied[slot]));
  if (p.pinned_bytes < bytes) {
    if (p.pinned) CUDA_CHECK(cudaFreeHost(p.pinned));
    p.pinned = nullptr;
    p.pinned_bytes = 0;
    CUDA_CHECK(cudaHostAlloc(&p.pinned, bytes, cudaHostAllocDefault));
    p.pinned_bytes = bytes;
  }
  if (p.device.bytes() < bytes) {
    ctx.synchronize();  // queued ops may still read the old device buffer
    p.device = Buffer(Device::CUDA, bytes);
  }
  std::memcpy(p.pinned, src, bytes);
  // The copy waits for the slot's readers: up to its last done(), or everything queued so far when
  // it is still in use.
  if (u.in_use[slot]) cuda_upload_done(u, ctx.cuda(), slot);
  CUDA_CHECK(cudaStreamWaitEvent(u.copy, u.released[slot], 0));
  CUDA_CHECK(cudaMemcpyAsync(p.device.data(), p.pinned, bytes, cudaMemcpyHostToDevice, u.copy));
  CUDA_CHECK(cudaEventRecord(u.copied[slot], u.copy));
  return p.device.data();
}

void cuda_upload_ready(CudaUploads& u, const CudaHandles& h, int slot) {
  CUDA_CHECK(cudaStreamWaitEvent(h.stream, u.copied[slot], 0));
  u.in_use[slot] = 1;
}

void cuda_upload_done(CudaUploads& u, const CudaHandles& h, int slot) {
  CUDA_CHECK(cudaEventRecord(u.released[slot], h.stream));
  u.in_use[slot] = 0;
}

}  // namespace u2pl
