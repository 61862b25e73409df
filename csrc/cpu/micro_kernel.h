// The register-blocked product at the heart of each time step: the batch rows of
// the recurrent operand times one packed weight panel (a block of units), in
// vector registers. Per ISA (included inside the ISA namespace by rnn_kernels.h).
//
// A panel holds NV vectors per k (NV = gates x unit vectors, about 4), so a tile
// of MB rows keeps MB x NV accumulators, NV weight vectors and one broadcast in the
// register file: MB = 2 on AVX2's 16 registers, 6 on AVX-512's 32. With NV = 4 a
// k-step is NV weight loads and MB broadcasts for MB x NV FMAs, which keeps the two
// FMA pipes busy provided the weights come from L1. They do: the product is cut
// into chunks of k whose slice of the panel fits in L1 (block_product), and each
// chunk serves every row block before the next is loaded, the partial sums waiting
// in a small row buffer. Without that, every row block streamed the whole panel
// (64 KB for an LSTM of 512 units on AVX2) from L2 again.
#pragma once

#include <algorithm>
#include <cstring>

#include "simd.h"

namespace fastrnn::cpu::FASTRNN_ISA_NS {

// Largest batch-row block whose accumulators (MB x NV vectors) fit in the register
// file with a broadcast and either the NV weight vectors or, when that allows more
// rows, one spare (the FMAs then take their weights straight from L1, as GCC does
// anyway): on 16 registers NV = 4 gives 3 rows instead of 2, so 12 accumulator
// chains hide the FMA latency instead of 8 just covering it.
template <int NV>
constexpr int max_rows() {
  constexpr int in_regs = (FASTRNN_VEC_REGS - NV - 1) / NV;
  constexpr int folded = (FASTRNN_VEC_REGS - 2) / NV;
  constexpr int mb = in_regs > folded ? in_regs : folded;
  return mb < 1 ? 1 : (mb > 8 ? 8 : mb);
}

// Unit vectors per block for a product of `gc` gate blocks: about three vectors per panel
// row on 16 registers (a 4 x 3 tile: 12 FMAs for 7 loads per k), four on 32.
template <int GC>
constexpr int unit_vectors() {
  if constexpr (FASTRNN_VEC_REGS >= 32) return GC >= 3 ? 1 : (GC == 2 ? 2 : 4);
  return GC >= 2 ? 1 : 3;
}

// tile[m][v][l] (+)= sum_{k<K} A[m*lda + k] * P[k*ldp + v*VL + l] for MB rows of A and
// NV vectors; tile rows are ldt elements apart. With `accumulate` the sums start from the
// tile's values (a later chunk of k), else from zero.
template <typename T, int NV, int MB>
inline void micro_tile(const T* A, index_t lda, const T* P, index_t ldp, index_t K, T* tile,
                       index_t ldt, bool accumulate) {
  using V = typename Simd<T>::V;
  constexpr int VL = Simd<T>::VL;
  // Few rows leave few independent accumulators, and each FMA would wait for the
  // previous one: KS interleaved partial sums over k (summed at the end) keep
  // about 8 chains in flight. KS depends only on (MB, NV), never on threads.
  constexpr int KS = MB * NV >= 8 ? 1 : (MB * NV >= 4 ? 2 : (MB * NV >= 2 ? 4 : 8));
  V acc[KS][MB][NV];
  for (int q = 0; q < KS; ++q)
    for (int m = 0; m < MB; ++m)
      for (int v = 0; v < NV; ++v) acc[q][m][v] = V{};
  if (accumulate)
    for (int m = 0; m < MB; ++m)
      for (int v = 0; v < NV; ++v) std::memcpy(&acc[0][m][v], tile + m * ldt + v * VL, sizeof(V));
  auto step = [&](index_t k, V(&a_acc)[MB][NV]) {
    V w[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) std::memcpy(&w[v], P + k * ldp + v * VL, sizeof(V));
#pragma GCC unroll 8
    for (int m = 0; m < MB; ++m) {
      const T a = A[m * lda + k];
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) a_acc[m][v] += a * w[v];
    }
  };
  index_t k = 0;
  for (; k + KS <= K; k += KS)
#pragma GCC unroll 8
    for (int q = 0; q < KS; ++q) step(k + q, acc[q]);
  for (int q = 0; k < K; ++k, ++q) step(k, acc[q]);
  for (int q = 1; q < KS; ++q)
    for (int m = 0; m < MB; ++m)
      for (int v = 0; v < NV; ++v) acc[0][m][v] += acc[q][m][v];
  for (int m = 0; m < MB; ++m)
    for (int v = 0; v < NV; ++v) std::memcpy(tile + m * ldt + v * VL, &acc[0][m][v], sizeof(V));
}

template <typename T, int NV, int MB = max_rows<NV>()>
inline void micro_rows(int rows, const T* A, index_t lda, const T* P, index_t ldp, index_t K,
                       T* tile, index_t ldt, bool accumulate) {
  if constexpr (MB > 1) {
    if (rows < MB) return micro_rows<T, NV, MB - 1>(rows, A, lda, P, ldp, K, tile, ldt, accumulate);
  }
  micro_tile<T, NV, MB>(A, lda, P, ldp, K, tile, ldt, accumulate);
}

// Vectors of a panel row one register tile takes. All NV: splitting four vectors into
// two passes of a 6 x 2 tile on 16 registers (fewer loads per FMA) measured slower than
// one 3 x 4 tile on Zen 3 (the second pass re-streams the panel at a 128-byte stride).
template <int NV>
constexpr int tile_vectors() {
  return NV;
}

// Chunk of k whose panel slice (kc x NV vectors) takes about half of a 32 KiB L1.
template <typename T, int NV>
constexpr index_t k_chunk() {
  constexpr index_t kc = 16384 / (NV * FASTRNN_VEC_BYTES);
  return kc < 16 ? 16 : kc;
}

// out (B, NV*VL) = A (B rows, lda apart) @ P (K x NV*VL, packed). Rows are cut into
// blocks of at most max_rows as evenly as possible (B = 8 with room for 6 rows gives
// 4 + 4, not 6 + 2), the panel's vectors into groups of tile_vectors<NV>(), and k into
// L1-sized chunks when there are several row blocks to share each chunk; every cut
// depends on the shape alone.
template <typename T, int NV>
inline void block_product(index_t B, const T* A, index_t lda, const T* P, index_t K, T* out) {
  constexpr int VL = Simd<T>::VL, NT = tile_vectors<NV>(), MB = max_rows<NT>();
  constexpr index_t ld = (index_t)NV * VL;
  const index_t blocks = (B + MB - 1) / MB;
  const index_t kc = blocks > 1 ? std::min<index_t>(K, k_chunk<T, NV>()) : K;
  for (index_t k0 = 0; k0 < K || k0 == 0; k0 += kc) {
    const index_t kn = std::min(kc, K - k0);
    for (int v0 = 0; v0 < NV; v0 += NT) {
      for (index_t q = 0, b0 = 0; q < blocks; ++q) {
        const int rows = (int)(B / blocks + (q < B % blocks ? 1 : 0));
        micro_rows<T, NT>(rows, A + b0 * lda + k0, lda, P + k0 * ld + v0 * VL, ld, kn,
                          out + b0 * ld + v0 * VL, ld, k0 > 0);
        b0 += rows;
      }
    }
    if (K == 0) break;
  }
}

}  // namespace fastrnn::cpu::FASTRNN_ISA_NS
