// Activation functions and their derivatives, for one scalar, on both devices.
//
// Keras 3 definitions. Derivatives are written from the saved *output* y = f(x),
// so backward never recomputes a transcendental.
#pragma once

#include <cmath>

#include "fastrnn/config.h"

namespace fastrnn {

enum class Activation : int { Tanh = 0, Relu = 1, Sigmoid = 2, HardSigmoid = 3, Linear = 4 };

template <typename T>
FASTRNN_HD T sigmoid(T x) {
  using std::exp;
  // 1/(1+e^-x): e^-x overflows to inf for very negative x, giving 0 as it should.
  return T(1) / (T(1) + exp(-x));
}

template <typename T>
FASTRNN_HD T activate(Activation a, T x) {
  using std::tanh;
  switch (a) {
    case Activation::Tanh:
      return tanh(x);
    case Activation::Relu:
      return x > T(0) ? x : (x != x ? x : T(0));  // NaN propagates
    case Activation::Sigmoid:
      return sigmoid(x);
    case Activation::HardSigmoid: {
      // relu6(x + 3) / 6 == clip(x/6 + 1/2, 0, 1); NaN propagates.
      T y = x / T(6) + T(0.5);
      return y < T(0) ? T(0) : (y > T(1) ? T(1) : y);
    }
    case Activation::Linear:
    default:
      return x;
  }
}

// d f(x) / dx expressed through y = f(x).
template <typename T>
FASTRNN_HD T activate_grad(Activation a, T y) {
  switch (a) {
    case Activation::Tanh:
      return T(1) - y * y;
    case Activation::Relu:
      return y > T(0) ? T(1) : T(0);
    case Activation::Sigmoid:
      return y * (T(1) - y);
    case Activation::HardSigmoid:
      return (y > T(0) && y < T(1)) ? T(1) / T(6) : T(0);
    case Activation::Linear:
    default:
      return T(1);
  }
}

}  // namespace fastrnn
