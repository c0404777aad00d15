// A second CUDA stream beside a context's, ordered against it by events: work queued on the side
// stream after follow(ctx) starts when everything queued on ctx's stream before it is done, and
// work queued on ctx's stream after join(ctx) waits for everything queued on the side stream
// before it. The trainer sums gradient buckets through NCCL on one while backward goes on
// (u2pl/train/grad_reduce.h). CUDA contexts only: in CPU-only builds the constructor throws
// "built without CUDA" (engine/cuda_stub.cpp). Covered by tests/test_cuda_train.cpp.
#pragma once

#include "engine/context.h"

namespace u2pl {

struct CudaSideStream;  // engine/cuda/side_stream.cu: the stream and its two events

class SideStream {
 public:
  SideStream();
  ~SideStream();
  SideStream(const SideStream&) = delete;
  SideStream& operator=(const SideStream&) = delete;

  void* handle() const;           // the cudaStream_t, for libraries opened at run time
  void follow(const Context& ctx);  // the side stream waits for ctx's stream, as it is now
  void join(const Context& ctx);    // ctx's stream waits for the side stream, as it is now

 private:
  CudaSideStream* s_ = nullptr;
};

}  // namespace u2pl
