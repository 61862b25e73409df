// Standard CUDA forward for SimpleRNN, LSTM and GRU, plus the tiled matrix
// product that both directions use.
//
// Dimension legend: T steps, B batch, I inputs, H units, G gates, GH = G*H.
//
// Structure (as cuDNN's standard path):
//   (1) xp (T*B, GH) = (x * dropout_mask) @ kernel: one tiled product over all steps;
//   (2) per step one kernel: the recurrent product hd_prev @ recurrent_kernel for a
//       unit and a few batch rows, fused with the gate math of cell_math.h (the same
//       functions the CPU loops call), masks, and the workspace writes.
//       GRU reset_after=False needs (r * hd_prev) @ R_h, so it runs two kernels a step.
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

// ---- tiled matrix product -------------------------------------------------
// 64x64 output tile per block of 16x16 threads, 4x4 outputs per thread (strided by 16 so that
// shared-memory reads and global writes are conflict-free and coalesced), K in chunks of 16.
constexpr int kTileM = 64, kTileN = 64, kTileK = 16, kGemmThreads = 256;

template <typename T, bool TA, bool TB>
__global__ void __launch_bounds__(kGemmThreads)
    gemm_kernel(index_t M, index_t N, index_t K, const T* __restrict__ A, index_t lda,
                const T* __restrict__ Bm, index_t ldb, T* __restrict__ C, index_t ldc) {
  __shared__ T As[kTileK][kTileM];
  __shared__ T Bs[kTileK][kTileN];
  const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * 16 + tx;
  // M (up to T*B rows) on grid.x, whose limit is 2^31-1; N (at most G*H or I) on grid.y.
  const index_t m0 = (index_t)blockIdx.x * kTileM, n0 = (index_t)blockIdx.y * kTileN;
  T acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = T(0);

  for (index_t k0 = 0; k0 < K; k0 += kTileK) {
    // Each thread loads 4 elements of each tile; consecutive threads walk the stored
    // matrix's contiguous dimension.
#pragma unroll
    for (int q = 0; q < kTileK * kTileM / kGemmThreads; ++q) {
      const int idx = tid + q * kGemmThreads;
      int kk, mm;
      if (TA) {  // stored (K, M): m contiguous
        kk = idx / kTileM;
        mm = idx % kTileM;
      } else {  // stored (M, K): k contiguous
        mm = idx / kTileK;
        kk = idx % kTileK;
      }
      const index_t m = m0 + mm, k = k0 + kk;
      T v = T(0);
      if (m < M && k < K) v = TA ? A[k * lda + m] : A[m * lda + k];
      As[kk][mm] = v;
    }
#pragma unroll
    for (int q = 0; q < kTileK * kTileN / kGemmThreads; ++q) {
      const int idx = tid + q * kGemmThreads;
      int kk, nn;
      if (TB) {  // stored (N, K): k contiguous
        nn = idx / kTileK;
        kk = idx % kTileK;
      } else {  // stored (K, N): n contiguous
        kk = idx / kTileN;
        nn = idx % kTileN;
      }
      const index_t n = n0 + nn, k = k0 + kk;
      T v = T(0);
      if (n < N && k < K) v = TB ? Bm[n * ldb + k] : Bm[k * ldb + n];
      Bs[kk][nn] = v;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kTileK; ++kk) {
      T a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = As[kk][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) b[j] = Bs[kk][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const index_t m = m0 + ty + 16 * i;
    if (m >= M) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const index_t n = n0 + tx + 16 * j;
      if (n < N) C[m * ldc + n] = acc[i][j];
    }
  }
}

template <typename T>
__global__ void scale_rows_kernel(const T* __restrict__ x, const T* __restrict__ mask, index_t rows,
                                  index_t cols, index_t mask_rows, T* __restrict__ out) {
  const index_t n = rows * cols, mask_size = mask_rows * cols;
  for (index_t e = (index_t)blockIdx.x * blockDim.x + threadIdx.x; e < n;
       e += (index_t)gridDim.x * blockDim.x)
    out[e] = x[e] * mask[e % mask_size];  // row r uses mask row r % mask_rows
}

// ---- forward ------------------------------------------------------------------
// Initial states: h (B,H) = h0 or 0, c = c0 or 0, hd = h * recurrent_dropout_mask.
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

// Everything one processing step s reads and writes; all (B, H) unless noted.
template <typename T>
struct ForwardStep {
  const T* R = nullptr;                // recurrent_kernel (H, GH)
  const T* xps = nullptr;              // (B, GH): xp rows of input time t
  const T* b_in = nullptr;             // (GH) input bias or null
  const T* b_rec = nullptr;            // (GH) recurrent bias (GRU reset_after) or null
  const std::uint8_t* mrow = nullptr;  // (B) mask row of time t, or null
  const T* A = nullptr;                // operand of the product: hd_prev (or h_prev)
  const T* h_prev = nullptr;
  T* h_next = nullptr;
  const T* rmask = nullptr;     // recurrent dropout mask or null
  T* hd_next = nullptr;         // h_next * rmask, or null
  const T* c_prev = nullptr;    // LSTM
  T* c_next = nullptr;          // LSTM
  T* out = nullptr;             // outputs[s]
  const T* out_prev = nullptr;  // outputs[s-1], or null at s == 0
  T* gates = nullptr;           // (B, GH) post-activation gates (workspace or scratch)
  T* ws_state = nullptr;        // workspace slices of step s, or null (inference)
  T* ws_cell = nullptr;
  T* ws_act_cell = nullptr;
  T* ws_rh = nullptr;
  T* rhd = nullptr;  // GRU reset_after=False: r * hd_prev
  index_t B = 0, H = 0;
  Activation act = Activation::Tanh, ract = Activation::Sigmoid;
};

// Writes the new state of unit (b, j); masked rows carry the state and repeat the output.
template <typename T>
__device__ __forceinline__ void finish(const ForwardStep<T>& a, index_t e, bool keep, T h_new) {
  if (keep) {
    h_new = a.h_prev[e];
    a.out[e] = a.out_prev ? a.out_prev[e] : T(0);
  } else {
    a.out[e] = h_new;
  }
  a.h_next[e] = h_new;
  if (a.hd_next) a.hd_next[e] = h_new * a.rmask[e];
  if (a.ws_state) a.ws_state[e] = h_new;
}

template <typename T, Recipe R>
__global__ void __launch_bounds__(32 * kRowGroups) forward_step_kernel(const ForwardStep<T> a) {
  constexpr int G = R == Recipe::LSTM ? 4 : (R == Recipe::SimpleRNN ? 1 : 3);
  constexpr int GC = R == Recipe::GruBefore ? 2 : G;  // gate blocks in the product
  const index_t H = a.H, GH = G * H;
  const index_t j = (index_t)blockIdx.x * 32 + threadIdx.x;
  const index_t b0 = ((index_t)blockIdx.y * kRowGroups + threadIdx.y) * kRows;
  if (j >= H || b0 >= a.B) return;
  const int rows = (int)min((index_t)kRows, a.B - b0);
  T acc[kRows][GC];
  detail::rowdot<T, kRows, GC>(a.A + b0 * H, H, rows, a.R, GH, H, j, H, acc);

#pragma unroll
  for (int m = 0; m < kRows; ++m) {
    if (m >= rows) break;
    const index_t b = b0 + m, e = b * H + j;
    const bool keep = a.mrow && !a.mrow[b];
    const T* x = a.xps + b * GH;
    T* gt = a.gates + b * GH;
    auto pre = [&](int g) {
      return x[g * H + j] + (a.b_in ? a.b_in[g * H + j] : T(0)) + acc[m][g];
    };
    if constexpr (R == Recipe::SimpleRNN) {
      const T h = simple_rnn_unit_forward(a.act, pre(0));
      gt[j] = h;
      finish(a, e, keep, h);
    } else if constexpr (R == Recipe::LSTM) {
      const LstmUnit<T> c =
          lstm_unit_forward(a.act, a.ract, pre(0), pre(1), pre(2), pre(3), a.c_prev[e]);
      gt[j] = c.i;
      gt[H + j] = c.f;
      gt[2 * H + j] = c.g;
      gt[3 * H + j] = c.o;
      const T c_new = keep ? a.c_prev[e] : c.c;
      a.c_next[e] = c_new;
      if (a.ws_cell) {
        a.ws_cell[e] = c_new;
        a.ws_act_cell[e] = c.ac;
      }
      finish(a, e, keep, c.h);
    } else if constexpr (R == Recipe::GruAfter) {
      const T* br = a.b_rec;
      const GruGates<T> zr =
          gru_unit_gates(a.ract, pre(0) + (br ? br[j] : T(0)), pre(1) + (br ? br[H + j] : T(0)));
      const T rh = acc[m][2] + (br ? br[2 * H + j] : T(0));
      const T xh = x[2 * H + j] + (a.b_in ? a.b_in[2 * H + j] : T(0));
      const GruOut<T> o = gru_unit_output(a.act, true, zr.z, zr.r, xh, rh, a.h_prev[e]);
      gt[j] = zr.z;
      gt[H + j] = zr.r;
      gt[2 * H + j] = o.g;
      if (a.ws_rh) a.ws_rh[e] = rh;
      finish(a, e, keep, o.h);
    } else {  // GruBefore, phase 1: gates z, r and r * hd_prev
      const GruGates<T> zr = gru_unit_gates(a.ract, pre(0), pre(1));
      gt[j] = zr.z;
      gt[H + j] = zr.r;
      a.rhd[e] = zr.r * a.A[e];
    }
  }
}

// GRU reset_after=False, phase 2: rh = (r * hd_prev) @ R_h, then the candidate and h.
template <typename T>
__global__ void __launch_bounds__(32 * kRowGroups)
    gru_before_output_kernel(const ForwardStep<T> a) {
  const index_t H = a.H, GH = 3 * H;
  const index_t j = (index_t)blockIdx.x * 32 + threadIdx.x;
  const index_t b0 = ((index_t)blockIdx.y * kRowGroups + threadIdx.y) * kRows;
  if (j >= H || b0 >= a.B) return;
  const int rows = (int)min((index_t)kRows, a.B - b0);
  T acc[kRows][1];
  detail::rowdot<T, kRows, 1>(a.rhd + b0 * H, H, rows, a.R + 2 * H, GH, H, j, H, acc);
#pragma unroll
  for (int m = 0; m < kRows; ++m) {
    if (m >= rows) break;
    const index_t b = b0 + m, e = b * H + j;
    const bool keep = a.mrow && !a.mrow[b];
    T* gt = a.gates + b * GH;
    const T xh = a.xps[b * GH + 2 * H + j] + (a.b_in ? a.b_in[2 * H + j] : T(0));
    const GruOut<T> o = gru_unit_output(a.act, false, gt[j], gt[H + j], xh, acc[m][0], a.h_prev[e]);
    gt[2 * H + j] = o.g;
    if (a.ws_rh) a.ws_rh[e] = a.rhd[e];
    finish(a, e, keep, o.h);
  }
}

template <typename T, Recipe R>
void forward_impl(const ForwardParams<T>& p, T* scratch, cudaStream_t stream) {
  constexpr int G = R == Recipe::LSTM ? 4 : (R == Recipe::SimpleRNN ? 1 : 3);
  const index_t B = p.B, H = p.H, GH = G * H, Tn = p.T, BH = B * H;
  const bool training = p.workspace != nullptr;
  CallFlags flags;
  flags.dropout = p.dropout_mask != nullptr;
  flags.recurrent_dropout = p.recurrent_dropout_mask != nullptr;
  flags.training = training;
  const ForwardScratch sc = forward_scratch(p, flags);
  const WorkspaceLayout ws = workspace_layout(p);

  // (1) input projection for every step.
  const T* xd = p.x;
  if (p.dropout_mask) {
    scale_rows_by_mask(p.x, p.dropout_mask, Tn * B, p.I, B, scratch + sc.xd, stream);
    xd = scratch + sc.xd;
  }
  T* xp = scratch + sc.xp;
  gemm<T>(false, false, Tn * B, GH, p.I, xd, p.I, p.kernel, GH, xp, GH, stream);

  // (2) states.
  T* hbuf = scratch + sc.h;
  T* cbuf = R == Recipe::LSTM ? scratch + sc.c : nullptr;
  T* hdbuf = p.recurrent_dropout_mask ? scratch + sc.hd : nullptr;
  if (BH > 0) {
    init_states_kernel<T><<<blocks_for(BH), kThreads, 0, stream>>>(
        BH, p.h0, p.c0, p.recurrent_dropout_mask, hbuf, cbuf, hdbuf);
    FASTRNN_CUDA_CHECK_LAUNCH();
  }

  ForwardStep<T> a;
  a.R = p.recurrent_kernel;
  a.b_in = p.bias;
  a.b_rec = (R == Recipe::GruAfter && p.bias) ? p.bias + GH : nullptr;
  a.rmask = p.recurrent_dropout_mask;
  a.rhd = R == Recipe::GruBefore ? scratch + sc.rhd : nullptr;
  a.B = B;
  a.H = H;
  a.act = p.activation;
  a.ract = p.recurrent_activation;
  const dim3 grid = detail::step_grid(B, H), block = detail::step_block();
  int cur = 0;
  for (index_t s = 0; s < Tn && BH > 0; ++s) {
    const index_t t = p.go_backwards ? Tn - 1 - s : s;
    a.xps = xp + t * B * GH;
    a.mrow = p.mask ? p.mask + t * B : nullptr;
    a.h_prev = hbuf + cur * BH;
    a.h_next = hbuf + (1 - cur) * BH;
    a.A = hdbuf ? hdbuf + cur * BH : a.h_prev;
    a.hd_next = hdbuf ? hdbuf + (1 - cur) * BH : nullptr;
    if (cbuf) {
      a.c_prev = cbuf + cur * BH;
      a.c_next = cbuf + (1 - cur) * BH;
    }
    a.out = p.outputs + s * BH;
    a.out_prev = s > 0 ? p.outputs + (s - 1) * BH : nullptr;
    a.gates = training ? p.workspace + ws.gates + s * B * GH : scratch + sc.gates;
    if (training) {
      a.ws_state = p.workspace + ws.states + s * BH;
      if (R == Recipe::LSTM) {
        a.ws_cell = p.workspace + ws.cell + s * BH;
        a.ws_act_cell = p.workspace + ws.act_cell + s * BH;
      }
      if (R == Recipe::GruAfter || R == Recipe::GruBefore) a.ws_rh = p.workspace + ws.rh + s * BH;
    }
    forward_step_kernel<T, R><<<grid, block, 0, stream>>>(a);
    FASTRNN_CUDA_CHECK_LAUNCH();
    if constexpr (R == Recipe::GruBefore) {
      gru_before_output_kernel<T><<<grid, block, 0, stream>>>(a);
      FASTRNN_CUDA_CHECK_LAUNCH();
    }
    cur = 1 - cur;
  }
  if (BH > 0) {
    FASTRNN_CUDA_CHECK(cudaMemcpyAsync(p.h_last, hbuf + cur * BH, sizeof(T) * BH,
                                       cudaMemcpyDeviceToDevice, stream));
    if (cbuf)
      FASTRNN_CUDA_CHECK(cudaMemcpyAsync(p.c_last, cbuf + cur * BH, sizeof(T) * BH,
                                         cudaMemcpyDeviceToDevice, stream));
  }
}

}  // namespace

