// CUDA BPTT backward for any cell of cells.h (mirrors csrc/cpu/rnn_backward.h).
//
// Dimension legend: T steps, B batch, I inputs, H units, G gates, GH = G*H.
//
// Per processing step s, last to first:
//   (a) pointwise kernel: the cell's backward step (cells.h backward_unit, the function the
//       CPU loop calls) for every unit and batch row;
//   (r) GRU reset_after=False only: drh = dg_pre @ R_g^T and the reset gate's gradient;
//   (b) dh_prev += (dG_rec @ R^T) * recurrent_dropout_mask, fused per unit.
// Afterwards the weight gradients and dx as products over all steps (rows t*B + b), and
// dbias as column sums (gemm.cu).
#include <cstdint>

#include "cuda_check.h"
#include "fastrnn/cells.h"
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

// dh = d_h_last or 0, carry = 0, dc = d_c_last or 0 (cells with c); zeros (H) and ones (H).
template <typename T>
__global__ void init_grads_kernel(index_t BH, index_t H, const T* __restrict__ d_h_last,
                                  const T* __restrict__ d_c_last, T* __restrict__ dh,
                                  T* __restrict__ carry, T* __restrict__ dc, T* __restrict__ zeros,
                                  T* __restrict__ ones) {
  const index_t n = BH > H ? BH : H;
  for (index_t e = (index_t)blockIdx.x * blockDim.x + threadIdx.x; e < n;
       e += (index_t)gridDim.x * blockDim.x) {
    if (e < BH) {
      dh[e] = d_h_last ? d_h_last[e] : T(0);
      carry[e] = T(0);
      if (dc) dc[e] = d_c_last ? d_c_last[e] : T(0);
    }
    if (e < H) {
      zeros[e] = T(0);
      ones[e] = T(1);
    }
  }
}

// One backward step's arrays, (B, H) unless noted; null fields stand for zeros or ones.
template <typename T>
struct StepArgs {
  const T* Rt = nullptr;               // recurrent_kernel transposed (GH, H)
  const T* h_prev = nullptr;           // state before step s, or null (zeros)
  const T* c_prev = nullptr;           // cells with c: before step s, or null
  const T* gates = nullptr;            // (B, GH) saved post-activation gates
  const T* act_cell = nullptr;         // cells with c: saved a(c_s)
  const T* rh = nullptr;               // cells that save rh
  const T* dout = nullptr;             // d_outputs[s] or null
  const std::uint8_t* mrow = nullptr;  // (B) mask row of time t, or null
  const T* rmask = nullptr;            // recurrent dropout mask or null
  T* dgi = nullptr;                    // (B, GH) dg_in rows of time t
  T* dgr = nullptr;                    // (B, GH) recurrent side rows (== dgi unless separate_rec)
  T* dh = nullptr;
  T* carry = nullptr;
  T* dc = nullptr;
  T* d_rhd = nullptr;
  const T* zeros = nullptr;  // (H)
  const T* ones = nullptr;   // (H)
  index_t B = 0, H = 0;
  bool has_prev_step = false;  // s > 0
  Activation act = Activation::Tanh, ract = Activation::Sigmoid;
};

template <class Cell, typename T>
__device__ __forceinline__ BackwardRow<T> row_of(const StepArgs<T>& a, index_t b) {
  const index_t H = a.H, GH = Cell::G * H, e = b * H;
  BackwardRow<T> r;
  r.H = H;
  r.gates = a.gates + b * GH;
  r.h_prev = a.h_prev ? a.h_prev + e : a.zeros;
  r.c_prev = a.c_prev ? a.c_prev + e : a.zeros;
  r.act_cell = a.act_cell ? a.act_cell + e : a.zeros;
  r.rh = a.rh ? a.rh + e : a.zeros;
  r.dout = a.dout ? a.dout + e : a.zeros;
  r.rmask = a.rmask ? a.rmask + e : a.ones;
  r.carry = a.carry + e;
  r.dh = a.dh + e;
  r.dc = a.dc ? a.dc + e : nullptr;
  r.dgi = a.dgi + b * GH;
  r.dgr = a.dgr + b * GH;
  r.d_rhd = a.d_rhd ? a.d_rhd + e : nullptr;
  return r;
}

