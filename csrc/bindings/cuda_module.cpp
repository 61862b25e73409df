// fastrnn._cuda: the validated Python entry points of the CUDA kernels.
//
// Arrays arrive through __cuda_array_interface__ (CuPy, or anything that exports it): the
// binding reads pointer, shape, typestr and strides, and checks every one (dtype, rank, shape,
// C-contiguity, alignment, device memory of the current device, size overflow) with the
// argument's name in the message. Outputs, the training workspace and one scratch buffer are
// allocated by the caller (fastrnn/_cuda_ops.py, on CuPy's pool) and passed in, so this module
// never creates Python objects or device memory; the kernels are enqueued on the stream the
// caller passes (CuPy's current stream) and nothing synchronizes the host.
#include <cuda_runtime.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "../cuda/cuda_check.h"
#include "../cuda/rnn_cuda.h"
#include "array_checks.h"
#include "fastrnn/params.h"
#include "fastrnn/workspace.h"
#include "names.h"

namespace py = pybind11;
using namespace fastrnn;
using bindings::parse_cell;
using bindings::shape_str;
using bindings::value_error;
using cuda::backward_scratch;
using cuda::CallFlags;
using cuda::forward_scratch;

namespace {

enum class DType { F32, F64, Bool };

const char* dtype_name(DType d) {
  return d == DType::F32 ? "float32" : (d == DType::F64 ? "float64" : "bool");
}

std::string typestr_name(const std::string& ts) {
  if (ts == "<f4") return "float32";
  if (ts == "<f8") return "float64";
  if (ts == "|b1") return "bool";
  if (ts == "<f2") return "float16";
  return "'" + ts + "'";
}

bool parse_typestr(const std::string& ts, DType& out) {
  if (ts == "<f4")
    out = DType::F32;
  else if (ts == "<f8")
    out = DType::F64;
  else if (ts == "|b1")
    out = DType::Bool;
  else
    return false;
  return true;
}

index_t itemsize(DType d) { return d == DType::F32 ? 4 : (d == DType::F64 ? 8 : 1); }

// A device array as read from __cuda_array_interface__ (validated by check_device_array).
struct DevArray {
  void* ptr = nullptr;
  std::vector<index_t> shape;
  DType dtype = DType::F32;
  index_t size = 0;
};

std::string type_name(const py::handle& obj) {
  return std::string(py::str(py::type::of(obj).attr("__name__")));
}

// The interface dict of obj, or a TypeError naming the argument.
py::dict interface_of(const py::handle& obj, const char* name) {
  if (!py::hasattr(obj, "__cuda_array_interface__"))
    throw py::type_error(std::string(name) +
                         " must be a CUDA device array (cupy.ndarray) like x, got " +
                         type_name(obj) + " (do not mix NumPy and CuPy arrays in one call)");
  py::object iface = obj.attr("__cuda_array_interface__");
  if (!py::isinstance<py::dict>(iface))
    throw py::type_error(std::string(name) + ".__cuda_array_interface__ is not a dict");
  return py::reinterpret_borrow<py::dict>(iface);
}

DType dtype_of(const py::handle& obj, const char* name) {
  py::dict iface = interface_of(obj, name);
  const std::string ts = py::str(iface["typestr"]);
  DType d;
  if (!parse_typestr(ts, d) || d == DType::Bool)
    throw py::type_error(std::string(name) + " must have dtype float32 or float64, got " +
                         typestr_name(ts));
  return d;
}

int current_device() {
  int dev = 0;
  FASTRNN_CUDA_CHECK(cudaGetDevice(&dev));
  return dev;
}

// Checks obj: a device array of `dtype` with exactly `shape` (-1: any size), C-contiguous,
// aligned, in device (or managed) memory of the current device; writable when `writable`.
DevArray check_device_array(const py::handle& obj, const char* name, DType dtype,
                            const std::vector<index_t>& shape, bool writable = false) {
  py::dict iface = interface_of(obj, name);
  DevArray a;
  const std::string ts = py::str(iface["typestr"]);
  if (!parse_typestr(ts, a.dtype) || a.dtype != dtype)
    throw py::type_error(std::string(name) + " must have dtype " + dtype_name(dtype) + ", got " +
                         typestr_name(ts));
  if (iface.contains("mask") && !iface["mask"].is_none())
    value_error(std::string(name) + " must not be a masked array");
  for (const py::handle& d : py::tuple(iface["shape"])) a.shape.push_back(d.cast<index_t>());
  if (a.shape.size() != shape.size())
    value_error(std::string(name) + " must be " + std::to_string(shape.size()) + "-D with shape " +
                shape_str(shape) + ", got shape " + shape_str(a.shape));
  for (size_t i = 0; i < shape.size(); ++i)
    if (shape[i] >= 0 && a.shape[i] != shape[i])
      value_error(std::string(name) + " must have shape " + shape_str(shape) + ", got " +
                  shape_str(a.shape));
  a.size = 1;
  for (index_t d : a.shape) a.size = bindings::checked_product({a.size, d}, name);

  const index_t isz = itemsize(a.dtype);
  if (iface.contains("strides") && !iface["strides"].is_none() && a.size > 0) {
    py::tuple strides(iface["strides"]);
    index_t expect = isz;
    for (size_t i = a.shape.size(); i-- > 0;) {
      if (a.shape[i] != 1 && strides[i].cast<index_t>() != expect)
        value_error(std::string(name) + " must be C-contiguous (fastrnn.ops makes a copy for you)");
      expect *= a.shape[i];
    }
  }
  py::tuple data(iface["data"]);
  a.ptr = reinterpret_cast<void*>(data[0].cast<std::uintptr_t>());
  if (writable && data[1].cast<bool>()) value_error(std::string(name) + " must be writable");
  if (a.size == 0) return a;  // nothing is read or written: any pointer will do
  if (reinterpret_cast<std::uintptr_t>(a.ptr) % (std::uintptr_t)isz != 0)
    value_error(std::string(name) + " must be aligned");
  cudaPointerAttributes attr;
  FASTRNN_CUDA_CHECK(cudaPointerGetAttributes(&attr, a.ptr));
  if (attr.type != cudaMemoryTypeDevice && attr.type != cudaMemoryTypeManaged)
    value_error(std::string(name) + " is not in device memory");
  const int dev = current_device();
  if (attr.device != dev)
    value_error(std::string(name) + " is on CUDA device " + std::to_string(attr.device) +
                " but the current device is " + std::to_string(dev) +
                " (all arrays of a call must be on one device)");
  return a;
}

// Everything the forward and backward calls share, validated once.
struct Inputs {
  DType dtype = DType::F32;
  CellConfig cfg;
  DevArray x, kernel, recurrent_kernel;
  DevArray bias, h0, c0, mask, dropout_mask, rec_dropout_mask;  // ptr null when None
};

Inputs validate(const std::string& cell, const py::object& x, const py::object& kernel,
                const py::object& recurrent_kernel, const py::object& bias, const py::object& h0,
                const py::object& c0, const py::object& mask, const py::object& dropout_mask,
                const py::object& recurrent_dropout_mask, const std::string& activation,
                const std::string& recurrent_activation, bool reset_after, bool go_backwards) {
  Inputs in;
  in.cfg =
      bindings::parse_config(cell, activation, recurrent_activation, reset_after, go_backwards);
  CellConfig& c = in.cfg;

  in.dtype = dtype_of(x, "x");
  const DType dt = in.dtype;
  in.x = check_device_array(x, "x", dt, {-1, -1, -1});
  c.T = in.x.shape[0];
  c.B = in.x.shape[1];
  c.I = in.x.shape[2];
  in.recurrent_kernel = check_device_array(recurrent_kernel, "recurrent_kernel", dt, {-1, -1});
  c.H = in.recurrent_kernel.shape[0];
  // Every size product fits int64; grid y extents (B / 16 for the step kernels, G*H / 64 and
  // I / 64 for the products) stay within CUDA's 65535.
  const index_t GH = bindings::check_sizes(c);
  if (c.B > (index_t)65535 * cuda::detail::kRows * cuda::detail::kRowGroups)
    value_error("x has too many batch rows for the CUDA kernels (B <= 4194240)");
  if (GH > (index_t)65535 * 64 || c.I > (index_t)65535 * 64)
    value_error("G*H and I must be at most 4194240 for the CUDA kernels");

  in.recurrent_kernel = check_device_array(recurrent_kernel, "recurrent_kernel", dt, {c.H, GH});
  in.kernel = check_device_array(kernel, "kernel", dt, {c.I, GH});
  if (!bias.is_none())
    in.bias = c.reset_after ? check_device_array(bias, "bias", dt, {2, GH})
                            : check_device_array(bias, "bias", dt, {GH});
  if (!h0.is_none()) in.h0 = check_device_array(h0, "h0", dt, {c.B, c.H});
  if (!c0.is_none()) {
    if (c.cell != CellKind::LSTM) value_error("c0 is only for the lstm cell");
    in.c0 = check_device_array(c0, "c0", dt, {c.B, c.H});
  }
  if (!mask.is_none()) in.mask = check_device_array(mask, "mask", DType::Bool, {c.T, c.B});
  if (!dropout_mask.is_none())
    in.dropout_mask = check_device_array(dropout_mask, "dropout_mask", dt, {c.B, c.I});
  if (!recurrent_dropout_mask.is_none())
    in.rec_dropout_mask =
        check_device_array(recurrent_dropout_mask, "recurrent_dropout_mask", dt, {c.B, c.H});
  return in;
}

// A present optional array's pointer (a zero-size present array still counts as present).
template <typename T>
const T* cptr(const DevArray& a, bool present) {
  return present ? static_cast<const T*>(a.ptr) : nullptr;
}

template <typename T>
void fill_forward(ForwardParams<T>& p, const Inputs& in, const py::object& bias,
                  const py::object& h0, const py::object& c0, const py::object& mask,
                  const py::object& dmask, const py::object& rmask) {
  static_cast<CellConfig&>(p) = in.cfg;
  p.x = static_cast<const T*>(in.x.ptr);
  p.kernel = static_cast<const T*>(in.kernel.ptr);
  p.recurrent_kernel = static_cast<const T*>(in.recurrent_kernel.ptr);
  p.bias = cptr<T>(in.bias, !bias.is_none());
  p.h0 = cptr<T>(in.h0, !h0.is_none());
  p.c0 = cptr<T>(in.c0, !c0.is_none());
  p.mask = cptr<std::uint8_t>(in.mask, !mask.is_none());
  p.dropout_mask = cptr<T>(in.dropout_mask, !dmask.is_none());
  p.recurrent_dropout_mask = cptr<T>(in.rec_dropout_mask, !rmask.is_none());
}

CallFlags flags_of(const py::object& dropout_mask, const py::object& recurrent_dropout_mask,
                   bool training) {
  CallFlags f;
  f.dropout = !dropout_mask.is_none();
  f.recurrent_dropout = !recurrent_dropout_mask.is_none();
  f.training = training;
  return f;
}

cudaStream_t stream_of(std::uintptr_t stream) { return reinterpret_cast<cudaStream_t>(stream); }

// An output's pointer (zero-size arrays may carry 0: the kernels never touch them).
template <typename T>
T* out_ptr(const DevArray& a) {
  return static_cast<T*>(a.ptr);
}

template <typename T>
void forward_typed(const Inputs& in, const py::object& bias, const py::object& h0,
                   const py::object& c0, const py::object& mask, const py::object& dmask,
                   const py::object& rmask, const py::object& outputs, const py::object& h_last,
                   const py::object& c_last, const py::object& workspace, const py::object& scratch,
                   std::uintptr_t stream) {
  const CellConfig& c = in.cfg;
  const DType dt = in.dtype;
  const bool training = !workspace.is_none();
  ForwardParams<T> p;
  fill_forward(p, in, bias, h0, c0, mask, dmask, rmask);
  p.outputs = out_ptr<T>(check_device_array(outputs, "outputs", dt, {c.T, c.B, c.H}, true));
  p.h_last = out_ptr<T>(check_device_array(h_last, "h_last", dt, {c.B, c.H}, true));
  if (c.cell == CellKind::LSTM) {
    p.c_last = out_ptr<T>(check_device_array(c_last, "c_last", dt, {c.B, c.H}, true));
  } else if (!c_last.is_none()) {
    value_error("c_last is only for the lstm cell");
  }
  if (training)
    p.workspace = out_ptr<T>(
        check_device_array(workspace, "workspace", dt, {workspace_layout(c).size}, true));
  const index_t need = forward_scratch(c, flags_of(dmask, rmask, training)).size;
  const DevArray sc = check_device_array(scratch, "scratch", dt, {-1}, true);
  if (sc.size < need)
    value_error("scratch must hold at least " + std::to_string(need) + " elements, got " +
                std::to_string(sc.size));
  T* sp = static_cast<T*>(sc.ptr);
  {
    py::gil_scoped_release release;
    cuda::rnn_forward<T>(p, sp, stream_of(stream));
  }
}

template <typename T>
void backward_typed(const Inputs& in, const py::object& bias, const py::object& h0,
                    const py::object& c0, const py::object& mask, const py::object& dmask,
                    const py::object& rmask, const py::object& workspace,
                    const py::object& d_outputs, const py::object& d_h_last,
                    const py::object& d_c_last, const py::object& dx, const py::object& dkernel,
                    const py::object& drecurrent_kernel, const py::object& dbias,
                    const py::object& dh0, const py::object& dc0, const py::object& scratch,
                    std::uintptr_t stream) {
  const CellConfig& c = in.cfg;
  const DType dt = in.dtype;
  const index_t GH = c.G * c.H;
  BackwardParams<T> p;
  fill_forward(p, in, bias, h0, c0, mask, dmask, rmask);
  if (workspace.is_none())
    value_error("workspace is None: run the forward with training=True first");
  p.workspace = out_ptr<T>(
      check_device_array(workspace, "workspace", dt, {workspace_layout(c).size}));  // read only
  if (!d_outputs.is_none())
    p.d_outputs =
        static_cast<const T*>(check_device_array(d_outputs, "d_outputs", dt, {c.T, c.B, c.H}).ptr);
  if (!d_h_last.is_none())
    p.d_h_last =
        static_cast<const T*>(check_device_array(d_h_last, "d_h_last", dt, {c.B, c.H}).ptr);
  if (!d_c_last.is_none()) {
    if (c.cell != CellKind::LSTM) value_error("d_c_last is only for the lstm cell");
    p.d_c_last =
        static_cast<const T*>(check_device_array(d_c_last, "d_c_last", dt, {c.B, c.H}).ptr);
  }
  p.dx = out_ptr<T>(check_device_array(dx, "dx", dt, {c.T, c.B, c.I}, true));
  p.dkernel = out_ptr<T>(check_device_array(dkernel, "dkernel", dt, {c.I, GH}, true));
  p.drecurrent_kernel =
      out_ptr<T>(check_device_array(drecurrent_kernel, "drecurrent_kernel", dt, {c.H, GH}, true));
  if (!bias.is_none()) {
    p.dbias = out_ptr<T>(c.reset_after ? check_device_array(dbias, "dbias", dt, {2, GH}, true)
                                       : check_device_array(dbias, "dbias", dt, {GH}, true));
  } else if (!dbias.is_none()) {
    value_error("dbias must be None when bias is None");
  }
  p.dh0 = out_ptr<T>(check_device_array(dh0, "dh0", dt, {c.B, c.H}, true));
  if (c.cell == CellKind::LSTM) {
    p.dc0 = out_ptr<T>(check_device_array(dc0, "dc0", dt, {c.B, c.H}, true));
  } else if (!dc0.is_none()) {
    value_error("dc0 is only for the lstm cell");
  }
  const index_t need = backward_scratch(c, flags_of(dmask, rmask, true)).size;
  const DevArray sc = check_device_array(scratch, "scratch", dt, {-1}, true);
  if (sc.size < need)
    value_error("scratch must hold at least " + std::to_string(need) + " elements, got " +
                std::to_string(sc.size));
  T* sp = static_cast<T*>(sc.ptr);
  {
    py::gil_scoped_release release;
    cuda::rnn_backward<T>(p, sp, stream_of(stream));
  }
}

CellConfig config_of(const std::string& cell, index_t T, index_t B, index_t I, index_t H,
                     bool reset_after) {
  CellConfig c;
  c.cell = parse_cell(cell);
  c.G = gate_count(c.cell);
  c.T = T;
  c.B = B;
  c.I = I;
  c.H = H;
  c.reset_after = c.cell == CellKind::GRU && reset_after;
  if (T < 0 || B < 0 || I < 0 || H < 0) value_error("sizes must be non-negative");
  bindings::checked_product({T, B, c.G, H, 4}, "T*B*G*H (workspace)");
  bindings::checked_product({T, B, I}, "T*B*I (inputs)");
  return c;
}

}  // namespace

