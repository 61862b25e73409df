// CUDA BPTT backward for SimpleRNN, LSTM and GRU (mirrors csrc/cpu/rnn_kernels.h).
//
// Dimension legend: T steps, B batch, I inputs, H units, G gates, GH = G*H.
//
// Per processing step s, last to first:
//   (a) pointwise kernel: gate pre-activation gradients of every unit from the saved
//       post-activation gates (cell_math.h's *_unit_backward), the direct part of dh_prev,
//       dc_prev, and the carry of masked steps;
//   (r) GRU reset_after=False only: d(r*hd_prev) = dg_pre @ R_h^T and the reset gate's gradient;
//   (b) dh_prev += (dG_rec @ R^T) * recurrent_dropout_mask, fused per unit.
// Afterwards the weight gradients and dx as tiled products over all steps (rows t*B + b),
// and dbias as column sums.
#include <cstdint>

#include "cuda_check.h"
#include "fastrnn/cell_math.h"
#include "rnn_cuda.h"

namespace fastrnn::cuda {
namespace {

using detail::blocks_for;
using detail::kRowGroups;
using detail::kRows;
using detail::kThreads;

template <typename T>
__global__ void transpose_kernel(const T* __restrict__ in, index_t rows, index_t cols,
                                 T* __restrict__ out) {
  const index_t n = rows * cols;
  for (index_t e = (index_t)blockIdx.x * blockDim.x + threadIdx.x; e < n;
       e += (index_t)gridDim.x * blockDim.x) {
    const index_t k = e / rows, j = e % rows;  // out (cols, rows): out[k, j] = in[j, k]
    out[e] = in[j * cols + k];
  }
}

// dh = d_h_last or 0, carry = 0, dc = d_c_last or 0 (LSTM).
template <typename T>
__global__ void init_grads_kernel(index_t BH, const T* __restrict__ d_h_last,
                                  const T* __restrict__ d_c_last, T* __restrict__ dh,
                                  T* __restrict__ carry, T* __restrict__ dc) {
  for (index_t e = (index_t)blockIdx.x * blockDim.x + threadIdx.x; e < BH;
       e += (index_t)gridDim.x * blockDim.x) {
    dh[e] = d_h_last ? d_h_last[e] : T(0);
    carry[e] = T(0);
    if (dc) dc[e] = d_c_last ? d_c_last[e] : T(0);
  }
}

// Everything one processing step s reads and writes; all (B, H) unless noted.
template <typename T>
struct BackwardStep {
  const T* Rt = nullptr;               // recurrent_kernel transposed (GH, H)
  const T* h_prev = nullptr;           // state before step s, or null (zeros)
  const T* c_prev = nullptr;           // LSTM cell before step s, or null
  const T* gates = nullptr;            // (B, GH) saved post-activation gates
  const T* act_cell = nullptr;         // LSTM act(c_s)
  const T* rh = nullptr;               // GRU saved rh_s
  const T* dout = nullptr;             // d_outputs[s] or null
  const std::uint8_t* mrow = nullptr;  // (B) mask row of time t, or null
  const T* rmask = nullptr;            // recurrent dropout mask or null
  T* dgi = nullptr;                    // (B, GH) dg_in rows of time t
  T* dgr = nullptr;                    // (B, GH) dg_rec rows of time t (== dgi but for GRU after)
  T* dh = nullptr;                     // in: gradient reaching h_s; out: gradient of h_{s-1}
  T* carry = nullptr;                  // gradient reaching the previous output through masked steps
  T* dc = nullptr;                     // LSTM
  T* d_rhd = nullptr;                  // GRU reset_after=False: part of d hd_prev through r*hd_prev
  index_t B = 0, H = 0;
  bool has_prev_step = false;  // s > 0
  Activation act = Activation::Tanh, ract = Activation::Sigmoid;
};

// (a) pointwise gate gradients; dh keeps the direct part of dh_prev.
template <typename T, Recipe R>
__global__ void backward_pointwise_kernel(const BackwardStep<T> a) {
  constexpr int G = R == Recipe::LSTM ? 4 : (R == Recipe::SimpleRNN ? 1 : 3);
  const index_t H = a.H, GH = G * H, BH = a.B * H;
  for (index_t e = (index_t)blockIdx.x * blockDim.x + threadIdx.x; e < BH;
       e += (index_t)gridDim.x * blockDim.x) {
    const index_t b = e / H, j = e % H;
    const bool keep = a.mrow && !a.mrow[b];
    const T dy = (a.dout ? a.dout[e] : T(0)) + a.carry[e];
    T* o = a.dgi + b * GH;
    T* q = a.dgr + b * GH;
    if (keep) {  // the output repeats the previous one; states carry over
      a.carry[e] = a.has_prev_step ? dy : T(0);
      for (int g = 0; g < G; ++g) o[g * H + j] = q[g * H + j] = T(0);
      continue;
    }
    a.carry[e] = T(0);
    const T dh_new = a.dh[e] + dy;
    const T hp = a.h_prev ? a.h_prev[e] : T(0);
    const T* gt = a.gates + b * GH;
    if constexpr (R == Recipe::SimpleRNN) {
      o[j] = simple_rnn_unit_backward(a.act, gt[j], dh_new);
      a.dh[e] = T(0);
    } else if constexpr (R == Recipe::LSTM) {
      const LstmUnitGrad<T> d =
          lstm_unit_backward(a.act, a.ract, gt[j], gt[H + j], gt[2 * H + j], gt[3 * H + j],
                             a.act_cell[e], a.c_prev ? a.c_prev[e] : T(0), dh_new, a.dc[e]);
      o[j] = d.di_pre;
      o[H + j] = d.df_pre;
      o[2 * H + j] = d.dg_pre;
      o[3 * H + j] = d.do_pre;
      a.dc[e] = d.dc_prev;
      a.dh[e] = T(0);
    } else {
      constexpr bool after = R == Recipe::GruAfter;
      const GruUnitGrad<T> d = gru_unit_backward(a.act, a.ract, after, gt[j], gt[H + j],
                                                 gt[2 * H + j], a.rh[e], hp, dh_new);
      o[j] = d.dz_pre;
      o[H + j] = d.dr_pre;  // reset_after=False: filled in by gru_before_reset_kernel
      o[2 * H + j] = d.dg_pre;
      if constexpr (after) {
        q[j] = d.dz_pre;
        q[H + j] = d.dr_pre;
        q[2 * H + j] = d.drh;
      }
      a.dh[e] = d.dh_prev;
    }
  }
}

// (r) GRU reset_after=False: d(r*hd_prev) = dg_pre @ R_h^T, then dr_pre and d_rhd.
template <typename T>
__global__ void __launch_bounds__(32 * kRowGroups)
    gru_before_reset_kernel(const BackwardStep<T> a) {
  const index_t H = a.H, GH = 3 * H;
  const index_t j = (index_t)blockIdx.x * 32 + threadIdx.x;
  const index_t b0 = ((index_t)blockIdx.y * kRowGroups + threadIdx.y) * kRows;
  if (j >= H || b0 >= a.B) return;
  const int rows = (int)min((index_t)kRows, a.B - b0);
  T acc[kRows][1];
  detail::rowdot<T, kRows, 1>(a.dgi + b0 * GH + 2 * H, GH, rows, a.Rt + 2 * H * H, H, 0, j, H, acc);
#pragma unroll
  for (int m = 0; m < kRows; ++m) {
    if (m >= rows) break;
    const index_t b = b0 + m, e = b * H + j;
    const bool keep = a.mrow && !a.mrow[b];
    const T hd = (a.h_prev ? a.h_prev[e] : T(0)) * (a.rmask ? a.rmask[e] : T(1));
    const GruResetGrad<T> d =
        gru_unit_reset_backward(a.ract, a.gates[b * GH + H + j], hd, acc[m][0]);
    a.dgi[b * GH + H + j] = keep ? T(0) : d.dr_pre;
    a.d_rhd[e] = keep ? T(0) : d.dhd;
  }
}

// (b) dh_prev = direct part + (dG_rec @ R^T [+ d_rhd]) * recurrent dropout mask.
template <typename T, Recipe R>
__global__ void __launch_bounds__(32 * kRowGroups)
    backward_recurrent_kernel(const BackwardStep<T> a) {
  constexpr int G = R == Recipe::LSTM ? 4 : (R == Recipe::SimpleRNN ? 1 : 3);
  constexpr int KR = R == Recipe::GruBefore ? 2 : G;  // gate blocks in the product
  const index_t H = a.H, GH = G * H;
  const index_t j = (index_t)blockIdx.x * 32 + threadIdx.x;
  const index_t b0 = ((index_t)blockIdx.y * kRowGroups + threadIdx.y) * kRows;
  if (j >= H || b0 >= a.B) return;
  const int rows = (int)min((index_t)kRows, a.B - b0);
  T acc[kRows][1];
  detail::rowdot<T, kRows, 1>(a.dgr + b0 * GH, GH, rows, a.Rt, H, 0, j, KR * H, acc);
#pragma unroll
  for (int m = 0; m < kRows; ++m) {
    if (m >= rows) break;
    const index_t e = (b0 + m) * H + j;
    T rec = acc[m][0];
    if constexpr (R == Recipe::GruBefore) rec += a.d_rhd[e];
    a.dh[e] += a.rmask ? rec * a.rmask[e] : rec;
  }
}

// dst[t] (B, H) = src of processing step s = time_of(t), times rmask, for every input time t:
// hd_all (src = state before step s; shift = 1) or rhd_all (src = workspace rh_s; shift = 0).
template <typename T>
__global__ void gather_by_time_kernel(index_t Tn, index_t BH, bool go_backwards,
                                      const T* __restrict__ steps, const T* __restrict__ first,
                                      int shift, const T* __restrict__ rmask, T* __restrict__ dst) {
  const index_t n = Tn * BH;
  for (index_t idx = (index_t)blockIdx.x * blockDim.x + threadIdx.x; idx < n;
       idx += (index_t)gridDim.x * blockDim.x) {
    const index_t t = idx / BH, e = idx % BH;
    const index_t s = (go_backwards ? Tn - 1 - t : t) - shift;  // step whose value is read
    T v = s >= 0 ? steps[s * BH + e] : (first ? first[e] : T(0));
    if (rmask) v *= rmask[e];
    dst[idx] = v;
  }
}

// out[n] (N) = sum over rows r of dg[r * ld + n]: one thread per column, rows in order.
template <typename T>
__global__ void column_sum_kernel(const T* __restrict__ dg, index_t rows, index_t N, index_t ld,
                                  T* __restrict__ out) {
  for (index_t n = (index_t)blockIdx.x * blockDim.x + threadIdx.x; n < N;
       n += (index_t)gridDim.x * blockDim.x) {
    T acc = T(0);
    for (index_t r = 0; r < rows; ++r) acc += dg[r * ld + n];
    out[n] = acc;
  }
}

template <typename T>
void copy_async(T* dst, const T* src, index_t n, cudaStream_t stream) {
  if (n > 0)
    FASTRNN_CUDA_CHECK(cudaMemcpyAsync(dst, src, sizeof(T) * n, cudaMemcpyDeviceToDevice, stream));
}

template <typename T, Recipe R>
void backward_impl(const BackwardParams<T>& p, T* scratch, cudaStream_t stream) {
  constexpr int G = R == Recipe::LSTM ? 4 : (R == Recipe::SimpleRNN ? 1 : 3);
  const index_t B = p.B, H = p.H, GH = G * H, Tn = p.T, I = p.I, BH = B * H, TB = Tn * B;
  CallFlags flags;
  flags.dropout = p.dropout_mask != nullptr;
  flags.recurrent_dropout = p.recurrent_dropout_mask != nullptr;
  flags.training = true;
  const BackwardScratch sc = backward_scratch(p, flags);
  const WorkspaceLayout ws = workspace_layout(p);
  const T* W = p.workspace;

  T* dg_in = scratch + sc.dg_in;
  T* dg_rec = R == Recipe::GruAfter ? scratch + sc.dg_rec : dg_in;
  T* rt = scratch + sc.rt;
  transpose_kernel<T><<<blocks_for(GH * H), kThreads, 0, stream>>>(p.recurrent_kernel, H, GH, rt);
  FASTRNN_CUDA_CHECK_LAUNCH();

  BackwardStep<T> a;
  a.Rt = rt;
  a.rmask = p.recurrent_dropout_mask;
  a.dh = scratch + sc.dh;
  a.carry = scratch + sc.carry;
  a.dc = R == Recipe::LSTM ? scratch + sc.dc : nullptr;
  a.d_rhd = R == Recipe::GruBefore ? scratch + sc.d_rhd : nullptr;
  a.B = B;
  a.H = H;
  a.act = p.activation;
  a.ract = p.recurrent_activation;
  if (BH > 0) {
    init_grads_kernel<T>
        <<<blocks_for(BH), kThreads, 0, stream>>>(BH, p.d_h_last, p.d_c_last, a.dh, a.carry, a.dc);
    FASTRNN_CUDA_CHECK_LAUNCH();
  }

  const dim3 grid = detail::step_grid(B, H), block = detail::step_block();
  for (index_t s = Tn - 1; s >= 0 && BH > 0; --s) {
    const index_t t = p.go_backwards ? Tn - 1 - s : s;
    a.h_prev = s > 0 ? W + ws.states + (s - 1) * BH : p.h0;
    if (R == Recipe::LSTM) {
      a.c_prev = s > 0 ? W + ws.cell + (s - 1) * BH : p.c0;
      a.act_cell = W + ws.act_cell + s * BH;
    }
    if (R == Recipe::GruAfter || R == Recipe::GruBefore) a.rh = W + ws.rh + s * BH;
    a.gates = W + ws.gates + s * B * GH;
    a.dout = p.d_outputs ? p.d_outputs + s * BH : nullptr;
    a.mrow = p.mask ? p.mask + t * B : nullptr;
    a.dgi = dg_in + t * B * GH;
    a.dgr = dg_rec + t * B * GH;
    a.has_prev_step = s > 0;
    backward_pointwise_kernel<T, R><<<blocks_for(BH), kThreads, 0, stream>>>(a);
    FASTRNN_CUDA_CHECK_LAUNCH();
    if constexpr (R == Recipe::GruBefore) {
      gru_before_reset_kernel<T><<<grid, block, 0, stream>>>(a);
      FASTRNN_CUDA_CHECK_LAUNCH();
    }
    backward_recurrent_kernel<T, R><<<grid, block, 0, stream>>>(a);
    FASTRNN_CUDA_CHECK_LAUNCH();
  }
  copy_async(p.dh0, a.dh, BH, stream);
  if (R == Recipe::LSTM) copy_async(p.dc0, a.dc, BH, stream);

  // Weight gradients and dx over all steps (rows t*B + b).
  T* hd_all = scratch + sc.hd_all;
  if (TB * H > 0) {
    gather_by_time_kernel<T><<<blocks_for(TB * H), kThreads, 0, stream>>>(
        Tn, BH, p.go_backwards, W + ws.states, p.h0, 1, p.recurrent_dropout_mask, hd_all);
    FASTRNN_CUDA_CHECK_LAUNCH();
  }
  if constexpr (R == Recipe::GruBefore) {
    gemm<T>(true, false, H, 2 * H, TB, hd_all, H, dg_in, GH, p.drecurrent_kernel, GH, stream);
    T* rhd_all = scratch + sc.rhd_all;
    if (TB * H > 0) {
      gather_by_time_kernel<T><<<blocks_for(TB * H), kThreads, 0, stream>>>(
          Tn, BH, p.go_backwards, W + ws.rh, nullptr, 0, nullptr, rhd_all);
      FASTRNN_CUDA_CHECK_LAUNCH();
    }
    gemm<T>(true, false, H, H, TB, rhd_all, H, dg_in + 2 * H, GH, p.drecurrent_kernel + 2 * H, GH,
            stream);
  } else {
    gemm<T>(true, false, H, GH, TB, hd_all, H, dg_rec, GH, p.drecurrent_kernel, GH, stream);
  }
  const T* xd = p.x;
  if (p.dropout_mask) {
    scale_rows_by_mask(p.x, p.dropout_mask, TB, I, B, scratch + sc.xd, stream);
    xd = scratch + sc.xd;
  }
  gemm<T>(true, false, I, GH, TB, xd, I, dg_in, GH, p.dkernel, GH, stream);
  gemm<T>(false, true, TB, I, GH, dg_in, GH, p.kernel, GH, p.dx, I, stream);
  if (p.dropout_mask) scale_rows_by_mask(p.dx, p.dropout_mask, TB, I, B, p.dx, stream);
  if (p.dbias) {
    column_sum_kernel<T><<<blocks_for(GH), kThreads, 0, stream>>>(dg_in, TB, GH, GH, p.dbias);
    FASTRNN_CUDA_CHECK_LAUNCH();
    if constexpr (R == Recipe::GruAfter) {
      column_sum_kernel<T>
          <<<blocks_for(GH), kThreads, 0, stream>>>(dg_rec, TB, GH, GH, p.dbias + GH);
      FASTRNN_CUDA_CHECK_LAUNCH();
    }
  }
}

}  // namespace

template <typename T>
void rnn_backward(const BackwardParams<T>& p, T* scratch, cudaStream_t stream) {
  switch (recipe_of(p)) {
    case Recipe::SimpleRNN:
      return backward_impl<T, Recipe::SimpleRNN>(p, scratch, stream);
    case Recipe::LSTM:
      return backward_impl<T, Recipe::LSTM>(p, scratch, stream);
    case Recipe::GruAfter:
      return backward_impl<T, Recipe::GruAfter>(p, scratch, stream);
    case Recipe::GruBefore:
      return backward_impl<T, Recipe::GruBefore>(p, scratch, stream);
  }
}

template void rnn_backward<float>(const BackwardParams<float>&, float*, cudaStream_t);
template void rnn_backward<double>(const BackwardParams<double>&, double*, cudaStream_t);

}  // namespace fastrnn::cuda
