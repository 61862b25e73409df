// Pointwise math of each cell for ONE hidden unit, shared by the CPU loops and
// the CUDA kernels. No loops, layouts or threads here: the callers own those
// (cells.h wraps these functions into the per-row steps the loops call).
//
// Symbols and equation numbers are those of python/fastrnn/reference.py; each
// function names the reference function it mirrors. Pre-activations end in _pre;
// backward functions take the values forward saved (post-activation) and return
// gradients of the pre-activations. `dh`/`dc` are the total gradients reaching
// this step's new state. Activations are `Activation` (run time) or `Fixed<K>`
// (compile time) values; `a` is `activation`, `ra` is `recurrent_activation`.
#pragma once

#include "fastrnn/activations.h"
#include "fastrnn/config.h"

namespace fastrnn {

// ---- SimpleRNN ---------------------------------------------------------------
// Mirrors reference.simple_rnn_step_forward: (2) h = a(h_pre), where
// (1) h_pre = xd @ K + hd_prev @ R + b has been summed by the caller.
template <typename T, typename A>
FASTRNN_HD T simple_rnn_unit_forward(A a, T h_pre) {
  return activate(a, h_pre);
}

// Mirrors reference.simple_rnn_step_backward: dh_pre = dh * a'(h).
template <typename T, typename A>
FASTRNN_HD T simple_rnn_unit_backward(A a, T h, T dh) {
  return dh * activate_grad(a, h);
}

// ---- LSTM (Keras gate order i, f, c, o; the candidate is called g) -----------
template <typename T>
struct LstmGates {
  T i, f, g, o;  // (2) gate activations
};

template <typename T>
struct LstmState {
  T c, a_c, h;  // (3) new cell state, (4) a(c), (5) new hidden state
};

// Mirrors reference.lstm_step_forward, equation (2); the caller has summed (1) the
// four pre-activations.
template <typename T, typename A, typename RA>
FASTRNN_HD LstmGates<T> lstm_unit_gates(A a, RA ra, T i_pre, T f_pre, T g_pre, T o_pre) {
  LstmGates<T> u;
  u.i = activate(ra, i_pre);  // (2) i = ra(i_pre)
  u.f = activate(ra, f_pre);  //     f = ra(f_pre)
  u.g = activate(a, g_pre);   //     g = a(g_pre)
  u.o = activate(ra, o_pre);  //     o = ra(o_pre)
  return u;
}

// Mirrors reference.lstm_step_forward, equations (3)-(5).
template <typename T, typename A>
FASTRNN_HD LstmState<T> lstm_unit_state(A a, const LstmGates<T>& u, T c_prev) {
  LstmState<T> s;
  s.c = u.f * c_prev + u.i * u.g;  // (3) c = f * c_prev + i * g
  s.a_c = activate(a, s.c);        // (4) a_c = a(c)
  s.h = u.o * s.a_c;               // (5) h = o * a_c
  return s;
}

template <typename T>
struct LstmUnitGrad {
  T di_pre, df_pre, dg_pre, do_pre;
  T dc_prev;  // gradient to c_prev through (3)
};

// Mirrors reference.lstm_step_backward (its equations, in the same order).
template <typename T, typename A, typename RA>
FASTRNN_HD LstmUnitGrad<T> lstm_unit_backward(A a, RA ra, T i, T f, T g, T o, T a_c, T c_prev, T dh,
                                              T dc) {
  LstmUnitGrad<T> d;
  const T d_o = dh * a_c;                                  // from (5)
  const T dc_total = dc + dh * o * activate_grad(a, a_c);  // from (4), (5)
  d.di_pre = dc_total * g * activate_grad(ra, i);          // from (3), (2)
  d.df_pre = dc_total * c_prev * activate_grad(ra, f);     // from (3), (2)
  d.dg_pre = dc_total * i * activate_grad(a, g);           // from (3), (2)
  d.do_pre = d_o * activate_grad(ra, o);                   // from (2)
  d.dc_prev = dc_total * f;                                // from (3)
  return d;
}

// ---- GRU (Keras gate order z, r, h; the candidate is called g) ----------------
// reference.gru_step_forward, reset_after=True:
//   (3) z = ra(x_z + rec_z)  (4) r = ra(x_r + rec_r)  (5) g = a(x_g + r * rec_g)
//   (6) h = z * h_prev + (1 - z) * g,   rec_* = hd_prev @ R_* + b_rec_*
// reset_after=False:
//   (2) z = ra(x_z + hd_prev @ R_z)  (3) r = ra(x_r + hd_prev @ R_r)
//   (4) g = a(x_g + (r * hd_prev) @ R_g)  (5) h = z * h_prev + (1 - z) * g
// Below, `rec_g` is the candidate's recurrent term: rec_g (reset_after) or
// (r * hd_prev) @ R_g (reset_after=False).
template <typename T>
struct GruGates {
  T z, r;
};

// Equations (3), (4) (reset_after) or (2), (3): the caller has summed each pre-activation.
template <typename T, typename RA>
FASTRNN_HD GruGates<T> gru_unit_gates(RA ra, T z_pre, T r_pre) {
  return GruGates<T>{activate(ra, z_pre), activate(ra, r_pre)};
}

template <typename T>
struct GruOut {
  T g, h;
};

// Equations (5), (6) (reset_after) or (4), (5).
template <typename T, typename A>
FASTRNN_HD GruOut<T> gru_unit_output(A a, bool reset_after, T z, T r, T x_g, T rec_g, T h_prev) {
  GruOut<T> o;
  o.g = activate(a, reset_after ? x_g + r * rec_g : x_g + rec_g);
  o.h = z * h_prev + (T(1) - z) * o.g;
  return o;
}

template <typename T>
struct GruUnitGrad {
  T dz_pre, dr_pre;  // dr_pre only for reset_after=True (else gru_unit_reset_backward)
  T dg_pre;          // gradient of the candidate's pre-activation (input side)
  T drec_g;          // gradient of rec_g: dg_pre * r (reset_after) or dg_pre (reset_after=False)
  T dh_prev;         // direct part through the final mix h = z * h_prev + ...
};

// Mirrors reference.gru_step_backward up to the recurrent products.
template <typename T, typename A, typename RA>
FASTRNN_HD GruUnitGrad<T> gru_unit_backward(A a, RA ra, bool reset_after, T z, T r, T g, T rec_g,
                                            T h_prev, T dh) {
  GruUnitGrad<T> d;
  const T dg = dh * (T(1) - z);
  d.dz_pre = dh * (h_prev - g) * activate_grad(ra, z);
  d.dg_pre = dg * activate_grad(a, g);
  d.dh_prev = dh * z;
  if (reset_after) {
    d.dr_pre = d.dg_pre * rec_g * activate_grad(ra, r);
    d.drec_g = d.dg_pre * r;
  } else {
    d.dr_pre = T(0);
    d.drec_g = d.dg_pre;
  }
  return d;
}

// reset_after=False: given drh = d(r * hd_prev) = dg_pre @ R_g^T for this unit, the reset
// gate's pre-activation gradient and the part of d hd_prev through r * hd_prev
// (reference.gru_step_backward: dr_pre = drh * hd_prev * ra'(r), and drh * r).
template <typename T>
struct GruResetGrad {
  T dr_pre, dhd;
};

template <typename T, typename RA>
FASTRNN_HD GruResetGrad<T> gru_unit_reset_backward(RA ra, T r, T hd_prev, T drh) {
  return GruResetGrad<T>{drh * hd_prev * activate_grad(ra, r), drh * r};
}

}  // namespace fastrnn
