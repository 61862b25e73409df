// Pointwise math of each cell for ONE hidden unit, shared by the CPU loops and
// the CUDA kernels. No loops, layouts or threads here: the callers own those.
//
// Symbols follow python/fastrnn/reference.py. Pre-activations end in _pre;
// backward functions take the values forward saved (post-activation) and return
// gradients of the pre-activations. `dh`/`dc` are the total gradients reaching
// this step's new state. Activations are `Activation` (run time) or
// `Fixed<K>` (compile time) values.
#pragma once

#include "fastrnn/activations.h"
#include "fastrnn/config.h"

namespace fastrnn {

// ---- SimpleRNN: h = act(x_pre + r_pre) ------------------------------------
template <typename T, typename A>
FASTRNN_HD T simple_rnn_unit_forward(A act, T pre) {
  return activate(act, pre);
}

// Returns d pre given the saved h.
template <typename T, typename A>
FASTRNN_HD T simple_rnn_unit_backward(A act, T h, T dh) {
  return dh * activate_grad(act, h);
}

// ---- LSTM (Keras gate order i, f, c, o; the candidate is called g) -------
template <typename T>
struct LstmUnit {
  T i, f, g, o;  // gate activations
  T c, ac, h;    // new cell state, act(c), new hidden state
};

template <typename T, typename A, typename RA>
FASTRNN_HD LstmUnit<T> lstm_unit_forward(A act, RA ract, T i_pre, T f_pre, T g_pre, T o_pre,
                                         T c_prev) {
  LstmUnit<T> u;
  u.i = activate(ract, i_pre);     // (1) i = ra(i_pre)
  u.f = activate(ract, f_pre);     // (2) f = ra(f_pre)
  u.g = activate(act, g_pre);      // (3) g = a(g_pre)
  u.o = activate(ract, o_pre);     // (4) o = ra(o_pre)
  u.c = u.f * c_prev + u.i * u.g;  // (5) c = f*c_prev + i*g
  u.ac = activate(act, u.c);       // (6) ac = a(c)
  u.h = u.o * u.ac;                // (7) h = o*ac
  return u;
}

template <typename T>
struct LstmUnitGrad {
  T di_pre, df_pre, dg_pre, do_pre;
  T dc_prev;  // gradient to c_prev through (5)
};

template <typename T, typename A, typename RA>
FASTRNN_HD LstmUnitGrad<T> lstm_unit_backward(A act, RA ract, T i, T f, T g, T o, T ac, T c_prev,
                                              T dh, T dc) {
  LstmUnitGrad<T> d;
  const T d_o = dh * ac;                                    // from (7)
  const T dc_total = dc + dh * o * activate_grad(act, ac);  // (7), (6)
  d.di_pre = dc_total * g * activate_grad(ract, i);         // (5), (1)
  d.df_pre = dc_total * c_prev * activate_grad(ract, f);    // (5), (2)
  d.dg_pre = dc_total * i * activate_grad(act, g);          // (5), (3)
  d.do_pre = d_o * activate_grad(ract, o);                  // (4)
  d.dc_prev = dc_total * f;                                 // (5)
  return d;
}

// ---- GRU (Keras gate order z, r, h; the candidate is called g) -----------
// reset_after=True :  g = a(xh + r * rh),   rh = hd_prev @ R_h + b_rec_h
// reset_after=False:  g = a(xh + rh),       rh = (r * hd_prev) @ R_h
// Both: z = ra(z_pre), r = ra(r_pre), h = z*h_prev + (1-z)*g.
template <typename T>
struct GruGates {
  T z, r;
};

template <typename T, typename RA>
FASTRNN_HD GruGates<T> gru_unit_gates(RA ract, T z_pre, T r_pre) {
  return GruGates<T>{activate(ract, z_pre), activate(ract, r_pre)};
}

template <typename T>
struct GruOut {
  T g, h;
};

template <typename T, typename A>
FASTRNN_HD GruOut<T> gru_unit_output(A act, bool reset_after, T z, T r, T xh, T rh, T h_prev) {
  GruOut<T> o;
  o.g = activate(act, reset_after ? xh + r * rh : xh + rh);
  o.h = z * h_prev + (T(1) - z) * o.g;
  return o;
}

template <typename T>
struct GruUnitGrad {
  T dz_pre, dr_pre;  // dr_pre only for reset_after=True (else see gru_unit_reset_backward)
  T dg_pre;          // gradient of the candidate's pre-activation (input side)
  T drh;             // gradient of rh: dg_pre*r (reset_after) or dg_pre (reset_after=False)
  T dh_prev;         // direct part through h = z*h_prev + ...
};

template <typename T, typename A, typename RA>
FASTRNN_HD GruUnitGrad<T> gru_unit_backward(A act, RA ract, bool reset_after, T z, T r, T g, T rh,
                                            T h_prev, T dh) {
  GruUnitGrad<T> d;
  const T dg = dh * (T(1) - z);
  d.dz_pre = dh * (h_prev - g) * activate_grad(ract, z);
  d.dg_pre = dg * activate_grad(act, g);
  d.dh_prev = dh * z;
  if (reset_after) {
    d.dr_pre = d.dg_pre * rh * activate_grad(ract, r);
    d.drh = d.dg_pre * r;
  } else {
    d.dr_pre = T(0);
    d.drh = d.dg_pre;
  }
  return d;
}

// reset_after=False: given d(r*hd_prev) for this unit, the reset gate's
// pre-activation gradient and the part of d hd_prev through (r*hd_prev).
template <typename T>
struct GruResetGrad {
  T dr_pre, dhd;
};

template <typename T, typename RA>
FASTRNN_HD GruResetGrad<T> gru_unit_reset_backward(RA ract, T r, T hd_prev, T d_rhd) {
  return GruResetGrad<T>{d_rhd * hd_prev * activate_grad(ract, r), d_rhd * r};
}

}  // namespace fastrnn
