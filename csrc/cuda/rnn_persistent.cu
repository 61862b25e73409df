// The persistent small-batch path: the whole step loop of a forward (or a backward) as one
// cooperative kernel, with the recurrent weights resident in shared memory across the SMs.
//
// Dimension legend: T steps, B batch, H units, G gates, GC gates of the first product,
// GH = G*H; uw units per block.
//
// Block k owns units [k*uw, (k+1)*uw) of every gate and every batch row. At its start it
// copies its slice of the recurrent weights into shared memory, once for all steps:
//   forward   Rs[(g*H + k)*uw + u] = R[k][g*H + j0 + u]       (g < G, k < H)
//   backward  Rs[c*uw + u]         = R[j0 + u][c]  = R^T[c][j0 + u]   (c < G*H)
// Then per step it stages the rows of the step's operand (hd_prev, or the gate gradients)
// into shared memory, computes its units' recurrent products with block_product (the same
// routine as the standard path, reading the weights from shared memory), runs the cell's
// step for its units (the same epilogues as the standard path, hence cells.h), and meets the
// other blocks at one grid barrier (cooperative_groups grid.sync(), a release/acquire at
// device scope: the next step's reads of other blocks' states come after it, through L2).
// GRU reset_after=False needs all reset gates before its second product: a second barrier.
// The launch is cooperative (cudaLaunchCooperativeKernel), which fails rather than run a grid
// whose blocks are not all resident; the plan checks residency first (occupancy x SMs).
#include <cooperative_groups.h>

#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>

#include "cuda_check.h"
#include "fastrnn/cells.h"
#include "rnn_cuda.h"
#include "step_common.cuh"

