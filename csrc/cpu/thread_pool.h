// fastrnn's own worker threads for the CPU kernels (no OpenMP).
//
// A kernel call is a sequence of phases (for the recurrent loops: one or a few
// per time step), each a set of independent blocks (unit blocks, GEMM tiles).
// Every block of a phase finishes before any block of the next one starts.
//
//  * Locality: the blocks of a phase are cut into one fixed range per thread,
//    and a thread first runs its own range, so each thread's slice of the
//    recurrent weights stays in its cache from step to step. A range runs
//    forward in even phases and backward in odd ones: what a thread touched last
//    comes first, so a slice somewhat larger than its cache still mostly hits it.
//  * No collapse when a core is taken away: a thread that has finished its own
//    range steals unclaimed blocks from the others. A thread that lost its core
//    (to another process, or to NumPy's or PyTorch's spinning threads) therefore
//    holds up nobody unless it is in the middle of a block; threads that were not
//    woken in time simply join late, or never. The caller waits at a phase's end
//    only for blocks that are claimed; when such a wait is long and the thread
//    holding the block is not running (its CPU clock stands still: it was
//    preempted inside the block; a block slowed by page faults is still running),
//    the call continues on the caller's thread alone and the next calls run
//    single-threaded for a while (an exponential back-off).
//  * Determinism: a block's result must not depend on which thread runs it (the
//    kernels guarantee this), so results are bitwise identical for any thread count
//    and any interleaving.
//  * Fork safety: a child created by fork() starts with no workers and creates
//    new ones on its first parallel call (the parent's threads do not exist there).
//  * Concurrent callers (Python threads with the GIL released): one job runs on
//    the workers at a time; a call that finds them busy runs on its own thread.
//  * Idle workers spin for a few tens of microseconds after a job, then sleep in
//    the kernel (futex), so they never steal cores from other code between calls.
#pragma once

#include <cstdint>
#include <type_traits>

#include "fastrnn/config.h"

namespace fastrnn::cpu {

// Upper bound of threads per call (set_num_threads refuses more).
constexpr int kMaxThreads = 256;

// A running thread's identity inside a call: slot 0 is the caller; slots are < the
// call's thread count and unique among the threads running concurrently, so they
// can index per-thread scratch.
struct Worker {
  int slot = 0;
};

// Runs task(worker, phase, block) for every phase in [0, phases) and block in
// [0, blocks) on up to `threads` threads (the caller's included), phase after
// phase, in no promised order within a phase. `threads` <= 1 runs everything on
// the caller's thread (blocks in order in even phases, in reverse in odd ones).
template <typename F>
void run_phases(int threads, index_t phases, index_t blocks, F&& task);

// Runs task(worker, i) for i in [0, n) on up to `threads` threads.
template <typename F>
void run_tasks(int threads, index_t n, F&& task) {
  run_phases(threads, 1, n, [&](const Worker& w, index_t, index_t i) { task(w, i); });
}

// Logical CPUs this process may run on (sched_getaffinity), at least 1.
int available_cpus();

namespace detail {

using TaskFn = void (*)(const void* ctx, const Worker& w, index_t phase, index_t block);

// The type-erased engine behind run_phases (thread_pool.cpp).
void run_phases_erased(int threads, index_t phases, index_t blocks, TaskFn fn, const void* ctx);

template <typename F>
void call_task(const void* ctx, const Worker& w, index_t phase, index_t block) {
  (*static_cast<F*>(const_cast<void*>(ctx)))(w, phase, block);
}

}  // namespace detail

template <typename F>
void run_phases(int threads, index_t phases, index_t blocks, F&& task) {
  using Fn = std::remove_reference_t<F>;
  if (phases <= 0 || blocks <= 0) return;
  if (threads <= 1 || blocks == 1) {
    const Worker w{0};
    for (index_t p = 0; p < phases; ++p)  // odd phases backward, as in the pool (locality)
      for (index_t b = 0; b < blocks; ++b) task(w, p, (p & 1) ? blocks - 1 - b : b);
    return;
  }
  detail::run_phases_erased(threads, phases, blocks, &detail::call_task<Fn>,
                            static_cast<const void*>(&task));
}

}  // namespace fastrnn::cpu
