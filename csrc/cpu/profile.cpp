#include "profile.h"

#include <atomic>
#include <chrono>

namespace fastrnn::cpu {
namespace {
std::atomic<bool> g_profiling{false};
thread_local CallProfile t_profile;

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

bool profiling() { return g_profiling.load(std::memory_order_relaxed); }
void set_profiling(bool on) { g_profiling.store(on, std::memory_order_relaxed); }
CallProfile& last_profile() { return t_profile; }

PhaseTimer::PhaseTimer(Phase p) : phase_(p), on_(profiling()) {
  if (on_) start_ = now_ns();
}
PhaseTimer::~PhaseTimer() {
  if (on_) t_profile.ns[(int)phase_] += now_ns() - start_;
}

CallTimer::CallTimer(int threads) : on_(profiling()) {
  if (!on_) return;
  t_profile = CallProfile{};
  t_profile.threads = threads;
  start_ = now_ns();
}
CallTimer::~CallTimer() {
  if (on_) t_profile.total_ns = now_ns() - start_;
}

}  // namespace fastrnn::cpu
