// Device code that the standard step kernels (rnn_forward.cu, rnn_backward.cu) and the
// persistent kernels (rnn_persistent.cu) share: the argument structs of one call, the row
// builders that turn (step, batch row) into cells.h's ForwardRow / BackwardRow, the
// per-unit epilogues (the cells.h steps, one per kind of product), and block_product, the
// recurrent product of one block.
//
// Dimension legend: T steps, B batch, H units, G gates, GC gates of the first recurrent
// product, GH = G*H; s processing step, t = input time of step s.
//
// block_product: one block of kStepThreads threads computes, for ROWS (4 or 16) batch rows
// and `uw` units (a power of two <= 32), out[r][g][u] = sum_k A[r][k] * W(g, k, u).
//   * the rows of A are staged in shared memory in chunks of stage_chunk<T, ROWS>() k values,
//     as hs[k][r] (16-byte vectors of 4 rows);
//   * each weight a thread loads serves all ROWS rows (16 rows: 4x fewer weight reads than 4);
//   * lane = u + uw * kl: the uw lanes of one k-lane read uw consecutive weights of one
//     row k (coalesced in global memory, conflict-free in shared memory), and the warps
//     and k-lanes split the reduction: k = ks + i * (8 * 32/uw), ks = warp * 32/uw + kl;
//   * each thread accumulates its (row, gate) values over its k in registers, the k-lanes
//     of a warp are summed with xor shuffles and the 8 warps through shared memory, always
//     in the same order (deterministic, no atomics);
//   * then epi(r, u, sums) runs once for every (row, unit) of the tile (output o = r * uw + u in
//     thread o % kStepThreads, the same thread at every call with the same ROWS and uw).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "fastrnn/cells.h"
#include "fastrnn/params.h"
#include "rnn_cuda.h"

