// fastrnn build configuration shared by the CPU and CUDA code.
#pragma once

#include <cstdint>

// FASTRNN_HD marks the cell math that both devices compile. Under nvcc it is a
// host+device function; on the CPU it is `static inline`, so that each per-ISA
// translation unit (compiled with different -m flags) keeps its own copy and the
// linker can never pick an AVX-512 copy for the portable path.
#if defined(__CUDACC__)
#define FASTRNN_HD __host__ __device__ __forceinline__
#else
#define FASTRNN_HD static inline
#endif

namespace fastrnn {
// Signed 64-bit index: every size product (T*B*G*H, ...) is computed in it.
using index_t = std::int64_t;
}  // namespace fastrnn