PYBIND11_MODULE(_cuda, m) {
  m.doc() =
      "fastrnn CUDA kernels (validated entry points over __cuda_array_interface__; use "
      "fastrnn.ops, which allocates the outputs with CuPy)";

#define FASTRNN_COMMON_ARGS                                                                 \
  py::arg("cell"), py::arg("x"), py::arg("kernel"), py::arg("recurrent_kernel"),            \
      py::arg("bias") = py::none(), py::arg("h0") = py::none(), py::arg("c0") = py::none(), \
      py::arg("mask") = py::none(), py::arg("dropout_mask") = py::none(),                   \
      py::arg("recurrent_dropout_mask") = py::none(), py::arg("activation") = "tanh",       \
      py::arg("recurrent_activation") = "sigmoid", py::arg("reset_after") = true,           \
      py::arg("go_backwards") = false

  m.def(
      "forward",
      [](const std::string& cell, const py::object& x, const py::object& kernel,
         const py::object& recurrent_kernel, const py::object& bias, const py::object& h0,
         const py::object& c0, const py::object& mask, const py::object& dropout_mask,
         const py::object& recurrent_dropout_mask, const std::string& activation,
         const std::string& recurrent_activation, bool reset_after, bool go_backwards,
         const py::object& outputs, const py::object& h_last, const py::object& c_last,
         const py::object& workspace, const py::object& scratch, std::uintptr_t stream) {
        Inputs in = validate(cell, x, kernel, recurrent_kernel, bias, h0, c0, mask, dropout_mask,
                             recurrent_dropout_mask, activation, recurrent_activation, reset_after,
                             go_backwards);
        if (in.dtype == DType::F32)
          forward_typed<float>(in, bias, h0, c0, mask, dropout_mask, recurrent_dropout_mask,
                               outputs, h_last, c_last, workspace, scratch, stream);
        else
          forward_typed<double>(in, bias, h0, c0, mask, dropout_mask, recurrent_dropout_mask,
                                outputs, h_last, c_last, workspace, scratch, stream);
      },
      FASTRNN_COMMON_ARGS, py::kw_only(), py::arg("outputs"), py::arg("h_last"),
      py::arg("c_last") = py::none(), py::arg("workspace") = py::none(), py::arg("scratch"),
      py::arg("stream") = 0,
      "Forward pass into caller-allocated device arrays: outputs (T,B,H), h_last (B,H), c_last "
      "(B,H) for lstm, workspace (workspace_size,) when training, scratch "
      "(>= forward_scratch_size,). Enqueued on `stream` (a cudaStream_t as int); returns None.");

  m.def(
      "backward",
      [](const std::string& cell, const py::object& x, const py::object& kernel,
         const py::object& recurrent_kernel, const py::object& bias, const py::object& h0,
         const py::object& c0, const py::object& mask, const py::object& dropout_mask,
         const py::object& recurrent_dropout_mask, const std::string& activation,
         const std::string& recurrent_activation, bool reset_after, bool go_backwards,
         const py::object& workspace, const py::object& d_outputs, const py::object& d_h_last,
         const py::object& d_c_last, const py::object& dx, const py::object& dkernel,
         const py::object& drecurrent_kernel, const py::object& dbias, const py::object& dh0,
         const py::object& dc0, const py::object& scratch, std::uintptr_t stream) {
        Inputs in = validate(cell, x, kernel, recurrent_kernel, bias, h0, c0, mask, dropout_mask,
                             recurrent_dropout_mask, activation, recurrent_activation, reset_after,
                             go_backwards);
        if (in.dtype == DType::F32)
          backward_typed<float>(in, bias, h0, c0, mask, dropout_mask, recurrent_dropout_mask,
                                workspace, d_outputs, d_h_last, d_c_last, dx, dkernel,
                                drecurrent_kernel, dbias, dh0, dc0, scratch, stream);
        else
          backward_typed<double>(in, bias, h0, c0, mask, dropout_mask, recurrent_dropout_mask,
                                 workspace, d_outputs, d_h_last, d_c_last, dx, dkernel,
                                 drecurrent_kernel, dbias, dh0, dc0, scratch, stream);
      },
      FASTRNN_COMMON_ARGS, py::kw_only(), py::arg("workspace"), py::arg("d_outputs") = py::none(),
      py::arg("d_h_last") = py::none(), py::arg("d_c_last") = py::none(), py::arg("dx"),
      py::arg("dkernel"), py::arg("drecurrent_kernel"), py::arg("dbias") = py::none(),
      py::arg("dh0"), py::arg("dc0") = py::none(), py::arg("scratch"), py::arg("stream") = 0,
      "BPTT backward into caller-allocated device arrays: dx (T,B,I), dkernel (I,GH), "
      "drecurrent_kernel (H,GH), dbias like bias (when bias is given), dh0 (B,H), dc0 (B,H) for "
      "lstm, scratch (>= backward_scratch_size,). Enqueued on `stream`; returns None.");
#undef FASTRNN_COMMON_ARGS

  m.def(
      "workspace_size",
      [](const std::string& cell, index_t T, index_t B, index_t H, bool reset_after) {
        return workspace_layout(config_of(cell, T, B, 1, H, reset_after)).size;
      },
      py::arg("cell"), py::arg("T"), py::arg("B"), py::arg("H"), py::arg("reset_after") = true,
      "Elements of the training workspace (same layout as the CPU module's).");
  m.def(
      "forward_scratch_size",
      [](const std::string& cell, index_t T, index_t B, index_t I, index_t H, bool reset_after,
         bool dropout, bool recurrent_dropout, bool training) {
        CallFlags f;
        f.dropout = dropout;
        f.recurrent_dropout = recurrent_dropout;
        f.training = training;
        return forward_scratch(config_of(cell, T, B, I, H, reset_after), f).size;
      },
      py::arg("cell"), py::arg("T"), py::arg("B"), py::arg("I"), py::arg("H"),
      py::arg("reset_after") = true, py::arg("dropout") = false,
      py::arg("recurrent_dropout") = false, py::arg("training") = false);
  m.def(
      "backward_scratch_size",
      [](const std::string& cell, index_t T, index_t B, index_t I, index_t H, bool reset_after,
         bool dropout, bool recurrent_dropout) {
        CallFlags f;
        f.dropout = dropout;
        f.recurrent_dropout = recurrent_dropout;
        f.training = true;
        return backward_scratch(config_of(cell, T, B, I, H, reset_after), f).size;
      },
      py::arg("cell"), py::arg("T"), py::arg("B"), py::arg("I"), py::arg("H"),
      py::arg("reset_after") = true, py::arg("dropout") = false,
      py::arg("recurrent_dropout") = false);
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
}
