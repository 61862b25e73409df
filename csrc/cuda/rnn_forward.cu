// Standard CUDA forward for any cell of cells.h (one set of kernels, no branch on
// the cell but GRU reset_after=False's second product, marked below).
//
// Dimension legend: T steps, B batch, I inputs, H units, G gates, GH = G*H.
//
// Structure (as cuDNN's standard path):
//   (1) xp (T*B, GH) = (x * dropout_mask) @ kernel: one product over all steps (gemm.cu);
//   (2) per step one kernel: the recurrent product hd_prev @ recurrent_kernel for a unit and
//       a few batch rows, then the cell's step (cells.h forward_unit, the same function the
//       CPU loop calls) for each of those rows.
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

// Rows nothing reads, (B, H) each: where a step keeps nothing (inference, no recurrent
// dropout, a cell without c) it writes here.
constexpr int kDummyRows = 7;

// One step's arrays, (B, H) unless noted. Null fields stand for zeros, ones or a dummy row
// (row_of substitutes them), so the cell's step never tests a pointer.
template <typename T>
struct StepArgs {
  const T* R = nullptr;                // recurrent_kernel (H, GH)
  const T* xps = nullptr;              // (B, GH): xp rows of input time t
  const T* b_in = nullptr;             // (GH) input bias (zeros when absent)
  const T* b_rec = nullptr;            // (GH) recurrent bias of GRU reset_after (zeros otherwise)
  const std::uint8_t* mrow = nullptr;  // (B) mask row of time t, or null
  const T* h_prev = nullptr;
  const T* operand = nullptr;   // hd_prev: h_prev * recurrent dropout mask, or h_prev
  const T* c_prev = nullptr;    // cells with c
  const T* rmask = nullptr;     // recurrent dropout mask, or null: ones
  const T* out_prev = nullptr;  // outputs[s-1], or null at s == 0: zeros
  T* gates = nullptr;           // (B, GH) workspace or scratch
  T* out = nullptr;
  T* h_next = nullptr;
  T* hd_next = nullptr;      // or null (no recurrent dropout)
  T* c_next = nullptr;       // cells with c
  T* ws_state = nullptr;     // workspace slices of step s, or null (inference)
  T* ws_cell = nullptr;      // cells with c
  T* ws_act_cell = nullptr;  // cells with c
  T* ws_rh = nullptr;        // cells that save rh
  T* rhd = nullptr;          // GRU reset_after=False: r * hd_prev
  T* dummy = nullptr;        // kDummyRows x (B, H)
  const T* zeros = nullptr;  // (GH)
  const T* ones = nullptr;   // (H)
  index_t B = 0, H = 0;
  Activation act = Activation::Tanh, ract = Activation::Sigmoid;
};

template <class Cell, typename T>
__device__ __forceinline__ ForwardRow<T> row_of(const StepArgs<T>& a, index_t b) {
  const index_t H = a.H, GH = Cell::G * H, e = b * H;
  auto dummy = [&](int k) { return a.dummy + (index_t)k * a.B * H + e; };
  ForwardRow<T> r;
  r.H = H;
  r.xp = a.xps + b * GH;
  r.b_in = a.b_in;
  r.b_rec = a.b_rec;
  r.h_prev = a.h_prev + e;
  r.hd_prev = a.operand + e;
  r.c_prev = a.c_prev ? a.c_prev + e : a.zeros;
  r.rmask = a.rmask ? a.rmask + e : a.ones;
  r.out_prev = a.out_prev ? a.out_prev + e : a.zeros;
  r.gates = a.gates + b * GH;
  r.out = a.out + e;
  r.h_next = a.h_next + e;
  r.hd_next = a.hd_next ? a.hd_next + e : dummy(0);
  r.c_next = a.c_next ? a.c_next + e : dummy(1);
  r.ws_state = a.ws_state ? a.ws_state + e : dummy(2);
  r.ws_cell = a.ws_cell ? a.ws_cell + e : dummy(3);
  r.ws_act_cell = a.ws_act_cell ? a.ws_act_cell + e : dummy(4);
  r.ws_rh = a.ws_rh ? a.ws_rh + e : dummy(5);
  r.rhd = a.rhd ? a.rhd + e : dummy(6);
  return r;
}

