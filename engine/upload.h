// Host-to-device copies that overlap the device's work: a host view is copied into pinned memory,
// then asynchronously, on a copy stream of its own, into a device buffer of the slot. ready(slot)
// makes the context's stream wait for those copies (the ops queued after it may read them);
// done(slot) marks where the ops reading them end, and the slot's next copies wait for that point
// only. With two slots the trainer uploads the next batch while the current step runs:
//   ready(s); <queue the step that reads slot s>; upload(<next batch>, 1 − s, ...); done(s).
// On a CPU context upload() returns the host view itself. Covered by tests/test_engine.cpp (both devices)
// and, in use, by the trainer tests.
#pragma once
#include <cstddef>

#include "engine/context.h"

namespace u2pl {

struct CudaUploads;  // engine/cuda/upload.cu: pinned and device buffers, the copy stream, events

class Uploader {
 public:
  explicit Uploader(Context& ctx, int slots = 2);
  ~Uploader();
  Uploader(const Uploader&) = delete;
  Uploader& operator=(const Uploader&) = delete;

  // The device copy of `host` (a CPU view) in part `part` of slot `slot`. The host memory may be
  // reused as soon as this returns. The copy waits for the ops before the slot's last done(), or,
  // when the slot was made ready and not yet done, for every op queued so far.
  template <class T>
  View<T> upload(View<T> host, int slot, int part) {
    check_device(host, Device::CPU, "upload source");
    if (ctx_.device() == Device::CPU) return host;
    void* d = upload_bytes(host.data, static_cast<size_t>(host.numel()) * sizeof(T), slot, part);
    return View<T>(static_cast<T*>(d), host.shape, Device::CUDA);
  }
  // The context's stream waits for the slot's uploads (nothing on the CPU).
  void ready(int slot);
  // The ops reading the slot's uploads are all queued (nothing on the CPU).
  void done(int slot);

 private:
  void* upload_bytes(const void* src, size_t bytes, int slot, int part);
  Context& ctx_;
  int slots_;
  CudaUploads* cuda_ = nullptr;  // owned; CUDA contexts only
};

CudaUploads* create_cuda_uploads(const CudaHandles& h, int slots);
void destroy_cuda_uploads(CudaUploads* u) noexcept;
void* cuda_upload(CudaUploads& u, Context& ctx, const void* src, size_t bytes, int slot, int part);
void cuda_upload_ready(CudaUploads& u, const CudaHandles& h, int slot);
void cuda_upload_done(CudaUploads& u, const CudaHandles& h, int slot);

}  // namespace u2pl
