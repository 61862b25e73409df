// Fused CPU forward and BPTT backward for SimpleRNN, LSTM and GRU.
//
// Included once per ISA by instantiate_<isa>.cpp, which defines
//   FASTRNN_ISA_NS     the namespace of this copy (portable, avx2, avx512)
//   FASTRNN_VEC_BYTES  SIMD vector width in bytes (16, 32, 64)
//   FASTRNN_VEC_REGS   architectural vector registers (16 or 32)
// and compiles it with the matching -m flags. Nothing here changes the math
// between ISAs except FMA contraction.
//
// Dimension legend: T steps, B batch, I inputs, H units, G gates, GH = G*H,
// VL = SIMD lanes; units are cut into blocks of VL ("unit blocks").
//
// Structure (as cuDNN / oneDNN):
//   forward : X @ kernel for all steps in one tiled BLAS product, then per step
//             the recurrent product h_prev @ R for one unit block and a few batch
//             rows, accumulated in registers, fused with the gate math.
//   backward: per step the gate gradients (pointwise), then dh_prev = dG @ R^T
//             fused per unit block; afterwards the weight gradients and dx as
//             large tiled BLAS products over all steps.
// Each thread owns a fixed range of unit blocks (its slice of R stays in its
// cache); the math of a unit block never depends on which thread runs it, so
// results are bitwise identical for any thread count.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

#include "blas.h"
#include "fastrnn/cell_math.h"
#include "fastrnn/params.h"
#include "fastrnn/workspace.h"

