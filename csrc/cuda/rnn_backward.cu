// CUDA BPTT backward for any cell of cells.h (mirrors csrc/cpu/rnn_backward.h): the call's
// setup, the step loop on the standard or the persistent path, then the weight gradients.
//
// Dimension legend: T steps, B batch, I inputs, H units, G gates, GH = G*H.
//
// Per processing step s, last to first:
//   (a) the cell's backward step (cells.h backward_unit, the function the CPU loop calls):
//       gate pre-activation gradients from the saved values;
//   (r) GRU reset_after=False only: drh = dg_pre @ R_g^T and the reset gate's gradient;
//   (b) dh_prev += (dG_rec @ R^T) * recurrent_dropout_mask.
// The standard path runs (a) of the last step as one pointwise kernel, then per step one
// backward_step_kernel for (b) that also runs (a) of the step before for its units (it needs
// only those units' values), and before it, for GRU reset_after=False, one for (r). Like the
// forward's, the kernels read their arguments from device memory and the loop is replayed
// from a cached CUDA graph. Afterwards the weight gradients and dx as products over all steps
// (rows t*B + b) and dbias as column sums (gemm.cu).
#include <cstdint>
#include <sstream>

#include "cuda_check.h"
#include "fastrnn/cells.h"
#include "rnn_cuda.h"
#include "step_common.cuh"