template <typename T>
void gemm(bool trans_a, bool trans_b, index_t M, index_t N, index_t K, const T* A, index_t lda,
          const T* B, index_t ldb, T* C, index_t ldc, cudaStream_t stream) {
  if (M <= 0 || N <= 0) return;
  const dim3 grid((unsigned)((M + kTileM - 1) / kTileM), (unsigned)((N + kTileN - 1) / kTileN));
  const dim3 block(16, 16);
  if (!trans_a && !trans_b)
    gemm_kernel<T, false, false><<<grid, block, 0, stream>>>(M, N, K, A, lda, B, ldb, C, ldc);
  else if (trans_a && !trans_b)
    gemm_kernel<T, true, false><<<grid, block, 0, stream>>>(M, N, K, A, lda, B, ldb, C, ldc);
  else if (!trans_a && trans_b)
    gemm_kernel<T, false, true><<<grid, block, 0, stream>>>(M, N, K, A, lda, B, ldb, C, ldc);
  else
    gemm_kernel<T, true, true><<<grid, block, 0, stream>>>(M, N, K, A, lda, B, ldb, C, ldc);
  FASTRNN_CUDA_CHECK_LAUNCH();
}

template <typename T>
void scale_rows_by_mask(const T* x, const T* mask, index_t rows, index_t cols, index_t mask_rows,
                        T* out, cudaStream_t stream) {
  const index_t n = rows * cols;
  if (n <= 0) return;
  scale_rows_kernel<T><<<blocks_for(n), kThreads, 0, stream>>>(x, mask, rows, cols, mask_rows, out);
  FASTRNN_CUDA_CHECK_LAUNCH();
}

