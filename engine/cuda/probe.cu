// Finding CUDA devices (engine/device_memory.h): "no device" only when the driver is absent or
// sees none, every other CUDA error named with the versions involved; and the environment report
// (devices, driver and runtime CUDA versions, cuDNN and cuBLAS with the files they came from).
// Covered by tests/test_engine.cpp (the no-driver machine) and tools/gpu_check.sh (a GPU).
#include <link.h>

#include <sstream>
#include <string>
#include <vector>

#include "engine/cuda/cuda_context.h"
#include "engine/device_memory.h"

namespace u2pl {

bool cuda_built() { return true; }

CudaProbe cuda_probe() {
  CudaProbe p;
  cudaRuntimeGetVersion(&p.runtime_version);
  // Without libcuda.so.1 the runtime reports driver version 0 (and "insufficient driver" below):
  // that is a machine without a GPU driver, not a broken one.
  if (cudaDriverGetVersion(&p.driver_version) != cudaSuccess) p.driver_version = 0;
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  cudaGetLastError();  // clear a sticky error, so later calls report their own
  if (e == cudaSuccess && n > 0) {
    p.devices = n;
  } else if (e == cudaSuccess || e == cudaErrorNoDevice) {
    p.reason = "no CUDA-capable device is present (CUDA driver " + cuda_version_text(p.driver_version) + ")";
  } else if (p.driver_version == 0) {
    p.reason = "no CUDA driver is installed (libcuda.so.1 was not found)";
  } else {
    std::ostringstream os;
    os << "CUDA error " << cudaGetErrorName(e) << " while looking for devices: " << cudaGetErrorString(e)
       << " (the driver supports CUDA " << cuda_version_text(p.driver_version) << ", this build's runtime is CUDA "
       << cuda_version_text(p.runtime_version) << ")";
    if (p.driver_version / 1000 < p.runtime_version / 1000)
      os << "; a CUDA " << p.runtime_version / 1000 << " runtime needs a driver for CUDA "
         << cuda_version_text(p.runtime_version / 1000 * 1000) << " or newer";
    p.error = os.str();
  }
  return p;
}

int cuda_device_count() {
  const CudaProbe p = cuda_probe();
  U2PL_CHECK(p.error.empty(), p.error);
  return p.devices;
}

namespace {

// The loaded shared objects whose file name contains `part` (dl_iterate_phdr over the process).
std::vector<std::string> loaded_paths(const std::string& part) {
  struct Search {
    std::string part;
    std::vector<std::string> found;
  } s{part, {}};
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* data) {
        auto* search = static_cast<Search*>(data);
        const std::string path = info->dlpi_name ? info->dlpi_name : "";
        const size_t slash = path.rfind('/');
        if (path.find(search->part, slash == std::string::npos ? 0 : slash) != std::string::npos)
          search->found.push_back(path);
        return 0;
      },
      &s);
  return s.found;
}

std::string from(const std::string& part, const std::string& if_none) {
  const std::vector<std::string> paths = loaded_paths(part);
  if (paths.empty()) return if_none;
  std::string out;
  for (const std::string& p : paths) out += (out.empty() ? "" : ", ") + p;
  return out;
}

}  // namespace

std::string cuda_environment() {
  const CudaProbe p = cuda_probe();
  U2PL_CHECK(p.error.empty(), p.error);
  std::ostringstream os;
  if (p.driver_version == 0)
    os << "cuda driver: none installed\n";
  else
    os << "cuda driver: CUDA " << cuda_version_text(p.driver_version) << " (" << from("libcuda.so", "not loaded")
       << ")\n";
  os << "cuda runtime: CUDA " << cuda_version_text(p.runtime_version) << " ("
     << from("libcudart", "linked statically") << ")\n";
  if (p.devices == 0) {
    os << "devices: none: " << p.reason << "\n";
    return os.str();
  }
  for (int d = 0; d < p.devices; ++d) {
    cudaDeviceProp prop{};
    CUDA_CHECK(cudaGetDeviceProperties(&prop, d));
    os << "device " << d << ": " << prop.name << ", " << prop.totalGlobalMem / (1024 * 1024) << " MiB, sm_"
       << prop.major << prop.minor << ", " << prop.multiProcessorCount << " SMs\n";
  }
  const size_t cudnn = cudnnGetVersion();
  os << "cudnn: " << cudnn / 10000 << "." << cudnn % 10000 / 100 << "." << cudnn % 100 << " (built against "
     << CUDNN_MAJOR << "." << CUDNN_MINOR << "." << CUDNN_PATCHLEVEL << "; " << from("libcudnn", "not loaded")
     << ")\n";
  int major = 0, minor = 0, patch = 0;
  CUBLAS_CHECK(cublasGetProperty(MAJOR_VERSION, &major));
  CUBLAS_CHECK(cublasGetProperty(MINOR_VERSION, &minor));
  CUBLAS_CHECK(cublasGetProperty(PATCH_LEVEL, &patch));
  os << "cublas: " << major << "." << minor << "." << patch << " (" << from("libcublas", "not loaded") << ")\n";
  return os.str();
}

}  // namespace u2pl
