#include "blas.h"

#include <cblas.h>

#include <algorithm>

#include "thread_pool.h"

namespace fastrnn::detail {

using cpu::run_tasks;
using cpu::Worker;

void blas_init() { scipy_openblas_set_num_threads(1); }

namespace {
inline CBLAS_TRANSPOSE tr(bool t) { return t ? CblasTrans : CblasNoTrans; }
}  // namespace

void gemm(bool ta, bool tb, index_t M, index_t N, index_t K, const float* A, index_t lda,
          const float* B, index_t ldb, bool acc, float* C, index_t ldc) {
  scipy_cblas_sgemm(CblasRowMajor, tr(ta), tr(tb), (blasint)M, (blasint)N, (blasint)K, 1.0f, A,
                    (blasint)lda, B, (blasint)ldb, acc ? 1.0f : 0.0f, C, (blasint)ldc);
}

void gemm(bool ta, bool tb, index_t M, index_t N, index_t K, const double* A, index_t lda,
          const double* B, index_t ldb, bool acc, double* C, index_t ldc) {
  scipy_cblas_dgemm(CblasRowMajor, tr(ta), tr(tb), (blasint)M, (blasint)N, (blasint)K, 1.0, A,
                    (blasint)lda, B, (blasint)ldb, acc ? 1.0 : 0.0, C, (blasint)ldc);
}

template <typename T>
void parallel_gemm(bool ta, bool tb, index_t M, index_t N, index_t K, const T* A, index_t lda,
                   const T* B, index_t ldb, T* C, index_t ldc, int num_threads) {
  if (M <= 0 || N <= 0) return;
  // Tiles depend on the shape only, never on the thread count, so results are
  // bitwise identical for any thread count. Large tiles keep OpenBLAS's packing
  // cheap; small products are cut finer so that both cores get work.
  index_t tile_m = 512, tile_n = 1024;
  auto count = [&] { return ((M + tile_m - 1) / tile_m) * ((N + tile_n - 1) / tile_n); };
  while (count() < 8 && tile_n > 128) tile_n /= 2;
  while (count() < 8 && tile_m > 64) tile_m /= 2;
  const index_t tiles_n = (N + tile_n - 1) / tile_n, tiles = count();
  run_tasks(num_threads, tiles, [&](const Worker&, index_t tile) {
    const index_t i0 = (tile / tiles_n) * tile_m, j0 = (tile % tiles_n) * tile_n;
    const index_t m = std::min(tile_m, M - i0), n = std::min(tile_n, N - j0);
    if (K == 0) {
      for (index_t i = 0; i < m; ++i)
        for (index_t j = 0; j < n; ++j) C[(i0 + i) * ldc + j0 + j] = T(0);
      return;
    }
    const T* a = ta ? A + i0 : A + i0 * lda;
    const T* b = tb ? B + j0 * ldb : B + j0;
    gemm(ta, tb, m, n, K, a, lda, b, ldb, false, C + i0 * ldc + j0, ldc);
  });
}

template void parallel_gemm<float>(bool, bool, index_t, index_t, index_t, const float*, index_t,
                                   const float*, index_t, float*, index_t, int);
template void parallel_gemm<double>(bool, bool, index_t, index_t, index_t, const double*, index_t,
                                    const double*, index_t, double*, index_t, int);

}  // namespace fastrnn::detail
