// Declarations of the per-ISA kernel builds and the dispatching entry points.
#pragma once

#include "fastrnn/params.h"

namespace fastrnn::cpu {

#define FASTRNN_DECLARE_ISA(ns)                                         \
  namespace ns {                                                        \
  template <typename T>                                                 \
  void forward(const ForwardParams<T>& p);                              \
  template <typename T>                                                 \
  void backward(const BackwardParams<T>& p);                            \
  extern template void forward<float>(const ForwardParams<float>&);     \
  extern template void forward<double>(const ForwardParams<double>&);   \
  extern template void backward<float>(const BackwardParams<float>&);   \
  extern template void backward<double>(const BackwardParams<double>&); \
  }
FASTRNN_DECLARE_ISA(portable)
FASTRNN_DECLARE_ISA(avx2)
FASTRNN_DECLARE_ISA(avx512)
#undef FASTRNN_DECLARE_ISA

// Entry points: run the build chosen by detail::active_isa(). The params must
// already be validated (see bindings/cpu_module.cpp).
template <typename T>
void rnn_forward(const ForwardParams<T>& p);
template <typename T>
void rnn_backward(const BackwardParams<T>& p);

}  // namespace fastrnn::cpu
