// Runs step_common.cuh's block_product (the recurrent product of both CUDA paths) on the CPU:
// the block's 256 threads are fibers (ucontext) with CUDA's semantics for __syncthreads (all
// threads arrive before any leaves) and __shfl_xor_sync (all 32 lanes exchange, then leave),
// scheduled in a random order between barriers, so a missing barrier shows up as a wrong
// result. Every output is compared with a plain dot product; A and W sit inside NaN-filled
// buffers (an out-of-bounds read makes a NaN), and hs and part are followed by sentinels that
// must survive. Used by tests/test_cuda_build.py (no GPU, no CUDA toolkit needed):
//
//   g++ -std=c++17 -O1 -I csrc/cuda/host_check -I csrc/include -I csrc/cuda
//       csrc/cuda/host_check/block_product_check.cpp -o check && ./check
//
// Prints one line per failing case and exits 1 if any failed.
#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <vector>

#include "cuda_runtime.h"  // the stand-in of this folder

namespace emu {

constexpr int kThreads = 256, kWarps = kThreads / 32;
constexpr std::size_t kStack = 64 * 1024;

struct Fiber {
  ucontext_t ctx;
  std::vector<char> stack;
  bool done = false;
};

Fiber fibers[kThreads];
ucontext_t scheduler;
int current = 0;
long long switches = 0;
std::function<void()> body;
int block_arrived = 0, block_generation = 0;
int warp_arrived[kWarps] = {}, warp_generation[kWarps] = {};
double exchange[kWarps][32];

uint3 thread_index() { return uint3{(unsigned)current, 0, 0}; }

void yield() {
  ++switches;
  swapcontext(&fibers[current].ctx, &scheduler);
}

void block_barrier() {
  const int generation = block_generation;
  if (++block_arrived == kThreads) {
    block_arrived = 0;
    ++block_generation;
    return;
  }
  while (block_generation == generation) yield();
}

void warp_barrier() {
  const int w = current / 32, generation = warp_generation[w];
  if (++warp_arrived[w] == 32) {
    warp_arrived[w] = 0;
    ++warp_generation[w];
    return;
  }
  while (warp_generation[w] == generation) yield();
}

template <typename T>
T shfl_xor(T v, int offset) {
  const int w = current / 32, lane = current % 32;
  exchange[w][lane] = (double)v;  // float -> double -> float is exact
  warp_barrier();
  const T other = (T)exchange[w][lane ^ offset];
  warp_barrier();
  return other;
}

void entry() {
  body();
  fibers[current].done = true;
}

// Runs f() in every thread of one block; false if the threads deadlocked.
bool run_block(std::function<void()> f, std::mt19937& rng) {
  body = std::move(f);
  block_arrived = 0;
  std::fill(warp_arrived, warp_arrived + kWarps, 0);
  for (int t = 0; t < kThreads; ++t) {
    Fiber& fb = fibers[t];
    fb.stack.resize(kStack);
    fb.done = false;
    getcontext(&fb.ctx);
    fb.ctx.uc_stack.ss_sp = fb.stack.data();
    fb.ctx.uc_stack.ss_size = fb.stack.size();
    fb.ctx.uc_link = &scheduler;
    makecontext(&fb.ctx, entry, 0);
  }
  std::vector<int> order(kThreads);
  for (int t = 0; t < kThreads; ++t) order[t] = t;
  const long long limit = 50'000'000;
  switches = 0;
  for (;;) {
    std::shuffle(order.begin(), order.end(), rng);
    bool any = false;
    for (int t : order) {
      if (fibers[t].done) continue;
      any = true;
      current = t;
      swapcontext(&scheduler, &fibers[t].ctx);
    }
    if (!any) return true;
    if (switches > limit) return false;
  }
}

}  // namespace emu

#define threadIdx (emu::thread_index())
#define blockIdx (uint3{0, 0, 0})
#define __syncthreads() emu::block_barrier()
#define __shfl_xor_sync(mask, v, offset) emu::shfl_xor((v), (offset))
template <typename T>
T __ldg(const T* p) {
  return *p;
}
template <typename T>
T __ldcg(const T* p) {
  return *p;
}

#include "step_common.cuh"

using fastrnn::index_t;
namespace d = fastrnn::cuda::detail;

