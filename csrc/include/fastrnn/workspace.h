// What the training forward saves for backward, and how big it is.
//
// Per processing step s (all (B, H) blocks, C-contiguous, in this order):
//   states  h_s                          T*B*H   (the state after step s; differs
//                                                 from outputs[s] under a mask)
//   gates   post-activation gate values  T*B*GH  (RNN: h; LSTM: i,f,g,o; GRU: z,r,g)
//   LSTM:   c_s, act(c_s)                2*T*B*H
//   GRU:    rh_s                         T*B*H   (reset_after: hd_prev@R_h + b_rec_h;
//                                                 reset_after=False: r*hd_prev)
// Nothing else: x, the weights, masks and initial states are passed to backward again.
#pragma once

#include "fastrnn/params.h"

namespace fastrnn {

struct WorkspaceLayout {
  index_t states = 0, gates = 0, cell = 0, act_cell = 0, rh = 0;  // offsets in elements
  index_t size = 0;                                               // total elements
};

// static: each per-ISA translation unit keeps its own copy (see config.h).
static inline WorkspaceLayout workspace_layout(const CellConfig& c) {
  const index_t tbh = c.T * c.B * c.H;
  WorkspaceLayout w;
  w.states = 0;
  w.gates = w.states + tbh;
  index_t end = w.gates + tbh * c.G;
  if (c.cell == CellKind::LSTM) {
    w.cell = end;
    w.act_cell = end + tbh;
    end += 2 * tbh;
  }
  if (c.cell == CellKind::GRU) {
    w.rh = end;
    end += tbh;
  }
  w.size = end;
  return w;
}

}  // namespace fastrnn