namespace fastrnn::cpu::FASTRNN_ISA_NS {

using detail::parallel_gemm;

// Which pointwise recipe a loop runs (GRU's two formulations differ in steps).
enum class Recipe { SimpleRNN, LSTM, GruAfter, GruBefore };

template <typename T>
struct Simd {
  static constexpr int VL = FASTRNN_VEC_BYTES / (int)sizeof(T);
  typedef T V __attribute__((vector_size(FASTRNN_VEC_BYTES)));
};

// Largest batch-row block whose accumulators (MB x GC vectors) plus GC weight
// vectors fit in the register file.
template <int GC>
constexpr int max_rows() {
  constexpr int mb = (FASTRNN_VEC_REGS - GC - 1) / GC;
  return mb < 1 ? 1 : (mb > 8 ? 8 : mb);
}

// Heap buffers aligned to 64 bytes: the packed weight panels are read one
// 64-byte vector at a time, and a vector that straddles two cache lines costs
// two loads. Allocation failure throws std::bad_alloc (MemoryError in Python).
struct FreeDeleter {
  void operator()(void* ptr) const { std::free(ptr); }
};

template <typename T>
using Buffer = std::unique_ptr<T[], FreeDeleter>;

template <typename T>
Buffer<T> alloc(index_t n) {
  const size_t bytes = (static_cast<size_t>(std::max<index_t>(n, 1)) * sizeof(T) + 63) / 64 * 64;
  void* ptr = std::aligned_alloc(64, bytes);
  if (!ptr) throw std::bad_alloc();
  return Buffer<T>(static_cast<T*>(ptr));
}

// ---- packing ---------------------------------------------------------------
// Gate panels of R (K x ld, gate blocks of H columns): out[u][k][g][l] =
// R[k, (g0+g)*H + u*VL + l], zero past H. Forward's recurrent product reads one
// panel per unit block, contiguously, every step.
template <typename T>
void pack_gate_panels(const T* R, index_t K, index_t ld, index_t H, int g0, int gc, T* out) {
  constexpr int VL = Simd<T>::VL;
  const index_t nblk = (H + VL - 1) / VL;
  for (index_t u = 0; u < nblk; ++u)
    for (index_t k = 0; k < K; ++k)
      for (int g = 0; g < gc; ++g)
        for (int l = 0; l < VL; ++l) {
          const index_t j = u * VL + l;
          *out++ = j < H ? R[k * ld + (g0 + g) * H + j] : T(0);
        }
}

// Transposed panels for backward: out[u][k][l] = R[u*VL + l, k0 + k], zero past H.
template <typename T>
void pack_transposed_panels(const T* R, index_t ld, index_t H, index_t k0, index_t K, T* out) {
  constexpr int VL = Simd<T>::VL;
  const index_t nblk = (H + VL - 1) / VL;
  for (index_t u = 0; u < nblk; ++u)
    for (index_t k = 0; k < K; ++k)
      for (int l = 0; l < VL; ++l) {
        const index_t j = u * VL + l;
        *out++ = j < H ? R[j * ld + k0 + k] : T(0);
      }
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

// Threads that a per-step loop over `nblk` unit blocks should use: one when a
// step is too small to pay for a barrier.
inline int step_threads(const CellConfig& c, index_t nblk) {
  const index_t work = c.B * c.G * c.H * c.H;
  if (work < (index_t)1 << 17) return 1;
  return (int)std::max<index_t>(1, std::min<index_t>(c.num_threads, nblk));
}

inline Recipe recipe_of(const CellConfig& c) {
  if (c.cell == CellKind::LSTM) return Recipe::LSTM;
  if (c.cell == CellKind::GRU) return c.reset_after ? Recipe::GruAfter : Recipe::GruBefore;
  return Recipe::SimpleRNN;
}

// Input time index of processing step s.
inline index_t time_of(const CellConfig& c, index_t s) { return c.go_backwards ? c.T - 1 - s : s; }

// X (T*B, I) times (dropout mask per batch row), or X itself.
template <typename T>
const T* dropped_inputs(const ForwardParams<T>& p, Buffer<T>& storage) {
  if (!p.dropout_mask) return p.x;
  const index_t rows = p.T * p.B;
  storage = alloc<T>(rows * p.I);
  for (index_t r = 0; r < rows; ++r) {
    const T* m = p.dropout_mask + (r % p.B) * p.I;
    for (index_t i = 0; i < p.I; ++i) storage[r * p.I + i] = p.x[r * p.I + i] * m[i];
  }
  return storage.get();
}

// Per-call scratch: zeros and ones stand in for absent optional arrays, so the
// hot loops have no branches; each thread also gets rows to write saved values
// into when nothing is saved (inference), instead of testing per element.
template <typename T>
struct Scratch {
  Buffer<T> zeros, ones, rows;
  index_t row_len = 0;
  Scratch(index_t n, index_t row_len_, int rows_per_thread, int threads)
      : zeros(alloc<T>(n)), ones(alloc<T>(n)), row_len(row_len_) {
    for (index_t e = 0; e < n; ++e) {
      zeros[e] = T(0);
      ones[e] = T(1);
    }
    rows = alloc<T>(row_len * rows_per_thread * threads);
  }
  T* row(int tid, int k, int per_thread) const {
    return rows.get() + (tid * per_thread + k) * row_len;
  }
};

// ---- forward ----------------------------------------------------------------
template <typename T, Recipe R, typename A, typename RA>
void forward_impl(const ForwardParams<T>& p, A act, RA ract) {
  constexpr int VL = Simd<T>::VL;
  constexpr int G = R == Recipe::LSTM ? 4 : (R == Recipe::SimpleRNN ? 1 : 3);
  const index_t B = p.B, H = p.H, GH = G * H, Tn = p.T, BH = B * H;
  const index_t nblk = (H + VL - 1) / VL;
  const bool training = p.workspace != nullptr;
  const WorkspaceLayout ws = workspace_layout(p);
  const int nt = step_threads(p, nblk);
  Scratch<T> scratch(std::max({GH, BH, (index_t)1}), H, 5, nt);  // zeros also stand for out_prev

  // (1) input projection for every step: XP (T*B, GH) = Xd @ kernel.
  Buffer<T> xd_storage;
  const T* xd = dropped_inputs(p, xd_storage);
  Buffer<T> xp = alloc<T>(Tn * B * GH);
  parallel_gemm(false, false, Tn * B, GH, p.I, xd, p.I, p.kernel, GH, xp.get(), GH, p.num_threads);

  // (2) recurrent weights packed once per call.
  constexpr int GC = R == Recipe::GruBefore ? 2 : G;  // gates in the first product
  Buffer<T> panel = alloc<T>(nblk * H * GC * VL);
  pack_gate_panels(p.recurrent_kernel, H, GH, H, 0, GC, panel.get());
  Buffer<T> panel_h;  // GRU reset_after=False: candidate block, used after r is known
  if constexpr (R == Recipe::GruBefore) {
    panel_h = alloc<T>(nblk * H * VL);
    pack_gate_panels(p.recurrent_kernel, H, GH, H, 2, 1, panel_h.get());
  }
  const T* b_in = p.bias ? p.bias : scratch.zeros.get();  // (GH)
  const T* b_rec = (R == Recipe::GruAfter && p.bias) ? p.bias + GH : scratch.zeros.get();

  // State ping-pong buffers: h[2], c[2], hd[2] (h * recurrent dropout mask).
  Buffer<T> hbuf = alloc<T>(2 * BH), cbuf, hdbuf, gate_scratch, rhd;
  for (index_t e = 0; e < BH; ++e) hbuf[e] = p.h0 ? p.h0[e] : T(0);
  if constexpr (R == Recipe::LSTM) {
    cbuf = alloc<T>(2 * BH);
    for (index_t e = 0; e < BH; ++e) cbuf[e] = p.c0 ? p.c0[e] : T(0);
  }
  const T* rmask = p.recurrent_dropout_mask;
  if (rmask) {
    hdbuf = alloc<T>(2 * BH);
    for (index_t e = 0; e < BH; ++e) hdbuf[e] = hbuf[e] * rmask[e];
  }
  if (!training) gate_scratch = alloc<T>(B * GH);
  if constexpr (R == Recipe::GruBefore) rhd = alloc<T>(BH);

#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int tid = omp_get_thread_num(), ntt = omp_get_num_threads();
    const index_t u_begin = nblk * tid / ntt, u_end = nblk * (tid + 1) / ntt;
    alignas(64) T tile[8 * 4 * VL];
    int cur = 0;
    for (index_t s = 0; s < Tn; ++s) {
      const index_t t = time_of(p, s);
      const T* h_prev = hbuf.get() + cur * BH;
      T* h_next = hbuf.get() + (1 - cur) * BH;
      const T* A_op = rmask ? hdbuf.get() + cur * BH : h_prev;  // operand of the product
      const T* c_prev = R == Recipe::LSTM ? cbuf.get() + cur * BH : nullptr;
      T* c_next = R == Recipe::LSTM ? cbuf.get() + (1 - cur) * BH : nullptr;
      T* out = p.outputs + s * BH;
      const T* out_prev = s > 0 ? p.outputs + (s - 1) * BH : scratch.zeros.get();
      T* gates = training ? p.workspace + ws.gates + s * B * GH : gate_scratch.get();
      const T* xps = xp.get() + t * B * GH;
      const std::uint8_t* mrow = p.mask ? p.mask + t * B : nullptr;

      // Row b's destinations: saved values go to the workspace when training,
      // else to this thread's scratch rows (indexed by unit like the real ones).
      struct Rows {
        T *hd, *st, *cell, *act_cell, *rh;
        const T* rm;
      };
      auto rows_of = [&](index_t b) {
        Rows r;
        r.hd = rmask ? hdbuf.get() + (1 - cur) * BH + b * H : scratch.row(tid, 0, 5);
        r.rm = rmask ? rmask + b * H : scratch.ones.get();
        r.st = training ? p.workspace + ws.states + s * BH + b * H : scratch.row(tid, 1, 5);
        r.cell = training && R == Recipe::LSTM ? p.workspace + ws.cell + s * BH + b * H
                                               : scratch.row(tid, 2, 5);
        r.act_cell = training && R == Recipe::LSTM ? p.workspace + ws.act_cell + s * BH + b * H
                                                   : scratch.row(tid, 3, 5);
        r.rh = training && (R == Recipe::GruAfter || R == Recipe::GruBefore)
                   ? p.workspace + ws.rh + s * BH + b * H
                   : scratch.row(tid, 4, 5);
        return r;
      };
      // A masked row keeps its states and repeats its previous output.
      auto keep_row = [&](index_t b, index_t j0, int lanes, const Rows& r) {
        for (int l = 0; l < lanes; ++l) {
          const index_t j = j0 + l, e = b * H + j;
          out[e] = out_prev[e];
          h_next[e] = h_prev[e];
          r.hd[j] = h_prev[e] * r.rm[j];
          r.st[j] = h_prev[e];
          if constexpr (R == Recipe::LSTM) {
            c_next[e] = c_prev[e];
            r.cell[j] = c_prev[e];
          }
        }
      };

      for (index_t u = u_begin; u < u_end; ++u) {
        const index_t j0 = u * VL;
        const int lanes = (int)std::min<index_t>(VL, H - j0);
        for_row_blocks<T, GC>(
            B, A_op, H, panel.get() + u * H * GC * VL, H, tile, [&](index_t b0, int rows) {
              for (int m = 0; m < rows; ++m) {
                const index_t b = b0 + m;
                const T* x = xps + b * GH;
                const T* tl = tile + m * GC * VL;
                T* gt = gates + b * GH;
                const T* hp = h_prev + b * H;
                T* o = out + b * H;
                T* hn = h_next + b * H;
                const Rows r = rows_of(b);
                if constexpr (R == Recipe::SimpleRNN) {
#pragma GCC ivdep
                  for (int l = 0; l < lanes; ++l) {
                    const index_t j = j0 + l;
                    const T h = simple_rnn_unit_forward(act, x[j] + b_in[j] + tl[l]);
                    gt[j] = h;
                    o[j] = h;
                    hn[j] = h;
                    r.hd[j] = h * r.rm[j];
                    r.st[j] = h;
                  }
                } else if constexpr (R == Recipe::LSTM) {
                  const T* cp = c_prev + b * H;
                  T* cn = c_next + b * H;
#pragma GCC ivdep
                  for (int l = 0; l < lanes; ++l) {
                    const index_t j = j0 + l;
                    const LstmUnit<T> c = lstm_unit_forward(
                        act, ract, x[j] + b_in[j] + tl[l], x[H + j] + b_in[H + j] + tl[VL + l],
                        x[2 * H + j] + b_in[2 * H + j] + tl[2 * VL + l],
                        x[3 * H + j] + b_in[3 * H + j] + tl[3 * VL + l], cp[j]);
                    gt[j] = c.i;
                    gt[H + j] = c.f;
                    gt[2 * H + j] = c.g;
                    gt[3 * H + j] = c.o;
                    cn[j] = c.c;
                    r.cell[j] = c.c;
                    r.act_cell[j] = c.ac;
                    o[j] = c.h;
                    hn[j] = c.h;
                    r.hd[j] = c.h * r.rm[j];
                    r.st[j] = c.h;
                  }
                } else if constexpr (R == Recipe::GruAfter) {
#pragma GCC ivdep
                  for (int l = 0; l < lanes; ++l) {
                    const index_t j = j0 + l;
                    const GruGates<T> zr =
                        gru_unit_gates(ract, x[j] + b_in[j] + tl[l] + b_rec[j],
                                       x[H + j] + b_in[H + j] + tl[VL + l] + b_rec[H + j]);
                    const T rh = tl[2 * VL + l] + b_rec[2 * H + j];
                    const GruOut<T> g = gru_unit_output(act, true, zr.z, zr.r,
                                                        x[2 * H + j] + b_in[2 * H + j], rh, hp[j]);
                    gt[j] = zr.z;
                    gt[H + j] = zr.r;
                    gt[2 * H + j] = g.g;
                    r.rh[j] = rh;
                    o[j] = g.h;
                    hn[j] = g.h;
                    r.hd[j] = g.h * r.rm[j];
                    r.st[j] = g.h;
                  }
                } else {  // GruBefore, phase 1: gates z, r and r * hd_prev
                  const T* ap = A_op + b * H;
                  T* q = rhd.get() + b * H;
#pragma GCC ivdep
                  for (int l = 0; l < lanes; ++l) {
                    const index_t j = j0 + l;
                    const GruGates<T> zr = gru_unit_gates(ract, x[j] + b_in[j] + tl[l],
                                                          x[H + j] + b_in[H + j] + tl[VL + l]);
                    gt[j] = zr.z;
                    gt[H + j] = zr.r;
                    q[j] = zr.r * ap[j];
                  }
                }
                if (R != Recipe::GruBefore && mrow && !mrow[b]) keep_row(b, j0, lanes, r);
              }
            });
      }
      if constexpr (R == Recipe::GruBefore) {
#pragma omp barrier
        for (index_t u = u_begin; u < u_end; ++u) {
          const index_t j0 = u * VL;
          const int lanes = (int)std::min<index_t>(VL, H - j0);
          for_row_blocks<T, 1>(
              B, rhd.get(), H, panel_h.get() + u * H * VL, H, tile, [&](index_t b0, int rows) {
                for (int m = 0; m < rows; ++m) {
                  const index_t b = b0 + m;
                  const T* x = xps + b * GH;
                  const T* tl = tile + m * VL;
                  T* gt = gates + b * GH;
                  const T* hp = h_prev + b * H;
                  const T* q = rhd.get() + b * H;
                  T* o = out + b * H;
                  T* hn = h_next + b * H;
                  const Rows r = rows_of(b);
#pragma GCC ivdep
                  for (int l = 0; l < lanes; ++l) {
                    const index_t j = j0 + l;
                    const GruOut<T> g = gru_unit_output(
                        act, false, gt[j], gt[H + j], x[2 * H + j] + b_in[2 * H + j], tl[l], hp[j]);
                    gt[2 * H + j] = g.g;
                    r.rh[j] = q[j];
                    o[j] = g.h;
                    hn[j] = g.h;
                    r.hd[j] = g.h * r.rm[j];
                    r.st[j] = g.h;
                  }
                  if (mrow && !mrow[b]) keep_row(b, j0, lanes, r);
                }
              });
        }
      }
#pragma omp barrier
      cur = 1 - cur;
    }
  }
  std::memcpy(p.h_last, hbuf.get() + (Tn % 2) * BH, sizeof(T) * BH);
  if constexpr (R == Recipe::LSTM)
    std::memcpy(p.c_last, cbuf.get() + (Tn % 2) * BH, sizeof(T) * BH);
}

// ---- backward ---------------------------------------------------------------
template <typename T, Recipe R, typename A, typename RA>
void backward_impl(const BackwardParams<T>& p, A act, RA ract) {
  constexpr int VL = Simd<T>::VL;
  constexpr int G = R == Recipe::LSTM ? 4 : (R == Recipe::SimpleRNN ? 1 : 3);
  const index_t B = p.B, H = p.H, GH = G * H, Tn = p.T, I = p.I, BH = B * H;
  const index_t nblk = (H + VL - 1) / VL;
  const WorkspaceLayout ws = workspace_layout(p);
  const T* W = p.workspace;
  const T* rmask = p.recurrent_dropout_mask;
  Scratch<T> scratch(std::max(BH, (index_t)1), 0, 0, 0);
  const T* zeros = scratch.zeros.get();
  const T* rm_all = rmask ? rmask : scratch.ones.get();  // (B, H)

  // Gate pre-activation gradients by input time row (t*B + b): dG_in feeds the
  // input side (dkernel, dx, input bias); dG_rec the recurrent side, which only
  // GRU reset_after=True has apart (its candidate block is d rh, not d g_pre).
  Buffer<T> dg_in = alloc<T>(Tn * B * GH), dg_rec_storage;
  if constexpr (R == Recipe::GruAfter) dg_rec_storage = alloc<T>(Tn * B * GH);
  T* dg_rec = R == Recipe::GruAfter ? dg_rec_storage.get() : dg_in.get();

  // R^T panels for dh_prev = dG @ R^T (GRU reset_after=False: z,r block and h block apart).
  constexpr int KR = R == Recipe::GruBefore ? 2 : G;  // gate blocks in the main product
  Buffer<T> rt = alloc<T>(nblk * KR * H * VL), rt_h;
  pack_transposed_panels(p.recurrent_kernel, GH, H, 0, KR * H, rt.get());
  if constexpr (R == Recipe::GruBefore) {
    rt_h = alloc<T>(nblk * H * VL);
    pack_transposed_panels(p.recurrent_kernel, GH, H, 2 * H, H, rt_h.get());
  }

  Buffer<T> dh = alloc<T>(BH), carry = alloc<T>(BH), dc, d_rhd;
  for (index_t e = 0; e < BH; ++e) {
    dh[e] = p.d_h_last ? p.d_h_last[e] : T(0);
    carry[e] = T(0);
  }
  if constexpr (R == Recipe::LSTM) {
    dc = alloc<T>(BH);
    for (index_t e = 0; e < BH; ++e) dc[e] = p.d_c_last ? p.d_c_last[e] : T(0);
  }
  if constexpr (R == Recipe::GruBefore) d_rhd = alloc<T>(BH);

  auto state_at = [&](index_t s) -> const T* {  // h after processing step s (s = -1: h0)
    return s >= 0 ? W + ws.states + s * BH : (p.h0 ? p.h0 : zeros);
  };
  auto cell_at = [&](index_t s) -> const T* {
    return s >= 0 ? W + ws.cell + s * BH : (p.c0 ? p.c0 : zeros);
  };

  const int nt = step_threads(p, nblk);
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int tid = omp_get_thread_num(), ntt = omp_get_num_threads();
    const index_t u_begin = nblk * tid / ntt, u_end = nblk * (tid + 1) / ntt;
    const index_t j_begin = std::min(H, u_begin * VL), j_end = std::min(H, u_end * VL);
    alignas(64) T tile[8 * 4 * VL];
    for (index_t s = Tn - 1; s >= 0; --s) {
      const index_t t = time_of(p, s);
      const T* h_prev = state_at(s - 1);
      const T* gates = W + ws.gates + s * B * GH;
      const T* dout = p.d_outputs ? p.d_outputs + s * BH : zeros;
      const std::uint8_t* mrow = p.mask ? p.mask + t * B : nullptr;
      T* dgi = dg_in.get() + t * B * GH;
      T* dgr = dg_rec + t * B * GH;

      // (a) pointwise: gate gradients of own units; dh keeps the direct part of dh_prev.
      for (index_t b = 0; b < B; ++b) {
        const index_t e0 = b * H;
        T* dgi_b = dgi + b * GH;
        T* dgr_b = dgr + b * GH;
        if (mrow && !mrow[b]) {  // output repeats the previous one; states carry over
          for (index_t j = j_begin; j < j_end; ++j) {
            carry[e0 + j] = s > 0 ? dout[e0 + j] + carry[e0 + j] : T(0);
            for (int g = 0; g < G; ++g) dgi_b[g * H + j] = dgr_b[g * H + j] = T(0);
          }
          continue;
        }
        const T* gt = gates + b * GH;
        const T* hp = h_prev + e0;
        T* dh_b = dh.get() + e0;
        T* carry_b = carry.get() + e0;
        const T* dout_b = dout + e0;
        if constexpr (R == Recipe::SimpleRNN) {
#pragma GCC ivdep
          for (index_t j = j_begin; j < j_end; ++j) {
            const T dh_new = dh_b[j] + dout_b[j] + carry_b[j];
            carry_b[j] = T(0);
            dgi_b[j] = simple_rnn_unit_backward(act, gt[j], dh_new);
            dh_b[j] = T(0);
          }
        } else if constexpr (R == Recipe::LSTM) {
          const T* cp = cell_at(s - 1) + e0;
          const T* ac = W + ws.act_cell + s * BH + e0;
          T* dc_b = dc.get() + e0;
#pragma GCC ivdep
          for (index_t j = j_begin; j < j_end; ++j) {
            const T dh_new = dh_b[j] + dout_b[j] + carry_b[j];
            carry_b[j] = T(0);
            const LstmUnitGrad<T> d =
                lstm_unit_backward(act, ract, gt[j], gt[H + j], gt[2 * H + j], gt[3 * H + j], ac[j],
                                   cp[j], dh_new, dc_b[j]);
            dgi_b[j] = d.di_pre;
            dgi_b[H + j] = d.df_pre;
            dgi_b[2 * H + j] = d.dg_pre;
            dgi_b[3 * H + j] = d.do_pre;
            dc_b[j] = d.dc_prev;
            dh_b[j] = T(0);
          }
        } else {
          constexpr bool after = R == Recipe::GruAfter;
          const T* rh = W + ws.rh + s * BH + e0;
#pragma GCC ivdep
          for (index_t j = j_begin; j < j_end; ++j) {
            const T dh_new = dh_b[j] + dout_b[j] + carry_b[j];
            carry_b[j] = T(0);
            const GruUnitGrad<T> d = gru_unit_backward(act, ract, after, gt[j], gt[H + j],
                                                       gt[2 * H + j], rh[j], hp[j], dh_new);
            dgi_b[j] = d.dz_pre;
            dgi_b[H + j] = d.dr_pre;  // reset_after=False: filled in after the h product
            dgi_b[2 * H + j] = d.dg_pre;
            if constexpr (after) {
              dgr_b[j] = d.dz_pre;
              dgr_b[H + j] = d.dr_pre;
              dgr_b[2 * H + j] = d.drh;
            }
            dh_b[j] = d.dh_prev;
          }
        }
      }
#pragma omp barrier
      if constexpr (R == Recipe::GruBefore) {
        // d(r*hd_prev) = dg_pre @ R_h^T, then the reset gate's gradient.
        for (index_t u = u_begin; u < u_end; ++u) {
          const index_t j0 = u * VL;
          const int lanes = (int)std::min<index_t>(VL, H - j0);
          for_row_blocks<T, 1>(
              B, dgi + 2 * H, GH, rt_h.get() + u * H * VL, H, tile, [&](index_t b0, int rows) {
                for (int m = 0; m < rows; ++m) {
                  const index_t b = b0 + m, e0 = b * H;
                  const bool masked = mrow && !mrow[b];
                  const T* gt = gates + b * GH;
                  T* dgi_b = dgi + b * GH;
#pragma GCC ivdep
                  for (int l = 0; l < lanes; ++l) {
                    const index_t j = j0 + l;
                    const T hd = h_prev[e0 + j] * rm_all[e0 + j];
                    const GruResetGrad<T> d =
                        gru_unit_reset_backward(ract, gt[H + j], hd, tile[m * VL + l]);
                    dgi_b[H + j] = masked ? T(0) : d.dr_pre;
                    d_rhd[e0 + j] = masked ? T(0) : d.dhd;
                  }
                }
              });
        }
#pragma omp barrier
      }
      // (b) dh_prev = direct part + (dG_rec @ R^T) * recurrent dropout mask.
      for (index_t u = u_begin; u < u_end; ++u) {
        const index_t j0 = u * VL;
        const int lanes = (int)std::min<index_t>(VL, H - j0);
        for_row_blocks<T, 1>(B, dgr, GH, rt.get() + u * KR * H * VL, KR * H, tile,
                             [&](index_t b0, int rows) {
                               for (int m = 0; m < rows; ++m) {
                                 const index_t e0 = (b0 + m) * H + j0;
                                 const T* extra = R == Recipe::GruBefore ? d_rhd.get() + e0 : zeros;
#pragma GCC ivdep
                                 for (int l = 0; l < lanes; ++l)
                                   dh[e0 + l] += (tile[m * VL + l] + extra[l]) * rm_all[e0 + l];
                               }
                             });
      }
    }
  }
  std::memcpy(p.dh0, dh.get(), sizeof(T) * BH);
  if constexpr (R == Recipe::LSTM) std::memcpy(p.dc0, dc.get(), sizeof(T) * BH);

