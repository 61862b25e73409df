// Where a CPU kernel call spends its time, by phase, for benchmarks and tuning
// (bench/compare.py reports it per row; _cpu._last_profile() returns it).
//
// Off by default: each phase then costs one relaxed atomic load. When on, the
// calling thread's record of its last call is filled with wall-clock nanoseconds.
#pragma once

#include <cstdint>

namespace fastrnn::cpu {

enum class Phase : int { Input = 0, Pack = 1, Steps = 2, Weights = 3, Count = 4 };

struct CallProfile {
  std::int64_t ns[(int)Phase::Count] = {};
  std::int64_t total_ns = 0;
  int threads = 0;  // threads the step loop asked for
};

bool profiling();
void set_profiling(bool on);
CallProfile& last_profile();  // the calling thread's

// Adds the scope's wall time to phase `p` of the calling thread's record (when profiling).
// (Out of line in profile.cpp: no per-ISA copy of it exists.)
class PhaseTimer {
 public:
  explicit PhaseTimer(Phase p);
  ~PhaseTimer();
  PhaseTimer(const PhaseTimer&) = delete;
  PhaseTimer& operator=(const PhaseTimer&) = delete;

 private:
  Phase phase_;
  bool on_;
  std::int64_t start_ = 0;
};

// Starts a call's record (zeroed) and times the whole call; used by the dispatcher.
class CallTimer {
 public:
  explicit CallTimer(int threads);
  ~CallTimer();
  CallTimer(const CallTimer&) = delete;
  CallTimer& operator=(const CallTimer&) = delete;

 private:
  bool on_;
  std::int64_t start_ = 0;
};

}  // namespace fastrnn::cpu
