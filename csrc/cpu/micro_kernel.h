// The register-blocked product at the heart of each time step: a few batch rows
// of the recurrent operand times one packed weight panel, accumulated in vector
// registers. Per ISA (included inside the ISA namespace by rnn_kernels.h).
#pragma once

#include <cstring>

#include "simd.h"

namespace fastrnn::cpu::FASTRNN_ISA_NS {

// Largest batch-row block whose accumulators (MB x GC vectors) plus GC weight
// vectors fit in the register file.
template <int GC>
constexpr int max_rows() {
  constexpr int mb = (FASTRNN_VEC_REGS - GC - 1) / GC;
  return mb < 1 ? 1 : (mb > 8 ? 8 : mb);
}

// ---- register-blocked product ---------------------------------------------
// tile[m][g][l] = sum_k A[m, k] * P[k][g][l] for MB rows of A (lda apart).
template <typename T, int GC, int MB>
inline void micro_tile(const T* A, index_t lda, const T* P, index_t K, T* tile) {
  using V = typename Simd<T>::V;
  constexpr int VL = Simd<T>::VL;
  // Few rows leave few independent accumulators, and each FMA would wait for the
  // previous one: KS interleaved partial sums over k (summed at the end) keep
  // about 8 chains in flight. KS depends only on (MB, GC), never on threads.
  constexpr int KS = MB * GC >= 8 ? 1 : (MB * GC >= 4 ? 2 : (MB * GC >= 2 ? 4 : 8));
  V acc[KS][MB][GC];
  for (int q = 0; q < KS; ++q)
    for (int m = 0; m < MB; ++m)
      for (int g = 0; g < GC; ++g) acc[q][m][g] = V{};
  auto step = [&](index_t k, V(&a_acc)[MB][GC]) {
    V w[GC];
#pragma GCC unroll 4
    for (int g = 0; g < GC; ++g) std::memcpy(&w[g], P + (k * GC + g) * VL, sizeof(V));
#pragma GCC unroll 8
    for (int m = 0; m < MB; ++m) {
      const T a = A[m * lda + k];
#pragma GCC unroll 4
      for (int g = 0; g < GC; ++g) a_acc[m][g] += a * w[g];
    }
  };
  index_t k = 0;
  for (; k + KS <= K; k += KS)
#pragma GCC unroll 8
    for (int q = 0; q < KS; ++q) step(k + q, acc[q]);
  for (int q = 0; k < K; ++k, ++q) step(k, acc[q]);
  for (int q = 1; q < KS; ++q)
    for (int m = 0; m < MB; ++m)
      for (int g = 0; g < GC; ++g) acc[0][m][g] += acc[q][m][g];
  for (int m = 0; m < MB; ++m)
    for (int g = 0; g < GC; ++g) std::memcpy(tile + (m * GC + g) * VL, &acc[0][m][g], sizeof(V));
}

template <typename T, int GC, int MB = max_rows<GC>()>
inline void micro_rows(int rows, const T* A, index_t lda, const T* P, index_t K, T* tile) {
  if constexpr (MB > 1) {
    if (rows < MB) return micro_rows<T, GC, MB - 1>(rows, A, lda, P, K, tile);
  }
  micro_tile<T, GC, MB>(A, lda, P, K, tile);
}

// Calls f(b0, rows) for each block of batch rows after computing
// tile = A[b0:b0+rows] @ panel. The blocks are as even as possible (B = 8 with
// room for 6 rows gives 4 + 4, not 6 + 2), fixed by B alone.
template <typename T, int GC, typename F>
inline void for_row_blocks(index_t B, const T* A, index_t lda, const T* panel, index_t K, T* tile,
                           F&& f) {
  constexpr int MB = max_rows<GC>();
  const index_t blocks = (B + MB - 1) / MB;
  for (index_t q = 0, b0 = 0; q < blocks; ++q) {
    const int rows = (int)(B / blocks + (q < B % blocks ? 1 : 0));
    micro_rows<T, GC>(rows, A + b0 * lda, lda, panel, K, tile);
    f(b0, rows);
    b0 += rows;
  }
}

}  // namespace fastrnn::cpu::FASTRNN_ISA_NS
