// The dense products of the CUDA path (input projection, dx, weight gradients) and the
// small helpers around them, apart from the step kernels.
//
// gemm: cuBLAS when the module is built with it (FASTRNN_HAVE_CUBLAS: CMake found
// CUDA::cublas) unless FASTRNN_CUDA_GEMM=own, else a hand-written tiled kernel. Both compute in the
// dtype of the call with no TF32 (cuBLAS keeps CUBLAS_DEFAULT_MATH, which never uses TF32 for
// float32 unless asked) and are deterministic (cuBLAS: the same GPU, the same results; the kernel
// here: a fixed order that depends only on the shape).
//
// The hand-written kernel: a 64x64 output tile per block of 16x16 threads, 4x4 outputs per
// thread (strided by 16), K in chunks of 16. Shared-memory tiles are k-major with a row
// stride of 66 floats (65 doubles), which makes every tile store conflict-free, whichever
// layout the operand has, and the compute loop's reads are broadcasts or consecutive words.
// Long reductions (the weight gradients: K = T*B) are split over blocks (split-K): each
// split writes its partial tile to scratch and a second kernel sums the splits in order.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>

#include "cuda_check.h"
#include "rnn_cuda.h"

#if defined(FASTRNN_HAVE_CUBLAS)
#include <cublas_v2.h>
#endif

