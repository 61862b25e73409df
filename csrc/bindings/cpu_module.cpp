// fastrnn._cpu: the CPU kernels behind the one binding contract (contract.h), for
// NumPy arrays, plus the CPU's own settings (threads, SIMD path, scratch memory).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>

#include "../cpu/arena.h"
#include "../cpu/blas.h"
#include "../cpu/cpu_features.h"
#include "../cpu/kernels.h"
#include "../cpu/profile.h"
#include "../cpu/thread_pool.h"
#include "cell_probe.h"
#include "contract.h"

namespace py = pybind11;
using namespace fastrnn;
using bindings::ArrayView;
using bindings::DType;

namespace {

// Reads a NumPy array (and nothing else) for the validator. The dtype is judged by value
// (kind, item size, byte order), so arrays that went through pickle, or any other route to
// an equal dtype object, are accepted.
struct HostArrays {
  static ArrayView view(const py::handle& obj, const char* name) {
    if (!py::isinstance<py::array>(obj))
      throw py::type_error(std::string(name) + " must be a numpy.ndarray, got " +
                           bindings::type_name(obj));
    const py::array a = py::reinterpret_borrow<py::array>(obj);
    ArrayView v;
    v.ptr = const_cast<void*>(a.data());
    for (py::ssize_t i = 0; i < a.ndim(); ++i) {
      v.shape.push_back(a.shape(i));
      v.strides.push_back(a.strides(i));
    }
    const py::dtype d = a.dtype();
    const char kind = d.kind();
    const char order = d.byteorder();  // '=' native, '|' not applicable, '<' or '>' explicit
    constexpr bool little = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__;
    const bool native = order == '=' || order == '|' || (order == '<') == little;
    v.itemsize = d.itemsize();
    v.dtype_obj = d;
    if (kind == 'f' && native && v.itemsize == 4)
      v.dtype = DType::F32;
    else if (kind == 'f' && native && v.itemsize == 8)
      v.dtype = DType::F64;
    else if (kind == 'b' && v.itemsize == 1)
      v.dtype = DType::Bool;
    v.readonly = !a.writeable();
    return v;
  }
  static void check_location(const ArrayView&, const char*) {}  // host memory, by type
};

struct CpuRunner {
  static void configure(CellConfig& c) { c.num_threads = detail::num_threads(); }
  template <typename T>
  static void forward(const ForwardParams<T>& p, std::uintptr_t) {
    cpu::rnn_forward<T>(p);
  }
  template <typename T>
  static void backward(const BackwardParams<T>& p, std::uintptr_t) {
    cpu::rnn_backward<T>(p);
  }
};

// out (m, n) = a (n, m) transposed, both C-contiguous: in 32 x 32 tiles (a tile's rows and
// columns both stay in L1) on the kernels' threads. The copy fastrnn.ops makes of a
// Fortran-ordered weight (a transposed view, e.g. PyTorch's weight_ih.T): NumPy's element-wise
// strided copy reads one element per cache line and took ~2 ms per MB at 16 MB.
template <typename T>
py::array_t<T> transposed_copy(const py::array_t<T, py::array::c_style>& a) {
  if (a.ndim() != 2)
    throw py::value_error("a must be a 2-D array, got " + std::to_string(a.ndim()) + "-D");
  const index_t n = a.shape(0), m = a.shape(1);
  py::array_t<T> out({(py::ssize_t)m, (py::ssize_t)n});
  const T* src = a.data();
  T* dst = out.mutable_data();
  constexpr index_t kTile = 32;
  {
    py::gil_scoped_release release;
    cpu::run_tasks(detail::num_threads(), (m + kTile - 1) / kTile,
                   [&](const cpu::Worker&, index_t tile) {
                     const index_t j0 = tile * kTile, j1 = std::min(m, j0 + kTile);
                     for (index_t i0 = 0; i0 < n; i0 += kTile) {
                       const index_t i1 = std::min(n, i0 + kTile);
                       for (index_t j = j0; j < j1; ++j)
                         for (index_t i = i0; i < i1; ++i) dst[j * n + i] = src[i * m + j];
                     }
                   });
  }
  return out;
}

}  // namespace

PYBIND11_MODULE(_cpu, m) {
  m.doc() = "fastrnn CPU kernels (validated entry points; use fastrnn.ops)";
  detail::blas_init();
  bindings::def_entry_points<HostArrays, CpuRunner>(m);

  m.def("set_num_threads", &detail::set_num_threads, py::arg("n"),
        "Threads of the CPU kernels (1 <= n <= max_threads(); 0 restores the default).");
  m.def("get_num_threads", &detail::num_threads);
  m.def("default_num_threads", &detail::default_num_threads,
        "FASTRNN_NUM_THREADS, else OMP_NUM_THREADS, else the CPUs this process may use.");
  m.def("max_threads", &detail::max_threads);
  m.def("available_isas", &detail::available_isas);
  m.def("get_isa", []() { return std::string(detail::isa_name(detail::active_isa())); });
  m.def("set_isa", &detail::set_active_isa, py::arg("name"));
  m.def("scratch_bytes", &cpu::scratch_bytes,
        "Bytes of scratch memory the calling thread's arena keeps between calls.");
  m.def("release_scratch", &cpu::release_scratch,
        "Frees the calling thread's scratch arena; returns the bytes it held.");
  m.def("_set_profiling", &cpu::set_profiling, py::arg("on"),
        "Private (benchmarks): time the phases of each call on its calling thread.");
  m.def(
      "_last_profile",
      []() {
        const cpu::CallProfile& p = cpu::last_profile();
        py::dict d;
        const char* names[] = {"input", "pack", "steps", "weights"};
        for (int i = 0; i < (int)cpu::Phase::Count; ++i) d[names[i]] = p.ns[i] * 1e-9;
        d["total"] = p.total_ns * 1e-9;
        d["threads"] = p.threads;
        return d;
      },
      "Private (benchmarks): seconds per phase of this thread's last call (when profiling).");
  m.def("_transposed_copy", &transposed_copy<float>, py::arg("a").noconvert(),
        "Private (fastrnn.ops): a C-contiguous 2-D array's transpose, C-contiguous.");
  m.def("_transposed_copy", &transposed_copy<double>, py::arg("a").noconvert());
  bindings::def_cell_probe(m);
}