namespace {

template <typename T>
constexpr T nan_v() {
  return std::numeric_limits<T>::quiet_NaN();
}

struct Case {
  int uw, umax, rows;
  index_t K, lda, gstride, kstride;
};

// One block_product call against the plain sums; returns the number of wrong outputs.
template <typename T, int ROWS, int GCP, bool kGlobalW>
int check(const Case& c, std::mt19937& rng, const char* label) {
  const int pad = 37;
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  // A: rows x K with row stride lda; W: g * gstride + k * kstride + u, u <= umax.
  const index_t a_size = (ROWS - 1) * c.lda + c.K;
  const index_t w_size = (GCP - 1) * c.gstride + (c.K - 1) * c.kstride + c.uw;
  std::vector<T> a_buf(a_size + 2 * pad, nan_v<T>()), w_buf(w_size + 2 * pad, nan_v<T>());
  T* A = a_buf.data() + pad;
  T* W = w_buf.data() + pad;
  for (int r = 0; r < c.rows; ++r)
    for (index_t k = 0; k < c.K; ++k) A[r * c.lda + k] = (T)dist(rng);
  for (int g = 0; g < GCP; ++g)
    for (index_t k = 0; k < c.K; ++k)
      for (int u = 0; u <= c.umax; ++u) W[g * c.gstride + k * c.kstride + u] = (T)dist(rng);
  constexpr int kc = d::stage_chunk<T, ROWS>();
  const index_t n = std::min<index_t>(c.K, kc);
  const std::size_t hs_n = (std::size_t)ROWS * n, part_n = (std::size_t)8 * ROWS * GCP * c.uw;
  std::vector<T> hs(hs_n + pad, (T)12345), part(part_n + pad, (T)12345);
  std::vector<T> got((std::size_t)ROWS * c.uw * GCP, nan_v<T>());
  std::vector<int> seen((std::size_t)ROWS * c.uw, 0);
  const bool ok = emu::run_block(
      [&] {
        d::block_product<T, ROWS, GCP, kGlobalW>(
            A, c.lda, c.rows, c.K, W, c.gstride, c.kstride, c.uw, c.umax, hs.data(), part.data(),
            [&](int r, int u, const T* acc) {
              ++seen[(std::size_t)r * c.uw + u];
              for (int g = 0; g < GCP; ++g) got[((std::size_t)r * c.uw + u) * GCP + g] = acc[g];
            });
      },
      rng);
  int bad = 0;
  auto fail = [&](const char* what) {
    if (bad++ < 3)
      std::printf("FAIL %s uw=%d umax=%d rows=%d K=%lld: %s\n", label, c.uw, c.umax, c.rows,
                  (long long)c.K, what);
  };
  if (!ok) {
    fail("the block's threads deadlocked");
    return bad;
  }
  for (std::size_t i = hs_n; i < hs.size(); ++i)
    if (hs[i] != (T)12345) fail("hs written out of bounds");
  for (std::size_t i = part_n; i < part.size(); ++i)
    if (part[i] != (T)12345) fail("part written out of bounds");
  for (int r = 0; r < ROWS; ++r)
    for (int u = 0; u < c.uw; ++u) {
      if (seen[(std::size_t)r * c.uw + u] != 1) fail("an output's epilogue did not run once");
      const int uc = std::min(u, c.umax);
      for (int g = 0; g < GCP; ++g) {
        double want = 0, scale = 0;
        if (r < c.rows)
          for (index_t k = 0; k < c.K; ++k) {
            const double term =
                (double)A[r * c.lda + k] * (double)W[g * c.gstride + k * c.kstride + uc];
            want += term;
            scale += std::fabs(term);
          }
        const double v = (double)got[((std::size_t)r * c.uw + u) * GCP + g];
        const double tol = (sizeof(T) == 4 ? 1e-5 : 1e-13) * (scale + 1.0);
        if (!(std::fabs(v - want) <= tol)) {
          char msg[160];
          std::snprintf(msg, sizeof msg, "row %d unit %d gate %d: got %.17g, want %.17g", r, u, g,
                        v, want);
          fail(msg);
        }
      }
    }
  return bad;
}

template <typename T, int ROWS, int GCP>
int sweep(std::mt19937& rng) {
  int bad = 0;
  char label[64];
  std::snprintf(label, sizeof label, "%s ROWS=%d GCP=%d", sizeof(T) == 4 ? "float" : "double", ROWS,
                GCP);
  const index_t Ks[] = {1, 7, 83, (index_t)d::stage_chunk<T, ROWS>() + 13};
  for (int uw : {1, 2, 8, 32})  // one k-lane per warp up to 32 (uw = 1)
    for (index_t K : Ks) {
      const int rows = 1 + (int)(rng() % ROWS);
      const int umax = uw - 1 - (int)(rng() % uw);
      // Global-memory layout (the standard path: R rows of GH, gates H apart) and the
      // shared-memory one (the persistent path: [g][k][u]).
      const index_t H = 2 * uw + 3;
      const Case global_case{uw, umax, rows, K, K + 5, H, GCP * H};
      const Case shared_case{uw, umax, rows, K, K, K * uw, uw};
      bad += check<T, ROWS, GCP, true>(global_case, rng, label);
      bad += check<T, ROWS, GCP, false>(shared_case, rng, label);
    }
  return bad;
}

}  // namespace

int main() {
  std::mt19937 rng(20240611);
  int bad = 0;
  bad += sweep<float, 4, 1>(rng);
  bad += sweep<float, 4, 2>(rng);
  bad += sweep<float, 4, 3>(rng);
  bad += sweep<float, 4, 4>(rng);
  bad += sweep<float, 16, 1>(rng);
  bad += sweep<float, 16, 4>(rng);
  bad += sweep<double, 4, 3>(rng);
  bad += sweep<double, 16, 2>(rng);
  if (bad) {
    std::printf("%d wrong results\n", bad);
    return 1;
  }
  std::printf("block_product: every case matches\n");
  return 0;
}