namespace fastrnn::cuda {
namespace detail {
namespace {

namespace cg = cooperative_groups;

template <class Cell, typename T>
__host__ __device__ std::size_t slice_bytes(index_t H, int uw) {
  return align16(sizeof(T) * (std::size_t)Cell::G * (std::size_t)H * (std::size_t)uw);
}

// Shared memory of the persistent kernels: the weight slice, then block_product's buffers
// for the longest reduction (forward H; backward GC*H) and the widest product.
template <class Cell, typename T, int ROWS>
std::size_t persistent_smem(index_t H, int uw, bool backward) {
  return slice_bytes<Cell, T>(H, uw) + (backward ? product_smem<T, ROWS>(Cell::GC * H, 1, uw)
                                                 : product_smem<T, ROWS>(H, Cell::GC, uw));
}

template <typename T, class Cell, int ROWS>
__global__ void __launch_bounds__(kStepThreads)
    persistent_forward_kernel(const __grid_constant__ FwdArgs<T> P, const T* __restrict__ R,
                              int uw) {
  FASTRNN_DYNAMIC_SMEM(smem);
  cg::grid_group grid = cg::this_grid();
  constexpr int G = Cell::G, GC = Cell::GC;
  const index_t H = P.H, GH = G * H, B = P.B;
  const index_t j0 = (index_t)blockIdx.x * uw;
  const int umax = (int)min((index_t)uw, H - j0) - 1;
  const int tid = (int)threadIdx.x;
  T* Rs = reinterpret_cast<T*>(smem);
  T *hs, *part;
  carve_product_smem<T, ROWS>(smem + slice_bytes<Cell, T>(H, uw), H, hs, part);
  for (index_t e = tid; e < (index_t)G * H * uw; e += kStepThreads) {
    const index_t gk = e / uw, g = gk / H, k = gk - g * H;
    const int u = (int)(e - gk * uw);
    Rs[e] = u <= umax ? R[k * GH + g * H + j0 + u] : T(0);
  }
  // block_product begins with a block barrier: Rs is complete before anyone reads it.
  for (index_t s = 0; s < P.T_; ++s) {
    for (index_t b0 = 0; b0 < B; b0 += ROWS) {
      const int rows = (int)min((index_t)ROWS, B - b0);
      block_product<T, ROWS, GC, false>(fwd_operand(P, s) + b0 * H, H, rows, H, Rs, H * uw, uw, uw,
                                        umax, hs, part, [&](int r, int u, const T* acc) {
                                          const index_t b = b0 + r, j = j0 + u;
                                          if (b < B && j < H) fwd_main_unit<Cell>(P, s, b, j, acc);
                                        });
    }
    if constexpr (Cell::second_product) {
      grid.sync();  // every r * hd_prev of this step is written
      for (index_t b0 = 0; b0 < B; b0 += ROWS) {
        const int rows = (int)min((index_t)ROWS, B - b0);
        block_product<T, ROWS, 1, false>(P.rhd + b0 * H, H, rows, H, Rs + 2 * H * uw, 0, uw, uw,
                                         umax, hs, part, [&](int r, int u, const T* acc) {
                                           const index_t b = b0 + r, j = j0 + u;
                                           if (b < B && j < H)
                                             fwd_second_unit<Cell>(P, s, b, j, acc[0]);
                                         });
      }
    }
    grid.sync();  // every state of step s is written before step s + 1 reads it
  }
}

template <typename T, class Cell, int ROWS>
__global__ void __launch_bounds__(kStepThreads)
    persistent_backward_kernel(const __grid_constant__ BwdArgs<T> P, const T* __restrict__ R,
                               int uw) {
  FASTRNN_DYNAMIC_SMEM(smem);
  cg::grid_group grid = cg::this_grid();
  constexpr int G = Cell::G, GC = Cell::GC;
  const index_t H = P.H, GH = G * H, B = P.B;
  const index_t j0 = (index_t)blockIdx.x * uw;
  const int umax = (int)min((index_t)uw, H - j0) - 1;
  const int tid = (int)threadIdx.x;
  T* Rs = reinterpret_cast<T*>(smem);
  T *hs, *part;
  carve_product_smem<T, ROWS>(smem + slice_bytes<Cell, T>(H, uw), GC * H, hs, part);
  // c fastest: coalesced reads of R's rows (the shared-memory writes are strided, once).
  for (index_t e = tid; e < GH * uw; e += kStepThreads) {
    const index_t u = e / GH, c = e - u * GH;
    Rs[c * uw + u] = u <= umax ? R[(j0 + u) * GH + c] : T(0);
  }
  // (a) of the last step for this block's units.
  for (index_t e = tid; e < B * uw; e += kStepThreads) {
    const index_t b = e / uw;
    const int u = (int)(e - b * uw);
    if (u <= umax) bwd_point_unit<Cell>(P, P.T_ - 1, b, j0 + u);
  }
  grid.sync();  // every gate gradient of the last step is written (and Rs complete)
  for (index_t s = P.T_ - 1; s >= 0; --s) {
    const index_t t = time_of(P, s);
    if constexpr (Cell::second_product) {
      for (index_t b0 = 0; b0 < B; b0 += ROWS) {
        const int rows = (int)min((index_t)ROWS, B - b0);
        block_product<T, ROWS, 1, false>(P.dg_in + (t * B + b0) * GH + 2 * H, GH, rows, H,
                                         Rs + 2 * H * uw, 0, uw, uw, umax, hs, part,
                                         [&](int r, int u, const T* acc) {
                                           const index_t b = b0 + r, j = j0 + u;
                                           if (b < B && j < H)
                                             bwd_reset_unit<Cell>(P, s, b, j, acc[0]);
                                         });
      }
      grid.sync();  // every reset-gate gradient of step s is written
    }
    for (index_t b0 = 0; b0 < B; b0 += ROWS) {
      const int rows = (int)min((index_t)ROWS, B - b0);
      block_product<T, ROWS, 1, false>(P.dg_rec + (t * B + b0) * GH, GH, rows, GC * H, Rs, 0, uw,
                                       uw, umax, hs, part, [&](int r, int u, const T* acc) {
                                         const index_t b = b0 + r, j = j0 + u;
                                         if (b < B && j < H) bwd_rec_unit<Cell>(P, s, b, j, acc[0]);
                                       });
    }
    grid.sync();  // the gate gradients of step s - 1 are written before they are read
  }
}

template <typename K>
void allow_smem(K kernel, std::size_t bytes) {
  if (bytes > 48 * 1024)
    FASTRNN_CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

template <typename T, class Cell, int ROWS>
PersistentPlan plan_for(const CellConfig& c, bool backward) {
  const DeviceInfo& dev = current_device_info();
  PersistentPlan plan;
  int coop = 0;
  FASTRNN_CUDA_CHECK(cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, dev.device));
  if (!coop) {
    plan.why_not = "the device does not support cooperative launches";
    return plan;
  }
  // The fewest units per block (the most blocks) that leaves at most one block per SM.
  int uw = 1;
  while (uw < 32 && (c.H + uw - 1) / uw > dev.sms) uw <<= 1;
  plan.units = uw;
  plan.blocks = (int)((c.H + uw - 1) / uw);
  plan.smem = persistent_smem<Cell, T, ROWS>(c.H, uw, backward);
  std::ostringstream why;
  if (plan.blocks > dev.sms) {
    why << "H=" << c.H << " needs " << plan.blocks << " blocks of 32 units, more than the "
        << dev.sms << " SMs";
  } else if (plan.smem > dev.smem_optin) {
    why << "the recurrent weights need " << plan.smem / 1024 << " KB of shared memory per block ("
        << plan.blocks << " blocks of " << uw << " units), the device allows "
        << dev.smem_optin / 1024 << " KB";
  } else {
    const void* kernel =
        backward ? reinterpret_cast<const void*>(persistent_backward_kernel<T, Cell, ROWS>)
                 : reinterpret_cast<const void*>(persistent_forward_kernel<T, Cell, ROWS>);
    if (backward)
      allow_smem(persistent_backward_kernel<T, Cell, ROWS>, plan.smem);
    else
      allow_smem(persistent_forward_kernel<T, Cell, ROWS>, plan.smem);
    int per_sm = 0;
    FASTRNN_CUDA_CHECK(
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kStepThreads, plan.smem));
    if ((index_t)per_sm * dev.sms < plan.blocks)
      why << plan.blocks << " blocks of " << plan.smem / 1024 << " KB cannot all be resident ("
          << per_sm << " per SM x " << dev.sms << " SMs)";
  }
  plan.why_not = why.str();
  plan.fits = plan.why_not.empty();
  return plan;
}

}  // namespace

template <typename T>
bool choose_persistent(const CellConfig& c, bool backward, PersistentPlan* plan) {
  const PathChoice choice = path_from_env();
  if (choice == PathChoice::Standard) return false;
  if (choice == PathChoice::Auto && c.B > kPersistentAutoMaxBatch) return false;
  *plan = persistent_plan<T>(c, backward);
  if (plan->fits) return true;
  if (choice == PathChoice::Persistent)
    throw std::invalid_argument("FASTRNN_CUDA_PATH=persistent, but the persistent path cannot " +
                                std::string("run this call: ") + plan->why_not);
  return false;
}

template <typename T>
void persistent_forward_steps(CellId id, const FwdArgs<T>& a, const T* R,
                              const PersistentPlan& plan, cudaStream_t stream) {
  with_cell(id, [&](auto cell) {
    with_rows(a.B, [&](auto rows_tag) {
      using Cell = decltype(cell);
      constexpr int ROWS = decltype(rows_tag)::value;
      FwdArgs<T> args = a;
      const T* r = R;
      int uw = plan.units;
      void* params[] = {&args, &r, &uw};
      allow_smem(persistent_forward_kernel<T, Cell, ROWS>, plan.smem);
      FASTRNN_CUDA_CHECK(cudaLaunchCooperativeKernel(
          reinterpret_cast<const void*>(persistent_forward_kernel<T, Cell, ROWS>),
          dim3(plan.blocks), dim3(kStepThreads), params, plan.smem, stream));
    });
  });
}

template <typename T>
void persistent_backward_steps(CellId id, const BwdArgs<T>& a, const T* R,
                               const PersistentPlan& plan, cudaStream_t stream) {
  with_cell(id, [&](auto cell) {
    with_rows(a.B, [&](auto rows_tag) {
      using Cell = decltype(cell);
      constexpr int ROWS = decltype(rows_tag)::value;
      BwdArgs<T> args = a;
      const T* r = R;
      int uw = plan.units;
      void* params[] = {&args, &r, &uw};
      allow_smem(persistent_backward_kernel<T, Cell, ROWS>, plan.smem);
      FASTRNN_CUDA_CHECK(cudaLaunchCooperativeKernel(
          reinterpret_cast<const void*>(persistent_backward_kernel<T, Cell, ROWS>),
          dim3(plan.blocks), dim3(kStepThreads), params, plan.smem, stream));
    });
  });
}

template bool choose_persistent<float>(const CellConfig&, bool, PersistentPlan*);
template bool choose_persistent<double>(const CellConfig&, bool, PersistentPlan*);
template void persistent_forward_steps<float>(CellId, const FwdArgs<float>&, const float*,
                                              const PersistentPlan&, cudaStream_t);
template void persistent_forward_steps<double>(CellId, const FwdArgs<double>&, const double*,
                                               const PersistentPlan&, cudaStream_t);
template void persistent_backward_steps<float>(CellId, const BwdArgs<float>&, const float*,
                                               const PersistentPlan&, cudaStream_t);
template void persistent_backward_steps<double>(CellId, const BwdArgs<double>&, const double*,
                                                const PersistentPlan&, cudaStream_t);

}  // namespace detail

