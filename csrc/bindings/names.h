// Cell and activation names as Python spells them, shared by both bindings.
#pragma once

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

}  // namespace fastrnn::bindings
