// Fused CPU BPTT backward for any cell of cells.h (one loop; GRU reset_after=False's
// extra product is marked below).
//
// Per processing step s, last to first, as phases of thread_pool.h over unit blocks:
//   (a) the cell's backward step (cells.h backward_unit) for every unit and batch
//       row: gate pre-activation gradients from the saved values, dc_prev, and the
//       direct part of dh_prev;
//   (r) GRU reset_after=False: drh = dg_pre @ R_g^T, then the reset gate's gradient;
//   (b) dh_prev += (dG_rec @ R^T) * recurrent dropout mask, fused per unit block.
// Afterwards the weight gradients and dx as large tiled BLAS products over all
// steps (rows t*B + b), and dbias as column sums.
//
// Dimension legend: T steps, B batch, I inputs, H units, G gates, GH = G*H.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "arena.h"
#include "blas.h"
#include "fastrnn/cells.h"
#include "fastrnn/params.h"
#include "fastrnn/workspace.h"
#include "micro_kernel.h"
#include "profile.h"
#include "rnn_forward.h"
#include "simd.h"
#include "thread_pool.h"

namespace fastrnn::cpu::FASTRNN_ISA_NS {

// out[n] = sum over rows r of dg[r * ld + n], each column summed in row order by one
// thread (column chunks), so the result does not depend on the thread count.
template <typename T>
void column_sums(const T* dg, index_t rows, index_t N, index_t ld, T* out, int threads) {
  constexpr index_t kChunk = 256;
  run_tasks(threads, (N + kChunk - 1) / kChunk, [&](const Worker&, index_t c) {
    const index_t n0 = c * kChunk, n1 = std::min(N, n0 + kChunk);
    for (index_t n = n0; n < n1; ++n) out[n] = T(0);
    for (index_t r = 0; r < rows; ++r)
      for (index_t n = n0; n < n1; ++n) out[n] += dg[r * ld + n];
  });
}

// Unit vectors per block of the backward products (dG @ R^T has one "gate").
constexpr int kBackwardUnitVectors = unit_vectors<1>();

template <typename T, class Cell, typename A, typename RA>
void backward_loop(const BackwardParams<T>& p, A act, RA ract) {
  constexpr int VL = Simd<T>::VL, G = Cell::G, GC = Cell::GC, UB = kBackwardUnitVectors;
  constexpr int NV = UB;                    // panel vectors per k
  constexpr index_t BW = (index_t)UB * VL;  // units per block
  const index_t B = p.B, H = p.H, GH = G * H, Tn = p.T, I = p.I, BH = B * H, TB = Tn * B;
  const index_t nblk = (H + BW - 1) / BW;
  const WorkspaceLayout ws = workspace_layout(Cell{}, Tn, B, H);
  const T* W = p.workspace;
  const bool rdrop = p.recurrent_dropout_mask != nullptr;
  const int nt = step_threads(p, nblk);

  T *dg_in = nullptr, *dg_rec = nullptr, *rt = nullptr, *rt2 = nullptr, *dh = nullptr;
  T *carry = nullptr, *dc = nullptr, *d_rhd = nullptr, *zeros = nullptr, *ones = nullptr;
  T *hd_all = nullptr, *xd = nullptr, *tiles = nullptr;
  auto carve = [&](Carver& cv) {
    dg_in = cv.take<T>(TB * GH);
    dg_rec = cv.take<T>(Cell::separate_rec ? TB * GH : 0);
    rt = cv.take<T>(nblk * GC * H * NV * VL);
    rt2 = cv.take<T>(Cell::second_product ? nblk * H * NV * VL : 0);
    tiles = cv.take<T>(std::max(nt, 1) * B * NV * VL);  // per thread: the block's products
    dh = cv.take<T>(BH);
    carry = cv.take<T>(BH);
    dc = cv.take<T>(Cell::cell_state ? BH : 0);
    d_rhd = cv.take<T>(Cell::second_product ? BH : 0);
    zeros = cv.take<T>(H);
    ones = cv.take<T>(H);
    hd_all = cv.take<T>(TB * H);
    xd = cv.take<T>(p.dropout_mask || p.mask ? TB * I : 0);
  };
  Carver sizing;
  carve(sizing);
  ScratchLease lease(sizing.size());
  Carver carver(lease.data());
  carve(carver);
  std::fill(zeros, zeros + H, T(0));
  std::fill(ones, ones + H, T(1));
  if constexpr (!Cell::separate_rec) dg_rec = dg_in;

  // R^T panels for dh_prev = dG @ R^T (GRU reset_after=False: its z, r blocks, and R_g apart).
  {
    const PhaseTimer timer(Phase::Pack);
    pack_transposed_panels(p.recurrent_kernel, GH, H, 0, GC * H, UB, rt, p.num_threads);
    if constexpr (Cell::second_product)
      pack_transposed_panels(p.recurrent_kernel, GH, H, 2 * H, H, UB, rt2, p.num_threads);
    for (index_t e = 0; e < BH; ++e) {
      dh[e] = p.d_h_last ? p.d_h_last[e] : T(0);
      carry[e] = T(0);
      if constexpr (Cell::cell_state) dc[e] = p.d_c_last ? p.d_c_last[e] : T(0);
    }
  }

  auto state_at = [&](index_t s) -> const T* {  // h after processing step s (s = -1: h0)
    return s >= 0 ? W + ws.states + s * BH : p.h0;
  };
  auto cell_at = [&](index_t s) -> const T* { return s >= 0 ? W + ws.cell + s * BH : p.c0; };

  constexpr index_t kPhases = Cell::second_product ? 3 : 2;
  {
    const PhaseTimer steps_timer(Phase::Steps);
    run_phases(nt, Tn * kPhases, nblk, [&](const Worker& w, index_t phase, index_t u) {
      const index_t s = Tn - 1 - phase / kPhases, t = time_of(p, s);
      const index_t k = phase % kPhases;
      const index_t j0 = u * BW;
      const int lanes = (int)std::min<index_t>(BW, H - j0);
      const std::uint8_t* mrow = p.mask ? p.mask + t * B : nullptr;
      const T* h_prev = state_at(s - 1);
      const T* c_prev = Cell::cell_state ? cell_at(s - 1) : nullptr;

      auto row_of = [&](index_t b) {
        BackwardRow<T> r;
        r.H = H;
        r.gates = W + ws.gates + s * B * GH + b * GH;
        r.h_prev = h_prev ? h_prev + b * H : zeros;
        r.c_prev = c_prev ? c_prev + b * H : zeros;
        r.act_cell = Cell::cell_state ? W + ws.act_cell + s * BH + b * H : zeros;
        r.rh = Cell::saves_rh ? W + ws.rh + s * BH + b * H : zeros;
        r.dout = p.d_outputs ? p.d_outputs + s * BH + b * H : zeros;
        r.rmask = rdrop ? p.recurrent_dropout_mask + b * H : ones;
        r.carry = carry + b * H;
        r.dh = dh + b * H;
        r.dc = Cell::cell_state ? dc + b * H : nullptr;
        r.dgi = dg_in + (t * B + b) * GH;
        r.dgr = dg_rec + (t * B + b) * GH;
        r.d_rhd = Cell::second_product ? d_rhd + b * H : nullptr;
        return r;
      };

      T* tile = tiles + (index_t)w.slot * B * NV * VL;  // (B, BW): the block's products
      if (k == 0) {                                     // (a)
        for (index_t b = 0; b < B; ++b) {
          const BackwardRow<T> r = row_of(b);
          if (mrow && !mrow[b]) {
            for (int l = 0; l < lanes; ++l) backward_carry_unit(Cell{}, r, j0 + l, s > 0);
            continue;
          }
          for_lanes<BW>(lanes, [&](int l) { backward_unit(Cell{}, r, j0 + l, act, ract); });
        }
      } else if (Cell::second_product && k == 1) {  // (r), GRU reset_after=False only
        if constexpr (Cell::second_product) {
          const T* dg_g = dg_in + t * B * GH + 2 * H;  // the candidate blocks, rows GH apart
          block_product<T, NV>(B, dg_g, GH, rt2 + u * H * NV * VL, H, tile);
          for (index_t b = 0; b < B; ++b) {
            const BackwardRow<T> r = row_of(b);
            const bool masked = mrow && !mrow[b];
            const T* tl = tile + b * BW;
            for_lanes<BW>(lanes,
                          [&](int l) { reset_unit(Cell{}, r, j0 + l, tl[l], masked, ract); });
          }
        }
      } else {  // (b); a masked row passed its state gradients through unchanged
        block_product<T, NV>(B, dg_rec + t * B * GH, GH, rt + u * GC * H * NV * VL, GC * H, tile);
        for (index_t b = 0; b < B; ++b) {
          if (mrow && !mrow[b]) continue;
          const BackwardRow<T> r = row_of(b);
          const T* tl = tile + b * BW;
          for_lanes<BW>(lanes, [&](int l) { accumulate_dh(Cell{}, r, j0 + l, tl[l]); });
        }
      }
    });
  }
  std::memcpy(p.dh0, dh, sizeof(T) * BH);
  if constexpr (Cell::cell_state) std::memcpy(p.dc0, dc, sizeof(T) * BH);

  // Weight gradients and dx as large products over all steps (rows t*B + b).
  const PhaseTimer weights_timer(Phase::Weights);
  const int nth = p.num_threads;
  // hd_prev of the step that consumed x[t]; zero where the step skipped the row (masked),
  // which therefore contributes nothing to the weight gradients.
  run_tasks(nth, Tn, [&](const Worker&, index_t s) {
    const index_t t = time_of(p, s);
    const T* hp = state_at(s - 1);
    const std::uint8_t* mrow = p.mask ? p.mask + t * B : nullptr;
    T* dst = hd_all + t * BH;
    for (index_t e = 0; e < BH; ++e)
      dst[e] = (mrow && !mrow[e / H])
                   ? T(0)
                   : (hp ? hp[e] : T(0)) * (rdrop ? p.recurrent_dropout_mask[e] : T(1));
  });
  if constexpr (Cell::second_product) {
    fastrnn::detail::parallel_gemm(true, false, H, 2 * H, TB, hd_all, H, dg_in, GH,
                                   p.drecurrent_kernel, GH, nth);
    run_tasks(nth, Tn, [&](const Worker&, index_t s) {  // r * hd_prev, saved by forward
      std::memcpy(hd_all + time_of(p, s) * BH, W + ws.rh + s * BH, sizeof(T) * BH);
    });
    fastrnn::detail::parallel_gemm(true, false, H, H, TB, hd_all, H, dg_in + 2 * H, GH,
                                   p.drecurrent_kernel + 2 * H, GH, nth);
  } else {
    fastrnn::detail::parallel_gemm(true, false, H, GH, TB, hd_all, H, dg_rec, GH,
                                   p.drecurrent_kernel, GH, nth);
  }
  const T* x = p.x;
  if (p.dropout_mask || p.mask) {
    input_rows(p.x, p.dropout_mask, p.mask, TB, B, I, xd, nth);
    x = xd;
  }
  fastrnn::detail::parallel_gemm(true, false, I, GH, TB, x, I, dg_in, GH, p.dkernel, GH, nth);
  fastrnn::detail::parallel_gemm(false, true, TB, I, GH, dg_in, GH, p.kernel, GH, p.dx, I, nth);
  if (p.dropout_mask || p.mask)  // a skipped (masked) step did not read x: its dx is zero
    input_rows(p.dx, p.dropout_mask, p.mask, TB, B, I, p.dx, nth);
  if (p.dbias) {
    column_sums(dg_in, TB, GH, GH, p.dbias, nth);
    if constexpr (Cell::separate_rec) column_sums(dg_rec, TB, GH, GH, p.dbias + GH, nth);
  }
}

}  // namespace fastrnn::cpu::FASTRNN_ISA_NS
