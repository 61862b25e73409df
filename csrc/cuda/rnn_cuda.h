// Entry points of the CUDA kernels, and what the .cu files of csrc/cuda share.
//
// Dimension legend: T steps, B batch, I inputs, H units, G gates, GH = G*H.
//
// Memory: the caller (fastrnn.ops, through the binding contract) allocates the
// outputs and the training workspace (workspace.h); the kernels' scratch is taken
// from the CUDA runtime's stream-ordered allocator (cudaMallocAsync) on the call's
// stream and returned on it. Everything is enqueued on that stream; nothing
// synchronizes the host.
//
// Two paths run the recurrence (docs/cuda.md):
//   standard    (rnn_forward.cu, rnn_backward.cu) one kernel per step (two for GRU
//               reset_after=False), the step loop replayed from a cached CUDA graph;
//   persistent  (rnn_persistent.cu) one cooperative kernel for the whole sequence, the
//               recurrent weights resident in shared memory across the SMs.
// FASTRNN_CUDA_PATH=auto|standard|persistent (read at every call) chooses; auto takes the
// persistent path when the batch is small and the weights fit on chip.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#include "cuda_check.h"
#include "fastrnn/cells.h"
#include "fastrnn/params.h"
#include "fastrnn/workspace.h"

namespace fastrnn::cuda {

// Entry points (params validated by the binding; all pointers are device pointers of the
// current device).
template <typename T>
void rnn_forward(const ForwardParams<T>& p, cudaStream_t stream);
template <typename T>
void rnn_backward(const BackwardParams<T>& p, cudaStream_t stream);

// C (M, N, ldc) = op(A) @ op(B): op(A) is (M, K), stored (M, K) with lda, or (K, M) when
// trans_a; op(B) is (K, N), stored (K, N) with ldb, or (N, K) when trans_b. K == 0 writes
// zeros. cuBLAS when the module was built with it (FASTRNN_HAVE_CUBLAS; TF32 off), else the
// hand-written tiled kernel (split-K with a deterministic reduction when K is long).
template <typename T>
void gemm(bool trans_a, bool trans_b, index_t M, index_t N, index_t K, const T* A, index_t lda,
          const T* B, index_t ldb, T* C, index_t ldc, cudaStream_t stream);

// out (rows, cols) = x (rows, cols) * dropout[(r % mask_rows), c] (dropout of x or dx; none: 1),
// with the rows r where steps[r] == 0 zeroed (masked steps do not read their input; steps is
// the (T, B) mask in input time order, or null). out may be x.
template <typename T>
void input_rows(const T* x, const T* dropout, const std::uint8_t* steps, index_t rows, index_t cols,
                index_t mask_rows, T* out, cudaStream_t stream);

// out[n] = sum over rows r of x[r * ld + n] (the bias gradients): a parallel reduction in
// fixed-size row chunks, summed in a fixed order (the result depends only on the shape).
template <typename T>
void column_sums(const T* x, index_t rows, index_t N, index_t ld, T* out, cudaStream_t stream);

// out (cols, ld_out) = in (rows, cols)^T, in (rows, cols) with row stride ld_in.
template <typename T>
void transpose(const T* in, index_t rows, index_t cols, index_t ld_in, T* out, index_t ld_out,
               cudaStream_t stream);

// Scratch of one call, from the stream-ordered allocator, returned on the same stream.
class DeviceScratch {
 public:
  DeviceScratch(std::size_t bytes, cudaStream_t stream) : stream_(stream) {
    if (bytes > 0) FASTRNN_CUDA_CHECK(cudaMallocAsync(&data_, bytes, stream));
  }
  ~DeviceScratch() {
    if (data_) (void)cudaFreeAsync(data_, stream_);  // a destructor cannot throw
  }
  DeviceScratch(const DeviceScratch&) = delete;
  DeviceScratch& operator=(const DeviceScratch&) = delete;
  char* data() const { return static_cast<char*>(data_); }

