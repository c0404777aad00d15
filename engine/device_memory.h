// Raw device memory entry points. Implemented in engine/cuda/memory.cu, or by
// engine/cuda_stub.cpp in CPU-only builds, where every call throws "built without CUDA".
#pragma once
#include <cstddef>

namespace u2pl {

bool cuda_built();                 // true when compiled with CUDA support
int cuda_device_count();           // 0 in CPU-only builds or when no GPU is present
// Free and total memory of the current device (cudaMemGetInfo).
void cuda_memory_info(size_t* free_bytes, size_t* total_bytes);
void* cuda_malloc(size_t bytes);
void cuda_free(void* p) noexcept;
void cuda_memset_zero(void* p, size_t bytes);
enum class CopyKind { HostToDevice, DeviceToHost, DeviceToDevice };
void cuda_memcpy(void* dst, const void* src, size_t bytes, CopyKind kind);

}  // namespace u2pl