namespace fastrnn::cuda::detail {

constexpr int kStepThreads = 256;
constexpr int kStepWarps = kStepThreads / 32;

// Batch rows of a product tile: 4, or 16 for larger batches (each weight read serves more
// rows; the standard path's grid has fewer row tiles, the persistent path fewer passes).
constexpr int kSmallRows = 4, kLargeRows = 16;
inline int rows_for_batch(index_t B) { return B > 8 ? kLargeRows : kSmallRows; }

// k values staged per pass: 32 KB of hs for either dtype and tile.
template <typename T, int ROWS>
__host__ __device__ constexpr int stage_chunk() {
  return (sizeof(T) == 4 ? 8192 : 4096) / ROWS;
}

// Shared-memory bytes of block_product's buffers: hs (ROWS x kc) then part
// (kStepWarps x ROWS x gates x uw), each 16-byte aligned.
__host__ __device__ constexpr std::size_t align16(std::size_t bytes) {
  return (bytes + 15) / 16 * 16;
}
template <typename T, int ROWS>
std::size_t product_smem(index_t K, int gates, int uw) {
  const index_t kc = K < stage_chunk<T, ROWS>() ? K : stage_chunk<T, ROWS>();
  return align16(sizeof(T) * ROWS * (std::size_t)kc) +
         align16(sizeof(T) * kStepWarps * ROWS * (std::size_t)gates * uw);
}
inline std::size_t product_smem_for(std::size_t elem, index_t B, index_t K, int gates, int uw) {
  const bool large = rows_for_batch(B) == kLargeRows;
  if (elem == 4)
    return large ? product_smem<float, kLargeRows>(K, gates, uw)
                 : product_smem<float, kSmallRows>(K, gates, uw);
  return large ? product_smem<double, kLargeRows>(K, gates, uw)
               : product_smem<double, kSmallRows>(K, gates, uw);
}

// Calls f(std::integral_constant<int, ROWS>{}) with the tile height for batch B.
template <typename F>
decltype(auto) with_rows(index_t B, F&& f) {
  if (rows_for_batch(B) == kLargeRows) return f(std::integral_constant<int, kLargeRows>{});
  return f(std::integral_constant<int, kSmallRows>{});
}

// ---- the arguments of one call -------------------------------------------------------
// Forward: everything the step kernels read or write, (B, H) unless noted; null stands for
// "none" (the row builder substitutes zeros, ones or a dummy row).
template <typename T>
struct FwdArgs {
  const T* R = nullptr;                // recurrent_kernel (H, GH) (standard path)
  const T* xp = nullptr;               // (T, B, GH) input projections, input time order
  const T* b_in = nullptr;             // (GH) input bias (zeros when absent)
  const T* b_rec = nullptr;            // (GH) recurrent bias of GRU reset_after (zeros otherwise)
  const std::uint8_t* mask = nullptr;  // (T, B) input time order, or null
  const T* rmask = nullptr;            // recurrent dropout mask, or null
  T* h[2] = {nullptr, nullptr};        // state ping-pong: h[s & 1] before step s
  T* hd[2] = {nullptr, nullptr};       // h * rmask ping-pong, or null (no recurrent dropout)
  T* c[2] = {nullptr, nullptr};        // cell state ping-pong (LSTM), or null
  T* outputs = nullptr;                // (T, B, H) processing order
  T* ws_states = nullptr;              // workspace blocks (training), or null (inference)
  T* ws_gates = nullptr;               // (T, B, GH)
  T* ws_cell = nullptr;
  T* ws_act_cell = nullptr;
  T* ws_rh = nullptr;
  T* gate_rows = nullptr;    // (B, GH) inference: the gates of the current step
  T* rhd = nullptr;          // GRU reset_after=False: r * hd_prev
  T* dummy = nullptr;        // kDummyRows x (B, H): written, never read
  const T* zeros = nullptr;  // (GH)
  const T* ones = nullptr;   // (H)
  index_t T_ = 0, B = 0, H = 0;
  bool go_backwards = false;
  Activation act = Activation::Tanh, ract = Activation::Sigmoid;
};

constexpr int kDummyRows = 7;

template <typename Args>
__device__ __forceinline__ index_t time_of(const Args& P, index_t s) {
  return P.go_backwards ? P.T_ - 1 - s : s;
}

template <typename T>
__device__ __forceinline__ const T* fwd_operand(const FwdArgs<T>& P, index_t s) {
  const int cur = (int)(s & 1);
  return P.hd[cur] ? P.hd[cur] : P.h[cur];
}

template <class Cell, typename T>
__device__ __forceinline__ ForwardRow<T> fwd_row(const FwdArgs<T>& P, index_t s, index_t b) {
  const index_t H = P.H, GH = Cell::G * H, BH = P.B * H, e = b * H;
  const index_t t = time_of(P, s);
  const int cur = (int)(s & 1);
  auto dummy = [&](int k) { return P.dummy + (index_t)k * BH + e; };
  ForwardRow<T> r;
  r.H = H;
  r.xp = P.xp + (t * P.B + b) * GH;
  r.b_in = P.b_in;
  r.b_rec = P.b_rec;
  r.h_prev = P.h[cur] + e;
  r.hd_prev = fwd_operand(P, s) + e;
  r.c_prev = P.c[cur] ? P.c[cur] + e : P.zeros;
  r.rmask = P.rmask ? P.rmask + e : P.ones;
  r.out_prev = s > 0 ? P.outputs + (s - 1) * BH + e : P.zeros;
  r.gates = P.ws_gates ? P.ws_gates + s * P.B * GH + b * GH : P.gate_rows + b * GH;
  r.out = P.outputs + s * BH + e;
  r.h_next = P.h[1 - cur] + e;
  r.hd_next = P.hd[1 - cur] ? P.hd[1 - cur] + e : dummy(0);
  r.c_next = P.c[1 - cur] ? P.c[1 - cur] + e : dummy(1);
  r.ws_state = P.ws_states ? P.ws_states + s * BH + e : dummy(2);
  r.ws_cell = P.ws_cell ? P.ws_cell + s * BH + e : dummy(3);
  r.ws_act_cell = P.ws_act_cell ? P.ws_act_cell + s * BH + e : dummy(4);
  r.ws_rh = P.ws_rh ? P.ws_rh + s * BH + e : dummy(5);
  r.rhd = P.rhd ? P.rhd + e : dummy(6);
  return r;
}

template <typename Args>
__device__ __forceinline__ bool masked(const Args& P, index_t s, index_t b) {
  return P.mask && !P.mask[time_of(P, s) * P.B + b];
}

// The first product's epilogue: the cell's step for unit j of row b (acc[g]: gate g's
// recurrent product). GRU reset_after=False stops at r * hd_prev (its second product follows).
template <class Cell, typename T>
__device__ __forceinline__ void fwd_main_unit(const FwdArgs<T>& P, index_t s, index_t b, index_t j,
                                              const T* acc) {
  const ForwardRow<T> r = fwd_row<Cell>(P, s, b);
  if (!Cell::second_product && masked(P, s, b))
    carry_unit(Cell{}, r, j);
  else
    forward_unit(Cell{}, r, j, acc, 1, P.act, P.ract);
}

// GRU reset_after=False's second product's epilogue: acc = ((r * hd_prev) @ R_g)_j.
template <class Cell, typename T>
__device__ __forceinline__ void fwd_second_unit(const FwdArgs<T>& P, index_t s, index_t b,
                                                index_t j, T acc) {
  if constexpr (Cell::second_product) {
    const ForwardRow<T> r = fwd_row<Cell>(P, s, b);
    if (masked(P, s, b))
      carry_unit(Cell{}, r, j);
    else
      forward_unit_second(Cell{}, r, j, acc, P.act);
  }
}

// Backward: the saved workspace blocks, the upstream gradients and the running gradients.
template <typename T>
struct BwdArgs {
  const T* Rt = nullptr;         // recurrent_kernel transposed (GH, H) (standard path)
  const T* ws_states = nullptr;  // workspace blocks (see workspace.h)
  const T* ws_gates = nullptr;
  const T* ws_cell = nullptr;
  const T* ws_act_cell = nullptr;
  const T* ws_rh = nullptr;
  const T* h0 = nullptr;  // (B, H) or null
  const T* c0 = nullptr;  // (B, H) or null
  const T* d_outputs = nullptr;
  const std::uint8_t* mask = nullptr;
  const T* rmask = nullptr;
  T* dg_in = nullptr;   // (T, B, GH) input time order
  T* dg_rec = nullptr;  // (T, B, GH): == dg_in unless Cell::separate_rec
  T* dh = nullptr;
  T* carry = nullptr;
  T* dc = nullptr;           // LSTM, else null
  T* d_rhd = nullptr;        // GRU reset_after=False, else null
  const T* zeros = nullptr;  // (H)
  const T* ones = nullptr;   // (H)
  index_t T_ = 0, B = 0, H = 0;
  bool go_backwards = false;
  Activation act = Activation::Tanh, ract = Activation::Sigmoid;
};

template <class Cell, typename T>
__device__ __forceinline__ BackwardRow<T> bwd_row(const BwdArgs<T>& P, index_t s, index_t b) {
  const index_t H = P.H, GH = Cell::G * H, BH = P.B * H, e = b * H;
  const index_t t = time_of(P, s);
  const T* hp = s > 0 ? P.ws_states + (s - 1) * BH : P.h0;
  const T* cp = nullptr;
  if constexpr (Cell::cell_state) cp = s > 0 ? P.ws_cell + (s - 1) * BH : P.c0;
  BackwardRow<T> r;
  r.H = H;
  r.gates = P.ws_gates + s * P.B * GH + b * GH;
  r.h_prev = hp ? hp + e : P.zeros;
  r.c_prev = cp ? cp + e : P.zeros;
  r.act_cell = Cell::cell_state ? P.ws_act_cell + s * BH + e : P.zeros;
  r.rh = Cell::saves_rh ? P.ws_rh + s * BH + e : P.zeros;
  r.dout = P.d_outputs ? P.d_outputs + s * BH + e : P.zeros;
  r.rmask = P.rmask ? P.rmask + e : P.ones;
  r.carry = P.carry + e;
  r.dh = P.dh + e;
  r.dc = P.dc ? P.dc + e : nullptr;
  r.dgi = P.dg_in + (t * P.B + b) * GH;
  r.dgr = P.dg_rec + (t * P.B + b) * GH;
  r.d_rhd = P.d_rhd ? P.d_rhd + e : nullptr;
  return r;
}

// (a) the cell's backward step of unit j, row b, step s: gate gradients from the saved values.
template <class Cell, typename T>
__device__ __forceinline__ void bwd_point_unit(const BwdArgs<T>& P, index_t s, index_t b,
                                               index_t j) {
  const BackwardRow<T> r = bwd_row<Cell>(P, s, b);
  if (masked(P, s, b))
    backward_carry_unit(Cell{}, r, j, s > 0);
  else
    backward_unit(Cell{}, r, j, P.act, P.ract);
}

// (r) GRU reset_after=False: drh = (dg_pre @ R_g^T)_j, then the reset gate's gradient.
template <class Cell, typename T>
__device__ __forceinline__ void bwd_reset_unit(const BwdArgs<T>& P, index_t s, index_t b, index_t j,
                                               T drh) {
  if constexpr (Cell::second_product)
    reset_unit(Cell{}, bwd_row<Cell>(P, s, b), j, drh, masked(P, s, b), P.ract);
}

// (b) dh_prev += (dG_rec @ R^T)_j * rmask_j (a masked row passed its gradients through), then
// (a) of step s - 1 for the same unit and row: it reads only this unit's values, so it needs
// no other thread's result and saves a launch per step.
template <class Cell, typename T>
__device__ __forceinline__ void bwd_rec_unit(const BwdArgs<T>& P, index_t s, index_t b, index_t j,
                                             T acc) {
  if (!masked(P, s, b)) accumulate_dh(Cell{}, bwd_row<Cell>(P, s, b), j, acc);
  if (s > 0) bwd_point_unit<Cell>(P, s - 1, b, j);
}

// ---- the block's recurrent product ----------------------------------------------------
// a[0..ROWS) = p[0..ROWS) (p 16-byte aligned) as 16-byte vector loads.
template <int ROWS>
__device__ __forceinline__ void load_rows(const float* p, float (&a)[ROWS]) {
#pragma unroll
  for (int q = 0; q < ROWS / 4; ++q) {
    const float4 v = reinterpret_cast<const float4*>(p)[q];
    a[4 * q] = v.x;
    a[4 * q + 1] = v.y;
    a[4 * q + 2] = v.z;
    a[4 * q + 3] = v.w;
  }
}

template <int ROWS>
__device__ __forceinline__ void load_rows(const double* p, double (&a)[ROWS]) {
#pragma unroll
  for (int q = 0; q < ROWS / 2; ++q) {
    const double2 v = reinterpret_cast<const double2*>(p)[q];
    a[2 * q] = v.x;
    a[2 * q + 1] = v.y;
  }
}

// For the `rows` (<= ROWS) rows of A (further rows count as zeros), unit u < uw and gate
// g < GCP:  out = sum_{k < K} A[r * lda + k] * W[g * gstride + k * kstride + min(u, umax)],
// then epi(r, u, out) (out: the GCP sums of row r, unit u) for every r < ROWS, u < uw (the
// caller skips rows >= B and units >= H). A is read with __ldcg (from L2: it may have been
// written by other blocks of this kernel before a grid barrier); W from global memory
// (kGlobalW, read-only for the kernel's lifetime) or shared memory. Every thread of the block
// must call it (it synchronizes the block); K >= 1.
// hs: ROWS * min(K, stage_chunk) elements, 16-byte aligned; part: kStepWarps*ROWS*GCP*uw.
template <typename T, int ROWS, int GCP, bool kGlobalW, class Epi>
__device__ __forceinline__ void block_product(const T* __restrict__ A, index_t lda, int rows,
                                              index_t K, const T* W, index_t gstride,
                                              index_t kstride, int uw, int umax, T* __restrict__ hs,
                                              T* __restrict__ part, Epi&& epi) {
  constexpr int kc = stage_chunk<T, ROWS>();
  const int tid = (int)threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int u = lane & (uw - 1), kl = lane / uw;
  const int kpw = 32 / uw;                 // k-lanes per warp
  const int ks = warp * kpw + kl;          // this thread's first k
  const int nks = kStepWarps * kpw;        // k stride
  const T* w = W + (u < umax ? u : umax);  // this thread's unit (clamped: extra units ignored)
  T acc[ROWS][GCP];
#pragma unroll
  for (int r = 0; r < ROWS; ++r)
#pragma unroll
    for (int g = 0; g < GCP; ++g) acc[r][g] = T(0);

  for (index_t k0 = 0; k0 < K; k0 += kc) {
    const int n = (int)(K - k0 < (index_t)kc ? K - k0 : (index_t)kc);
    __syncthreads();  // every reader of hs and part (previous chunk or call) is done
    for (int e = tid; e < n * ROWS; e += kStepThreads) {
      const int r = e / n, k = e - r * n;  // coalesced over k
      hs[k * ROWS + r] = r < rows ? __ldcg(A + (index_t)r * lda + k0 + k) : T(0);
    }
    __syncthreads();
    const T* wk = w + k0 * kstride;
    for (int k = ks; k < n; k += nks) {
      T a[ROWS];
      load_rows<ROWS>(hs + k * ROWS, a);
      const T* wp = wk + (index_t)k * kstride;
#pragma unroll
      for (int g = 0; g < GCP; ++g) {
        const T wv = kGlobalW ? __ldg(wp + g * gstride) : wp[g * gstride];
#pragma unroll
        for (int r = 0; r < ROWS; ++r) acc[r][g] += a[r] * wv;
      }
    }
  }
  // The k-lanes of this warp (lanes u, u + uw, ...): a butterfly over the kl bits, so every
  // lane ends with the same, fully ordered sum.
  for (int off = uw; off < 32; off <<= 1)
#pragma unroll
    for (int r = 0; r < ROWS; ++r)
#pragma unroll
      for (int g = 0; g < GCP; ++g) acc[r][g] += __shfl_xor_sync(0xffffffffu, acc[r][g], off);
  if (kl == 0)
#pragma unroll
    for (int r = 0; r < ROWS; ++r)
#pragma unroll
      for (int g = 0; g < GCP; ++g) part[((warp * ROWS + r) * GCP + g) * uw + u] = acc[r][g];
  __syncthreads();
  for (int o = tid; o < ROWS * uw; o += kStepThreads) {
    const int r = o / uw, uu = o - r * uw;
    T out[GCP];
#pragma unroll
    for (int g = 0; g < GCP; ++g) {
      T sum = T(0);
      for (int wi = 0; wi < kStepWarps; ++wi) sum += part[((wi * ROWS + r) * GCP + g) * uw + uu];
      out[g] = sum;
    }
    epi(r, uu, out);
  }
}

// The dynamic shared memory of a kernel, 16-byte aligned.
#define FASTRNN_DYNAMIC_SMEM(name) extern __shared__ __align__(16) unsigned char name[]

template <typename T, int ROWS>
__device__ __forceinline__ void carve_product_smem(unsigned char* base, index_t K, T*& hs,
                                                   T*& part) {
  constexpr int kc = stage_chunk<T, ROWS>();
  const index_t n = K < kc ? K : kc;
  hs = reinterpret_cast<T*>(base);
  part = reinterpret_cast<T*>(base + align16(sizeof(T) * ROWS * (std::size_t)n));
}

// Copies the argument struct into device memory (the step kernels read it there).
template <typename Args>
__global__ void load_args_kernel(const Args a, Args* __restrict__ dst) {
  if (threadIdx.x == 0 && blockIdx.x == 0) *dst = a;
}

// Units per block of the standard step kernels: the largest power of two in [8, 32] that
// still gives every SM a block (at least 1, at most the next power of two >= H).
inline int standard_units(index_t H, index_t B, int sms) {
  int cap = 1;
  while (cap < 32 && cap < H) cap <<= 1;
  const index_t row_tiles = (B + rows_for_batch(B) - 1) / rows_for_batch(B);
  int uw = cap;
  while (uw > 8 && ((H + uw - 1) / uw) * row_tiles < sms) uw >>= 1;
  return uw;
}

// ---- the persistent path (rnn_persistent.cu) -------------------------------------------
// Whether this call takes the persistent path (plan filled in), from FASTRNN_CUDA_PATH and
// the plan; throws std::invalid_argument when the persistent path is forced but cannot run.
template <typename T>
bool choose_persistent(const CellConfig& c, bool backward, PersistentPlan* plan);

// The whole step loop as one cooperative launch (the args as the standard path's).
template <typename T>
void persistent_forward_steps(CellId id, const FwdArgs<T>& a, const T* R,
                              const PersistentPlan& plan, cudaStream_t stream);
template <typename T>
void persistent_backward_steps(CellId id, const BwdArgs<T>& a, const T* R,
                               const PersistentPlan& plan, cudaStream_t stream);

}  // namespace fastrnn::cuda::detail
