// The CPU kernels' worker threads: see thread_pool.h for what they guarantee.
//
// A call publishes a job in one of a few job slots and wakes the workers; each
// participant (the caller is one) runs the phases in order: its own range of
// blocks first, then blocks stolen from the other ranges, then a wait until every
// block of the phase is done. Counters only grow: range r's blocks of phase p are
// its claims number p*len_r ... (p+1)*len_r - 1, so nothing is reset between
// phases. A slot is reused only when no worker holds a reference to it, and a
// worker reads a job only after checking that the slot still serves it, so a
// straggler from an old call never touches a new one.
#include "thread_pool.h"

#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <climits>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

namespace fastrnn::cpu {
namespace {

constexpr int kSlots = 4;                 // job slots (2 bits of `published`)
constexpr int64_t kYieldAfterNs = 20000;  // phase-end wait spun before yielding the core
constexpr int64_t kStallNs = 500000;      // a wait this long beyond a block's time: a suspect
constexpr int64_t kProbeNs = 100000;      // a suspect's CPU clock is read this often
constexpr int kStallsForSolo = 2;         // stalls in one call before the caller goes on alone
constexpr int64_t kIdleSpinNs = 50000;    // workers spin this long for the next job, then sleep
constexpr int kBackoffFirst = 8;          // single-threaded calls after a call that went solo
constexpr int kBackoffMax = 1024;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

inline int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void futex_wait(std::atomic<uint32_t>* word, uint32_t expected) {
#if defined(__linux__)
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_PRIVATE, expected, nullptr,
          nullptr, 0);
#else
  while (word->load() == expected) std::this_thread::yield();
#endif
}

void futex_wake_all(std::atomic<uint32_t>* word) {
#if defined(__linux__)
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr,
          nullptr, 0);
#else
  (void)word;
#endif
}

struct alignas(64) Range {
  std::atomic<int64_t> claimed{0};  // blocks of this range claimed, all phases so far
  std::atomic<int64_t> done{0};     // blocks of this range finished, all phases so far
  std::atomic<int> owner{0};        // slot of the thread that claimed its latest blocks
  int64_t begin = 0, len = 0;       // the range: blocks [begin, begin + len) of every phase
};

