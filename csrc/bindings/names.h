// The cell and activation names as Python spells them: the one table on the C++
// side. Both modules export them (CELLS, ACTIVATIONS); a test checks they equal
// python/fastrnn/_cells.py's CELLS and fastrnn.activations.RECURRENT.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include "fastrnn/activations.h"
#include "fastrnn/cells.h"
#include "fastrnn/params.h"

namespace fastrnn::bindings {

struct CellName {
  const char* name;
  CellKind kind;
};
inline constexpr CellName kCells[] = {
    {"simple_rnn", CellKind::SimpleRNN}, {"lstm", CellKind::LSTM}, {"gru", CellKind::GRU}};

struct ActivationName {
  const char* name;
  Activation kind;
};
// In the order of the Activation enum and of fastrnn.activations.RECURRENT.
inline constexpr ActivationName kActivations[] = {{"tanh", Activation::Tanh},
                                                  {"relu", Activation::Relu},
                                                  {"sigmoid", Activation::Sigmoid},
                                                  {"hard_sigmoid", Activation::HardSigmoid},
                                                  {"linear", Activation::Linear}};

template <typename Table>
std::string quoted_list(const Table& table) {
  std::string s;
  for (const auto& e : table) s += (s.empty() ? "'" : ", '") + std::string(e.name) + "'";
  return s;
}

inline std::vector<std::string> cell_names() {
  std::vector<std::string> v;
  for (const auto& e : kCells) v.push_back(e.name);
  return v;
}

inline std::vector<std::string> activation_names() {
  std::vector<std::string> v;
  for (const auto& e : kActivations) v.push_back(e.name);
  return v;
}

inline CellKind parse_cell(const std::string& name) {
  for (const auto& e : kCells)
    if (name == e.name) return e.kind;
  throw std::invalid_argument("cell must be one of " + quoted_list(kCells) + ", got '" + name +
                              "'");
}

inline Activation parse_activation(const std::string& name, const char* arg) {
  for (const auto& e : kActivations)
    if (name == e.name) return e.kind;
  throw std::invalid_argument(std::string(arg) + " must be one of " + quoted_list(kActivations) +
                              ", got '" + name + "'");
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
  c.id = cell_id(c.cell, c.reset_after);
  c.go_backwards = go_backwards;
  return c;
}

}  // namespace fastrnn::bindings
