#include "cpu_features.h"
#include "kernels.h"
#include "profile.h"

namespace fastrnn::cpu {

template <typename T>
void rnn_forward(const ForwardParams<T>& p) {
  const CallTimer timer(p.num_threads);
  switch (detail::active_isa()) {
    case detail::Isa::Avx512:
      return avx512::forward<T>(p);
    case detail::Isa::Avx2:
      return avx2::forward<T>(p);
    default:
      return portable::forward<T>(p);
  }
}

template <typename T>
void rnn_backward(const BackwardParams<T>& p) {
  const CallTimer timer(p.num_threads);
  switch (detail::active_isa()) {
    case detail::Isa::Avx512:
      return avx512::backward<T>(p);
    case detail::Isa::Avx2:
      return avx2::backward<T>(p);
    default:
      return portable::backward<T>(p);
  }
}

template void rnn_forward<float>(const ForwardParams<float>&);
template void rnn_forward<double>(const ForwardParams<double>&);
template void rnn_backward<float>(const BackwardParams<float>&);
template void rnn_backward<double>(const BackwardParams<double>&);

}  // namespace fastrnn::cpu
