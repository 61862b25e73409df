// The one binding contract of fastrnn._cpu and fastrnn._cuda: the same argument
// list, the same validator and the same results, for host and device arrays.
//
//   forward(cell, x, kernel, recurrent_kernel, bias=None, h0=None, c0=None, mask=None,
//           dropout_mask=None, recurrent_dropout_mask=None, activation="tanh",
//           recurrent_activation="sigmoid", reset_after=True, go_backwards=False, *,
//           outputs, h_last, c_last=None, workspace=None, stream=0) -> None
//   backward(<the same inputs>, *, workspace, d_outputs=None, d_h_last=None, d_c_last=None,
//            dx, dkernel, drecurrent_kernel, dbias=None, dh0, dc0=None, stream=0) -> None
//   workspace_size(cell, T, B, H, reset_after=True) -> int
//
// The caller allocates the outputs and the training workspace (fastrnn.ops does,
// with NumPy or CuPy); a module allocates only its internal scratch. Every array
// is checked here, with its name in the message: type (the adapter's kind of
// array), dtype (by value: kind, size, byte order), rank and shape, C order,
// alignment, writability of outputs, outputs overlapping another argument, and
// every size product (within int64; what BLAS-style code indexes within int32).
// Then a plain params struct is filled and the GIL released for the kernels.
//
// An Adapter reads one kind of array (host: NumPy; device: __cuda_array_interface__):
//   static ArrayView view(const py::handle& obj, const char* name);
//   static void check_location(const ArrayView& a, const char* name);  // after all shapes
// A Runner runs the kernels:
//   static void configure(CellConfig& c);  // e.g. the CPU thread count
//   template <typename T> static void forward(const ForwardParams<T>& p, std::uintptr_t stream);
//   template <typename T> static void backward(const BackwardParams<T>& p, std::uintptr_t stream);
#pragma once

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "fastrnn/params.h"
#include "fastrnn/workspace.h"
#include "names.h"

