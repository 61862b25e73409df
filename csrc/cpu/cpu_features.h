// Run-time choice among the per-ISA builds of the CPU kernels.
#pragma once

#include <string>
#include <vector>

namespace fastrnn::detail {

enum class Isa : int { Portable = 0, Avx2 = 1, Avx512 = 2 };

const char* isa_name(Isa isa);
Isa best_supported_isa();                      // what this CPU can run
std::vector<std::string> available_isas();     // every path this CPU can run, lowest first
Isa active_isa();                              // FASTRNN_ISA env at first use, else best
void set_active_isa(const std::string& name);  // throws std::invalid_argument

// Threads of the CPU kernels: the set_num_threads value, else the default:
// FASTRNN_NUM_THREADS, else OMP_NUM_THREADS (its first entry), else the CPUs this
// process may run on.
int num_threads();
int default_num_threads();
void set_num_threads(int n);  // 1 <= n <= max_threads(); 0 restores the default
int max_threads();

}  // namespace fastrnn::detail
