// The only place fastrnn calls a BLAS (OpenBLAS from the scipy-openblas32 wheel).
#pragma once

#include "fastrnn/config.h"

namespace fastrnn::detail {

// Sets this OpenBLAS instance to one thread: fastrnn's own threads call it on
// fixed tiles, so its thread pool would only oversubscribe the cores.
void blas_init();

// Row-major C (M x N) = op(A) op(B) (+ C when accumulate), single-threaded.
void gemm(bool trans_a, bool trans_b, index_t M, index_t N, index_t K, const float* A, index_t lda,
          const float* B, index_t ldb, bool accumulate, float* C, index_t ldc);
void gemm(bool trans_a, bool trans_b, index_t M, index_t N, index_t K, const double* A, index_t lda,
          const double* B, index_t ldb, bool accumulate, double* C, index_t ldc);

// The same product cut into fixed tiles of C, shared out over `num_threads`
// threads (thread_pool.h). Tiles do not depend on the thread count, so the result
// is bitwise identical for any thread count.
template <typename T>
void parallel_gemm(bool trans_a, bool trans_b, index_t M, index_t N, index_t K, const T* A,
                   index_t lda, const T* B, index_t ldb, T* C, index_t ldc, int num_threads);

}  // namespace fastrnn::detail
