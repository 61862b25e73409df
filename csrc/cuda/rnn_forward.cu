// CUDA forward for any cell of cells.h: the call's setup, then the step loop on the
// standard or the persistent path (rnn_cuda.h says how one is chosen).
//
// Dimension legend: T steps, B batch, I inputs, H units, G gates, GH = G*H.
//
// Structure (as cuDNN's):
//   (1) xp (T*B, GH) = (x * dropout_mask) @ kernel: one product over all steps (gemm.cu);
//   (2) per step s, the standard path's forward_step_kernel: a grid of (H / uw) x (B / 4)
//       blocks, each the recurrent product hd_prev @ R of uw units and 4 batch rows
//       (block_product: the reduction split over the block's warps), then the cell's step
//       (cells.h forward_unit, the function the CPU loop calls) for each unit and row.
//       GRU reset_after=False runs a second kernel per step for (r * hd_prev) @ R_g.
//   The kernels read their arguments from a device copy of FwdArgs, so the loop of T launches
//   is captured once per shape into a CUDA graph and replayed (step_graph.cu).
#include <cstdint>
#include <sstream>

#include "cuda_check.h"
#include "fastrnn/cells.h"
#include "rnn_cuda.h"
#include "step_common.cuh"

namespace fastrnn::cuda {
namespace {

using namespace detail;

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

// One step of the standard path: uw units x ROWS batch rows per block (grid x: units, y: rows).
// kSecond: GRU reset_after=False's second product (r * hd_prev) @ R_g and the step's output.
template <typename T, class Cell, int ROWS, bool kSecond>
__global__ void __launch_bounds__(kStepThreads)
    forward_step_kernel(const FwdArgs<T>* __restrict__ args, index_t s, int uw) {
  FASTRNN_DYNAMIC_SMEM(smem);
  const FwdArgs<T>& P = *args;
  constexpr int GCP = kSecond ? 1 : Cell::GC;
  const index_t H = P.H, GH = Cell::G * H;
  const index_t j0 = (index_t)blockIdx.x * uw, b0 = (index_t)blockIdx.y * ROWS;
  const int rows = (int)min((index_t)ROWS, P.B - b0);  // >= 1: the grid covers B exactly
  const int umax = (int)min((index_t)uw, H - j0) - 1;  // >= 0: and H
  T *hs, *part;
  carve_product_smem<T, ROWS>(smem, H, hs, part);
  const T* A = (kSecond ? P.rhd : fwd_operand(P, s)) + b0 * H;
  const T* W = P.R + (kSecond ? 2 * H : 0) + j0;  // W(g, k, u) = R[k * GH + g * H + j0 + u]
  block_product<T, ROWS, GCP, true>(A, H, rows, H, W, H, GH, uw, umax, hs, part,
                                    [&](int r, int u, const T* acc) {
                                      const index_t b = b0 + r, j = j0 + u;
                                      if (b >= P.B || j >= H) return;
                                      if constexpr (kSecond)
                                        fwd_second_unit<Cell>(P, s, b, j, acc[0]);
                                      else
                                        fwd_main_unit<Cell>(P, s, b, j, acc);
                                    });
}

// The host side of one call's step loop (the ctx of run_step_loop).
template <typename T>
struct ForwardLoop {
  FwdArgs<T> args;
  dim3 grid;
  int uw = 8;
  std::size_t smem_main = 0, smem_second = 0;
};

// Lets a kernel take more than the default 48 KB of dynamic shared memory.
template <typename K>
void allow_smem(K kernel, std::size_t bytes) {
  if (bytes > 48 * 1024)
    FASTRNN_CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

template <typename T>
void load_forward_args(void* dst, cudaStream_t st, const void* ctx) {
  const auto& loop = *static_cast<const ForwardLoop<T>*>(ctx);
  load_args_kernel<FwdArgs<T>><<<1, 1, 0, st>>>(loop.args, static_cast<FwdArgs<T>*>(dst));
  FASTRNN_CUDA_CHECK_LAUNCH();
}

template <typename T, class Cell, int ROWS>
void forward_steps(const void* args, cudaStream_t st, const void* ctx) {
  const auto& loop = *static_cast<const ForwardLoop<T>*>(ctx);
  const auto* a = static_cast<const FwdArgs<T>*>(args);
  for (index_t s = 0; s < loop.args.T_; ++s) {
    forward_step_kernel<T, Cell, ROWS, false>
        <<<loop.grid, kStepThreads, loop.smem_main, st>>>(a, s, loop.uw);
    FASTRNN_CUDA_CHECK_LAUNCH();
    if constexpr (Cell::second_product) {
      forward_step_kernel<T, Cell, ROWS, true>
          <<<loop.grid, kStepThreads, loop.smem_second, st>>>(a, s, loop.uw);
      FASTRNN_CUDA_CHECK_LAUNCH();
    }
  }
}

template <typename T, class Cell>
void standard_forward_steps(const FwdArgs<T>& a, void* scratch_args, cudaStream_t stream) {
  with_rows(a.B, [&](auto rows_tag) {
    constexpr int ROWS = decltype(rows_tag)::value;
    const DeviceInfo& dev = current_device_info();
    ForwardLoop<T> loop;
    loop.args = a;
    loop.uw = standard_units(a.H, a.B, dev.sms);
    loop.grid =
        dim3((unsigned)((a.H + loop.uw - 1) / loop.uw), (unsigned)((a.B + ROWS - 1) / ROWS));
    loop.smem_main = product_smem<T, ROWS>(a.H, Cell::GC, loop.uw);
    loop.smem_second = product_smem<T, ROWS>(a.H, 1, loop.uw);
    allow_smem(forward_step_kernel<T, Cell, ROWS, false>, loop.smem_main);
    if constexpr (Cell::second_product)
      allow_smem(forward_step_kernel<T, Cell, ROWS, true>, loop.smem_second);
    std::ostringstream key;
    key << "fwd/" << sizeof(T) << "/" << (int)Cell::id << "/" << dev.device << "/" << a.T_ << "/"
        << a.B << "/" << a.H << "/" << loop.uw << "/" << ROWS;
    run_step_loop(key.str(), sizeof(FwdArgs<T>), &load_forward_args<T>,
                  &forward_steps<T, Cell, ROWS>, &loop, scratch_args, stream);
  });
}

template <typename T, class Cell>
void forward_impl(const ForwardParams<T>& p, cudaStream_t stream) {
  const index_t B = p.B, H = p.H, GH = Cell::G * H, Tn = p.T, BH = B * H;
  const bool training = p.workspace != nullptr, rdrop = p.recurrent_dropout_mask != nullptr;
  const WorkspaceLayout ws = workspace_layout(Cell{}, Tn, B, H);
  PersistentPlan plan;
  const bool persistent = Tn > 0 && BH > 0 && choose_persistent<T>(p, false, &plan);

  T *xd = nullptr, *xp = nullptr, *gate_rows = nullptr, *rhd = nullptr, *dummy = nullptr;
  T *zeros = nullptr, *ones = nullptr, *h[2] = {}, *c[2] = {}, *hd[2] = {};
  char* args_dev = nullptr;
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
    args_dev = cv.take<char>((index_t)sizeof(FwdArgs<T>));
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

  // (2) the steps.
  if (Tn > 0 && BH > 0) {
    FwdArgs<T> a;
    a.R = p.recurrent_kernel;
    a.xp = xp;
    a.b_in = p.bias ? p.bias : zeros;
    a.b_rec = (Cell::separate_rec && p.bias) ? p.bias + GH : zeros;
    a.mask = p.mask;
    a.rmask = p.recurrent_dropout_mask;
    for (int k = 0; k < 2; ++k) {
      a.h[k] = h[k];
      a.hd[k] = hd[k];
      a.c[k] = c[k];
    }
    a.outputs = p.outputs;
    if (training) {
      a.ws_states = p.workspace + ws.states;
      a.ws_gates = p.workspace + ws.gates;
      if (Cell::cell_state) {
        a.ws_cell = p.workspace + ws.cell;
        a.ws_act_cell = p.workspace + ws.act_cell;
      }
      if (Cell::saves_rh) a.ws_rh = p.workspace + ws.rh;
    }
    a.gate_rows = gate_rows;
    a.rhd = rhd;
    a.dummy = dummy;
    a.zeros = zeros;
    a.ones = ones;
    a.T_ = Tn;
    a.B = B;
    a.H = H;
    a.go_backwards = p.go_backwards;
    a.act = p.activation;
    a.ract = p.recurrent_activation;
    if (persistent)
      persistent_forward_steps<T>(Cell::id, a, p.recurrent_kernel, plan, stream);
    else
      standard_forward_steps<T, Cell>(a, args_dev, stream);
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