 private:
  void* data_ = nullptr;
  cudaStream_t stream_;
};

// Carves 256-byte aligned typed buffers out of one scratch block; run once without memory
// to learn the size, then on the block.
class Carver {
 public:
  explicit Carver(char* base = nullptr) : base_(base) {}
  template <typename T>
  T* take(index_t n) {
    offset_ = (offset_ + 255) / 256 * 256;
    T* p = base_ ? reinterpret_cast<T*>(base_ + offset_) : nullptr;
    offset_ += static_cast<std::size_t>(std::max<index_t>(n, 0)) * sizeof(T);
    return p;
  }
  std::size_t size() const { return offset_; }

 private:
  char* base_;
  std::size_t offset_ = 0;
};

// ---- path choice (runtime.cu) ----------------------------------------------------------
enum class PathChoice { Auto, Standard, Persistent };

// FASTRNN_CUDA_PATH, read now: auto (unset or empty), standard or persistent; anything else
// is a ValueError naming the variable.
PathChoice path_from_env();

// FASTRNN_CUDA_GRAPHS, read now: the standard path replays its step loop from a cached CUDA
// graph unless this is "0".
bool graphs_from_env();

// What the current device offers (cached per device).
struct DeviceInfo {
  int device = 0;
  int sms = 1;
  std::size_t smem_optin = 48 * 1024;  // largest dynamic shared memory one block may ask for
};
const DeviceInfo& current_device_info();

// Largest batch the persistent path takes under FASTRNN_CUDA_PATH=auto.
constexpr index_t kPersistentAutoMaxBatch = 16;

// The persistent path's plan for one call: whether it can run (and why not), its grid and
// its shared memory. Computed from the kernel's own occupancy (rnn_persistent.cu).
struct PersistentPlan {
  bool fits = false;
  int units = 0;   // hidden units per block (a power of two)
  int blocks = 0;  // ceil(H / units), all co-resident
  std::size_t smem = 0;
  std::string why_not;
};
template <typename T>
PersistentPlan persistent_plan(const CellConfig& c, bool backward);

// A one-line description of the path a call with this configuration takes now (for tests,
// benchmarks and users: _cuda.plan()).
template <typename T>
std::string describe_plan(const CellConfig& c, bool backward);

// ---- the standard path's step loop (step_graph.cu) -------------------------------------
// Enqueues the step loop of one call on `stream`. `steps(args, s)` enqueues every kernel of
// the loop on stream s; the kernels read all their pointers and sizes from `args`, a device
// copy of the call's argument struct, so one captured graph serves every call with the same
// key (shape, cell, dtype, launch configuration). `load(args, s)` enqueues the copy of the
// host struct into `args`. With graphs on, the stream not capturing and room in the cache:
// the loop is captured once per key into a graph, whose launches (ordered one after another
// by CUDA, and each after its argument copy) replay it; otherwise it is enqueued directly,
// with the arguments in `scratch_args` (the call's own scratch). Same kernels either way.
using StepsFn = void (*)(const void* args, cudaStream_t s, const void* ctx);
using LoadFn = void (*)(void* args, cudaStream_t s, const void* ctx);
void run_step_loop(const std::string& key, std::size_t args_bytes, LoadFn load, StepsFn steps,
                   const void* ctx, void* scratch_args, cudaStream_t stream);

namespace detail {

constexpr int kThreads = 256;  // pointwise kernels

// Blocks for a grid-stride loop over n elements (0 when there is nothing to do).
inline unsigned blocks_for(index_t n) {
  const index_t b = (n + kThreads - 1) / kThreads;
  return (unsigned)std::min<index_t>(b, 65535 * 16);
}

// Largest batch the step kernels' grids cover (grid y <= 65535 row tiles of 4).
constexpr index_t kMaxBatch = (index_t)65535 * 4;

}  // namespace detail
}  // namespace fastrnn::cuda
