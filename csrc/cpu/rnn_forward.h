// Fused CPU forward over a sequence, for any cell of cells.h (one loop, no
// branch on the cell but GRU reset_after=False's second product, marked below).
//
// Structure (as cuDNN / oneDNN):
//   (1) the input projection of every step, XP (T*B, GH) = Xd @ kernel, as one
//       tiled BLAS product;
//   (2) per step, for each unit block of VL units and a few batch rows, the
//       recurrent product hd_prev @ R accumulated in registers (micro_kernel.h),
//       then the cell's step (cells.h forward_unit) for every unit of the block.
// A step is one phase of thread_pool.h (two for GRU reset_after=False); its
// blocks are unit blocks, whose math never depends on which thread runs them.
//
// Dimension legend: T steps, B batch, I inputs, H units, G gates, GH = G*H,
// VL = SIMD lanes; units are cut into blocks of VL ("unit blocks").
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
#include "simd.h"
#include "thread_pool.h"

namespace fastrnn::cpu::FASTRNN_ISA_NS {

// Unit vectors per block of the forward product (micro_kernel.h's unit_vectors for the
// cell's gates); GRU reset_after=False sizes it by its first product (z, r).
template <class Cell>
constexpr int forward_unit_vectors() {
  return unit_vectors<Cell::GC>();
}

// Threads that a per-step loop over `nblk` unit blocks should use: one when a
// step is too small to pay for the synchronisation at its end.
inline int step_threads(const CellConfig& c, index_t nblk) {
  const index_t work = c.B * c.G * c.H * c.H;
  if (work < (index_t)1 << 17) return 1;
  return (int)std::max<index_t>(1, std::min<index_t>(c.num_threads, nblk));
}

// Input time index of processing step s.
inline index_t time_of(const CellConfig& c, index_t s) { return c.go_backwards ? c.T - 1 - s : s; }

// dst (T*B, I) = x * dropout mask (row r uses mask row r % B; none: 1), with the rows of
// masked steps zeroed when `steps` (T*B, input time order) is given: a masked step does not
// read its input, so NaN padding reaches no weight gradient. In row chunks; dst may be x.
template <typename T>
void input_rows(const T* x, const T* dropout, const std::uint8_t* steps, index_t rows, index_t B,
                index_t I, T* dst, int threads) {
  constexpr index_t kChunk = 64;
  run_tasks(threads, (rows + kChunk - 1) / kChunk, [&](const Worker&, index_t c) {
    for (index_t r = c * kChunk; r < std::min(rows, (c + 1) * kChunk); ++r) {
      T* out = dst + r * I;
      if (steps && !steps[r]) {
        std::fill(out, out + I, T(0));
      } else if (dropout) {
        const T* m = dropout + (r % B) * I;
        for (index_t i = 0; i < I; ++i) out[i] = x[r * I + i] * m[i];
      } else if (out != x + r * I) {
        std::copy(x + r * I, x + (r + 1) * I, out);
      }
    }
  });
}

// Rows whose gates one step computes before finishing them (forward_loop).
constexpr index_t kRowGroup = 8;

// Rows nothing reads, per running thread: where a step has nothing to keep
// (inference, no recurrent dropout, a cell without c), it writes here.
constexpr int kDummyRows = 7;

template <typename T, class Cell, typename A, typename RA>
void forward_loop(const ForwardParams<T>& p, A act, RA ract) {
  constexpr int VL = Simd<T>::VL, GC = Cell::GC, UB = forward_unit_vectors<Cell>();
  constexpr int NV = GC * UB, NV2 = UB;     // panel vectors per k: the product, the second one
  constexpr index_t BW = (index_t)UB * VL;  // units per block
  const index_t B = p.B, H = p.H, GH = Cell::G * H, Tn = p.T, BH = B * H, I = p.I;
  const index_t nblk = (H + BW - 1) / BW;
  const bool training = p.workspace != nullptr, rdrop = p.recurrent_dropout_mask != nullptr;
  const WorkspaceLayout ws = workspace_layout(Cell{}, Tn, B, H);
  const int nt = step_threads(p, nblk);

  T *xd = nullptr, *xp = nullptr, *panel = nullptr, *panel2 = nullptr, *gate_rows = nullptr;
  T *rhd = nullptr, *zeros = nullptr, *ones = nullptr, *dummy = nullptr, *tiles = nullptr;
  T *h[2] = {}, *c[2] = {}, *hd[2] = {};
  auto carve = [&](Carver& cv) {
    xd = cv.take<T>(p.dropout_mask ? Tn * B * I : 0);
    xp = cv.take<T>(Tn * B * GH);
    panel = cv.take<T>(nblk * H * NV * VL);
    panel2 = cv.take<T>(Cell::second_product ? nblk * H * NV2 * VL : 0);
    for (int k = 0; k < 2; ++k) {
      h[k] = cv.take<T>(BH);
      c[k] = cv.take<T>(Cell::cell_state ? BH : 0);
      hd[k] = cv.take<T>(rdrop ? BH : 0);
    }
    gate_rows = cv.take<T>(training ? 0 : B * GH);
    rhd = cv.take<T>(Cell::second_product ? BH : 0);
    zeros = cv.take<T>(GH);
    ones = cv.take<T>(H);
    dummy = cv.take<T>(std::max(nt, 1) * kDummyRows * H);
    tiles = cv.take<T>(std::max(nt, 1) * B * NV * VL);  // per thread: the block's products
  };
  Carver sizing;
  carve(sizing);
  ScratchLease lease(sizing.size());
  Carver carver(lease.data());
  carve(carver);
  std::fill(zeros, zeros + GH, T(0));
  std::fill(ones, ones + H, T(1));

  // (1) input projection for every step.
  {
    const PhaseTimer timer(Phase::Input);
    const T* x = p.x;
    if (p.dropout_mask) {
      input_rows(p.x, p.dropout_mask, (const std::uint8_t*)nullptr, Tn * B, B, I, xd,
                 p.num_threads);
      x = xd;
    }
    fastrnn::detail::parallel_gemm(false, false, Tn * B, GH, I, x, I, p.kernel, GH, xp, GH,
                                   p.num_threads);
  }

  // Recurrent weights packed once per call; states start from h0, c0 (or zeros).
  {
    const PhaseTimer timer(Phase::Pack);
    pack_gate_panels(p.recurrent_kernel, H, GH, H, 0, GC, UB, panel, p.num_threads);
    if constexpr (Cell::second_product)
      pack_gate_panels(p.recurrent_kernel, H, GH, H, 2, 1, UB, panel2, p.num_threads);
    for (index_t e = 0; e < BH; ++e) {
      h[0][e] = p.h0 ? p.h0[e] : T(0);
      if constexpr (Cell::cell_state) c[0][e] = p.c0 ? p.c0[e] : T(0);
      if (rdrop) hd[0][e] = h[0][e] * p.recurrent_dropout_mask[e];
    }
  }
  const T* b_in = p.bias ? p.bias : zeros;
  const T* b_rec = (Cell::separate_rec && p.bias) ? p.bias + GH : zeros;

  // (2) the steps: phase 2*s (or s) is step s; GRU reset_after=False's phase 2*s+1
  // is its second product.
  constexpr index_t kPhases = Cell::second_product ? 2 : 1;
  const PhaseTimer steps_timer(Phase::Steps);
  run_phases(nt, Tn * kPhases, nblk, [&](const Worker& w, index_t phase, index_t u) {
    const index_t s = phase / kPhases, t = time_of(p, s);
    const int cur = (int)(s & 1);
    const index_t j0 = u * BW;
    const int lanes = (int)std::min<index_t>(BW, H - j0);
    const T* operand = rdrop ? hd[cur] : h[cur];  // hd_prev
    const std::uint8_t* mrow = p.mask ? p.mask + t * B : nullptr;
    T* dummy_rows = dummy + (index_t)w.slot * kDummyRows * H;
    T* gates = training ? p.workspace + ws.gates + s * B * GH : gate_rows;

    auto row_of = [&](index_t b) {
      ForwardRow<T> r;
      r.H = H;
      r.xp = xp + (t * B + b) * GH;
      r.b_in = b_in;
      r.b_rec = b_rec;
      r.h_prev = h[cur] + b * H;
      r.hd_prev = operand + b * H;
      r.c_prev = Cell::cell_state ? c[cur] + b * H : zeros;
      r.rmask = rdrop ? p.recurrent_dropout_mask + b * H : ones;
      r.out_prev = s > 0 ? p.outputs + (s - 1) * BH + b * H : zeros;
      r.gates = gates + b * GH;
      r.out = p.outputs + s * BH + b * H;
      r.h_next = h[1 - cur] + b * H;
      r.hd_next = rdrop ? hd[1 - cur] + b * H : dummy_rows;
      r.c_next = Cell::cell_state ? c[1 - cur] + b * H : dummy_rows + H;
      r.ws_state = training ? p.workspace + ws.states + s * BH + b * H : dummy_rows + 2 * H;
      r.ws_cell = training && Cell::cell_state ? p.workspace + ws.cell + s * BH + b * H
                                               : dummy_rows + 3 * H;
      r.ws_act_cell = training && Cell::cell_state ? p.workspace + ws.act_cell + s * BH + b * H
                                                   : dummy_rows + 4 * H;
      r.ws_rh =
          training && Cell::saves_rh ? p.workspace + ws.rh + s * BH + b * H : dummy_rows + 5 * H;
      r.rhd = Cell::second_product ? rhd + b * H : dummy_rows + 6 * H;
      return r;
    };

    T* tile = tiles + (index_t)w.slot * B * NV * VL;  // (B, NV*VL): [row][gate][unit]
    if (phase % kPhases == 0) {
      block_product<T, NV>(B, operand, H, panel + u * H * NV * VL, H, tile);
      // A group of rows' gates, then the rest of their step (cells.h's two stages): the
      // gate activations of kRowGroup rows are independent work a core overlaps.
      auto carried = [&](index_t b) { return !Cell::second_product && mrow && !mrow[b]; };
      for (index_t b0 = 0; b0 < B; b0 += kRowGroup) {
        const index_t b1 = std::min(B, b0 + kRowGroup);
        for (index_t b = b0; b < b1; ++b) {
          if (carried(b)) continue;
          const ForwardRow<T> r = row_of(b);
          const T* tl = tile + b * NV * VL;
          for_lanes<BW>(lanes,
                        [&](int l) { forward_gates(Cell{}, r, j0 + l, tl + l, BW, act, ract); });
        }
        for (index_t b = b0; b < b1; ++b) {
          const ForwardRow<T> r = row_of(b);
          if (carried(b)) {
            for (int l = 0; l < lanes; ++l) carry_unit(Cell{}, r, j0 + l);
            continue;
          }
          const T* tl = tile + b * NV * VL;
          for_lanes<BW>(lanes,
                        [&](int l) { forward_finish(Cell{}, r, j0 + l, tl + l, BW, act, ract); });
        }
      }
    } else if constexpr (Cell::second_product) {
      // GRU reset_after=False: the candidate's product (r * hd_prev) @ R_g once every r is
      // known (the previous phase), then the step's output.
      block_product<T, NV2>(B, rhd, H, panel2 + u * H * NV2 * VL, H, tile);
      for (index_t b = 0; b < B; ++b) {
        const ForwardRow<T> r = row_of(b);
        if (mrow && !mrow[b]) {
          for (int l = 0; l < lanes; ++l) carry_unit(Cell{}, r, j0 + l);
          continue;
        }
        const T* tl = tile + b * NV2 * VL;
        for_lanes<BW>(lanes, [&](int l) { forward_unit_second(Cell{}, r, j0 + l, tl[l], act); });
      }
    }
  });

  std::memcpy(p.h_last, h[Tn % 2], sizeof(T) * BH);
  if constexpr (Cell::cell_state) std::memcpy(p.c_last, c[Tn % 2], sizeof(T) * BH);
}

}  // namespace fastrnn::cpu::FASTRNN_ISA_NS
