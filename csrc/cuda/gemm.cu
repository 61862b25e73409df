// The dense products of the CUDA path (input projection, dx, weight gradients) and
// the small elementwise helpers around them, apart from the step kernels.
//
// A 64x64 output tile per block of 16x16 threads, 4x4 outputs per thread. Numerically
// a plain sum over k in order (no split-K), in the dtype of the call.
#include <cstdint>

#include "cuda_check.h"
#include "rnn_cuda.h"

namespace fastrnn::cuda {
namespace {

using detail::blocks_for;
using detail::kThreads;

// ---- tiled matrix product -------------------------------------------------
// 64x64 output tile per block of 16x16 threads, 4x4 outputs per thread (strided by 16 so that
// shared-memory reads and global writes are conflict-free and coalesced), K in chunks of 16.
constexpr int kTileM = 64, kTileN = 64, kTileK = 16, kGemmThreads = 256;

template <typename T, bool TA, bool TB>
__global__ void __launch_bounds__(kGemmThreads)
    gemm_kernel(index_t M, index_t N, index_t K, const T* __restrict__ A, index_t lda,
                const T* __restrict__ Bm, index_t ldb, T* __restrict__ C, index_t ldc) {
  __shared__ T As[kTileK][kTileM];
  __shared__ T Bs[kTileK][kTileN];
  const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * 16 + tx;
  // M (up to T*B rows) on grid.x, whose limit is 2^31-1; N (at most G*H or I) on grid.y.
  const index_t m0 = (index_t)blockIdx.x * kTileM, n0 = (index_t)blockIdx.y * kTileN;
  T acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = T(0);

  for (index_t k0 = 0; k0 < K; k0 += kTileK) {
    // Each thread loads 4 elements of each tile; consecutive threads walk the stored
    // matrix's contiguous dimension.
#pragma unroll
    for (int q = 0; q < kTileK * kTileM / kGemmThreads; ++q) {
      const int idx = tid + q * kGemmThreads;
      int kk, mm;
      if (TA) {  // stored (K, M): m contiguous
        kk = idx / kTileM;
        mm = idx % kTileM;
      } else {  // stored (M, K): k contiguous
        mm = idx / kTileK;
        kk = idx % kTileK;
      }
      const index_t m = m0 + mm, k = k0 + kk;
      T v = T(0);
      if (m < M && k < K) v = TA ? A[k * lda + m] : A[m * lda + k];
      As[kk][mm] = v;
    }
#pragma unroll
    for (int q = 0; q < kTileK * kTileN / kGemmThreads; ++q) {
      const int idx = tid + q * kGemmThreads;
      int kk, nn;
      if (TB) {  // stored (N, K): k contiguous
        nn = idx / kTileK;
        kk = idx % kTileK;
      } else {  // stored (K, N): n contiguous
        kk = idx / kTileN;
        nn = idx % kTileN;
      }
      const index_t n = n0 + nn, k = k0 + kk;
      T v = T(0);
      if (n < N && k < K) v = TB ? Bm[n * ldb + k] : Bm[k * ldb + n];
      Bs[kk][nn] = v;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kTileK; ++kk) {
      T a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = As[kk][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) b[j] = Bs[kk][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const index_t m = m0 + ty + 16 * i;
    if (m >= M) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const index_t n = n0 + tx + 16 * j;
      if (n < N) C[m * ldc + n] = acc[i][j];
    }
  }
}

// out (rows, cols) = x * dropout[r % mask_rows] (none: 1), rows r with steps[r] == 0 zeroed.
template <typename T>
__global__ void input_rows_kernel(const T* __restrict__ x, const T* __restrict__ dropout,
                                  const std::uint8_t* __restrict__ steps, index_t rows,
                                  index_t cols, index_t mask_rows, T* __restrict__ out) {
  const index_t n = rows * cols;
  for (index_t e = (index_t)blockIdx.x * blockDim.x + threadIdx.x; e < n;
       e += (index_t)gridDim.x * blockDim.x) {
    const index_t r = e / cols;
    T v = x[e];
    if (dropout) v *= dropout[(r % mask_rows) * cols + e % cols];
    out[e] = (steps && !steps[r]) ? T(0) : v;
  }
}

// out[n] (N) = sum over rows r of x[r * ld + n]: a block of 256 threads per 32 columns,
// each thread summing a strided share of the rows, then a fixed-order tree reduction in
// shared memory (the result does not depend on the launch, only on the shape).
template <typename T>
__global__ void __launch_bounds__(256)
    column_sum_kernel(const T* __restrict__ x, index_t rows, index_t N, index_t ld,
                      T* __restrict__ out) {
  __shared__ T part[8][33];
  const int tx = threadIdx.x % 32, ty = threadIdx.x / 32;
  const index_t n = (index_t)blockIdx.x * 32 + tx;
  T acc = T(0);
  if (n < N)
    for (index_t r = ty; r < rows; r += 8) acc += x[r * ld + n];
  part[ty][tx] = acc;
  __syncthreads();
  if (ty == 0 && n < N) {
    T s = T(0);
#pragma unroll
    for (int k = 0; k < 8; ++k) s += part[k][tx];
    out[n] = s;
  }
}

}  // namespace

template <typename T>
void gemm(bool trans_a, bool trans_b, index_t M, index_t N, index_t K, const T* A, index_t lda,
          const T* B, index_t ldb, T* C, index_t ldc, cudaStream_t stream) {
  if (M <= 0 || N <= 0) return;
  const dim3 grid((unsigned)((M + kTileM - 1) / kTileM), (unsigned)((N + kTileN - 1) / kTileN));
  const dim3 block(16, 16);
  if (!trans_a && !trans_b)
    gemm_kernel<T, false, false><<<grid, block, 0, stream>>>(M, N, K, A, lda, B, ldb, C, ldc);
  else if (trans_a && !trans_b)
    gemm_kernel<T, true, false><<<grid, block, 0, stream>>>(M, N, K, A, lda, B, ldb, C, ldc);
  else if (!trans_a && trans_b)
    gemm_kernel<T, false, true><<<grid, block, 0, stream>>>(M, N, K, A, lda, B, ldb, C, ldc);
  else
    gemm_kernel<T, true, true><<<grid, block, 0, stream>>>(M, N, K, A, lda, B, ldb, C, ldc);
  FASTRNN_CUDA_CHECK_LAUNCH();
}

template <typename T>
void input_rows(const T* x, const T* dropout, const std::uint8_t* steps, index_t rows, index_t cols,
                index_t mask_rows, T* out, cudaStream_t stream) {
  const index_t n = rows * cols;
  if (n <= 0) return;
  input_rows_kernel<T>
      <<<blocks_for(n), kThreads, 0, stream>>>(x, dropout, steps, rows, cols, mask_rows, out);
  FASTRNN_CUDA_CHECK_LAUNCH();
}

template <typename T>
void column_sums(const T* x, index_t rows, index_t N, index_t ld, T* out, cudaStream_t stream) {
  if (N <= 0) return;
  column_sum_kernel<T><<<(unsigned)((N + 31) / 32), 256, 0, stream>>>(x, rows, N, ld, out);
  FASTRNN_CUDA_CHECK_LAUNCH();
}

template void gemm<float>(bool, bool, index_t, index_t, index_t, const float*, index_t,
                          const float*, index_t, float*, index_t, cudaStream_t);
template void gemm<double>(bool, bool, index_t, index_t, index_t, const double*, index_t,
                           const double*, index_t, double*, index_t, cudaStream_t);
template void input_rows<float>(const float*, const float*, const std::uint8_t*, index_t, index_t,
                                index_t, float*, cudaStream_t);
template void input_rows<double>(const double*, const double*, const std::uint8_t*, index_t,
                                 index_t, index_t, double*, cudaStream_t);
template void column_sums<float>(const float*, index_t, index_t, index_t, float*, cudaStream_t);
template void column_sums<double>(const double*, index_t, index_t, index_t, double*, cudaStream_t);

}  // namespace fastrnn::cuda