template <typename T>
void rnn_forward(const ForwardParams<T>& p, T* scratch, cudaStream_t stream) {
  switch (recipe_of(p)) {
    case Recipe::SimpleRNN:
      return forward_impl<T, Recipe::SimpleRNN>(p, scratch, stream);
    case Recipe::LSTM:
      return forward_impl<T, Recipe::LSTM>(p, scratch, stream);
    case Recipe::GruAfter:
      return forward_impl<T, Recipe::GruAfter>(p, scratch, stream);
    case Recipe::GruBefore:
      return forward_impl<T, Recipe::GruBefore>(p, scratch, stream);
  }
}

template void gemm<float>(bool, bool, index_t, index_t, index_t, const float*, index_t,
                          const float*, index_t, float*, index_t, cudaStream_t);
template void gemm<double>(bool, bool, index_t, index_t, index_t, const double*, index_t,
                           const double*, index_t, double*, index_t, cudaStream_t);
template void scale_rows_by_mask<float>(const float*, const float*, index_t, index_t, index_t,
                                        float*, cudaStream_t);
template void scale_rows_by_mask<double>(const double*, const double*, index_t, index_t, index_t,
                                         double*, cudaStream_t);
template void rnn_forward<float>(const ForwardParams<float>&, float*, cudaStream_t);
template void rnn_forward<double>(const ForwardParams<double>&, double*, cudaStream_t);

}  // namespace fastrnn::cuda
