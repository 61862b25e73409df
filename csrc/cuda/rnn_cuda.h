// Entry points of the CUDA kernels, their scratch layouts, and the device
// helpers that rnn_standard.cu and rnn_backward.cu share.
//
// Dimension legend: T steps, B batch, I inputs, H units, G gates, GH = G*H.
//
// Memory: the kernels never allocate. The caller (fastrnn/_cuda_ops.py through
// cuda_module.cpp) allocates outputs, the training workspace (workspace.h) and
// one scratch buffer of `*_scratch_size` elements on CuPy's pool, and passes the
// stream; everything is enqueued on that stream, nothing synchronizes the host.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "fastrnn/params.h"
#include "fastrnn/workspace.h"

namespace fastrnn::cuda {

// Which pointwise recipe a kernel runs (GRU's two formulations differ in steps).
enum class Recipe : int { SimpleRNN, LSTM, GruAfter, GruBefore };

inline Recipe recipe_of(const CellConfig& c) {
  if (c.cell == CellKind::LSTM) return Recipe::LSTM;
  if (c.cell == CellKind::GRU) return c.reset_after ? Recipe::GruAfter : Recipe::GruBefore;
  return Recipe::SimpleRNN;
}

// Optional inputs that change the scratch a call needs.
struct CallFlags {
  bool dropout = false;            // dropout_mask given
  bool recurrent_dropout = false;  // recurrent_dropout_mask given
  bool training = false;           // forward saves a workspace
};

// Forward scratch, offsets in elements (0-sized parts share an offset):
//   xd     (T*B, I)   x * dropout_mask            (dropout only)
//   xp     (T*B, GH)  xd @ kernel
//   h      2 x (B, H) state ping-pong
//   c      2 x (B, H) LSTM cell ping-pong
//   hd     2 x (B, H) h * recurrent_dropout_mask (recurrent dropout only)
//   gates  (B, GH)    gate values (inference only; training writes the workspace)
//   rhd    (B, H)     r * hd_prev (GRU reset_after=False)
struct ForwardScratch {
  index_t xd = 0, xp = 0, h = 0, c = 0, hd = 0, gates = 0, rhd = 0, size = 0;
};

inline ForwardScratch forward_scratch(const CellConfig& c, const CallFlags& f) {
  const index_t TB = c.T * c.B, BH = c.B * c.H, GH = c.G * c.H;
  const Recipe r = recipe_of(c);
  ForwardScratch s;
  index_t end = 0;
  auto take = [&end](index_t& off, index_t n) {
    off = end;
    end += n;
  };
  take(s.xd, f.dropout ? TB * c.I : 0);
  take(s.xp, TB * GH);
  take(s.h, 2 * BH);
  take(s.c, r == Recipe::LSTM ? 2 * BH : 0);
  take(s.hd, f.recurrent_dropout ? 2 * BH : 0);
  take(s.gates, f.training ? 0 : c.B * GH);
  take(s.rhd, r == Recipe::GruBefore ? BH : 0);
  s.size = end;
  return s;
}

// Backward scratch, offsets in elements:
//   xd      (T*B, I)   x * dropout_mask                 (dropout only)
//   dg_in   (T*B, GH)  gate pre-activation gradients, input side, rows t*B + b
//   dg_rec  (T*B, GH)  recurrent side                   (GRU reset_after=True only)
//   rt      (GH, H)    recurrent_kernel transposed
//   dh, carry, dc, d_rhd  (B, H) each (dc: LSTM, d_rhd: GRU reset_after=False)
//   hd_all  (T*B, H)   hd_prev of the step that consumed x[t]
//   rhd_all (T*B, H)   r * hd_prev by input time        (GRU reset_after=False)
struct BackwardScratch {
  index_t xd = 0, dg_in = 0, dg_rec = 0, rt = 0, dh = 0, carry = 0, dc = 0, d_rhd = 0, hd_all = 0,
          rhd_all = 0, size = 0;
};

inline BackwardScratch backward_scratch(const CellConfig& c, const CallFlags& f) {
  const index_t TB = c.T * c.B, BH = c.B * c.H, GH = c.G * c.H;
  const Recipe r = recipe_of(c);
  BackwardScratch s;
  index_t end = 0;
  auto take = [&end](index_t& off, index_t n) {
    off = end;
    end += n;
  };
  take(s.xd, f.dropout ? TB * c.I : 0);
  take(s.dg_in, TB * GH);
  take(s.dg_rec, r == Recipe::GruAfter ? TB * GH : 0);
  take(s.rt, GH * c.H);
  take(s.dh, BH);
  take(s.carry, BH);
  take(s.dc, r == Recipe::LSTM ? BH : 0);
  take(s.d_rhd, r == Recipe::GruBefore ? BH : 0);
  take(s.hd_all, TB * c.H);
  take(s.rhd_all, r == Recipe::GruBefore ? TB * c.H : 0);
  s.size = end;
  return s;
}

// Entry points (params validated by the binding; all pointers are device pointers of the
// current device; scratch holds forward_scratch(p, flags).size elements).
template <typename T>
void rnn_forward(const ForwardParams<T>& p, T* scratch, cudaStream_t stream);
template <typename T>
void rnn_backward(const BackwardParams<T>& p, T* scratch, cudaStream_t stream);

// C (M, N, ldc) = op(A) @ op(B): op(A) is (M, K), stored (M, K) with lda, or (K, M) when
// trans_a; op(B) is (K, N), stored (K, N) with ldb, or (N, K) when trans_b. K == 0 writes zeros.
template <typename T>
void gemm(bool trans_a, bool trans_b, index_t M, index_t N, index_t K, const T* A, index_t lda,
          const T* B, index_t ldb, T* C, index_t ldc, cudaStream_t stream);

// out (rows, cols) = x (rows, cols) * mask[(r % mask_rows), c]: dropout of x or dx.
template <typename T>
void scale_rows_by_mask(const T* x, const T* mask, index_t rows, index_t cols, index_t mask_rows,
                        T* out, cudaStream_t stream);

namespace detail {

constexpr int kThreads = 256;  // pointwise kernels

// Blocks for a grid-stride loop over n elements (0 when there is nothing to do).
inline unsigned blocks_for(index_t n) {
  const index_t b = (n + kThreads - 1) / kThreads;
  return (unsigned)std::min<index_t>(b, 65535 * 16);
}

// Recurrent-product kernels: a warp covers 32 consecutive units j of kRows batch
// rows; blockDim = (32, kRowGroups).
constexpr int kRows = 4;
constexpr int kRowGroups = 4;

inline dim3 step_grid(index_t B, index_t H) {
  return dim3((unsigned)((H + 31) / 32),
              (unsigned)((B + kRows * kRowGroups - 1) / (kRows * kRowGroups)));
}
inline dim3 step_block() { return dim3(32, kRowGroups); }

#if defined(__CUDACC__)
// acc[r][g] = sum_{k<K} A[(r)*lda + k] * W[k*ldw + g*gstride + j] for r < rows (rows >= 1):
// the recurrent product of one unit j for kRows batch rows, G column blocks at once. A row is
// the same for the 32 lanes of a warp (broadcast load); W is read coalesced across lanes, and
// each W value is reused for every row.
template <typename T, int RB, int GC>
__device__ __forceinline__ void rowdot(const T* __restrict__ A, index_t lda, int rows,
                                       const T* __restrict__ W, index_t ldw, index_t gstride,
                                       index_t j, index_t K, T (&acc)[RB][GC]) {
#pragma unroll
  for (int r = 0; r < RB; ++r)
#pragma unroll
    for (int g = 0; g < GC; ++g) acc[r][g] = T(0);
  const T* arow[RB];
#pragma unroll
  for (int r = 0; r < RB; ++r) arow[r] = A + (r < rows ? r : 0) * lda;  // extra rows: ignored
  const T* w = W + j;
  for (index_t k = 0; k < K; ++k, w += ldw) {
    T wv[GC];
#pragma unroll
    for (int g = 0; g < GC; ++g) wv[g] = w[g * gstride];
#pragma unroll
    for (int r = 0; r < RB; ++r) {
      const T a = arow[r][k];
#pragma unroll
      for (int g = 0; g < GC; ++g) acc[r][g] += a * wv[g];
    }
  }
}
#endif

}  // namespace detail
}  // namespace fastrnn::cuda