namespace fastrnn::cuda {
namespace {

using namespace detail;

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

// (a) for every (b, j) of step s.
template <typename T, class Cell>
__global__ void backward_point_kernel(const BwdArgs<T>* __restrict__ args, index_t s) {
  const BwdArgs<T>& P = *args;
  const index_t H = P.H, BH = P.B * H;
  for (index_t e = (index_t)blockIdx.x * blockDim.x + threadIdx.x; e < BH;
       e += (index_t)gridDim.x * blockDim.x)
    bwd_point_unit<Cell>(P, s, e / H, e % H);
}

// (b) (kReset false) or (r) (kReset true) of step s: uw units x ROWS batch rows per block.
template <typename T, class Cell, int ROWS, bool kReset>
__global__ void __launch_bounds__(kStepThreads)
    backward_step_kernel(const BwdArgs<T>* __restrict__ args, index_t s, int uw) {
  FASTRNN_DYNAMIC_SMEM(smem);
  const BwdArgs<T>& P = *args;
  const index_t H = P.H, GH = Cell::G * H, t = time_of(P, s);
  const index_t j0 = (index_t)blockIdx.x * uw, b0 = (index_t)blockIdx.y * ROWS;
  const int rows = (int)min((index_t)ROWS, P.B - b0);
  const int umax = (int)min((index_t)uw, H - j0) - 1;
  // (b): A = dG_rec rows (their first GC*H columns), W(k, u) = R^T[k][j0 + u] = R[j0 + u][k].
  // (r): A = the candidate blocks of dG_in, W(k, u) = R^T[2H + k][j0 + u].
  const index_t K = kReset ? H : Cell::GC * H;
  const T* A = kReset ? P.dg_in + (t * P.B + b0) * GH + 2 * H : P.dg_rec + (t * P.B + b0) * GH;
  const T* W = P.Rt + (kReset ? 2 * H * H : 0) + j0;
  T *hs, *part;
  carve_product_smem<T, ROWS>(smem, K, hs, part);
  block_product<T, ROWS, 1, true>(A, GH, rows, K, W, 0, H, uw, umax, hs, part,
                                  [&](int r, int u, const T* acc) {
                                    const index_t b = b0 + r, j = j0 + u;
                                    if (b >= P.B || j >= H) return;
                                    if constexpr (kReset)
                                      bwd_reset_unit<Cell>(P, s, b, j, acc[0]);
                                    else
                                      bwd_rec_unit<Cell>(P, s, b, j, acc[0]);
                                  });
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

template <typename T>
struct BackwardLoop {
  BwdArgs<T> args;
  dim3 grid;
  int uw = 8;
  std::size_t smem_rec = 0, smem_reset = 0;
};

template <typename T>
void load_backward_args(void* dst, cudaStream_t st, const void* ctx) {
  const auto& loop = *static_cast<const BackwardLoop<T>*>(ctx);
  load_args_kernel<BwdArgs<T>><<<1, 1, 0, st>>>(loop.args, static_cast<BwdArgs<T>*>(dst));
  FASTRNN_CUDA_CHECK_LAUNCH();
}

template <typename K>
void allow_smem(K kernel, std::size_t bytes) {
  if (bytes > 48 * 1024)
    FASTRNN_CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

template <typename T, class Cell, int ROWS>
void backward_steps(const void* args, cudaStream_t st, const void* ctx) {
  const auto& loop = *static_cast<const BackwardLoop<T>*>(ctx);
  const auto* a = static_cast<const BwdArgs<T>*>(args);
  const index_t Tn = loop.args.T_, BH = loop.args.B * loop.args.H;
  backward_point_kernel<T, Cell><<<blocks_for(BH), kThreads, 0, st>>>(a, Tn - 1);
  FASTRNN_CUDA_CHECK_LAUNCH();
  for (index_t s = Tn - 1; s >= 0; --s) {
    if constexpr (Cell::second_product) {
      backward_step_kernel<T, Cell, ROWS, true>
          <<<loop.grid, kStepThreads, loop.smem_reset, st>>>(a, s, loop.uw);
      FASTRNN_CUDA_CHECK_LAUNCH();
    }
    backward_step_kernel<T, Cell, ROWS, false>
        <<<loop.grid, kStepThreads, loop.smem_rec, st>>>(a, s, loop.uw);
    FASTRNN_CUDA_CHECK_LAUNCH();
  }
}

template <typename T, class Cell>
void standard_backward_steps(const BwdArgs<T>& a, void* scratch_args, cudaStream_t stream) {
  with_rows(a.B, [&](auto rows_tag) {
    constexpr int ROWS = decltype(rows_tag)::value;
    const DeviceInfo& dev = current_device_info();
    BackwardLoop<T> loop;
    loop.args = a;
    loop.uw = standard_units(a.H, a.B, dev.sms);
    loop.grid =
        dim3((unsigned)((a.H + loop.uw - 1) / loop.uw), (unsigned)((a.B + ROWS - 1) / ROWS));
    loop.smem_rec = product_smem<T, ROWS>(Cell::GC * a.H, 1, loop.uw);
    loop.smem_reset = product_smem<T, ROWS>(a.H, 1, loop.uw);
    allow_smem(backward_step_kernel<T, Cell, ROWS, false>, loop.smem_rec);
    if constexpr (Cell::second_product)
      allow_smem(backward_step_kernel<T, Cell, ROWS, true>, loop.smem_reset);
    std::ostringstream key;
    key << "bwd/" << sizeof(T) << "/" << (int)Cell::id << "/" << dev.device << "/" << a.T_ << "/"
        << a.B << "/" << a.H << "/" << loop.uw << "/" << ROWS;
    run_step_loop(key.str(), sizeof(BwdArgs<T>), &load_backward_args<T>,
                  &backward_steps<T, Cell, ROWS>, &loop, scratch_args, stream);
  });
}

template <typename T, class Cell>
void backward_impl(const BackwardParams<T>& p, cudaStream_t stream) {
  const index_t B = p.B, H = p.H, GH = Cell::G * H, Tn = p.T, I = p.I, BH = B * H, TB = Tn * B;
  const WorkspaceLayout ws = workspace_layout(Cell{}, Tn, B, H);
  const T* W = p.workspace;
  PersistentPlan plan;
  const bool persistent = Tn > 0 && BH > 0 && choose_persistent<T>(p, true, &plan);

  T *xd = nullptr, *dg_in = nullptr, *dg_rec = nullptr, *rt = nullptr, *dh = nullptr;
  T *carry = nullptr, *dc = nullptr, *d_rhd = nullptr, *hd_all = nullptr, *rhd_all = nullptr;
  T *zeros = nullptr, *ones = nullptr;
  char* args_dev = nullptr;
  auto carve = [&](Carver& cv) {
    xd = cv.take<T>(p.dropout_mask || p.mask ? TB * I : 0);
    dg_in = cv.take<T>(TB * GH);
    dg_rec = Cell::separate_rec ? cv.take<T>(TB * GH) : nullptr;
    rt = cv.take<T>(persistent ? 0 : GH * H);
    dh = cv.take<T>(BH);
    carry = cv.take<T>(BH);
    dc = Cell::cell_state ? cv.take<T>(BH) : nullptr;
    d_rhd = Cell::second_product ? cv.take<T>(BH) : nullptr;
    hd_all = cv.take<T>(TB * H);
    rhd_all = Cell::second_product ? cv.take<T>(TB * H) : nullptr;
    zeros = cv.take<T>(H);
    ones = cv.take<T>(H);
    args_dev = cv.take<char>((index_t)sizeof(BwdArgs<T>));
  };
  Carver sizing;
  carve(sizing);
  DeviceScratch scratch(sizing.size(), stream);
  Carver carver(scratch.data());
  carve(carver);
  if constexpr (!Cell::separate_rec) dg_rec = dg_in;

  init_grads_kernel<T><<<blocks_for(std::max(BH, H)), kThreads, 0, stream>>>(
      BH, H, p.d_h_last, p.d_c_last, dh, carry, dc, zeros, ones);
  FASTRNN_CUDA_CHECK_LAUNCH();

  if (Tn > 0 && BH > 0) {
    BwdArgs<T> a;
    a.Rt = rt;
    a.ws_states = W + ws.states;
    a.ws_gates = W + ws.gates;
    if (Cell::cell_state) {
      a.ws_cell = W + ws.cell;
      a.ws_act_cell = W + ws.act_cell;
    }
    if (Cell::saves_rh) a.ws_rh = W + ws.rh;
    a.h0 = p.h0;
    a.c0 = p.c0;
    a.d_outputs = p.d_outputs;
    a.mask = p.mask;
    a.rmask = p.recurrent_dropout_mask;
    a.dg_in = dg_in;
    a.dg_rec = dg_rec;
    a.dh = dh;
    a.carry = carry;
    a.dc = dc;
    a.d_rhd = d_rhd;
    a.zeros = zeros;
    a.ones = ones;
    a.T_ = Tn;
    a.B = B;
    a.H = H;
    a.go_backwards = p.go_backwards;
    a.act = p.activation;
    a.ract = p.recurrent_activation;
    if (persistent) {
      persistent_backward_steps<T>(Cell::id, a, p.recurrent_kernel, plan, stream);
    } else {
      transpose<T>(p.recurrent_kernel, H, GH, GH, rt, H, stream);  // rt (GH, H)
      standard_backward_steps<T, Cell>(a, args_dev, stream);
    }
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