namespace fastrnn::bindings {

namespace py = pybind11;

enum class DType { F32, F64, Bool, Other };

inline const char* dtype_name(DType d) {
  return d == DType::F32 ? "float32" : (d == DType::F64 ? "float64" : "bool");
}

// What the validator needs to know of one array argument.
struct ArrayView {
  void* ptr = nullptr;
  std::vector<index_t> shape;
  std::vector<index_t> strides;  // in bytes; empty: C order
  DType dtype = DType::Other;
  std::string dtype_name;  // as the array spells it, for messages (or empty: see dtype_obj)
  py::object dtype_obj;    // the array's dtype object, named only when a message needs it
  index_t itemsize = 1;
  bool readonly = false;
};

inline std::string shape_str(const std::vector<index_t>& shape) {
  std::ostringstream os;
  os << "(";
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << (shape.size() == 1 ? ",)" : ")");
  return os.str();
}

[[noreturn]] inline void value_error(const std::string& msg) { throw std::invalid_argument(msg); }

// The dtype as the array spells it (str() of a NumPy dtype costs microseconds: only for errors).
inline std::string dtype_text(const ArrayView& a) {
  if (!a.dtype_name.empty() || !a.dtype_obj) return a.dtype_name;
  std::string text = py::str(a.dtype_obj);
  if (a.dtype == DType::Other && py::hasattr(a.dtype_obj, "isnative") &&
      !a.dtype_obj.attr("isnative").cast<bool>())
    text += " (non-native byte order; fastrnn.ops converts)";
  return text;
}

inline std::string type_name(const py::handle& obj) {
  return std::string(py::str(py::type::of(obj).attr("__name__")));
}

// a*b*... with an overflow check against the limit (int64, or 32-bit BLAS's int32).
inline index_t checked_product(std::initializer_list<index_t> factors, const char* what,
                               index_t limit = std::numeric_limits<index_t>::max()) {
  index_t r = 1;
  for (index_t f : factors) {
    if (f < 0) value_error(std::string(what) + ": negative size");
    if (f != 0 && r > limit / f)
      value_error(std::string(what) + " is too large: the size product overflows");
    r *= f;
  }
  return r;
}

// Once T, B, I, H are known: at least one unit and one feature, every buffer's size within
// int64 and every dimension the kernels hand to a BLAS (M, N, K and leading dimensions)
// within int32. Returns G*H.
inline index_t check_sizes(const CellConfig& c) {
  if (c.H < 1) value_error("recurrent_kernel must have at least one row (units >= 1)");
  if (c.I < 1) value_error("x must have at least one feature (I >= 1)");
  const index_t int_max = std::numeric_limits<std::int32_t>::max();
  const index_t GH = checked_product({c.G, c.H}, "G*H (gates*units)", int_max);
  if (c.I > int_max)
    value_error("I (x's last dimension) is too large: " + std::to_string(c.I) + " > " +
                std::to_string(int_max) + ", the largest matrix dimension BLAS takes");
  checked_product({c.T, c.B}, "T*B (steps*batch)", int_max);
  checked_product({c.T, c.B, GH, 4}, "T*B*G*H (workspace)");
  checked_product({c.T, c.B, c.I, 2}, "T*B*I (inputs)");
  checked_product({c.H, GH, 2}, "H*G*H (recurrent kernel)");
  checked_product({c.I, GH}, "I*G*H (kernel)");
  return GH;
}

// ---- array checks -------------------------------------------------------------
inline index_t element_count(const ArrayView& a) {
  index_t n = 1;
  for (index_t d : a.shape) n = checked_product({n, d}, "array size");
  return n;
}

inline bool is_c_contiguous(const ArrayView& a) {
  if (a.strides.empty()) return true;
  for (index_t d : a.shape)
    if (d == 0) return true;  // no element: any strides (NumPy gives empty arrays zero strides)
  index_t expect = a.itemsize;
  for (size_t i = a.shape.size(); i-- > 0;) {
    if (a.shape[i] != 1 && a.strides[i] != expect) return false;
    expect *= a.shape[i];
  }
  return true;
}

// dtype (by value), rank and shape (-1: any size).
inline void check_dtype_shape(const ArrayView& a, const char* name, DType dtype,
                              const std::vector<index_t>& shape) {
  if (a.dtype != dtype)
    throw py::type_error(std::string(name) + " must have dtype " + dtype_name(dtype) + ", got " +
                         dtype_text(a));
  if (a.shape.size() != shape.size())
    value_error(std::string(name) + " must be " + std::to_string(shape.size()) + "-D with shape " +
                shape_str(shape) + ", got shape " + shape_str(a.shape));
  for (size_t i = 0; i < shape.size(); ++i)
    if (shape[i] >= 0 && a.shape[i] != shape[i])
      value_error(std::string(name) + " must have shape " + shape_str(shape) + ", got " +
                  shape_str(a.shape));
}

// C order and alignment (checked after every size product, so that a zero-stride view that
// claims an absurd size is refused for its size first).
inline void check_layout(const ArrayView& a, const char* name) {
  if (!is_c_contiguous(a))
    value_error(std::string(name) + " must be C-contiguous (fastrnn.ops makes a copy for you)");
  if (element_count(a) > 0 && reinterpret_cast<std::uintptr_t>(a.ptr) % a.itemsize != 0)
    value_error(std::string(name) + " must be aligned to its itemsize (fastrnn.ops makes an " +
                "aligned copy for you)");
}

// One validated argument: the view and its name.
struct Checked {
  ArrayView view;
  const char* name = nullptr;
  bool present = false;
  bool output = false;
};

template <class Adapter>
Checked take(const py::handle& obj, const char* name, DType dtype,
             const std::vector<index_t>& shape, bool output = false) {
  Checked c;
  c.view = Adapter::view(obj, name);
  c.name = name;
  c.present = true;
  c.output = output;
  check_dtype_shape(c.view, name, dtype, shape);
  if (output && c.view.readonly) value_error(std::string(name) + " must be writable");
  return c;
}

template <class Adapter>
Checked take_optional(const py::handle& obj, const char* name, DType dtype,
                      const std::vector<index_t>& shape, bool output = false) {
  if (obj.is_none()) return Checked{};
  return take<Adapter>(obj, name, dtype, shape, output);
}

// An output that overlaps any other argument would be read after being overwritten.
inline void check_no_overlap(const std::vector<const Checked*>& all) {
  auto range = [](const Checked& c) {
    const auto lo = reinterpret_cast<std::uintptr_t>(c.view.ptr);
    return std::make_pair(lo, lo + (std::uintptr_t)(element_count(c.view) * c.view.itemsize));
  };
  for (const Checked* out : all) {
    if (!out->present || !out->output || element_count(out->view) == 0) continue;
    const auto [a0, a1] = range(*out);
    for (const Checked* other : all) {
      if (other == out || !other->present || element_count(other->view) == 0) continue;
      const auto [b0, b1] = range(*other);
      if (a0 < b1 && b0 < a1)
        value_error(std::string(out->name) + " overlaps " + other->name +
                    " in memory: outputs must be separate arrays");
    }
  }
}

// ---- the calls ------------------------------------------------------------------
// The inputs every call shares, as Python passes them.
struct InputArgs {
  std::string cell;
  py::object x, kernel, recurrent_kernel, bias, h0, c0, mask, dropout_mask, recurrent_dropout_mask;
  std::string activation, recurrent_activation;
  bool reset_after = true, go_backwards = false;
};

struct Inputs {
  CellConfig cfg;
  DType dtype = DType::F32;
  Checked x, kernel, recurrent_kernel, bias, h0, c0, mask, dropout_mask, rec_dropout_mask;
  std::vector<const Checked*> all() const {
    return {&x,    &kernel,       &recurrent_kernel, &bias, &h0, &c0,
            &mask, &dropout_mask, &rec_dropout_mask};
  }
};

template <class Adapter>
Inputs validate_inputs(const InputArgs& a) {
  Inputs in;
  CellConfig& c = in.cfg;
  c = parse_config(a.cell, a.activation, a.recurrent_activation, a.reset_after, a.go_backwards);
  const ArrayView xv = Adapter::view(a.x, "x");
  if (xv.dtype != DType::F32 && xv.dtype != DType::F64)
    throw py::type_error("x must have dtype float32 or float64, got " + dtype_text(xv));
  in.dtype = xv.dtype;
  const DType dt = in.dtype;
  in.x = take<Adapter>(a.x, "x", dt, {-1, -1, -1});
  c.T = in.x.view.shape[0];
  c.B = in.x.view.shape[1];
  c.I = in.x.view.shape[2];
  in.recurrent_kernel = take<Adapter>(a.recurrent_kernel, "recurrent_kernel", dt, {-1, -1});
  c.H = in.recurrent_kernel.view.shape[0];
  const index_t GH = check_sizes(c);  // before any other check reads a size
  check_layout(in.x.view, "x");
  in.recurrent_kernel = take<Adapter>(a.recurrent_kernel, "recurrent_kernel", dt, {c.H, GH});
  in.kernel = take<Adapter>(a.kernel, "kernel", dt, {c.I, GH});
  if (c.reset_after)
    in.bias = take_optional<Adapter>(a.bias, "bias", dt, {2, GH});
  else
    in.bias = take_optional<Adapter>(a.bias, "bias", dt, {GH});
  in.h0 = take_optional<Adapter>(a.h0, "h0", dt, {c.B, c.H});
  if (!a.c0.is_none() && c.cell != CellKind::LSTM) value_error("c0 is only for the lstm cell");
  in.c0 = take_optional<Adapter>(a.c0, "c0", dt, {c.B, c.H});
  in.mask = take_optional<Adapter>(a.mask, "mask", DType::Bool, {c.T, c.B});
  in.dropout_mask = take_optional<Adapter>(a.dropout_mask, "dropout_mask", dt, {c.B, c.I});
  in.rec_dropout_mask =
      take_optional<Adapter>(a.recurrent_dropout_mask, "recurrent_dropout_mask", dt, {c.B, c.H});
  return in;
}

// Layout and memory location of every present argument (after all shapes are known).
template <class Adapter>
void check_all(const std::vector<const Checked*>& all) {
  for (const Checked* c : all)
    if (c->present) check_layout(c->view, c->name);
  check_no_overlap(all);
  for (const Checked* c : all)
    if (c->present) Adapter::check_location(c->view, c->name);
}

template <typename T>
const T* ptr_of(const Checked& c) {
  return c.present ? static_cast<const T*>(c.view.ptr) : nullptr;
}

template <typename T>
T* out_of(const Checked& c) {
  return c.present ? static_cast<T*>(c.view.ptr) : nullptr;
}

template <typename T>
void fill_inputs(ForwardParams<T>& p, const Inputs& in) {
  static_cast<CellConfig&>(p) = in.cfg;
  p.x = ptr_of<T>(in.x);
  p.kernel = ptr_of<T>(in.kernel);
  p.recurrent_kernel = ptr_of<T>(in.recurrent_kernel);
  p.bias = ptr_of<T>(in.bias);
  p.h0 = ptr_of<T>(in.h0);
  p.c0 = ptr_of<T>(in.c0);
  p.mask = ptr_of<std::uint8_t>(in.mask);
  p.dropout_mask = ptr_of<T>(in.dropout_mask);
  p.recurrent_dropout_mask = ptr_of<T>(in.rec_dropout_mask);
}

struct ForwardOutArgs {
  py::object outputs, h_last, c_last, workspace;
};

template <class Adapter, class Runner>
void forward_call(const InputArgs& a, const ForwardOutArgs& o, std::uintptr_t stream) {
  Inputs in = validate_inputs<Adapter>(a);
  CellConfig& c = in.cfg;
  const DType dt = in.dtype;
  Checked outputs = take<Adapter>(o.outputs, "outputs", dt, {c.T, c.B, c.H}, true);
  Checked h_last = take<Adapter>(o.h_last, "h_last", dt, {c.B, c.H}, true);
  Checked c_last;
  if (c.cell == CellKind::LSTM)
    c_last = take<Adapter>(o.c_last, "c_last", dt, {c.B, c.H}, true);
  else if (!o.c_last.is_none())
    value_error("c_last is only for the lstm cell");
  const Checked workspace =
      take_optional<Adapter>(o.workspace, "workspace", dt, {workspace_layout(c).size}, true);
  std::vector<const Checked*> all = in.all();
  all.insert(all.end(), {&outputs, &h_last, &c_last, &workspace});
  check_all<Adapter>(all);
  Runner::configure(c);
  auto run = [&](auto zero) {
    using T = decltype(zero);
    ForwardParams<T> p;
    fill_inputs(p, in);
    p.outputs = out_of<T>(outputs);
    p.h_last = out_of<T>(h_last);
    p.c_last = out_of<T>(c_last);
    p.workspace = out_of<T>(workspace);
    py::gil_scoped_release release;
    Runner::template forward<T>(p, stream);
  };
  if (dt == DType::F32)
    run(0.0f);
  else
    run(0.0);
}

struct BackwardOutArgs {
  py::object workspace, d_outputs, d_h_last, d_c_last;
  py::object dx, dkernel, drecurrent_kernel, dbias, dh0, dc0;
};

template <class Adapter, class Runner>
void backward_call(const InputArgs& a, const BackwardOutArgs& o, std::uintptr_t stream) {
  Inputs in = validate_inputs<Adapter>(a);
  CellConfig& c = in.cfg;
  const DType dt = in.dtype;
  const index_t GH = c.G * c.H;
  if (o.workspace.is_none())
    throw py::type_error("workspace must be the array a forward with training=True filled");
  const Checked workspace = take<Adapter>(o.workspace, "workspace", dt, {workspace_layout(c).size});
  const Checked d_outputs = take_optional<Adapter>(o.d_outputs, "d_outputs", dt, {c.T, c.B, c.H});
  const Checked d_h_last = take_optional<Adapter>(o.d_h_last, "d_h_last", dt, {c.B, c.H});
  if (!o.d_c_last.is_none() && c.cell != CellKind::LSTM)
    value_error("d_c_last is only for the lstm cell");
  const Checked d_c_last = take_optional<Adapter>(o.d_c_last, "d_c_last", dt, {c.B, c.H});
  Checked dx = take<Adapter>(o.dx, "dx", dt, {c.T, c.B, c.I}, true);
  Checked dkernel = take<Adapter>(o.dkernel, "dkernel", dt, {c.I, GH}, true);
  Checked drk = take<Adapter>(o.drecurrent_kernel, "drecurrent_kernel", dt, {c.H, GH}, true);
  Checked dbias;
  if (in.bias.present)
    dbias = take<Adapter>(o.dbias, "dbias", dt, in.bias.view.shape, true);
  else if (!o.dbias.is_none())
    value_error("dbias must be None when bias is None");
  Checked dh0 = take<Adapter>(o.dh0, "dh0", dt, {c.B, c.H}, true);
  Checked dc0;
  if (c.cell == CellKind::LSTM)
    dc0 = take<Adapter>(o.dc0, "dc0", dt, {c.B, c.H}, true);
  else if (!o.dc0.is_none())
    value_error("dc0 is only for the lstm cell");
  std::vector<const Checked*> all = in.all();
  all.insert(all.end(), {&workspace, &d_outputs, &d_h_last, &d_c_last, &dx, &dkernel, &drk, &dbias,
                         &dh0, &dc0});
  check_all<Adapter>(all);
  Runner::configure(c);
  auto run = [&](auto zero) {
    using T = decltype(zero);
    BackwardParams<T> p;
    fill_inputs(p, in);
    p.workspace = const_cast<T*>(ptr_of<T>(workspace));  // read only in backward
    p.d_outputs = ptr_of<T>(d_outputs);
    p.d_h_last = ptr_of<T>(d_h_last);
    p.d_c_last = ptr_of<T>(d_c_last);
    p.dx = out_of<T>(dx);
    p.dkernel = out_of<T>(dkernel);
    p.drecurrent_kernel = out_of<T>(drk);
    p.dbias = out_of<T>(dbias);
    p.dh0 = out_of<T>(dh0);
    p.dc0 = out_of<T>(dc0);
    py::gil_scoped_release release;
    Runner::template backward<T>(p, stream);
  };
  if (dt == DType::F32)
    run(0.0f);
  else
    run(0.0);
}

// workspace_size with its arguments checked (non-negative, no overflow).
inline index_t checked_workspace_size(const std::string& cell, index_t T, index_t B, index_t H,
                                      bool reset_after) {
  CellConfig c = parse_config(cell, "tanh", "sigmoid", reset_after, false);
  if (T < 0 || B < 0 || H < 0)
    value_error("workspace_size: T, B and H must be non-negative, got T=" + std::to_string(T) +
                ", B=" + std::to_string(B) + ", H=" + std::to_string(H));
  checked_product({T, B, H, c.G + 3, 8}, "workspace_size: T*B*G*H");
  c.T = T;
  c.B = B;
  c.H = H;
  return workspace_layout(c).size;
}

// Registers forward, backward, workspace_size and the name tables on module m, with the one
// argument list.
template <class Adapter, class Runner>
void def_entry_points(py::module_& m) {
  m.def(
      "forward",
      [](const std::string& cell, const py::object& x, const py::object& kernel,
         const py::object& recurrent_kernel, const py::object& bias, const py::object& h0,
         const py::object& c0, const py::object& mask, const py::object& dropout_mask,
         const py::object& recurrent_dropout_mask, const std::string& activation,
         const std::string& recurrent_activation, bool reset_after, bool go_backwards,
         const py::object& outputs, const py::object& h_last, const py::object& c_last,
         const py::object& workspace, std::uintptr_t stream) {
        const InputArgs a{cell,         x,
                          kernel,       recurrent_kernel,
                          bias,         h0,
                          c0,           mask,
                          dropout_mask, recurrent_dropout_mask,
                          activation,   recurrent_activation,
                          reset_after,  go_backwards};
        forward_call<Adapter, Runner>(a, ForwardOutArgs{outputs, h_last, c_last, workspace},
                                      stream);
      },
      py::arg("cell"), py::arg("x"), py::arg("kernel"), py::arg("recurrent_kernel"),
      py::arg("bias") = py::none(), py::arg("h0") = py::none(), py::arg("c0") = py::none(),
      py::arg("mask") = py::none(), py::arg("dropout_mask") = py::none(),
      py::arg("recurrent_dropout_mask") = py::none(), py::arg("activation") = "tanh",
      py::arg("recurrent_activation") = "sigmoid", py::arg("reset_after") = true,
      py::arg("go_backwards") = false, py::kw_only(), py::arg("outputs"), py::arg("h_last"),
      py::arg("c_last") = py::none(), py::arg("workspace") = py::none(), py::arg("stream") = 0,
      "Forward pass into caller-allocated arrays: outputs (T,B,H), h_last (B,H), c_last (B,H) "
      "for lstm, workspace (workspace_size,) when training. Returns None.");

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
         const py::object& dc0, std::uintptr_t stream) {
        const InputArgs a{cell,         x,
                          kernel,       recurrent_kernel,
                          bias,         h0,
                          c0,           mask,
                          dropout_mask, recurrent_dropout_mask,
                          activation,   recurrent_activation,
                          reset_after,  go_backwards};
        backward_call<Adapter, Runner>(a,
                                       BackwardOutArgs{workspace, d_outputs, d_h_last, d_c_last, dx,
                                                       dkernel, drecurrent_kernel, dbias, dh0, dc0},
                                       stream);
      },
      py::arg("cell"), py::arg("x"), py::arg("kernel"), py::arg("recurrent_kernel"),
      py::arg("bias") = py::none(), py::arg("h0") = py::none(), py::arg("c0") = py::none(),
      py::arg("mask") = py::none(), py::arg("dropout_mask") = py::none(),
      py::arg("recurrent_dropout_mask") = py::none(), py::arg("activation") = "tanh",
      py::arg("recurrent_activation") = "sigmoid", py::arg("reset_after") = true,
      py::arg("go_backwards") = false, py::kw_only(), py::arg("workspace"),
      py::arg("d_outputs") = py::none(), py::arg("d_h_last") = py::none(),
      py::arg("d_c_last") = py::none(), py::arg("dx"), py::arg("dkernel"),
      py::arg("drecurrent_kernel"), py::arg("dbias") = py::none(), py::arg("dh0"),
      py::arg("dc0") = py::none(), py::arg("stream") = 0,
      "BPTT backward into caller-allocated arrays: dx (T,B,I), dkernel (I,GH), drecurrent_kernel "
      "(H,GH), dbias like bias (when bias is given), dh0 (B,H), dc0 (B,H) for lstm. Returns None.");

  m.def("workspace_size", &checked_workspace_size, py::arg("cell"), py::arg("T"), py::arg("B"),
        py::arg("H"), py::arg("reset_after") = true,
        "Elements of the training workspace (the same layout on every device).");
  m.attr("CELLS") = py::tuple(py::cast(cell_names()));
  m.attr("ACTIVATIONS") = py::tuple(py::cast(activation_names()));
}

}  // namespace fastrnn::bindings
