// CPU-only builds: every CUDA entry point of the engine throws "built without CUDA" (STYLE 3).
#include <memory>

#include "engine/context.h"
#include "engine/device_memory.h"
#include "engine/profile.h"
#include "engine/side_stream.h"
#include "engine/upload.h"

namespace u2pl {

[[noreturn]] static void no_cuda(const char* what) {
  U2PL_FAIL(what << ": this build of u2pl was built without CUDA (configure with nvcc on PATH or "
                    "-DU2PL_CUDA=ON)");
}

bool cuda_built() { return false; }
CudaProbe cuda_probe() {
  CudaProbe p;
  p.reason = "this build of u2pl was built without CUDA";
  return p;
}
int cuda_device_count() { return 0; }
std::string cuda_environment() { return "cuda: this build of u2pl was built without CUDA\n"; }
void cuda_memory_info(size_t*, size_t*) { no_cuda("cuda_memory_info"); }
void cuda_use_device(int) { no_cuda("cuda_use_device"); }
void* cuda_malloc(size_t) { no_cuda("cuda_malloc"); }
void cuda_free(void*) noexcept {}
void cuda_memset_zero(void*, size_t) { no_cuda("cuda_memset"); }
void cuda_memcpy(void*, const void*, size_t, CopyKind) { no_cuda("cuda_memcpy"); }
CudaHandles* create_cuda_handles(bool) { no_cuda("a CUDA context"); }
void destroy_cuda_handles(CudaHandles*) noexcept {}
void cuda_synchronize(const CudaHandles&) { no_cuda("cuda_synchronize"); }
void* cuda_stream_handle(const CudaHandles&) { no_cuda("a CUDA stream"); }
CudaUploads* create_cuda_uploads(const CudaHandles&, int) { no_cuda("cuda uploads"); }
void destroy_cuda_uploads(CudaUploads*) noexcept {}
void* cuda_upload(CudaUploads&, Context&, const void*, size_t, int, int) { no_cuda("cuda_upload"); }
void cuda_upload_ready(CudaUploads&, const CudaHandles&, int) { no_cuda("cuda_upload_ready"); }
void cuda_upload_done(CudaUploads&, const CudaHandles&, int) { no_cuda("cuda_upload_done"); }
CudaEvents* create_cuda_events() { no_cuda("cuda events"); }
void destroy_cuda_events(CudaEvents*) noexcept {}
int cuda_event_record(CudaEvents&, const CudaHandles&) { no_cuda("cuda_event_record"); }
float cuda_event_ms(CudaEvents&, int, int) { no_cuda("cuda_event_ms"); }
void cuda_events_release(CudaEvents&) {}
SideStream::SideStream() { no_cuda("a CUDA side stream"); }
SideStream::~SideStream() = default;
void* SideStream::handle() const { no_cuda("a CUDA side stream"); }
void SideStream::follow(const Context&) { no_cuda("a CUDA side stream"); }
void SideStream::join(const Context&) { no_cuda("a CUDA side stream"); }

}  // namespace u2pl