// h (B,H) = h0 or 0, c = c0 or 0, hd = h * recurrent_dropout_mask.
template <typename T>
__global__ void init_states_kernel(index_t BH, const T* __restrict__ h0, const T* __restrict__ c0,
                                   const T* __restrict__ rmask, T* __restrict__ h,
                                   T* __restrict__ c, T* __restrict__ hd) {
  for (index_t e = (index_t)blockIdx.x * blockDim.x + threadIdx.x; e < BH;
       e += (index_t)gridDim.x * blockDim.x) {
    const T hv = h0 ? h0[e] : T(0);
    h[e] = hv;
    if (c) c[e] = c0 ? c0[e] : T(0);
    if (hd) hd[e] = hv * rmask[e];
  }
}

template <typename T>
__global__ void fill_kernel(T* __restrict__ out, index_t n, T value) {
  for (index_t e = (index_t)blockIdx.x * blockDim.x + threadIdx.x; e < n;
       e += (index_t)gridDim.x * blockDim.x)
    out[e] = value;
}

// One step: the product of unit j for kRows batch rows, then the cell's step for each row.
template <typename T, class Cell>
__global__ void __launch_bounds__(32 * kRowGroups) forward_step_kernel(const StepArgs<T> a) {
  constexpr int GC = Cell::GC;
  const index_t H = a.H, GH = Cell::G * H;
  const index_t j = (index_t)blockIdx.x * 32 + threadIdx.x;
  const index_t b0 = ((index_t)blockIdx.y * kRowGroups + threadIdx.y) * kRows;
  if (j >= H || b0 >= a.B) return;
  const int rows = (int)min((index_t)kRows, a.B - b0);
  T acc[kRows][GC];
  detail::rowdot<T, kRows, GC>(a.operand + b0 * H, H, rows, a.R, GH, H, j, H, acc);
#pragma unroll
  for (int m = 0; m < kRows; ++m) {
    if (m >= rows) break;
    const index_t b = b0 + m;
    const ForwardRow<T> r = row_of<Cell>(a, b);
    if (!Cell::second_product && a.mrow && !a.mrow[b])
      carry_unit(Cell{}, r, j);
    else
      forward_unit(Cell{}, r, j, acc[m], 1, a.act, a.ract);
  }
}

// GRU reset_after=False's second product: (r * hd_prev) @ R_g, then the step's output.
template <typename T, class Cell>
__global__ void __launch_bounds__(32 * kRowGroups) forward_second_kernel(const StepArgs<T> a) {
  const index_t H = a.H, GH = Cell::G * H;
  const index_t j = (index_t)blockIdx.x * 32 + threadIdx.x;
  const index_t b0 = ((index_t)blockIdx.y * kRowGroups + threadIdx.y) * kRows;
  if (j >= H || b0 >= a.B) return;
  const int rows = (int)min((index_t)kRows, a.B - b0);
  T acc[kRows][1];
  detail::rowdot<T, kRows, 1>(a.rhd + b0 * H, H, rows, a.R + 2 * H, GH, H, j, H, acc);
#pragma unroll
  for (int m = 0; m < kRows; ++m) {
    if (m >= rows) break;
    const index_t b = b0 + m;
    const ForwardRow<T> r = row_of<Cell>(a, b);
    if (a.mrow && !a.mrow[b])
      carry_unit(Cell{}, r, j);
    else
      forward_unit_second(Cell{}, r, j, acc[m][0], a.act);
  }
}