  // (c) weight gradients and dx as large products over all steps (rows t*B + b).
  const int nth = p.num_threads;
  Buffer<T> hd_all = alloc<T>(Tn * BH);  // hd_prev of the step that consumed x[t]
  for (index_t s = 0; s < Tn; ++s) {
    const T* hp = state_at(s - 1);
    T* dst = hd_all.get() + time_of(p, s) * BH;
    for (index_t e = 0; e < BH; ++e) dst[e] = hp[e] * rm_all[e];
  }
  if constexpr (R == Recipe::GruBefore) {
    parallel_gemm(true, false, H, 2 * H, Tn * B, hd_all.get(), H, dg_in.get(), GH,
                  p.drecurrent_kernel, GH, nth);
    for (index_t s = 0; s < Tn; ++s)  // reuse hd_all for r * hd_prev, saved by forward
      std::memcpy(hd_all.get() + time_of(p, s) * BH, W + ws.rh + s * BH, sizeof(T) * BH);
    parallel_gemm(true, false, H, H, Tn * B, hd_all.get(), H, dg_in.get() + 2 * H, GH,
                  p.drecurrent_kernel + 2 * H, GH, nth);
  } else {
    parallel_gemm(true, false, H, GH, Tn * B, hd_all.get(), H, dg_rec, GH, p.drecurrent_kernel, GH,
                  nth);
  }
  Buffer<T> xd_storage;
  const T* xd = dropped_inputs(p, xd_storage);
  parallel_gemm(true, false, I, GH, Tn * B, xd, I, dg_in.get(), GH, p.dkernel, GH, nth);
  parallel_gemm(false, true, Tn * B, I, GH, dg_in.get(), GH, p.kernel, GH, p.dx, I, nth);
  if (p.dropout_mask)
    for (index_t r = 0; r < Tn * B; ++r)
      for (index_t i = 0; i < I; ++i) p.dx[r * I + i] *= p.dropout_mask[(r % B) * I + i];
  if (p.dbias) {
    auto colsum = [&](const T* dg, T* out) {
      for (index_t k = 0; k < GH; ++k) out[k] = T(0);
      for (index_t r = 0; r < Tn * B; ++r)
        for (index_t k = 0; k < GH; ++k) out[k] += dg[r * GH + k];
    };
    colsum(dg_in.get(), p.dbias);
    if constexpr (R == Recipe::GruAfter) colsum(dg_rec, p.dbias + GH);
  }
}

