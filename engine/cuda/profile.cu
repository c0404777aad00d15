// The CUDA events behind engine/profile.h: a pool that grows as a step records more intervals and
// is reused after each collect().
#include <vector>

#include "engine/cuda/cuda_context.h"
#include "engine/profile.h"

namespace u2pl {

struct CudaEvents {
  std::vector<cudaEvent_t> pool;
  size_t used = 0;
};

CudaEvents* create_cuda_events() { return new CudaEvents(); }

void destroy_cuda_events(CudaEvents* e) noexcept {
  if (!e) return;
  for (cudaEvent_t ev : e->pool) cudaEventDestroy(ev);
  delete e;
}

int cuda_event_record(CudaEvents& e, const CudaHandles& h) {
  if (e.used == e.pool.size()) {
    cudaEvent_t ev = nullptr;
    CUDA_CHECK(cudaEventCreate(&ev));
    e.pool.push_back(ev);
  }
  CUDA_CHECK(cudaEventRecord(e.pool[e.used], h.stream));
  return static_cast<int>(e.used++);
}

float cuda_event_ms(CudaEvents& e, int start, int end) {
  CUDA_CHECK(cudaEventSynchronize(e.pool[static_cast<size_t>(end)]));
  float ms = 0;
  CUDA_CHECK(cudaEventElapsedTime(&ms, e.pool[static_cast<size_t>(start)], e.pool[static_cast<size_t>(end)]));
  return ms;
}

void cuda_events_release(CudaEvents& e) { e.used = 0; }

}  // namespace u2pl
