// What both bindings share before they look at arrays: the cell and activation
// names as Python spells them, and the size limits of a configuration.
#pragma once

#include <limits>
#include <string>

#include "array_checks.h"
#include "fastrnn/activations.h"
#include "fastrnn/params.h"

namespace fastrnn::bindings {

inline CellKind parse_cell(const std::string& name) {
  if (name == "simple_rnn") return CellKind::SimpleRNN;
  if (name == "lstm") return CellKind::LSTM;
  if (name == "gru") return CellKind::GRU;
  value_error("cell must be one of 'simple_rnn', 'lstm', 'gru', got '" + name + "'");
}

inline Activation parse_activation(const std::string& name, const char* arg) {
  if (name == "tanh") return Activation::Tanh;
  if (name == "relu") return Activation::Relu;
  if (name == "sigmoid") return Activation::Sigmoid;
  if (name == "hard_sigmoid") return Activation::HardSigmoid;
  if (name == "linear") return Activation::Linear;
  value_error(std::string(arg) + " must be one of 'tanh', 'relu', 'sigmoid', 'hard_sigmoid', " +
              "'linear', got '" + name + "'");
}

// The configuration's non-array part; sizes are filled in from the arrays.
inline CellConfig parse_config(const std::string& cell, const std::string& activation,
                               const std::string& recurrent_activation, bool reset_after,
                               bool go_backwards) {
  CellConfig c;
  c.cell = parse_cell(cell);
  c.G = gate_count(c.cell);
  c.activation = parse_activation(activation, "activation");
  c.recurrent_activation = parse_activation(recurrent_activation, "recurrent_activation");
  c.reset_after = c.cell == CellKind::GRU && reset_after;
  c.go_backwards = go_backwards;
  return c;
}

// Once T, B, I, H are known: at least one unit and one feature, every buffer's
// size within int64 and each BLAS-style dimension within int32. Returns G*H.
inline index_t check_sizes(const CellConfig& c) {
  if (c.H < 1) value_error("recurrent_kernel must have at least one row (units >= 1)");
  if (c.I < 1) value_error("x must have at least one feature (I >= 1)");
  const index_t int_max = std::numeric_limits<int>::max();
  const index_t GH = checked_product({c.G, c.H}, "G*H (gates*units)", int_max);
  checked_product({c.T, c.B}, "T*B (steps*batch)", int_max);
  checked_product({c.T, c.B, GH, 4}, "T*B*G*H (workspace)");
  checked_product({c.T, c.B, c.I}, "T*B*I (inputs)");
  checked_product({c.H, GH}, "H*G*H (recurrent kernel)");
  return GH;
}

}  // namespace fastrnn::bindings
