// The CPU kernels of one ISA: entry points that choose the cell's loop.
//
// Included once per ISA by instantiate_<isa>.cpp, which defines
//   FASTRNN_ISA_NS     the namespace of this copy (portable, avx2, avx512)
//   FASTRNN_VEC_BYTES  SIMD vector width in bytes (16, 32, 64)
//   FASTRNN_VEC_REGS   architectural vector registers (16 or 32)
// and compiles it with the matching -m flags. Nothing here changes the math
// between ISAs except FMA contraction.
//
// Files: simd.h (vector type, scratch carving, weight packing), micro_kernel.h
// (the register-blocked per-step product), rnn_forward.h and rnn_backward.h (the
// loops, cell-agnostic: the cell's step comes from include/fastrnn/cells.h),
// thread_pool.h (the threads), arena.h (scratch memory), blas.h (big products).
#pragma once

#include "fastrnn/cells.h"
#include "fastrnn/params.h"
#include "rnn_backward.h"
#include "rnn_forward.h"

namespace fastrnn::cpu::FASTRNN_ISA_NS {

// The common activations (tanh, sigmoid) run loops compiled for them; any other
// choice runs the same loops with a run-time switch per element.
template <typename T>
void forward(const ForwardParams<T>& p) {
  with_cell(p.id, [&](auto cell) {
    using Cell = decltype(cell);
    if (p.activation == Activation::Tanh && p.recurrent_activation == Activation::Sigmoid)
      forward_loop<T, Cell>(p, Fixed<Activation::Tanh>{}, Fixed<Activation::Sigmoid>{});
    else
      forward_loop<T, Cell>(p, p.activation, p.recurrent_activation);
  });
}

template <typename T>
void backward(const BackwardParams<T>& p) {
  with_cell(p.id, [&](auto cell) {
    using Cell = decltype(cell);
    if (p.activation == Activation::Tanh && p.recurrent_activation == Activation::Sigmoid)
      backward_loop<T, Cell>(p, Fixed<Activation::Tanh>{}, Fixed<Activation::Sigmoid>{});
    else
      backward_loop<T, Cell>(p, p.activation, p.recurrent_activation);
  });
}

}  // namespace fastrnn::cpu::FASTRNN_ISA_NS