namespace fastrnn::cuda {
namespace {

using detail::blocks_for;
using detail::kThreads;

template <typename T>
__global__ void zero_rows_kernel(T* __restrict__ C, index_t M, index_t N, index_t ldc) {
  const index_t n = M * N;
  for (index_t e = (index_t)blockIdx.x * blockDim.x + threadIdx.x; e < n;
       e += (index_t)gridDim.x * blockDim.x)
    C[(e / N) * ldc + e % N] = T(0);
}

#if defined(FASTRNN_HAVE_CUBLAS)
[[noreturn]] void throw_cublas(cublasStatus_t st, const char* expr, const char* file, int line) {
  throw std::runtime_error(std::string("cuBLAS error ") + cublasGetStatusName(st) + " (" +
                           cublasGetStatusString(st) + ") in " + expr + " (" + file + ":" +
                           std::to_string(line) + ")");
}
#define FASTRNN_CUBLAS_CHECK(expr)                          \
  do {                                                      \
    const cublasStatus_t fastrnn_st_ = (expr);              \
    if (fastrnn_st_ != CUBLAS_STATUS_SUCCESS)               \
      throw_cublas(fastrnn_st_, #expr, __FILE__, __LINE__); \
  } while (0)

// One handle per device, used under its lock (a handle holds the stream it launches on).
struct Cublas {
  std::mutex mutex;
  cublasHandle_t handle[64] = {};
};

Cublas& cublas() {
  static Cublas* c = new Cublas;  // never destroyed: no cuBLAS call after main() returns
  return *c;
}

cublasStatus_t gemm_call(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                         int k, const float* A, int lda, const float* B, int ldb, float* C,
                         int ldc) {
  const float one = 1.0f, zero = 0.0f;
  return cublasSgemm(h, ta, tb, m, n, k, &one, A, lda, B, ldb, &zero, C, ldc);
}
cublasStatus_t gemm_call(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                         int k, const double* A, int lda, const double* B, int ldb, double* C,
                         int ldc) {
  const double one = 1.0, zero = 0.0;
  return cublasDgemm(h, ta, tb, m, n, k, &one, A, lda, B, ldb, &zero, C, ldc);
}

// Row-major C (M, N) = op(A) @ op(B) is column-major C^T (N, M) = op(B)^T @ op(A)^T: a stored
// row-major (r, c) matrix is the column-major (c, r) one, so cuBLAS gets B first and each
// operand's transpose flag as it stands.
template <typename T>
void cublas_gemm(bool trans_a, bool trans_b, index_t M, index_t N, index_t K, const T* A,
                 index_t lda, const T* B, index_t ldb, T* C, index_t ldc, cudaStream_t stream) {
  int dev = 0;
  FASTRNN_CUDA_CHECK(cudaGetDevice(&dev));
  if (dev < 0 || dev >= 64) throw std::runtime_error("CUDA device index out of range for cuBLAS");
  Cublas& c = cublas();
  std::lock_guard<std::mutex> lock(c.mutex);
  cublasHandle_t& h = c.handle[dev];
  if (!h) {
    FASTRNN_CUBLAS_CHECK(cublasCreate(&h));
    FASTRNN_CUBLAS_CHECK(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH));  // no TF32
    FASTRNN_CUBLAS_CHECK(cublasSetPointerMode(h, CUBLAS_POINTER_MODE_HOST));
  }
  FASTRNN_CUBLAS_CHECK(cublasSetStream(h, stream));
  FASTRNN_CUBLAS_CHECK(gemm_call(h, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                 trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, (int)N, (int)M, (int)K, B,
                                 (int)ldb, A, (int)lda, C, (int)ldc));
}
#endif

// ---- the hand-written tiled product ------------------------------------------------------
constexpr int kTileM = 64, kTileN = 64, kTileK = 16, kGemmThreads = 256;

template <typename T>
constexpr int kTileStride = sizeof(T) == 4 ? kTileM + 2 : kTileM + 1;

// Split-K: K is cut into `splits` ranges of a multiple of kTileK; split z (grid z) writes its
// partial product to C + z * split_stride (ldc as given). splits == 1 writes C itself.
template <typename T, bool TA, bool TB>
__global__ void __launch_bounds__(kGemmThreads)
    gemm_kernel(index_t M, index_t N, index_t K, index_t k_per_split, const T* __restrict__ A,
                index_t lda, const T* __restrict__ Bm, index_t ldb, T* __restrict__ C, index_t ldc,
                index_t split_stride) {
  constexpr int S = kTileStride<T>;
  __shared__ T As[kTileK][S];
  __shared__ T Bs[kTileK][S];
  const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * 16 + tx;
  // M (up to T*B rows) on grid.x, whose limit is 2^31-1; N (at most G*H or I) on grid.y.
  const index_t m0 = (index_t)blockIdx.x * kTileM, n0 = (index_t)blockIdx.y * kTileN;
  const index_t kb = (index_t)blockIdx.z * k_per_split;
  const index_t ke = kb + k_per_split < K ? kb + k_per_split : K;
  T acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = T(0);

  for (index_t k0 = kb; k0 < ke; k0 += kTileK) {
    // Each thread loads 4 elements of each tile; consecutive threads walk the stored
    // matrix's contiguous dimension (coalesced). Stores: with the contiguous dimension k,
    // lanes write (kk, mm) with kk = lane % 16: banks (kk * S + mm) mod 32 are all distinct
    // for S = 66 (2kk + mm); with it m (or n), consecutive words of one row.
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
      if (m < M && k < ke) v = TA ? A[k * lda + m] : A[m * lda + k];
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
      if (n < N && k < ke) v = TB ? Bm[n * ldb + k] : Bm[k * ldb + n];
      Bs[kk][nn] = v;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kTileK; ++kk) {
      T a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = As[kk][ty + 16 * i];  // two addresses per warp
#pragma unroll
      for (int j = 0; j < 4; ++j) b[j] = Bs[kk][tx + 16 * j];  // consecutive words
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
    }
    __syncthreads();
  }
  T* out = C + (index_t)blockIdx.z * split_stride;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const index_t m = m0 + ty + 16 * i;
    if (m >= M) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const index_t n = n0 + tx + 16 * j;
      if (n < N) out[m * ldc + n] = acc[i][j];
    }
  }
}

// C[m, n] = sum over z < splits of part[z][m, n] (part (splits, M, N)), in z order.
template <typename T>
__global__ void split_sum_kernel(const T* __restrict__ part, int splits, index_t M, index_t N,
                                 T* __restrict__ C, index_t ldc) {
  const index_t n = M * N;
  for (index_t e = (index_t)blockIdx.x * blockDim.x + threadIdx.x; e < n;
       e += (index_t)gridDim.x * blockDim.x) {
    T s = T(0);
    for (int z = 0; z < splits; ++z) s += part[(index_t)z * n + e];
    C[(e / N) * ldc + e % N] = s;
  }
}

