// CUDA error reporting: every runtime call and kernel launch is checked, and a
// failure throws std::runtime_error (RuntimeError in Python) with file:line.
#pragma once

#include <cuda_runtime.h>

#include <sstream>
#include <stdexcept>
#include <string>

namespace fastrnn::cuda::detail {
[[noreturn]] inline void throw_cuda(cudaError_t err, const char* expr, const char* file, int line) {
  std::ostringstream os;
  os << "CUDA error " << cudaGetErrorName(err) << " (" << cudaGetErrorString(err) << ") in " << expr
     << " (" << file << ":" << line << ")";
  throw std::runtime_error(os.str());
}
}  // namespace fastrnn::cuda::detail

// FASTRNN_CUDA_CHECK(cudaMemcpyAsync(...)): throws on any status but cudaSuccess.
#define FASTRNN_CUDA_CHECK(expr)                                                    \
  do {                                                                              \
    const cudaError_t fastrnn_err_ = (expr);                                        \
    if (fastrnn_err_ != cudaSuccess)                                                \
      ::fastrnn::cuda::detail::throw_cuda(fastrnn_err_, #expr, __FILE__, __LINE__); \
  } while (0)

// After a kernel launch: reports launch-configuration errors (not asynchronous ones).
#define FASTRNN_CUDA_CHECK_LAUNCH() FASTRNN_CUDA_CHECK(cudaGetLastError())
