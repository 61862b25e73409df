// The CPU kernels compiled for the portable path (flags set per file in CMakeLists.txt).
#define FASTRNN_ISA_NS portable
#define FASTRNN_VEC_BYTES 16
#define FASTRNN_VEC_REGS 16
#include "kernels.h"
#include "rnn_kernels.h"

namespace fastrnn::cpu::portable {
template void forward<float>(const ForwardParams<float>&);
template void forward<double>(const ForwardParams<double>&);
template void backward<float>(const BackwardParams<float>&);
template void backward<double>(const BackwardParams<double>&);
}  // namespace fastrnn::cpu::portable