template <typename T>
void launch_tiled(bool trans_a, bool trans_b, dim3 grid, index_t M, index_t N, index_t K,
                  index_t kps, const T* A, index_t lda, const T* B, index_t ldb, T* C, index_t ldc,
                  index_t split_stride, cudaStream_t stream) {
  const dim3 block(16, 16);
  if (!trans_a && !trans_b)
    gemm_kernel<T, false, false>
        <<<grid, block, 0, stream>>>(M, N, K, kps, A, lda, B, ldb, C, ldc, split_stride);
  else if (trans_a && !trans_b)
    gemm_kernel<T, true, false>
        <<<grid, block, 0, stream>>>(M, N, K, kps, A, lda, B, ldb, C, ldc, split_stride);
  else if (!trans_a && trans_b)
    gemm_kernel<T, false, true>
        <<<grid, block, 0, stream>>>(M, N, K, kps, A, lda, B, ldb, C, ldc, split_stride);
  else
    gemm_kernel<T, true, true>
        <<<grid, block, 0, stream>>>(M, N, K, kps, A, lda, B, ldb, C, ldc, split_stride);
  FASTRNN_CUDA_CHECK_LAUNCH();
}

// Split count from the shape alone (so results never depend on the device): split K into
// ranges of at least kSplitMinK when the output has too few tiles to fill a GPU.
constexpr index_t kSplitMinK = 512, kSplitTargetBlocks = 256, kSplitMax = 32;

template <typename T>
void tiled_gemm(bool trans_a, bool trans_b, index_t M, index_t N, index_t K, const T* A,
                index_t lda, const T* B, index_t ldb, T* C, index_t ldc, cudaStream_t stream) {
  const index_t tm = (M + kTileM - 1) / kTileM, tn = (N + kTileN - 1) / kTileN;
  index_t splits = 1;
  if (tm * tn < kSplitTargetBlocks && K >= 2 * kSplitMinK) {
    splits = std::min<index_t>((kSplitTargetBlocks + tm * tn - 1) / (tm * tn), K / kSplitMinK);
    splits = std::min<index_t>(splits, kSplitMax);
  }
  index_t kps = (K + splits - 1) / splits;
  kps = (kps + kTileK - 1) / kTileK * kTileK;
  splits = (K + kps - 1) / kps;  // every split non-empty
  const dim3 grid((unsigned)tm, (unsigned)tn, (unsigned)splits);
  if (splits == 1) {
    launch_tiled<T>(trans_a, trans_b, grid, M, N, K, kps, A, lda, B, ldb, C, ldc, 0, stream);
    return;
  }
  DeviceScratch part(sizeof(T) * (std::size_t)(splits * M * N), stream);
  T* pp = reinterpret_cast<T*>(part.data());
  launch_tiled<T>(trans_a, trans_b, grid, M, N, K, kps, A, lda, B, ldb, pp, N, M * N, stream);
  split_sum_kernel<T><<<blocks_for(M * N), kThreads, 0, stream>>>(pp, (int)splits, M, N, C, ldc);
  FASTRNN_CUDA_CHECK_LAUNCH();
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

// Column sums, pass 1: block (x: 32 columns, y: a chunk of kSumChunk rows) of 32 x 8 threads;
// thread (c, w) sums rows w, w + 8, ... of the chunk in order, then the 8 partial sums are
// added in order. out (chunks, N) (or the result itself when there is one chunk).
constexpr index_t kSumChunk = 256;

template <typename T>
__global__ void __launch_bounds__(256)
    column_sum_kernel(const T* __restrict__ x, index_t rows, index_t N, index_t ld,
                      T* __restrict__ out) {
  __shared__ T part[8][33];
  const int tx = threadIdx.x % 32, ty = threadIdx.x / 32;
  const index_t n = (index_t)blockIdx.x * 32 + tx;
  const index_t r0 = (index_t)blockIdx.y * kSumChunk;
  const index_t r1 = r0 + kSumChunk < rows ? r0 + kSumChunk : rows;
  T acc = T(0);
  if (n < N)
    for (index_t r = r0 + ty; r < r1; r += 8) acc += x[r * ld + n];
  part[ty][tx] = acc;
  __syncthreads();
  if (ty == 0 && n < N) {
    T s = T(0);
#pragma unroll
    for (int k = 0; k < 8; ++k) s += part[k][tx];
    out[(index_t)blockIdx.y * N + n] = s;
  }
}

// Pass 2: out[n] = sum over chunks of part[chunk][n], in chunk order.
template <typename T>
__global__ void chunk_sum_kernel(const T* __restrict__ part, index_t chunks, index_t N,
                                 T* __restrict__ out) {
  for (index_t n = (index_t)blockIdx.x * blockDim.x + threadIdx.x; n < N;
       n += (index_t)gridDim.x * blockDim.x) {
    T s = T(0);
    for (index_t c = 0; c < chunks; ++c) s += part[c * N + n];
    out[n] = s;
  }
}

// out (cols, ld_out) = in (rows, cols; ld_in)^T through 32x32 shared-memory tiles (padded:
// conflict-free), reads and writes coalesced. Block 32 x 8.
template <typename T>
__global__ void transpose_kernel(const T* __restrict__ in, index_t rows, index_t cols,
                                 index_t ld_in, T* __restrict__ out, index_t ld_out) {
  __shared__ T tile[32][33];
  const index_t c0 = (index_t)blockIdx.x * 32, r0 = (index_t)blockIdx.y * 32;
  for (int i = threadIdx.y; i < 32; i += 8) {
    const index_t r = r0 + i, c = c0 + threadIdx.x;
    if (r < rows && c < cols) tile[i][threadIdx.x] = in[r * ld_in + c];
  }
  __syncthreads();
  for (int i = threadIdx.y; i < 32; i += 8) {
    const index_t c = c0 + i, r = r0 + threadIdx.x;
    if (c < cols && r < rows) out[c * ld_out + r] = tile[threadIdx.x][i];
  }
}

}  // namespace

