// What the training forward saves for backward, and how big it is.
//
// Per processing step s (all (B, H) blocks, C-contiguous, in this order):
//   states  h_s                          T*B*H   (the state after step s; differs
//                                                 from outputs[s] under a mask)
//   gates   post-activation gate values  T*B*GH  (RNN: h; LSTM: i,f,g,o; GRU: z,r,g)
//   cell    c_s, a(c_s)                  2*T*B*H (cells with Cell::cell_state: LSTM)
//   rh      the candidate's recurrent    T*B*H   (cells with Cell::saves_rh: GRU;
//           term                                  reset_after: rec_g = hd_prev@R_g + b_rec_g;
//                                                 reset_after=False: r*hd_prev)
// Nothing else: x, the weights, masks and initial states are passed to backward again.
#pragma once

#include "fastrnn/cells.h"
#include "fastrnn/params.h"

namespace fastrnn {

struct WorkspaceLayout {
  index_t states = 0, gates = 0, cell = 0, act_cell = 0, rh = 0;  // offsets in elements
  index_t size = 0;                                               // total elements
};

template <class Cell>
FASTRNN_HD WorkspaceLayout workspace_layout(Cell, index_t T, index_t B, index_t H) {
  const index_t tbh = T * B * H;
  WorkspaceLayout w;
  w.states = 0;
  w.gates = w.states + tbh;
  index_t end = w.gates + tbh * Cell::G;
  if constexpr (Cell::cell_state) {
    w.cell = end;
    w.act_cell = end + tbh;
    end += 2 * tbh;
  }
  if constexpr (Cell::saves_rh) {
    w.rh = end;
    end += tbh;
  }
  w.size = end;
  return w;
}

static inline WorkspaceLayout workspace_layout(const CellConfig& c) {
  return with_cell(c.id, [&](auto cell) { return workspace_layout(cell, c.T, c.B, c.H); });
}

}  // namespace fastrnn