template <typename T, class Cell>
void forward_impl(const ForwardParams<T>& p, cudaStream_t stream) {
  const index_t B = p.B, H = p.H, GH = Cell::G * H, Tn = p.T, BH = B * H;
  const bool training = p.workspace != nullptr, rdrop = p.recurrent_dropout_mask != nullptr;
  const WorkspaceLayout ws = workspace_layout(Cell{}, Tn, B, H);

  T *xd = nullptr, *xp = nullptr, *gate_rows = nullptr, *rhd = nullptr, *dummy = nullptr;
  T *zeros = nullptr, *ones = nullptr, *h[2] = {}, *c[2] = {}, *hd[2] = {};
  auto carve = [&](Carver& cv) {
    xd = cv.take<T>(p.dropout_mask ? Tn * B * p.I : 0);
    xp = cv.take<T>(Tn * B * GH);
    for (int k = 0; k < 2; ++k) {
      h[k] = cv.take<T>(BH);
      c[k] = Cell::cell_state ? cv.take<T>(BH) : nullptr;
      hd[k] = rdrop ? cv.take<T>(BH) : nullptr;
    }
    gate_rows = cv.take<T>(training ? 0 : B * GH);
    rhd = Cell::second_product ? cv.take<T>(BH) : nullptr;
    dummy = cv.take<T>(kDummyRows * BH);
    zeros = cv.take<T>(GH);
    ones = cv.take<T>(H);
  };
  Carver sizing;
  carve(sizing);
  DeviceScratch scratch(sizing.size(), stream);
  Carver carver(scratch.data());
  carve(carver);
  FASTRNN_CUDA_CHECK(cudaMemsetAsync(zeros, 0, sizeof(T) * GH, stream));
  fill_kernel<T><<<blocks_for(H), kThreads, 0, stream>>>(ones, H, T(1));
  FASTRNN_CUDA_CHECK_LAUNCH();

  // (1) input projection for every step.
  const T* x = p.x;
  if (p.dropout_mask) {
    input_rows<T>(p.x, p.dropout_mask, nullptr, Tn * B, p.I, B, xd, stream);
    x = xd;
  }
  gemm<T>(false, false, Tn * B, GH, p.I, x, p.I, p.kernel, GH, xp, GH, stream);

  if (BH > 0) {
    init_states_kernel<T><<<blocks_for(BH), kThreads, 0, stream>>>(
        BH, p.h0, p.c0, p.recurrent_dropout_mask, h[0], c[0], hd[0]);
    FASTRNN_CUDA_CHECK_LAUNCH();
  }

  StepArgs<T> a;
  a.R = p.recurrent_kernel;
  a.b_in = p.bias ? p.bias : zeros;
  a.b_rec = (Cell::separate_rec && p.bias) ? p.bias + GH : zeros;
  a.rmask = p.recurrent_dropout_mask;
  a.rhd = rhd;
  a.dummy = dummy;
  a.zeros = zeros;
  a.ones = ones;
  a.B = B;
  a.H = H;
  a.act = p.activation;
  a.ract = p.recurrent_activation;
  const dim3 grid = detail::step_grid(B, H), block = detail::step_block();
  for (index_t s = 0; s < Tn && BH > 0; ++s) {
    const index_t t = p.go_backwards ? Tn - 1 - s : s;
    const int cur = (int)(s & 1);
    a.xps = xp + t * B * GH;
    a.mrow = p.mask ? p.mask + t * B : nullptr;
    a.h_prev = h[cur];
    a.h_next = h[1 - cur];
    a.operand = rdrop ? hd[cur] : h[cur];
    a.hd_next = rdrop ? hd[1 - cur] : nullptr;
    a.c_prev = c[cur];
    a.c_next = c[1 - cur];
    a.out = p.outputs + s * BH;
    a.out_prev = s > 0 ? p.outputs + (s - 1) * BH : nullptr;
    a.gates = training ? p.workspace + ws.gates + s * B * GH : gate_rows;
    a.ws_state = training ? p.workspace + ws.states + s * BH : nullptr;
    a.ws_cell = training && Cell::cell_state ? p.workspace + ws.cell + s * BH : nullptr;
    a.ws_act_cell = training && Cell::cell_state ? p.workspace + ws.act_cell + s * BH : nullptr;
    a.ws_rh = training && Cell::saves_rh ? p.workspace + ws.rh + s * BH : nullptr;
    forward_step_kernel<T, Cell><<<grid, block, 0, stream>>>(a);
    FASTRNN_CUDA_CHECK_LAUNCH();
    if constexpr (Cell::second_product) {
      forward_second_kernel<T, Cell><<<grid, block, 0, stream>>>(a);
      FASTRNN_CUDA_CHECK_LAUNCH();
    }
  }
  if (BH > 0) {
    FASTRNN_CUDA_CHECK(
        cudaMemcpyAsync(p.h_last, h[Tn % 2], sizeof(T) * BH, cudaMemcpyDeviceToDevice, stream));
    if constexpr (Cell::cell_state)
      FASTRNN_CUDA_CHECK(
          cudaMemcpyAsync(p.c_last, c[Tn % 2], sizeof(T) * BH, cudaMemcpyDeviceToDevice, stream));
  }
}

}  // namespace

template <typename T>
void rnn_forward(const ForwardParams<T>& p, cudaStream_t stream) {
  with_cell(p.id, [&](auto cell) { forward_impl<T, decltype(cell)>(p, stream); });
}

template void rnn_forward<float>(const ForwardParams<float>&, cudaStream_t);
template void rnn_forward<double>(const ForwardParams<double>&, cudaStream_t);

}  // namespace fastrnn::cuda
