// U2PL_HD marks functions compiled for host and device: under nvcc __host__ __device__,
// under g++ nothing. Shared math (engine/math.h, engine/rng.h) uses it so CPU loops and CUDA
// kernels call the same code.
#pragma once
#if defined(__CUDACC__)
#define U2PL_HD __host__ __device__ __forceinline__
#else
#define U2PL_HD inline
#endif