// CPU time a thread has used (user + system, page faults included), or -1 if unknown.
inline int64_t thread_cpu_ns(const clockid_t* clock) {
  timespec ts;
  if (!clock || clock_gettime(*clock, &ts) != 0) return -1;
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

struct alignas(64) JobSlot {
  std::atomic<int> refs{0};      // workers looking at this slot
  std::atomic<uint64_t> gen{0};  // the job generation it serves; 0 when finished
  // The job (written by the caller before publishing; read by workers after checking gen).
  detail::TaskFn fn = nullptr;
  const void* ctx = nullptr;
  int64_t phases = 0, blocks = 0;
  int nranges = 0, nthreads = 0;
  alignas(64) std::atomic<int> next_slot{1};       // worker slots handed out: 1, 2, ...
  alignas(64) std::atomic<int64_t> phase_hint{0};  // phases before it are done (late joiners)
  std::atomic<bool> solo{false};                   // the caller finishes alone
  Range ranges[kMaxThreads];
  // Each worker's CPU clock (pthread_getcpuclockid), published before its first claim.
  clockid_t clocks[kMaxThreads];
  std::atomic<bool> has_clock[kMaxThreads];
};

// Claims up to `chunk` unclaimed blocks of range r in phase p: returns the position in the
// range of the first one and sets n to how many (0: none left).
inline int64_t claim(Range& r, int64_t p, int64_t chunk, int64_t& n) {
  const int64_t end = (p + 1) * r.len;
  int64_t c = r.claimed.load(std::memory_order_relaxed);
  while (c < end) {
    const int64_t take = std::min(chunk, end - c);
    if (r.claimed.compare_exchange_weak(c, c + take, std::memory_order_acq_rel,
                                        std::memory_order_relaxed)) {
      n = take;
      return c - p * r.len;
    }
  }
  n = 0;
  return -1;
}

// The block at position i of range r in phase p: a range runs forward in even phases and
// backward in odd ones, so the blocks a thread ran last (whose data its cache still holds)
// come first in the next phase. A thread's slice of the recurrent weights that is a little
// larger than its L2 would otherwise, in the same order every step, miss on every block.
inline int64_t block_at(const Range& r, int64_t p, int64_t i) {
  return r.begin + ((p & 1) ? r.len - 1 - i : i);
}

// Blocks claimed at a time: a quarter of a range (fewer atomics per step), at least one. A
// thread that loses its core holds up at most that much of a step.
inline int64_t claim_chunk(const Range& r) { return std::max<int64_t>(1, r.len / 4); }

inline bool phase_done(const JobSlot& js, int64_t p) {
  for (int r = 0; r < js.nranges; ++r)
    if (js.ranges[r].done.load(std::memory_order_acquire) < (p + 1) * js.ranges[r].len)
      return false;
  return true;
}

// The caller's view of whether the threads it waits for are running: each probe reads the CPU
// clocks of the owners of unfinished blocks and compares them with the previous probe of the
// same phase's wait.
class RunProbe {
 public:
  // False if an owner of an unfinished block of phase p used less than a quarter of the wall
  // time since the previous probe on a CPU. The first probe of a phase only records (true).
  bool running(JobSlot& js, int64_t p, int64_t now) {
    if (p != phase_) {  // a new wait: forget the previous one's readings
      if (phase_ == -2) seen_phase_.fill(-1);
      phase_ = p;
      last_t_ = now;
    }
    bool ok = true;
    for (int r = 0; r < js.nranges; ++r) {
      const Range& range = js.ranges[r];
      const int64_t done = range.done.load(std::memory_order_acquire);
      if (done >= (p + 1) * range.len || range.claimed.load(std::memory_order_acquire) <= done)
        continue;  // nothing of phase p in progress in this range
      const int o = range.owner.load(std::memory_order_acquire);
      if (o <= 0 || o >= kMaxThreads) continue;  // the caller itself
      const bool known = js.has_clock[o].load(std::memory_order_acquire);
      const int64_t cpu = thread_cpu_ns(known ? &js.clocks[o] : nullptr);
      const bool compare = seen_phase_[o] == p;
      if (cpu < 0) {
        ok = ok && !compare;  // no clock: a long wait is a stall, as without probes
        seen_phase_[o] = p;
        continue;
      }
      if (compare && cpu - seen_cpu_[o] < (now - last_t_) / 4) ok = false;
      seen_cpu_[o] = cpu;
      seen_phase_[o] = p;
    }
    last_t_ = now;
    return ok;
  }

 private:
  int64_t phase_ = -2, last_t_ = 0;
  std::array<int64_t, kMaxThreads> seen_phase_;  // filled on first use
  std::array<int64_t, kMaxThreads> seen_cpu_;
};

// Runs one participant through the job. Returns true if the caller went solo.
bool participate(JobSlot& js, int slot, bool caller) {
  const Worker w{slot};
  if (!caller && slot < kMaxThreads) {
    clockid_t clock;
    if (pthread_getcpuclockid(pthread_self(), &clock) == 0) {
      js.clocks[slot] = clock;
      js.has_clock[slot].store(true, std::memory_order_release);
    }
  }
  RunProbe probe;
  const int own = slot < js.nranges ? slot : -1;
  int stalls = 0;
  int64_t block_ns = 0;  // the caller's longest time per block so far (stall threshold)
  for (int64_t p = std::max<int64_t>(0, js.phase_hint.load(std::memory_order_acquire));
       p < js.phases; ++p) {
    if (phase_done(js, p)) continue;
    const int64_t t0 = caller ? now_ns() : 0;
    int64_t ran = 0;
    for (int k = 0; k < js.nranges; ++k) {
      const int r = own >= 0 ? (own + k) % js.nranges : k;
      Range& range = js.ranges[r];
      const int64_t chunk = claim_chunk(range);
      while (caller || !js.solo.load(std::memory_order_relaxed)) {
        int64_t n = 0;
        const int64_t first = claim(range, p, chunk, n);
        if (n == 0) break;
        range.owner.store(slot, std::memory_order_release);
        for (int64_t i = first; i < first + n; ++i) js.fn(js.ctx, w, p, block_at(range, p, i));
        range.done.fetch_add(n, std::memory_order_release);
        ran += n;
      }
    }
    int64_t wait_start = 0, next_probe = 0;
    bool counted = false;
    if (caller && ran > 0) {
      wait_start = now_ns();
      block_ns = std::max(block_ns, (wait_start - t0) / ran);
    }
    for (unsigned spin = 0; !phase_done(js, p); ++spin) {
      if (!caller && js.solo.load(std::memory_order_relaxed)) return false;
      cpu_relax();
      if ((spin & 31) != 31) continue;
      const int64_t t = now_ns();
      if (wait_start == 0) wait_start = t;
      const int64_t waited = t - wait_start;
      if (waited > kYieldAfterNs) sched_yield();
      // A long wait is a stall only if a thread holding an unfinished block is not running
      // (preempted, its core lent to another process or pool): a block slowed by page faults
      // of fresh output memory is still running, and waiting for it is right.
      if (caller && !counted && waited > kStallNs + 4 * block_ns && t >= next_probe) {
        next_probe = t + kProbeNs;
        if (!probe.running(js, p, t)) {
          counted = true;
          if (++stalls >= kStallsForSolo) js.solo.store(true, std::memory_order_relaxed);
        }
      }
    }
    if (caller) js.phase_hint.store(p + 1, std::memory_order_release);
  }
  return caller && js.solo.load(std::memory_order_relaxed);
}

class Pool {
 public:
  // Runs a job on the workers and the caller; false if it could not (the caller runs it inline).
  bool run(int threads, int64_t phases, int64_t blocks, detail::TaskFn fn, const void* ctx) {
    if (backoff_left_.load(std::memory_order_relaxed) > 0) {
      backoff_left_.fetch_sub(1, std::memory_order_relaxed);
      return false;
    }
    std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
    if (!busy.owns_lock()) return false;  // another thread's call has the workers
    threads = std::min<int64_t>({threads, kMaxThreads, blocks});
    threads = std::min(threads, 1 + ensure_workers(threads - 1));
    if (threads <= 1) return false;
    JobSlot* js = nullptr;
    int s = 0;
    for (int k = 1; k <= kSlots && !js; ++k) {
      s = (last_slot_ + k) % kSlots;
      if (slots_[s].refs.load(std::memory_order_acquire) == 0) js = &slots_[s];
    }
    if (!js) return false;  // stragglers still hold every slot
    last_slot_ = s;
    const uint64_t gen = ++generation_;
    js->fn = fn;
    js->ctx = ctx;
    js->phases = phases;
    js->blocks = blocks;
    js->nranges = threads;
    js->nthreads = threads;
    for (int r = 0; r < threads; ++r) {
      Range& range = js->ranges[r];
      range.begin = blocks * r / threads;
      range.len = blocks * (r + 1) / threads - range.begin;
      range.claimed.store(0, std::memory_order_relaxed);
      range.done.store(0, std::memory_order_relaxed);
      range.owner.store(0, std::memory_order_relaxed);
      js->has_clock[r].store(false, std::memory_order_relaxed);
    }
    js->next_slot.store(1, std::memory_order_relaxed);
    js->phase_hint.store(0, std::memory_order_relaxed);
    js->solo.store(false, std::memory_order_relaxed);
    js->gen.store(gen, std::memory_order_release);
    published_.store(gen << 2 | (uint64_t)s);
    wake_seq_.fetch_add(1);
    if (sleepers_.load() > 0) futex_wake_all(&wake_seq_);

    const bool went_solo = participate(*js, 0, true);
    js->gen.store(0, std::memory_order_release);  // stragglers leave without reading the job
    if (went_solo) {
      backoff_ = std::min(kBackoffMax, backoff_ ? backoff_ * 2 : kBackoffFirst);
      backoff_left_.store(backoff_, std::memory_order_relaxed);
    } else {
      backoff_ = 0;
    }
    return true;
  }

 private:
  // Starts workers until there are n (or thread creation fails); returns how many there are.
  int ensure_workers(int n) {
    while ((int)workers_.size() < n) {
      try {
        workers_.push_back(new std::thread([this] { worker_main(); }));
      } catch (const std::system_error&) {
        break;  // the system refuses more threads: use those there are
      }
    }
    return (int)workers_.size();
  }

  void worker_main() {
    uint64_t seen = 0;
    for (;;) {
      uint64_t pub = published_.load(std::memory_order_acquire);
      if ((pub >> 2) == seen) {
        const int64_t start = now_ns();
        for (unsigned spin = 0; (pub >> 2) == seen; ++spin) {
          cpu_relax();
          pub = published_.load(std::memory_order_acquire);
          if ((spin & 63) == 63 && now_ns() - start > kIdleSpinNs) break;
        }
        if ((pub >> 2) == seen) {
          sleepers_.fetch_add(1);
          const uint32_t ticket = wake_seq_.load();
          if ((published_.load() >> 2) == seen) futex_wait(&wake_seq_, ticket);
          sleepers_.fetch_sub(1);
          continue;
        }
      }
      seen = pub >> 2;
      JobSlot& js = slots_[pub & (kSlots - 1)];
      js.refs.fetch_add(1, std::memory_order_acq_rel);
      if (js.gen.load(std::memory_order_acquire) == seen) {
        const int slot = js.next_slot.fetch_add(1, std::memory_order_relaxed);
        if (slot < js.nthreads) participate(js, slot, false);
      }
      js.refs.fetch_sub(1, std::memory_order_release);
    }
  }

  std::mutex busy_;
  std::vector<std::thread*> workers_;  // never joined: they live as long as the process
  JobSlot slots_[kSlots];
  int last_slot_ = 0;
  uint64_t generation_ = 0;
  int backoff_ = 0;
  std::atomic<int> backoff_left_{0};
  alignas(64) std::atomic<uint64_t> published_{0};  // generation << 2 | slot of the newest job
  alignas(64) std::atomic<uint32_t> wake_seq_{0};
  std::atomic<int> sleepers_{0};
};

std::atomic<Pool*> g_pool{nullptr};
std::mutex g_pool_init;

// In a child created by fork() the parent's workers do not exist: forget the pool (it is
// leaked on purpose: its threads' objects cannot be destroyed) and start a new one on demand.
void reset_pool_in_child() { g_pool.store(nullptr); }

Pool& pool() {
  Pool* p = g_pool.load(std::memory_order_acquire);
  if (p) return *p;
  std::lock_guard<std::mutex> lock(g_pool_init);
  p = g_pool.load(std::memory_order_acquire);
  if (!p) {
    static std::once_flag once;
    std::call_once(once, [] { pthread_atfork(nullptr, nullptr, reset_pool_in_child); });
    p = new Pool();  // never deleted: workers may be waiting in it until the process exits
    g_pool.store(p, std::memory_order_release);
  }
  return *p;
}

}  // namespace

int available_cpus() {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
#endif
  return std::max(1u, std::thread::hardware_concurrency());
}

namespace detail {

void run_phases_erased(int threads, index_t phases, index_t blocks, TaskFn fn, const void* ctx) {
  if (pool().run(threads, phases, blocks, fn, ctx)) return;
  const Worker w{0};
  for (index_t p = 0; p < phases; ++p)
    for (index_t b = 0; b < blocks; ++b) fn(ctx, w, p, b);
}

}  // namespace detail
}  // namespace fastrnn::cpu