// ---- entry points -------------------------------------------------------------
// The common activations (tanh, sigmoid) run loops compiled for them; any
// other choice runs the same loops with a run-time switch per element.
template <typename T, Recipe R>
void forward_recipe(const ForwardParams<T>& p) {
  if (p.activation == Activation::Tanh && p.recurrent_activation == Activation::Sigmoid)
    forward_impl<T, R>(p, Fixed<Activation::Tanh>{}, Fixed<Activation::Sigmoid>{});
  else
    forward_impl<T, R>(p, p.activation, p.recurrent_activation);
}

template <typename T, Recipe R>
void backward_recipe(const BackwardParams<T>& p) {
  if (p.activation == Activation::Tanh && p.recurrent_activation == Activation::Sigmoid)
    backward_impl<T, R>(p, Fixed<Activation::Tanh>{}, Fixed<Activation::Sigmoid>{});
  else
    backward_impl<T, R>(p, p.activation, p.recurrent_activation);
}

template <typename T>
void forward(const ForwardParams<T>& p) {
  switch (recipe_of(p)) {
    case Recipe::SimpleRNN:
      return forward_recipe<T, Recipe::SimpleRNN>(p);
    case Recipe::LSTM:
      return forward_recipe<T, Recipe::LSTM>(p);
    case Recipe::GruAfter:
      return forward_recipe<T, Recipe::GruAfter>(p);
    case Recipe::GruBefore:
      return forward_recipe<T, Recipe::GruBefore>(p);
  }
}

template <typename T>
void backward(const BackwardParams<T>& p) {
  switch (recipe_of(p)) {
    case Recipe::SimpleRNN:
      return backward_recipe<T, Recipe::SimpleRNN>(p);
    case Recipe::LSTM:
      return backward_recipe<T, Recipe::LSTM>(p);
    case Recipe::GruAfter:
      return backward_recipe<T, Recipe::GruAfter>(p);
    case Recipe::GruBefore:
      return backward_recipe<T, Recipe::GruBefore>(p);
  }
}

}  // namespace fastrnn::cpu::FASTRNN_ISA_NS