// (a) the cell's backward step for every (b, j).
template <typename T, class Cell>
__global__ void backward_pointwise_kernel(const StepArgs<T> a) {
  const index_t H = a.H, BH = a.B * H;
  for (index_t e = (index_t)blockIdx.x * blockDim.x + threadIdx.x; e < BH;
       e += (index_t)gridDim.x * blockDim.x) {
    const index_t b = e / H, j = e % H;
    const BackwardRow<T> r = row_of<Cell>(a, b);
    if (a.mrow && !a.mrow[b])
      backward_carry_unit(Cell{}, r, j, a.has_prev_step);
    else
      backward_unit(Cell{}, r, j, a.act, a.ract);
  }
}

// (r) GRU reset_after=False: drh = dg_pre @ R_g^T, then dr_pre and d_rhd.
template <typename T, class Cell>
__global__ void __launch_bounds__(32 * kRowGroups) reset_kernel(const StepArgs<T> a) {
  const index_t H = a.H, GH = Cell::G * H;
  const index_t j = (index_t)blockIdx.x * 32 + threadIdx.x;
  const index_t b0 = ((index_t)blockIdx.y * kRowGroups + threadIdx.y) * kRows;
  if (j >= H || b0 >= a.B) return;
  const int rows = (int)min((index_t)kRows, a.B - b0);
  T acc[kRows][1];
  detail::rowdot<T, kRows, 1>(a.dgi + b0 * GH + 2 * H, GH, rows, a.Rt + 2 * H * H, H, 0, j, H, acc);
#pragma unroll
  for (int m = 0; m < kRows; ++m) {
    if (m >= rows) break;
    const index_t b = b0 + m;
    reset_unit(Cell{}, row_of<Cell>(a, b), j, acc[m][0], a.mrow && !a.mrow[b], a.ract);
  }
}

// (b) dh_prev = direct part + (dG_rec @ R^T) * recurrent dropout mask.
template <typename T, class Cell>
__global__ void __launch_bounds__(32 * kRowGroups) backward_recurrent_kernel(const StepArgs<T> a) {
  const index_t H = a.H, GH = Cell::G * H;
  const index_t j = (index_t)blockIdx.x * 32 + threadIdx.x;
  const index_t b0 = ((index_t)blockIdx.y * kRowGroups + threadIdx.y) * kRows;
  if (j >= H || b0 >= a.B) return;
  const int rows = (int)min((index_t)kRows, a.B - b0);
  T acc[kRows][1];
  detail::rowdot<T, kRows, 1>(a.dgr + b0 * GH, GH, rows, a.Rt, H, 0, j, Cell::GC * H, acc);
#pragma unroll
  for (int m = 0; m < kRows; ++m) {
    if (m >= rows) break;
    if (a.mrow && !a.mrow[b0 + m]) continue;  // a masked row passed its gradients through
    accumulate_dh(Cell{}, row_of<Cell>(a, b0 + m), j, acc[m][0]);
  }
}

// dst[t] (B, H) = src of processing step s = time_of(t), times rmask, for every input time t:
// hd_all (src = state before step s; shift = 1) or rhd_all (src = workspace rh_s; shift = 0).
// Rows the step skipped (mask False) are zero: they contribute nothing to the weight gradients.
template <typename T>
__global__ void gather_by_time_kernel(index_t Tn, index_t BH, index_t H, bool go_backwards,
                                      const T* __restrict__ steps, const T* __restrict__ first,
                                      int shift, const T* __restrict__ rmask,
                                      const std::uint8_t* __restrict__ mask, T* __restrict__ dst) {
  const index_t n = Tn * BH;
  for (index_t idx = (index_t)blockIdx.x * blockDim.x + threadIdx.x; idx < n;
       idx += (index_t)gridDim.x * blockDim.x) {
    const index_t t = idx / BH, e = idx % BH;
    if (mask && !mask[t * (BH / H) + e / H]) {
      dst[idx] = T(0);
      continue;
    }
    const index_t s = (go_backwards ? Tn - 1 - t : t) - shift;  // step whose value is read
    T v = s >= 0 ? steps[s * BH + e] : (first ? first[e] : T(0));
    if (rmask) v *= rmask[e];
    dst[idx] = v;
  }
}

