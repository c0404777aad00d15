// SideStream (engine/side_stream.h): a non-blocking stream and one event each way. An event can
// be recorded again at once: cudaStreamWaitEvent waits for the record made before it, not later ones.
#include "engine/cuda/cuda_context.h"
#include "engine/side_stream.h"

namespace u2pl {

struct CudaSideStream {
  cudaStream_t stream = nullptr;
  cudaEvent_t main_done = nullptr, side_done = nullptr;
  ~CudaSideStream() {
    if (stream) cudaStreamSynchronize(stream);
    if (main_done) cudaEventDestroy(main_done);
    if (side_done) cudaEventDestroy(side_done);
    if (stream) cudaStreamDestroy(stream);
  }
};

SideStream::SideStream() : s_(new CudaSideStream()) {
  try {
    CUDA_CHECK(cudaStreamCreateWithFlags(&s_->stream, cudaStreamNonBlocking));
    CUDA_CHECK(cudaEventCreateWithFlags(&s_->main_done, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventCreateWithFlags(&s_->side_done, cudaEventDisableTiming));
  } catch (...) {
    delete s_;
    throw;
  }
}

SideStream::~SideStream() { delete s_; }

void* SideStream::handle() const { return s_->stream; }

void SideStream::follow(const Context& ctx) {
  CUDA_CHECK(cudaEventRecord(s_->main_done, stream_of(ctx)));
  CUDA_CHECK(cudaStreamWaitEvent(s_->stream, s_->main_done, 0));
}

void SideStream::join(const Context& ctx) {
  CUDA_CHECK(cudaEventRecord(s_->side_done, s_->stream));
  CUDA_CHECK(cudaStreamWaitEvent(stream_of(ctx), s_->side_done, 0));
}

}  // namespace u2pl
