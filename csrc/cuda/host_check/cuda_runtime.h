// A stand-in for <cuda_runtime.h> that lets block_product_check.cpp compile the device code of
// step_common.cuh with a plain C++ compiler and run it on the CPU: CUDA's qualifiers as
// nothing, its vector types, and the few runtime declarations the shared headers name (never
// called here). threadIdx, __syncthreads and the warp shuffle come from the check's emulator.
// Not part of the module's build.
#pragma once

#include <cstddef>

#define __host__
#define __device__
#define __global__
#define __shared__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __grid_constant__
#define __align__(n) alignas(n)

struct float4 {
  float x, y, z, w;
};
struct double2 {
  double x, y;
};
struct uint3 {
  unsigned x, y, z;
};

typedef struct CUstream_st* cudaStream_t;
enum cudaError_t { cudaSuccess = 0, cudaErrorNotSupported = 801 };
inline const char* cudaGetErrorName(cudaError_t) { return "cudaErrorNotSupported"; }
inline const char* cudaGetErrorString(cudaError_t) { return "not on a GPU (host check)"; }
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline cudaError_t cudaMallocAsync(void**, std::size_t, cudaStream_t) {
  return cudaErrorNotSupported;
}
inline cudaError_t cudaFreeAsync(void*, cudaStream_t) { return cudaErrorNotSupported; }