template <typename T>
void copy_async(T* dst, const T* src, index_t n, cudaStream_t stream) {
  if (n > 0)
    FASTRNN_CUDA_CHECK(cudaMemcpyAsync(dst, src, sizeof(T) * n, cudaMemcpyDeviceToDevice, stream));
}

template <typename T, class Cell>
void backward_impl(const BackwardParams<T>& p, cudaStream_t stream) {
  const index_t B = p.B, H = p.H, GH = Cell::G * H, Tn = p.T, I = p.I, BH = B * H, TB = Tn * B;
  const WorkspaceLayout ws = workspace_layout(Cell{}, Tn, B, H);
  const T* W = p.workspace;

  T *xd = nullptr, *dg_in = nullptr, *dg_rec = nullptr, *rt = nullptr, *dh = nullptr;
  T *carry = nullptr, *dc = nullptr, *d_rhd = nullptr, *hd_all = nullptr, *rhd_all = nullptr;
  T *zeros = nullptr, *ones = nullptr;
  auto carve = [&](Carver& cv) {
    xd = cv.take<T>(p.dropout_mask || p.mask ? TB * I : 0);
    dg_in = cv.take<T>(TB * GH);
    dg_rec = Cell::separate_rec ? cv.take<T>(TB * GH) : nullptr;
    rt = cv.take<T>(GH * H);
    dh = cv.take<T>(BH);
    carry = cv.take<T>(BH);
    dc = Cell::cell_state ? cv.take<T>(BH) : nullptr;
    d_rhd = Cell::second_product ? cv.take<T>(BH) : nullptr;
    hd_all = cv.take<T>(TB * H);
    rhd_all = Cell::second_product ? cv.take<T>(TB * H) : nullptr;
    zeros = cv.take<T>(H);
    ones = cv.take<T>(H);
  };
  Carver sizing;
  carve(sizing);
  DeviceScratch scratch(sizing.size(), stream);
  Carver carver(scratch.data());
  carve(carver);
  if constexpr (!Cell::separate_rec) dg_rec = dg_in;

  transpose_kernel<T><<<blocks_for(GH * H), kThreads, 0, stream>>>(p.recurrent_kernel, H, GH, rt);
  FASTRNN_CUDA_CHECK_LAUNCH();
  init_grads_kernel<T><<<blocks_for(std::max(BH, H)), kThreads, 0, stream>>>(
      BH, H, p.d_h_last, p.d_c_last, dh, carry, dc, zeros, ones);
  FASTRNN_CUDA_CHECK_LAUNCH();

  StepArgs<T> a;
  a.Rt = rt;
  a.rmask = p.recurrent_dropout_mask;
  a.dh = dh;
  a.carry = carry;
  a.dc = dc;
  a.d_rhd = d_rhd;
  a.zeros = zeros;
  a.ones = ones;
  a.B = B;
  a.H = H;
  a.act = p.activation;
  a.ract = p.recurrent_activation;
  const dim3 grid = detail::step_grid(B, H), block = detail::step_block();
  for (index_t s = Tn - 1; s >= 0 && BH > 0; --s) {
    const index_t t = p.go_backwards ? Tn - 1 - s : s;
    a.h_prev = s > 0 ? W + ws.states + (s - 1) * BH : p.h0;
    a.c_prev = Cell::cell_state ? (s > 0 ? W + ws.cell + (s - 1) * BH : p.c0) : nullptr;
    a.act_cell = Cell::cell_state ? W + ws.act_cell + s * BH : nullptr;
    a.rh = Cell::saves_rh ? W + ws.rh + s * BH : nullptr;
    a.gates = W + ws.gates + s * B * GH;
    a.dout = p.d_outputs ? p.d_outputs + s * BH : nullptr;
    a.mrow = p.mask ? p.mask + t * B : nullptr;
    a.dgi = dg_in + t * B * GH;
    a.dgr = dg_rec + t * B * GH;
    a.has_prev_step = s > 0;
    backward_pointwise_kernel<T, Cell><<<blocks_for(BH), kThreads, 0, stream>>>(a);
    FASTRNN_CUDA_CHECK_LAUNCH();
    if constexpr (Cell::second_product) {
      reset_kernel<T, Cell><<<grid, block, 0, stream>>>(a);
      FASTRNN_CUDA_CHECK_LAUNCH();
    }
    backward_recurrent_kernel<T, Cell><<<grid, block, 0, stream>>>(a);
    FASTRNN_CUDA_CHECK_LAUNCH();
  }
  copy_async(p.dh0, dh, BH, stream);
  if constexpr (Cell::cell_state) copy_async(p.dc0, dc, BH, stream);

  // Weight gradients and dx over all steps (rows t*B + b).
  if (TB * H > 0) {
    gather_by_time_kernel<T><<<blocks_for(TB * H), kThreads, 0, stream>>>(
        Tn, BH, H, p.go_backwards, W + ws.states, p.h0, 1, p.recurrent_dropout_mask, p.mask,
        hd_all);
    FASTRNN_CUDA_CHECK_LAUNCH();
  }
  if constexpr (Cell::second_product) {
    gemm<T>(true, false, H, 2 * H, TB, hd_all, H, dg_in, GH, p.drecurrent_kernel, GH, stream);
    if (TB * H > 0) {
      gather_by_time_kernel<T><<<blocks_for(TB * H), kThreads, 0, stream>>>(
          Tn, BH, H, p.go_backwards, W + ws.rh, nullptr, 0, nullptr, p.mask, rhd_all);
      FASTRNN_CUDA_CHECK_LAUNCH();
    }
    gemm<T>(true, false, H, H, TB, rhd_all, H, dg_in + 2 * H, GH, p.drecurrent_kernel + 2 * H, GH,
            stream);
  } else {
    gemm<T>(true, false, H, GH, TB, hd_all, H, dg_rec, GH, p.drecurrent_kernel, GH, stream);
  }
  const T* x = p.x;
  if (p.dropout_mask || p.mask) {
    input_rows<T>(p.x, p.dropout_mask, p.mask, TB, I, B, xd, stream);
    x = xd;
  }
  gemm<T>(true, false, I, GH, TB, x, I, dg_in, GH, p.dkernel, GH, stream);
  gemm<T>(false, true, TB, I, GH, dg_in, GH, p.kernel, GH, p.dx, I, stream);
  if (p.dropout_mask || p.mask)  // a skipped (masked) step did not read x: its dx is zero
    input_rows<T>(p.dx, p.dropout_mask, p.mask, TB, I, B, p.dx, stream);
  if (p.dbias) {
    column_sums(dg_in, TB, GH, GH, p.dbias, stream);
    if constexpr (Cell::separate_rec) column_sums(dg_rec, TB, GH, GH, p.dbias + GH, stream);
  }
}

}  // namespace

template <typename T>
void rnn_backward(const BackwardParams<T>& p, cudaStream_t stream) {
  with_cell(p.id, [&](auto cell) { backward_impl<T, decltype(cell)>(p, stream); });
}

template void rnn_backward<float>(const BackwardParams<float>&, cudaStream_t);
template void rnn_backward<double>(const BackwardParams<double>&, cudaStream_t);

}  // namespace fastrnn::cuda