template <typename T>
void gemm(bool trans_a, bool trans_b, index_t M, index_t N, index_t K, const T* A, index_t lda,
          const T* B, index_t ldb, T* C, index_t ldc, cudaStream_t stream) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    zero_rows_kernel<T><<<blocks_for(M * N), kThreads, 0, stream>>>(C, M, N, ldc);
    FASTRNN_CUDA_CHECK_LAUNCH();
    return;
  }
#if defined(FASTRNN_HAVE_CUBLAS)
  // FASTRNN_CUDA_GEMM=own (read at every call) runs the hand-written kernel instead, so that
  // a GPU machine with cuBLAS tests both.
  const char* which = std::getenv("FASTRNN_CUDA_GEMM");
  if (which == nullptr || std::strcmp(which, "own") != 0) {
    cublas_gemm<T>(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc, stream);
    return;
  }
#endif
  tiled_gemm<T>(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc, stream);
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
  if (rows <= 0) {
    FASTRNN_CUDA_CHECK(cudaMemsetAsync(out, 0, sizeof(T) * N, stream));
    return;
  }
  const index_t chunks = (rows + kSumChunk - 1) / kSumChunk;
  const dim3 grid((unsigned)((N + 31) / 32), (unsigned)chunks);
  if (chunks == 1) {
    column_sum_kernel<T><<<grid, 256, 0, stream>>>(x, rows, N, ld, out);
    FASTRNN_CUDA_CHECK_LAUNCH();
    return;
  }
  DeviceScratch part(sizeof(T) * (std::size_t)(chunks * N), stream);
  T* pp = reinterpret_cast<T*>(part.data());
  column_sum_kernel<T><<<grid, 256, 0, stream>>>(x, rows, N, ld, pp);
  FASTRNN_CUDA_CHECK_LAUNCH();
  chunk_sum_kernel<T><<<blocks_for(N), kThreads, 0, stream>>>(pp, chunks, N, out);
  FASTRNN_CUDA_CHECK_LAUNCH();
}

template <typename T>
void transpose(const T* in, index_t rows, index_t cols, index_t ld_in, T* out, index_t ld_out,
               cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  const dim3 grid((unsigned)((cols + 31) / 32), (unsigned)((rows + 31) / 32)), block(32, 8);
  transpose_kernel<T><<<grid, block, 0, stream>>>(in, rows, cols, ld_in, out, ld_out);
  FASTRNN_CUDA_CHECK_LAUNCH();
}

#define FASTRNN_INSTANTIATE(T)                                                                    \
  template void gemm<T>(bool, bool, index_t, index_t, index_t, const T*, index_t, const T*,       \
                        index_t, T*, index_t, cudaStream_t);                                      \
  template void input_rows<T>(const T*, const T*, const std::uint8_t*, index_t, index_t, index_t, \
                              T*, cudaStream_t);                                                  \
  template void column_sums<T>(const T*, index_t, index_t, index_t, T*, cudaStream_t);            \
  template void transpose<T>(const T*, index_t, index_t, index_t, T*, index_t, cudaStream_t);
FASTRNN_INSTANTIATE(float)
FASTRNN_INSTANTIATE(double)
#undef FASTRNN_INSTANTIATE

}  // namespace fastrnn::cuda
