// Activation functions and their derivatives, for one scalar, on both devices.
//
// Keras 3 definitions. Derivatives are written from the saved *output* y = f(x),
// so backward never recomputes a transcendental.
//
// An activation is named either by the run-time enum `Activation` or by the
// compile-time tag `Fixed<Activation::K>`; the cell math is templated on which,
// so the kernels can compile their hot loops for the common choice (tanh and
// sigmoid) without a per-element switch, and the compiler can vectorise them.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "fastrnn/config.h"

namespace fastrnn {

enum class Activation : int { Tanh = 0, Relu = 1, Sigmoid = 2, HardSigmoid = 3, Linear = 4 };

template <Activation K>
struct Fixed {
  static constexpr Activation kind = K;
};

namespace detail {

// exp(x) from arithmetic alone, so that loops over it vectorise on the CPU:
// x = n ln2 + r with |r| <= ln2/2 (Cody-Waite split of ln2), e^r by its Taylor
// polynomial (degree 13 for double, 7 for float: truncation below half an ulp),
// 2^n built in the exponent bits. The input is clamped to the range where 2^n
// is a normal number; NaN passes through the clamps and stays NaN.
template <typename T>
struct ExpConsts;

template <>
struct ExpConsts<double> {
  static constexpr double lo = -708.0, hi = 709.0;
  static constexpr double log2e = 1.4426950408889634074;
  static constexpr double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
  static constexpr double shifter = 6755399441055744.0;  // 1.5 * 2^52
  static constexpr int degree = 13;
  using Bits = std::uint64_t;
  static constexpr int mantissa = 52, bias = 1023;
};

template <>
struct ExpConsts<float> {
  static constexpr float lo = -87.0f, hi = 88.0f;
  static constexpr float log2e = 1.44269504088896341f;
  static constexpr float ln2_hi = 6.9314575195e-01f, ln2_lo = 1.4286067653e-06f;
  static constexpr float shifter = 12582912.0f;  // 1.5 * 2^23
  static constexpr int degree = 7;
  using Bits = std::uint32_t;
  static constexpr int mantissa = 23, bias = 127;
};

// 1/k! for k = 0..N, computed at compile time.
template <typename T, int N>
struct InvFactorials {
  T v[N + 1];
  constexpr InvFactorials() : v() {
    T f = T(1);
    for (int k = 0; k <= N; ++k) {
      v[k] = f;
      f /= T(k + 1);
    }
  }
};

template <typename T>
FASTRNN_HD T exp_arith(T x) {
#if defined(__CUDA_ARCH__)
  return exp(x);
#else
  using C = ExpConsts<T>;
  x = x < C::lo ? C::lo : x;
  x = x > C::hi ? C::hi : x;
  const T kd = x * C::log2e + C::shifter;  // round(x / ln2) in the low mantissa bits
  const T n = kd - C::shifter;
  const T r = (x - n * C::ln2_hi) - n * C::ln2_lo;
  static constexpr InvFactorials<T, C::degree> coef{};
  T p = coef.v[C::degree];
  // Unrolled (a fixed, short recurrence), so that loops over exp_arith vectorize: a loop left
  // inside them is control flow to GCC's vectorizer, and the whole cell step stays scalar.
#if !defined(__CUDACC__)  // a GCC pragma; nvcc's front end warns on it (diagnostic 1675)
#pragma GCC unroll 16
#endif
  for (int k = C::degree - 1; k >= 0; --k) p = p * r + coef.v[k];
  typename C::Bits bits;
  std::memcpy(&bits, &kd, sizeof(T));
  bits = (bits + typename C::Bits(C::bias)) << C::mantissa;
  T scale;
  std::memcpy(&scale, &bits, sizeof(T));
  return p * scale;
#endif
}

}  // namespace detail

// 1/(1+e^-x); for very negative x, e^-x is huge and the result ~0, as it should be.
template <typename T>
FASTRNN_HD T sigmoid(T x) {
  return T(1) / (T(1) + detail::exp_arith(-x));
}

// tanh(|x|) = (1 - t)/(1 + t) with t = e^{-2|x|} in (0, 1]: no overflow, absolute
// error of a few ulps near 0; the sign is restored with copysign.
template <typename T>
FASTRNN_HD T tanh_arith(T x) {
#if defined(__CUDA_ARCH__)
  return tanh(x);
#endif
  const T t = detail::exp_arith(T(-2) * std::fabs(x));
  return std::copysign((T(1) - t) / (T(1) + t), x);
}

template <typename T>
FASTRNN_HD T activate_fixed(Activation a, T x) {
  switch (a) {
    case Activation::Tanh:
      return tanh_arith(x);
    case Activation::Relu:
      return x > T(0) ? x : (x != x ? x : T(0));  // NaN propagates
    case Activation::Sigmoid:
      return sigmoid(x);
    case Activation::HardSigmoid: {
      // relu6(x + 3) / 6 == clip(x/6 + 1/2, 0, 1); NaN propagates.
      const T y = x / T(6) + T(0.5);
      return y < T(0) ? T(0) : (y > T(1) ? T(1) : y);
    }
    case Activation::Linear:
    default:
      return x;
  }
}

// d f(x) / dx expressed through y = f(x).
template <typename T>
FASTRNN_HD T activate_grad_fixed(Activation a, T y) {
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

// Run-time choice.
template <typename T>
FASTRNN_HD T activate(Activation a, T x) {
  return activate_fixed(a, x);
}
template <typename T>
FASTRNN_HD T activate_grad(Activation a, T y) {
  return activate_grad_fixed(a, y);
}

// Compile-time choice: the switch folds away.
template <Activation K, typename T>
FASTRNN_HD T activate(Fixed<K>, T x) {
  return activate_fixed(K, x);
}
template <Activation K, typename T>
FASTRNN_HD T activate_grad(Fixed<K>, T y) {
  return activate_grad_fixed(K, y);
}

}  // namespace fastrnn
