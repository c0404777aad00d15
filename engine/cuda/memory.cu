// CUDA memory, handles and status names (engine/device_memory.h, engine/context.h).
#include "engine/cuda/cuda_context.h"
#include "engine/device_memory.h"

namespace u2pl {

void cuda_memory_info(size_t* free_bytes, size_t* total_bytes) {
  const cudaError_t e = cudaMemGetInfo(free_bytes, total_bytes);
  if (e == cudaSuccess) return;
  cudaGetLastError();
  const CudaProbe p = cuda_probe();  // say why: no driver, no device, or the probe's own error
  U2PL_CHECK(p.error.empty(), p.error);
  U2PL_CHECK(p.devices > 0, "CUDA memory was asked about but " << p.reason);
  CUDA_CHECK(e);
}

void cuda_use_device(int index) { CUDA_CHECK(cudaSetDevice(index)); }

void* cuda_malloc(size_t bytes) {
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, bytes);
  U2PL_CHECK(e == cudaSuccess, "cudaMalloc of " << bytes << " bytes failed: " << cudaGetErrorString(e));
  return p;
}

void cuda_free(void* p) noexcept { cudaFree(p); }

void cuda_memset_zero(void* p, size_t bytes) { CUDA_CHECK(cudaMemset(p, 0, bytes)); }

void cuda_memcpy(void* dst, const void* src, size_t bytes, CopyKind kind) {
  const cudaMemcpyKind k = kind == CopyKind::HostToDevice   ? cudaMemcpyHostToDevice
                           : kind == CopyKind::DeviceToHost ? cudaMemcpyDeviceToHost
                                                            : cudaMemcpyDeviceToDevice;
  CUDA_CHECK(cudaMemcpy(dst, src, bytes, k));
}

CudaHandles* create_cuda_handles(bool deterministic) {
  const CudaProbe probe = cuda_probe();
  U2PL_CHECK(probe.error.empty(), probe.error);
  U2PL_CHECK(probe.devices > 0, "a CUDA context was requested but " << probe.reason);
  CudaHandles* h = new CudaHandles();
  try {
    int dev = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&h->sm_count, cudaDevAttrMultiProcessorCount, dev));
    // A blocking stream: the plain cudaMemcpy/cudaMemset of engine/device_memory.h run on the
    // legacy default stream, which orders them after the kernels queued here and before later ones.
    CUDA_CHECK(cudaStreamCreate(&h->stream));
    CUDNN_CHECK(cudnnCreate(&h->cudnn));
    CUDNN_CHECK(cudnnSetStream(h->cudnn, h->stream));
    CUBLAS_CHECK(cublasCreate(&h->cublas));
    CUBLAS_CHECK(cublasSetStream(h->cublas, h->stream));
    // Tests compare against the CPU oracle in fp32: no TF32 there. Training may allow it.
    CUBLAS_CHECK(cublasSetMathMode(h->cublas, deterministic ? CUBLAS_PEDANTIC_MATH : CUBLAS_DEFAULT_MATH));
  } catch (...) {
    destroy_cuda_handles(h);  // whatever was created before the failure
    throw;
  }
  h->deterministic = deterministic;
  return h;
}

void destroy_cuda_handles(CudaHandles* h) noexcept {
  if (!h) return;
  if (h->cublas) cublasDestroy(h->cublas);
  if (h->cudnn) cudnnDestroy(h->cudnn);
  if (h->stream) cudaStreamDestroy(h->stream);
  delete h;
}

void cuda_synchronize(const CudaHandles& h) { CUDA_CHECK(cudaStreamSynchronize(h.stream)); }

void* cuda_stream_handle(const CudaHandles& h) { return h.stream; }

const char* cublas_status_name(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "unknown cuBLAS status";
  }
}

}  // namespace u2pl