template <typename T>
PersistentPlan persistent_plan(const CellConfig& c, bool backward) {
  return with_cell(c.id, [&](auto cell) {
    return detail::with_rows(c.B, [&](auto rows_tag) {
      using Cell = decltype(cell);
      constexpr int ROWS = decltype(rows_tag)::value;
      return detail::plan_for<T, Cell, ROWS>(c, backward);
    });
  });
}

template <typename T>
std::string describe_plan(const CellConfig& c, bool backward) {
  std::ostringstream os;
  PersistentPlan plan;
  bool persistent = false;
  try {
    persistent = c.T > 0 && c.B > 0 && detail::choose_persistent<T>(c, backward, &plan);
  } catch (const std::invalid_argument& e) {
    return std::string("error: ") + e.what();
  }
  if (persistent) {
    os << "persistent: " << plan.blocks << " blocks x " << plan.units << " units, "
       << plan.smem / 1024 << " KB shared memory per block, one cooperative launch";
    return os.str();
  }
  const DeviceInfo& dev = current_device_info();
  const int uw = detail::standard_units(c.H, c.B, dev.sms);
  os << "standard: " << (c.H + uw - 1) / uw << " x "
     << (c.B + detail::rows_for_batch(c.B) - 1) / detail::rows_for_batch(c.B) << " blocks x " << uw
     << " units x " << detail::rows_for_batch(c.B) << " rows per step, "
     << (graphs_from_env() ? "CUDA graph" : "direct launches");
  if (path_from_env() == PathChoice::Auto) {
    if (c.B > kPersistentAutoMaxBatch)
      os << " (batch " << c.B << " > " << kPersistentAutoMaxBatch << " for the persistent path)";
    else if (!plan.why_not.empty())
      os << " (persistent path: " << plan.why_not << ")";
  }
  return os.str();
}

template PersistentPlan persistent_plan<float>(const CellConfig&, bool);
template PersistentPlan persistent_plan<double>(const CellConfig&, bool);
template std::string describe_plan<float>(const CellConfig&, bool);
template std::string describe_plan<double>(const CellConfig&, bool);

}  // namespace fastrnn::cuda
