// Finding CUDA devices and raw device memory entry points. Implemented in engine/cuda/probe.cu
// and engine/cuda/memory.cu, or by engine/cuda_stub.cpp in CPU-only builds, where every memory
// call throws "built without CUDA". Covered by tests/test_engine.cpp.
#pragma once
#include <cstddef>
#include <string>

#include "engine/tensor.h"

namespace u2pl {

bool cuda_built();  // true when compiled with CUDA support

// What a search for CUDA devices found. No device is not an error when the build has no CUDA, no
// CUDA driver is installed (no libcuda.so.1: the driver version reads 0) or the driver reports no
// device; those leave `reason`. Any other CUDA error while looking (a driver older than this
// build's runtime, a device the driver cannot open) is `error`, naming the CUDA error and the
// versions involved, with devices 0.
struct CudaProbe {
  int devices = 0;
  std::string reason;  // why there is no device, when there is none and no error
  std::string error;   // the CUDA error met while looking, or empty
  int driver_version = 0, runtime_version = 0;  // CUDA's 1000·major + 10·minor; 0: none or unknown
};
CudaProbe cuda_probe();  // never throws
// The number of CUDA devices (0 when there is none); throws the probe's error when there was one.
int cuda_device_count();
// The apps' default device: cuda when a device is present, else cpu. A CUDA error while looking
// throws, naming it and how to run on the CPU anyway (--device cpu).
Device default_device();
// CUDA version numbers (13000) as "13.0".
inline std::string cuda_version_text(int version) {
  return std::to_string(version / 1000) + "." + std::to_string(version % 1000 / 10);
}
// A few lines on the CUDA environment: each device's name, memory and compute capability, the
// driver's and the runtime's CUDA versions, and the cuDNN and cuBLAS versions with the file each
// was loaded from. Throws the probe's error; says "built without CUDA" in CPU-only builds.
std::string cuda_environment();
// Makes device `index` the current one of this thread (cudaSetDevice): the device every later
// allocation, stream and handle of the thread is on.
void cuda_use_device(int index);
// Free and total memory of the current device (cudaMemGetInfo).
void cuda_memory_info(size_t* free_bytes, size_t* total_bytes);
void* cuda_malloc(size_t bytes);
void cuda_free(void* p) noexcept;
void cuda_memset_zero(void* p, size_t bytes);
enum class CopyKind { HostToDevice, DeviceToHost, DeviceToDevice };
void cuda_memcpy(void* dst, const void* src, size_t bytes, CopyKind kind);

}  // namespace u2pl
