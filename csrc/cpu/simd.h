// Per-ISA building blocks of the CPU kernels: vector type, scratch carving and
// the packing of the recurrent weights. Included inside the ISA namespace by
// rnn_kernels.h (see there for FASTRNN_VEC_BYTES and friends), so every type and
// function here exists once per ISA.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>

#include "fastrnn/config.h"
#include "thread_pool.h"

namespace fastrnn::cpu::FASTRNN_ISA_NS {

template <typename T>
struct Simd {
  static constexpr int VL = FASTRNN_VEC_BYTES / (int)sizeof(T);  // lanes per vector
  typedef T V __attribute__((vector_size(FASTRNN_VEC_BYTES)));
};

// Calls f(l) for each lane l < lanes of a unit block of BW units. A full block's trip
// count is a compile-time constant, so its loop compiles to straight vector code with no
// remainder handling; only the last block of an H that is not a multiple of BW takes the
// general loop. `f` must be free of cross-lane dependences (the loops are ivdep).
template <int BW, typename F>
inline void for_lanes(int lanes, F&& f) {
  if (lanes == BW) {
#pragma GCC ivdep
    for (int l = 0; l < BW; ++l) f(l);
  } else {
#pragma GCC ivdep
    for (int l = 0; l < lanes; ++l) f(l);
  }
}

// Carves typed buffers out of one block of memory (an arena lease, arena.h): each
// 64-byte aligned, with a stagger between buffers so that no two share an offset
// within a 4 KiB page. Run the same carving twice: first without memory, to learn
// the size, then on the lease.
class Carver {
 public:
  explicit Carver(char* base = nullptr) : base_(base) {}
  template <typename T>
  T* take(index_t n) {
    offset_ = (offset_ + 63) / 64 * 64;
    T* p = base_ ? reinterpret_cast<T*>(base_ + offset_) : nullptr;
    offset_ += static_cast<std::size_t>(std::max<index_t>(n, 0)) * sizeof(T) + kStagger;
    return p;
  }
  std::size_t size() const { return offset_ + 64; }

 private:
  static constexpr std::size_t kStagger = 320;  // 5 cache lines
  char* base_;
  std::size_t offset_ = 0;
};

// ---- packing ---------------------------------------------------------------
// The recurrent weights are cut into unit blocks of UB vectors (UB*VL units); the
// panel of a block holds, for every k, its NV vectors contiguously, so that the
// per-step product reads one panel front to back (micro_kernel.h). Packing runs on
// `threads` threads, a unit block each.

// Gate panels of R (K x ld, gate blocks of H columns), gates g0 .. g0+gc-1:
// out[u][k][g][v][l] = R[k, (g0+g)*H + (u*UB + v)*VL + l], zero past H.
template <typename T>
void pack_gate_panels(const T* R, index_t K, index_t ld, index_t H, int g0, int gc, int UB, T* out,
                      int threads) {
  constexpr int VL = Simd<T>::VL;
  const index_t bw = (index_t)UB * VL, nblk = (H + bw - 1) / bw;
  run_tasks(threads, nblk, [&](const Worker&, index_t u) {
    T* o = out + u * K * gc * bw;
    const index_t j0 = u * bw, n = std::min(bw, H - j0);  // columns of the block within H
    for (index_t k = 0; k < K; ++k)
      for (int g = 0; g < gc; ++g, o += bw) {
        std::memcpy(o, R + k * ld + (g0 + g) * H + j0, sizeof(T) * n);
        std::fill(o + n, o + bw, T(0));
      }
  });
}

// Transposed panels for backward: out[u][k][v][l] = R[(u*UB + v)*VL + l, k0 + k], zero
// past H.
template <typename T>
void pack_transposed_panels(const T* R, index_t ld, index_t H, index_t k0, index_t K, int UB,
                            T* out, int threads) {
  constexpr int VL = Simd<T>::VL;
  const index_t bw = (index_t)UB * VL, nblk = (H + bw - 1) / bw;
  run_tasks(threads, nblk, [&](const Worker&, index_t u) {
    T* o = out + u * K * bw;
    const index_t j0 = u * bw, n = std::min(bw, H - j0);  // rows of R in the block
    constexpr index_t kT = 16;  // k at a time: a row's 16 values read together
    for (index_t kb = 0; kb < K; kb += kT) {
      const index_t kn = std::min(kT, K - kb);
      for (index_t c = 0; c < n; ++c) {
        const T* r = R + (j0 + c) * ld + k0 + kb;
        for (index_t kk = 0; kk < kn; ++kk) o[(kb + kk) * bw + c] = r[kk];
      }
      for (index_t c = n; c < bw; ++c)
        for (index_t kk = 0; kk < kn; ++kk) o[(kb + kk) * bw + c] = T(0);
    }
  });
}

}  // namespace fastrnn::cpu::FASTRNN_ISA_NS
