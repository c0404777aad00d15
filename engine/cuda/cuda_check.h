// One check family for CUDA runtime, cuBLAS and cuDNN status codes (STYLE 17). Every call and
// every kernel launch is checked; with U2PL_SYNC_CHECKS=1 the launch check also synchronises, so
// an asynchronous fault is reported at the launch that caused it.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include "engine/check.h"

namespace u2pl {
const char* cublas_status_name(cublasStatus_t s);
}

#define CUDA_CHECK(call)                                                                    \
  do {                                                                                      \
    const cudaError_t u2pl_e_ = (call);                                                     \
    U2PL_CHECK(u2pl_e_ == cudaSuccess, "CUDA error " << cudaGetErrorName(u2pl_e_) << ": "   \
                                                     << cudaGetErrorString(u2pl_e_));       \
  } while (0)

#define CUDNN_CHECK(call)                                                                   \
  do {                                                                                      \
    const cudnnStatus_t u2pl_s_ = (call);                                                   \
    U2PL_CHECK(u2pl_s_ == CUDNN_STATUS_SUCCESS, "cuDNN error " << cudnnGetErrorString(u2pl_s_)); \
  } while (0)

#define CUBLAS_CHECK(call)                                                                  \
  do {                                                                                      \
    const cublasStatus_t u2pl_s_ = (call);                                                  \
    U2PL_CHECK(u2pl_s_ == CUBLAS_STATUS_SUCCESS,                                            \
               "cuBLAS error " << ::u2pl::cublas_status_name(u2pl_s_));                     \
  } while (0)

// After every kernel launch: the launch error, and with U2PL_SYNC_CHECKS the execution error.
#define CUDA_CHECK_LAUNCH()                                                                 \
  do {                                                                                      \
    CUDA_CHECK(cudaGetLastError());                                                         \
    if (::u2pl::sync_checks_enabled()) CUDA_CHECK(cudaDeviceSynchronize());                 \
  } while (0)
