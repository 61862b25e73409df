// The cell-step interface: each cell kind and its traits, defined once, and per
// cell the row-level forward and backward steps that the CPU lane loop and the
// CUDA thread both call for one hidden unit j of one batch row.
//
// A step owns everything that depends on the cell: the gate-strided reads of the
// input projection and the recurrent product, the gate and state writes, the
// workspace writes (workspace.h) and the masked carry. The loops around it
// (csrc/cpu/rnn_forward.h, rnn_backward.h, csrc/cuda/) never branch on the cell,
// except where the math really differs: GRU reset_after=False needs a second
// recurrent product, (r * hd_prev) @ R_g, once the reset gate is known
// (`Cell::second_product`, marked in each loop).
//
// Dimension legend: H units, G gates (GH = G*H); rows are gate-strided: gate
// block g of unit j is element g*H + j. Free functions are FASTRNN_HD (internal
// linkage on the CPU, see config.h); the cell types carry only constants.
//
// Adding a cell: a traits struct and its steps here, its math in cell_math.h, a
// case in with_cell() and in names.h, and a CellSpec in python/fastrnn/_cells.py
// (docs/architecture.md lists the rest).
#pragma once

#include "fastrnn/cell_math.h"
#include "fastrnn/config.h"

namespace fastrnn {

// The cells users name ("simple_rnn", "lstm", "gru").
enum class CellKind : int { SimpleRNN = 0, LSTM = 1, GRU = 2 };

// What a kernel runs: the cell, and for GRU where the reset gate applies.
enum class CellId : int { SimpleRNN = 0, LSTM = 1, GruResetAfter = 2, GruResetBefore = 3 };

// ---- traits -------------------------------------------------------------------
// G               gate blocks in the kernel's columns
// GC              gate blocks in the (first) recurrent product
// cell_state      the cell has a second state c (LSTM); workspace saves c and a(c)
// saves_rh        the workspace saves the candidate's recurrent term (GRU)
// separate_rec    backward has recurrent-side gate gradients apart from the input side
//                 (GRU reset_after: its candidate block is d rec_g, not dg_pre), and the
//                 bias has a second (recurrent) row
// second_product  GRU reset_after=False: a second product (r * hd_prev) @ R_g per step
struct SimpleRnnCell {
  static constexpr CellId id = CellId::SimpleRNN;
  static constexpr int G = 1, GC = 1;
  static constexpr bool cell_state = false, saves_rh = false, separate_rec = false,
                        second_product = false;
};

struct LstmCell {
  static constexpr CellId id = CellId::LSTM;
  static constexpr int G = 4, GC = 4;
  static constexpr bool cell_state = true, saves_rh = false, separate_rec = false,
                        second_product = false;
};

struct GruResetAfterCell {
  static constexpr CellId id = CellId::GruResetAfter;
  static constexpr int G = 3, GC = 3;
  static constexpr bool cell_state = false, saves_rh = true, separate_rec = true,
                        second_product = false;
};

struct GruResetBeforeCell {
  static constexpr CellId id = CellId::GruResetBefore;
  static constexpr int G = 3, GC = 2;  // z, r in the first product; g in the second
  static constexpr bool cell_state = false, saves_rh = true, separate_rec = false,
                        second_product = true;
};

FASTRNN_HD CellId cell_id(CellKind kind, bool reset_after) {
  switch (kind) {
    case CellKind::LSTM:
      return CellId::LSTM;
    case CellKind::GRU:
      return reset_after ? CellId::GruResetAfter : CellId::GruResetBefore;
    default:
      return CellId::SimpleRNN;
  }
}

// Calls f(Cell{}) with the traits type of `id` (a host-side switch into templates).
template <typename F>
decltype(auto) with_cell(CellId id, F&& f) {
  switch (id) {
    case CellId::LSTM:
      return f(LstmCell{});
    case CellId::GruResetAfter:
      return f(GruResetAfterCell{});
    case CellId::GruResetBefore:
      return f(GruResetBeforeCell{});
    default:
      return f(SimpleRnnCell{});
  }
}

FASTRNN_HD int gate_count(CellKind kind) {
  return kind == CellKind::LSTM ? LstmCell::G : (kind == CellKind::GRU ? GruResetAfterCell::G : 1);
}

// ---- forward ------------------------------------------------------------------
// Everything one step writes for one batch row, each pointer at the row's start.
// Where nothing is kept (inference, no recurrent dropout) the loops point the
// fields at dummy rows, so a step never tests a pointer.
template <typename T>
struct ForwardRow {
  const T* xp = nullptr;        // (GH) the row of x_t @ kernel (no bias)
  const T* b_in = nullptr;      // (GH) input bias (zeros when absent)
  const T* b_rec = nullptr;     // (GH) recurrent bias, GRU reset_after (zeros otherwise)
  const T* h_prev = nullptr;    // (H) state before the step
  const T* hd_prev = nullptr;   // (H) h_prev * recurrent dropout mask: the product's operand
  const T* c_prev = nullptr;    // (H) LSTM
  const T* rmask = nullptr;     // (H) recurrent dropout mask (ones when absent)
  const T* out_prev = nullptr;  // (H) outputs[s-1] (zeros at s == 0)
  T* gates = nullptr;           // (GH) post-activation gates (workspace or scratch)
  T* out = nullptr;             // (H) outputs[s]
  T* h_next = nullptr;          // (H) state after the step
  T* hd_next = nullptr;         // (H) h_next * rmask (the next product's operand, or a dummy)
  T* c_next = nullptr;          // (H) LSTM
  T* ws_state = nullptr;        // (H) workspace: h after the step (or a dummy)
  T* ws_cell = nullptr;         // (H) workspace: LSTM c
  T* ws_act_cell = nullptr;     // (H) workspace: LSTM a(c)
  T* ws_rh = nullptr;           // (H) workspace: GRU candidate term (rec_g or r * hd_prev)
  T* rhd = nullptr;             // (H) GRU reset_after=False: r * hd_prev, the second operand
  index_t H = 0;
};

namespace detail {
template <typename T>
FASTRNN_HD void write_state(const ForwardRow<T>& r, index_t j, T h) {
  r.out[j] = h;
  r.h_next[j] = h;
  r.hd_next[j] = h * r.rmask[j];
  r.ws_state[j] = h;
}
}  // namespace detail

// One unit of one row, in two stages: forward_gates computes the gates that depend
// on the products alone (their activations are independent of one another) and
// stores them to r.gates; forward_finish reads them back and computes the rest
// (LSTM's c and a(c), GRU's candidate, the new state). The CPU loops run the first
// stage over a few rows before the second, so that a core overlaps the
// activations of many units instead of waiting on one unit's chain
// (gates -> c -> a(c) -> h); forward_unit runs both for one unit. `acc[g * as]` is
// the recurrent product of gate block g (hd_prev @ R) for this unit; the stages add
// the input projection and the biases.

// reference.simple_rnn_step_forward (1), (2): one activation is the whole step, so the
// first stage does it all.
template <typename T, typename A, typename RA>
FASTRNN_HD void forward_gates(SimpleRnnCell, const ForwardRow<T>& r, index_t j, const T* acc,
                              int as, A a, RA ra) {
  const T h = simple_rnn_unit_forward(a, r.xp[j] + r.b_in[j] + acc[0]);
  r.gates[j] = h;
  detail::write_state(r, j, h);
}

template <typename T, typename A, typename RA>
FASTRNN_HD void forward_finish(SimpleRnnCell, const ForwardRow<T>&, index_t, const T*, int, A, RA) {
}

// reference.lstm_step_forward (1), (2): i, f, g, o.
template <typename T, typename A, typename RA>
FASTRNN_HD void forward_gates(LstmCell, const ForwardRow<T>& r, index_t j, const T* acc, int as,
                              A a, RA ra) {
  const index_t H = r.H;
  const LstmGates<T> g =
      lstm_unit_gates(a, ra, r.xp[j] + r.b_in[j] + acc[0], r.xp[H + j] + r.b_in[H + j] + acc[as],
                      r.xp[2 * H + j] + r.b_in[2 * H + j] + acc[2 * as],
                      r.xp[3 * H + j] + r.b_in[3 * H + j] + acc[3 * as]);
  r.gates[j] = g.i;
  r.gates[H + j] = g.f;
  r.gates[2 * H + j] = g.g;
  r.gates[3 * H + j] = g.o;
}

// reference.lstm_step_forward (3)-(5).
template <typename T, typename A, typename RA>
FASTRNN_HD void forward_finish(LstmCell, const ForwardRow<T>& r, index_t j, const T* acc, int as,
                               A a, RA ra) {
  const index_t H = r.H;
  const LstmGates<T> g{r.gates[j], r.gates[H + j], r.gates[2 * H + j], r.gates[3 * H + j]};
  const LstmState<T> u = lstm_unit_state(a, g, r.c_prev[j]);
  r.c_next[j] = u.c;
  r.ws_cell[j] = u.c;
  r.ws_act_cell[j] = u.a_c;
  detail::write_state(r, j, u.h);
}

// reference.gru_step_forward, reset_after=True (3), (4): z, r.
template <typename T, typename A, typename RA>
FASTRNN_HD void forward_gates(GruResetAfterCell, const ForwardRow<T>& r, index_t j, const T* acc,
                              int as, A a, RA ra) {
  const index_t H = r.H;
  const GruGates<T> zr = gru_unit_gates(ra, r.xp[j] + r.b_in[j] + acc[0] + r.b_rec[j],
                                        r.xp[H + j] + r.b_in[H + j] + acc[as] + r.b_rec[H + j]);
  r.gates[j] = zr.z;
  r.gates[H + j] = zr.r;
}

// reference.gru_step_forward, reset_after=True (5), (6).
template <typename T, typename A, typename RA>
FASTRNN_HD void forward_finish(GruResetAfterCell, const ForwardRow<T>& r, index_t j, const T* acc,
                               int as, A a, RA ra) {
  const index_t H = r.H;
  const T rec_g = acc[2 * as] + r.b_rec[2 * H + j];
  const GruOut<T> o = gru_unit_output(a, true, r.gates[j], r.gates[H + j],
                                      r.xp[2 * H + j] + r.b_in[2 * H + j], rec_g, r.h_prev[j]);
  r.gates[2 * H + j] = o.g;
  r.ws_rh[j] = rec_g;
  detail::write_state(r, j, o.h);
}

// reference.gru_step_forward, reset_after=False, first half: (2), (3) ...
template <typename T, typename A, typename RA>
FASTRNN_HD void forward_gates(GruResetBeforeCell, const ForwardRow<T>& r, index_t j, const T* acc,
                              int as, A a, RA ra) {
  const index_t H = r.H;
  const GruGates<T> zr =
      gru_unit_gates(ra, r.xp[j] + r.b_in[j] + acc[0], r.xp[H + j] + r.b_in[H + j] + acc[as]);
  r.gates[j] = zr.z;
  r.gates[H + j] = zr.r;
}

// ... and r * hd_prev, the operand of the second product.
template <typename T, typename A, typename RA>
FASTRNN_HD void forward_finish(GruResetBeforeCell, const ForwardRow<T>& r, index_t j, const T* acc,
                               int as, A a, RA ra) {
  r.rhd[j] = r.gates[r.H + j] * r.hd_prev[j];
}

// Both stages for one unit.
template <class Cell, typename T, typename A, typename RA>
FASTRNN_HD void forward_unit(Cell, const ForwardRow<T>& r, index_t j, const T* acc, int as, A a,
                             RA ra) {
  forward_gates(Cell{}, r, j, acc, as, a, ra);
  forward_finish(Cell{}, r, j, acc, as, a, ra);
}

// Second half, after the second product: `acc` = ((r * hd_prev) @ R_g)_j; (4), (5).
template <typename T, typename A>
FASTRNN_HD void forward_unit_second(GruResetBeforeCell, const ForwardRow<T>& r, index_t j, T acc,
                                    A a) {
  const index_t H = r.H;
  const GruOut<T> o = gru_unit_output(a, false, r.gates[j], r.gates[H + j],
                                      r.xp[2 * H + j] + r.b_in[2 * H + j], acc, r.h_prev[j]);
  r.gates[2 * H + j] = o.g;
  r.ws_rh[j] = r.rhd[j];
  detail::write_state(r, j, o.h);
}

// A masked row (mask False at this step): the states carry over and the output
// repeats the previous one. What the step would have saved is zero, so the
// workspace holds no stale values (GRU reset_after=False's weight gradient reads
// the saved r * hd_prev of every row, masked or not).
template <class Cell, typename T>
FASTRNN_HD void carry_unit(Cell, const ForwardRow<T>& r, index_t j) {
  const T h = r.h_prev[j];
  r.out[j] = r.out_prev[j];
  r.h_next[j] = h;
  r.hd_next[j] = h * r.rmask[j];
  r.ws_state[j] = h;
  for (int g = 0; g < Cell::G; ++g) r.gates[g * r.H + j] = T(0);
  if constexpr (Cell::cell_state) {
    r.c_next[j] = r.c_prev[j];
    r.ws_cell[j] = r.c_prev[j];
    r.ws_act_cell[j] = T(0);
  }
  if constexpr (Cell::saves_rh) r.ws_rh[j] = T(0);
}

// ---- backward -----------------------------------------------------------------
// Everything one backward step reads and writes for one batch row, each pointer
// at the row's start.
template <typename T>
struct BackwardRow {
  const T* gates = nullptr;     // (GH) saved post-activation gates of step s
  const T* h_prev = nullptr;    // (H) state before step s (h0 or zeros at s == 0)
  const T* c_prev = nullptr;    // (H) LSTM cell state before step s
  const T* act_cell = nullptr;  // (H) LSTM saved a(c_s)
  const T* rh = nullptr;        // (H) GRU saved candidate term
  const T* dout = nullptr;      // (H) d_outputs[s] (zeros when absent)
  const T* rmask = nullptr;     // (H) recurrent dropout mask (ones when absent)
  T* carry = nullptr;           // (H) gradient reaching the previous output through masked steps
  T* dh = nullptr;              // (H) in: gradient reaching h_s; out: gradient of h_{s-1}
  T* dc = nullptr;              // (H) LSTM: the same for c
  T* dgi = nullptr;             // (GH) gate pre-activation gradients, input side (row of time t)
  T* dgr = nullptr;             // (GH) recurrent side (== dgi unless Cell::separate_rec)
  T* d_rhd = nullptr;           // (H) GRU reset_after=False: d hd_prev through r * hd_prev
  index_t H = 0;
};

// Gate gradients of one unit from the saved values; dh keeps the direct part of
// dh_prev (the recurrent part is added by accumulate_dh after the product).
// reference.simple_rnn_step_backward.
template <typename T, typename A, typename RA>
FASTRNN_HD void backward_unit(SimpleRnnCell, const BackwardRow<T>& r, index_t j, A a, RA ra) {
  const T dh = r.dh[j] + r.dout[j] + r.carry[j];
  r.carry[j] = T(0);
  r.dgi[j] = simple_rnn_unit_backward(a, r.gates[j], dh);
  r.dh[j] = T(0);
}

// reference.lstm_step_backward.
template <typename T, typename A, typename RA>
FASTRNN_HD void backward_unit(LstmCell, const BackwardRow<T>& r, index_t j, A a, RA ra) {
  const index_t H = r.H;
  const T dh = r.dh[j] + r.dout[j] + r.carry[j];
  r.carry[j] = T(0);
  const LstmUnitGrad<T> d =
      lstm_unit_backward(a, ra, r.gates[j], r.gates[H + j], r.gates[2 * H + j], r.gates[3 * H + j],
                         r.act_cell[j], r.c_prev[j], dh, r.dc[j]);
  r.dgi[j] = d.di_pre;
  r.dgi[H + j] = d.df_pre;
  r.dgi[2 * H + j] = d.dg_pre;
  r.dgi[3 * H + j] = d.do_pre;
  r.dc[j] = d.dc_prev;
  r.dh[j] = T(0);
}

// reference.gru_step_backward, reset_after=True.
template <typename T, typename A, typename RA>
FASTRNN_HD void backward_unit(GruResetAfterCell, const BackwardRow<T>& r, index_t j, A a, RA ra) {
  const index_t H = r.H;
  const T dh = r.dh[j] + r.dout[j] + r.carry[j];
  r.carry[j] = T(0);
  const GruUnitGrad<T> d = gru_unit_backward(a, ra, true, r.gates[j], r.gates[H + j],
                                             r.gates[2 * H + j], r.rh[j], r.h_prev[j], dh);
  r.dgi[j] = d.dz_pre;
  r.dgi[H + j] = d.dr_pre;
  r.dgi[2 * H + j] = d.dg_pre;
  r.dgr[j] = d.dz_pre;
  r.dgr[H + j] = d.dr_pre;
  r.dgr[2 * H + j] = d.drec_g;
  r.dh[j] = d.dh_prev;
}

// reference.gru_step_backward, reset_after=False, up to the second product: the
// reset gate's gradient follows in reset_unit once drh = dg_pre @ R_g^T is known.
template <typename T, typename A, typename RA>
FASTRNN_HD void backward_unit(GruResetBeforeCell, const BackwardRow<T>& r, index_t j, A a, RA ra) {
  const index_t H = r.H;
  const T dh = r.dh[j] + r.dout[j] + r.carry[j];
  r.carry[j] = T(0);
  const GruUnitGrad<T> d = gru_unit_backward(a, ra, false, r.gates[j], r.gates[H + j],
                                             r.gates[2 * H + j], r.rh[j], r.h_prev[j], dh);
  r.dgi[j] = d.dz_pre;
  r.dgi[H + j] = T(0);  // reset_unit fills it in
  r.dgi[2 * H + j] = d.dg_pre;
  r.dh[j] = d.dh_prev;
}

// GRU reset_after=False, between the two products: `drh` = (dg_pre @ R_g^T)_j.
template <typename T, typename RA>
FASTRNN_HD void reset_unit(GruResetBeforeCell, const BackwardRow<T>& r, index_t j, T drh,
                           bool masked, RA ra) {
  const T hd = r.h_prev[j] * r.rmask[j];
  const GruResetGrad<T> d = gru_unit_reset_backward(ra, r.gates[r.H + j], hd, drh);
  r.dgi[r.H + j] = masked ? T(0) : d.dr_pre;
  r.d_rhd[j] = masked ? T(0) : d.dhd;
}

// A masked row: the output repeated the previous one, so its gradient is carried
// to the previous step; states passed through unchanged (dh, dc stay as they are).
template <class Cell, typename T>
FASTRNN_HD void backward_carry_unit(Cell, const BackwardRow<T>& r, index_t j, bool has_prev_step) {
  r.carry[j] = has_prev_step ? r.dout[j] + r.carry[j] : T(0);
  for (int g = 0; g < Cell::G; ++g) {
    r.dgi[g * r.H + j] = T(0);
    if constexpr (Cell::separate_rec) r.dgr[g * r.H + j] = T(0);
  }
}

// dh_prev += (dG_rec @ R^T)_j * rmask_j (plus the r * hd_prev path of GRU reset_after=False).
template <class Cell, typename T>
FASTRNN_HD void accumulate_dh(Cell, const BackwardRow<T>& r, index_t j, T acc) {
  if constexpr (Cell::second_product) acc += r.d_rhd[j];
  r.dh[j] += acc * r.rmask[j];
}

}  // namespace fastrnn
