#include "cpu_features.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "thread_pool.h"

namespace fastrnn::detail {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Avx512:
      return "avx512";
    case Isa::Avx2:
      return "avx2";
    default:
      return "portable";
  }
}

Isa best_supported_isa() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("fma"))
    return Isa::Avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::Avx2;
  return Isa::Portable;
}

std::vector<std::string> available_isas() {
  std::vector<std::string> out;
  for (int i = 0; i <= (int)best_supported_isa(); ++i) out.push_back(isa_name((Isa)i));
  return out;
}

namespace {
Isa parse_isa(const std::string& name) {
  for (int i = 0; i <= (int)Isa::Avx512; ++i)
    if (name == isa_name((Isa)i)) {
      if (i > (int)best_supported_isa())
        throw std::invalid_argument("isa '" + name + "' is not supported by this CPU; best is '" +
                                    isa_name(best_supported_isa()) + "'");
      return (Isa)i;
    }
  throw std::invalid_argument("unknown isa '" + name +
                              "'; expected one of 'portable', 'avx2', 'avx512'");
}

std::atomic<int> g_isa{-1};
std::atomic<int> g_threads{0};
}  // namespace

Isa active_isa() {
  int v = g_isa.load();
  if (v < 0) {
    const char* env = std::getenv("FASTRNN_ISA");
    Isa isa = best_supported_isa();
    if (env && *env) isa = parse_isa(env);  // a bad value raises at the first kernel call
    g_isa.store((int)isa);
    v = (int)isa;
  }
  return (Isa)v;
}

void set_active_isa(const std::string& name) { g_isa.store((int)parse_isa(name)); }

namespace {
// The first positive integer of an environment variable (OMP_NUM_THREADS may be a list), or 0.
int env_threads(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return 0;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  return (end != v && n > 0) ? (int)std::min<long>(n, cpu::kMaxThreads) : 0;
}
}  // namespace

int default_num_threads() {
  if (const int n = env_threads("FASTRNN_NUM_THREADS")) return n;
  if (const int n = env_threads("OMP_NUM_THREADS")) return n;
  return std::min(cpu::available_cpus(), cpu::kMaxThreads);
}

int num_threads() {
  const int n = g_threads.load();
  return n > 0 ? n : default_num_threads();
}

void set_num_threads(int n) {
  if (n < 0 || n > cpu::kMaxThreads)
    throw std::invalid_argument("num_threads must be between 1 and " +
                                std::to_string(cpu::kMaxThreads) + " (or 0 for the default), got " +
                                std::to_string(n));
  g_threads.store(n);
}

int max_threads() { return cpu::kMaxThreads; }

}  // namespace fastrnn::detail
