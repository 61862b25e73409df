// fastrnn._cuda: the CUDA kernels behind the one binding contract (contract.h), for
// arrays that export __cuda_array_interface__ (CuPy, or anything else that does).
//
// The device adapter reads pointer, shape, typestr, strides and read-only flag from the
// interface; after every shape is checked, each array must be in device (or managed)
// memory of the current device. The kernels are enqueued on the stream the caller passes
// (fastrnn.ops passes CuPy's current stream) and nothing synchronizes the host.
#include <cuda_runtime.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "../cuda/cuda_check.h"
#include "../cuda/rnn_cuda.h"
#include "contract.h"

namespace py = pybind11;
using namespace fastrnn;
using bindings::ArrayView;
using bindings::DType;
using bindings::value_error;

namespace {

std::string typestr_name(const std::string& ts) {
  if (ts == "<f4") return "float32";
  if (ts == "<f8") return "float64";
  if (ts == "|b1") return "bool";
  if (ts == "<f2") return "float16";
  return "'" + ts + "'";
}

struct DeviceArrays {
  static ArrayView view(const py::handle& obj, const char* name) {
    if (!py::hasattr(obj, "__cuda_array_interface__") || py::isinstance<py::array>(obj))
      throw py::type_error(
          std::string(name) + " must be a CUDA device array (cupy.ndarray) like x, got " +
          bindings::type_name(obj) + " (do not mix NumPy and CuPy arrays in one call)");
    const py::object iface_obj = obj.attr("__cuda_array_interface__");
    if (!py::isinstance<py::dict>(iface_obj))
      throw py::type_error(std::string(name) + ".__cuda_array_interface__ is not a dict");
    const py::dict iface = py::reinterpret_borrow<py::dict>(iface_obj);
    if (iface.contains("mask") && !iface["mask"].is_none())
      value_error(std::string(name) + " must not be a masked array");
    ArrayView v;
    const std::string ts = py::str(iface["typestr"]);
    v.dtype_name = typestr_name(ts);
    if (ts == "<f4") {
      v.dtype = DType::F32;
      v.itemsize = 4;
    } else if (ts == "<f8") {
      v.dtype = DType::F64;
      v.itemsize = 8;
    } else if (ts == "|b1") {
      v.dtype = DType::Bool;
      v.itemsize = 1;
    }
    for (const py::handle& d : py::tuple(iface["shape"])) v.shape.push_back(d.cast<index_t>());
    if (iface.contains("strides") && !iface["strides"].is_none())
      for (const py::handle& s : py::tuple(iface["strides"]))
        v.strides.push_back(s.cast<index_t>());
    const py::tuple data(iface["data"]);
    v.ptr = reinterpret_cast<void*>(data[0].cast<std::uintptr_t>());
    v.readonly = data[1].cast<bool>();
    return v;
  }

  static void check_location(const ArrayView& a, const char* name) {
    if (bindings::element_count(a) == 0) return;  // nothing is read or written
    cudaPointerAttributes attr;
    FASTRNN_CUDA_CHECK(cudaPointerGetAttributes(&attr, a.ptr));
    if (attr.type != cudaMemoryTypeDevice && attr.type != cudaMemoryTypeManaged)
      value_error(std::string(name) + " is not in device memory");
    int dev = 0;
    FASTRNN_CUDA_CHECK(cudaGetDevice(&dev));
    if (attr.device != dev)
      value_error(std::string(name) + " is on CUDA device " + std::to_string(attr.device) +
                  " but the current device is " + std::to_string(dev) +
                  " (all arrays of a call must be on one device)");
  }
};

struct CudaRunner {
  // The step kernels' grids: batch rows (tiles of 4) on grid y, G*H and I blocks of the
  // products too.
  static void configure(CellConfig& c) {
    if (c.B > cuda::detail::kMaxBatch)
      value_error("x has too many batch rows for the CUDA kernels (B <= " +
                  std::to_string(cuda::detail::kMaxBatch) + ")");
    if (c.G * c.H > (index_t)65535 * 64 || c.I > (index_t)65535 * 64)
      value_error("G*H and I must be at most 4194240 for the CUDA kernels");
  }
  template <typename T>
  static void forward(const ForwardParams<T>& p, std::uintptr_t stream) {
    cuda::rnn_forward<T>(p, reinterpret_cast<cudaStream_t>(stream));
  }
  template <typename T>
  static void backward(const BackwardParams<T>& p, std::uintptr_t stream) {
    cuda::rnn_backward<T>(p, reinterpret_cast<cudaStream_t>(stream));
  }
};

}  // namespace

PYBIND11_MODULE(_cuda, m) {
  m.doc() =
      "fastrnn CUDA kernels (validated entry points over __cuda_array_interface__; use "
      "fastrnn.ops, which allocates the outputs with CuPy)";
  bindings::def_entry_points<DeviceArrays, CudaRunner>(m);
  m.def(
      "device_count",
      []() {
        int n = 0;
        if (cudaGetDeviceCount(&n) != cudaSuccess) {
          (void)cudaGetLastError();  // reset the runtime's last-error state
          return 0;
        }
        return n;
      },
      "CUDA devices this module's runtime can use (0 without a driver or GPU; never raises).");
  m.def(
      "device_status",
      []() {
        int n = 0;
        const cudaError_t err = cudaGetDeviceCount(&n);
        if (err != cudaSuccess) {
          (void)cudaGetLastError();
          return std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err);
        }
        return std::string("ok: ") + std::to_string(n) + " device(s)";
      },
      "Why device_count() is 0, in words (the CUDA runtime's error), or 'ok: N device(s)'.");
  m.def("runtime_version", []() {
    int v = 0;
    FASTRNN_CUDA_CHECK(cudaRuntimeGetVersion(&v));
    return v;
  });
#if defined(FASTRNN_HAVE_CUBLAS)
  m.attr("HAS_CUBLAS") = true;
#else
  m.attr("HAS_CUBLAS") = false;
#endif
  m.def(
      "plan",
      [](const std::string& cell, index_t T, index_t B, index_t I, index_t H,
         const std::string& dtype, bool reset_after, bool backward) {
        CellConfig c = bindings::parse_config(cell, "tanh", "sigmoid", reset_after, false);
        if (T < 0 || B < 0 || I < 1 || H < 1)
          value_error("plan: T and B must be >= 0, I and H >= 1");
        c.T = T;
        c.B = B;
        c.I = I;
        c.H = H;
        if (dtype == "float32") return cuda::describe_plan<float>(c, backward);
        if (dtype == "float64") return cuda::describe_plan<double>(c, backward);
        value_error("plan: dtype must be 'float32' or 'float64', got '" + dtype + "'");
      },
      py::arg("cell"), py::arg("T"), py::arg("B"), py::arg("I"), py::arg("H"),
      py::arg("dtype") = "float32", py::arg("reset_after") = true, py::arg("backward") = false,
      "The path (standard or persistent) and launch configuration a forward (or backward) call "
      "of this shape takes on the current device now, given FASTRNN_CUDA_PATH and "
      "FASTRNN_CUDA_GRAPHS, as one line ('persistent: ...', 'standard: ...' or 'error: ...').");
}
