// Entry points of the CUDA kernels, and what rnn_forward.cu, rnn_backward.cu and
// gemm.cu share.
//
// Dimension legend: T steps, B batch, I inputs, H units, G gates, GH = G*H.
//
// Memory: the caller (fastrnn.ops, through the binding contract) allocates the
// outputs and the training workspace (workspace.h); the kernels' scratch is taken
// from the CUDA runtime's stream-ordered allocator (cudaMallocAsync) on the call's
// stream and returned on it. Everything is enqueued on that stream; nothing
// synchronizes the host.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "cuda_check.h"
#include "fastrnn/cells.h"
#include "fastrnn/params.h"
#include "fastrnn/workspace.h"

namespace fastrnn::cuda {

// Entry points (params validated by the binding; all pointers are device pointers of the
// current device).
template <typename T>
void rnn_forward(const ForwardParams<T>& p, cudaStream_t stream);
template <typename T>
void rnn_backward(const BackwardParams<T>& p, cudaStream_t stream);

// C (M, N, ldc) = op(A) @ op(B): op(A) is (M, K), stored (M, K) with lda, or (K, M) when
// trans_a; op(B) is (K, N), stored (K, N) with ldb, or (N, K) when trans_b. K == 0 writes zeros.
template <typename T>
void gemm(bool trans_a, bool trans_b, index_t M, index_t N, index_t K, const T* A, index_t lda,
          const T* B, index_t ldb, T* C, index_t ldc, cudaStream_t stream);

// out (rows, cols) = x (rows, cols) * dropout[(r % mask_rows), c] (dropout of x or dx; none: 1),
// with the rows r where steps[r] == 0 zeroed (masked steps do not read their input; steps is
// the (T, B) mask in input time order, or null). out may be x.
template <typename T>
void input_rows(const T* x, const T* dropout, const std::uint8_t* steps, index_t rows, index_t cols,
                index_t mask_rows, T* out, cudaStream_t stream);

// out[n] = sum over rows r of x[r * ld + n] (the bias gradients).
template <typename T>
void column_sums(const T* x, index_t rows, index_t N, index_t ld, T* out, cudaStream_t stream);

// Scratch of one call, from the stream-ordered allocator, returned on the same stream.
class DeviceScratch {
 public:
  DeviceScratch(std::size_t bytes, cudaStream_t stream) : stream_(stream) {
    if (bytes > 0) FASTRNN_CUDA_CHECK(cudaMallocAsync(&data_, bytes, stream));
  }
  ~DeviceScratch() {
    if (data_) (void)cudaFreeAsync(data_, stream_);  // a destructor cannot throw
  }
  DeviceScratch(const DeviceScratch&) = delete;
  DeviceScratch& operator=(const DeviceScratch&) = delete;
  char* data() const { return static_cast<char*>(data_); }

 private:
  void* data_ = nullptr;
  cudaStream_t stream_;
};

// Carves 256-byte aligned typed buffers out of one scratch block; run once without memory
// to learn the size, then on the block.
class Carver {
 public:
  explicit Carver(char* base = nullptr) : base_(base) {}
  template <typename T>
  T* take(index_t n) {
    offset_ = (offset_ + 255) / 256 * 256;
    T* p = base_ ? reinterpret_cast<T*>(base_ + offset_) : nullptr;
    offset_ += static_cast<std::size_t>(std::max<index_t>(n, 0)) * sizeof(T);
    return p;
  }
  std::size_t size() const { return offset_; }

 private:
  char* base_;
  std::size_t offset_ = 0;
};

namespace detail {

constexpr int kThreads = 256;  // pointwise kernels

// Blocks for a grid-stride loop over n elements (0 when there is nothing to do).
inline unsigned blocks_for(index_t n) {
  const index_t b = (n + kThreads - 1) / kThreads;
  return (unsigned)std::min<index_t>(b, 65535 * 16);
}

// Recurrent-product kernels: a warp covers 32 consecutive units j of kRows batch
// rows; blockDim = (32, kRowGroups).
constexpr int kRows = 4;
constexpr int kRowGroups = 4;

inline dim3 step_grid(index_t B, index_t H) {
  return dim3((unsigned)((H + 31) / 32),
              (unsigned)((B + kRows * kRowGroups - 1) / (kRows * kRowGroups)));
}
inline dim3 step_block() { return dim3(32, kRowGroups); }

// Largest batch the step kernels' grid covers (grid y <= 65535).
constexpr index_t kMaxBatch = (index_t)65535 * kRows * kRowGroups;

#if defined(__CUDACC__)
// acc[r][g] = sum_{k<K} A[(r)*lda + k] * W[k*ldw + g*gstride + j] for r < rows (rows >= 1):
// the recurrent product of one unit j for kRows batch rows, G column blocks at once. A row is
// the same for the 32 lanes of a warp (broadcast load); W is read coalesced across lanes, and
// each W value is reused for every row.
template <typename T, int RB, int GC>
__device__ __forceinline__ void rowdot(const T* __restrict__ A, index_t lda, int rows,
                                       const T* __restrict__ W, index_t ldw, index_t gstride,
                                       index_t j, index_t K, T (&acc)[RB][GC]) {
#pragma unroll
  for (int r = 0; r < RB; ++r)
#pragma unroll
    for (int g = 0; g < GC; ++g) acc[r][g] = T(0);
  const T* arow[RB];
#pragma unroll
  for (int r = 0; r < RB; ++r) arow[r] = A + (r < rows ? r : 0) * lda;  // extra rows: ignored
  const T* w = W + j;
  for (index_t k = 0; k < K; ++k, w += ldw) {
    T wv[GC];
#pragma unroll
    for (int g = 0; g < GC; ++g) wv[g] = w[g * gstride];
#pragma unroll
    for (int r = 0; r < RB; ++r) {
      const T a = arow[r][k];
#pragma unroll
      for (int g = 0; g < GC; ++g) acc[r][g] += a * wv[g];
    }
  }
}
#endif

}  // namespace detail
}  // namespace fastrnn::cuda
