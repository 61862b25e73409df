// Plain parameter structs passed from the bindings to the kernels.
//
// Dimension legend:
//   T time steps, B batch, I input features, H hidden units,
//   G gates: 1 SimpleRNN, 4 LSTM (i, f, c, o), 3 GRU (z, r, h); GH = G*H.
// S is the scalar type (float or double). All arrays are C-contiguous; the binding has checked
// every shape, dtype, stride and size product before a kernel sees these structs.
#pragma once

#include <cstdint>

#include "fastrnn/activations.h"
#include "fastrnn/cells.h"
#include "fastrnn/config.h"

namespace fastrnn {

struct CellConfig {
  CellKind cell = CellKind::SimpleRNN;
  CellId id = CellId::SimpleRNN;  // cell_id(cell, reset_after): what the kernels run
  Activation activation = Activation::Tanh;
  Activation recurrent_activation = Activation::Sigmoid;
  bool reset_after = true;  // GRU only
  bool go_backwards = false;
  index_t T = 0, B = 0, I = 0, H = 0;
  int G = 1;            // gate_count(cell)
  int num_threads = 1;  // CPU: threads the kernels may use
};

template <typename S>
struct ForwardParams : CellConfig {
  const S* x = nullptr;                       // (T, B, I)
  const S* kernel = nullptr;                  // (I, GH)
  const S* recurrent_kernel = nullptr;        // (H, GH)
  const S* bias = nullptr;                    // (GH,) or GRU reset_after (2, GH); null: none
  const S* h0 = nullptr;                      // (B, H) or null (zeros)
  const S* c0 = nullptr;                      // (B, H) LSTM, or null (zeros)
  const std::uint8_t* mask = nullptr;         // (T, B) in input time order, or null
  const S* dropout_mask = nullptr;            // (B, I) or null
  const S* recurrent_dropout_mask = nullptr;  // (B, H) or null
  S* outputs = nullptr;                       // (T, B, H) in processing order
  S* h_last = nullptr;                        // (B, H)
  S* c_last = nullptr;                        // (B, H) LSTM only
  S* workspace = nullptr;                     // training only (see workspace.h); null for inference
};

template <typename S>
struct BackwardParams : ForwardParams<S> {
  const S* d_outputs = nullptr;    // (T, B, H) or null (zeros)
  const S* d_h_last = nullptr;     // (B, H) or null
  const S* d_c_last = nullptr;     // (B, H) or null
  S* dx = nullptr;                 // (T, B, I)
  S* dkernel = nullptr;            // (I, GH)
  S* drecurrent_kernel = nullptr;  // (H, GH)
  S* dbias = nullptr;              // like bias, or null when there is no bias
  S* dh0 = nullptr;                // (B, H)
  S* dc0 = nullptr;                // (B, H) LSTM only
};

}  // namespace fastrnn
