// fastrnn._cpu: the validated Python entry points of the CPU kernels.
//
// The binding validates, the kernels assume: every argument is checked here
// (type, dtype, rank, shape, contiguity, size overflow) and named in the error;
// then a plain params struct is filled and the GIL released for the kernel.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <limits>
#include <string>

#include "../cpu/blas.h"
#include "../cpu/cpu_features.h"
#include "../cpu/kernels.h"
#include "array_checks.h"
#include "fastrnn/params.h"
#include "fastrnn/workspace.h"
#include "names.h"

namespace py = pybind11;
using namespace fastrnn;
using bindings::check_array;
using bindings::parse_cell;
using bindings::value_error;

namespace {

// Everything the forward and backward calls share, validated once.
struct Inputs {
  py::dtype dtype;
  CellConfig cfg;
  py::array x, kernel, recurrent_kernel;
  // Optional arrays stay None when absent (a default py::array is an empty array, not null).
  py::object bias = py::none(), h0 = py::none(), c0 = py::none(), mask = py::none(),
             dropout_mask = py::none(), rec_dropout_mask = py::none();
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
  c.num_threads = detail::num_threads();

  if (!py::isinstance<py::array>(x))
    throw py::type_error("x must be a numpy.ndarray of shape (T, B, I)");
  in.dtype = py::reinterpret_borrow<py::array>(x).dtype();
  if (!in.dtype.is(py::dtype::of<float>()) && !in.dtype.is(py::dtype::of<double>()))
    throw py::type_error("x must have dtype float32 or float64, got " +
                         std::string(py::str(in.dtype)));
  in.x = check_array(x, "x", in.dtype, {-1, -1, -1}, /*contiguous=*/false);
  c.T = in.x.shape(0);
  c.B = in.x.shape(1);
  c.I = in.x.shape(2);
  in.recurrent_kernel =
      check_array(recurrent_kernel, "recurrent_kernel", in.dtype, {-1, -1}, /*contiguous=*/false);
  c.H = in.recurrent_kernel.shape(0);
  const index_t GH = bindings::check_sizes(c);  // before any copy or allocation
  bindings::check_contiguous(in.x, "x");

  in.recurrent_kernel = check_array(recurrent_kernel, "recurrent_kernel", in.dtype, {c.H, GH});
  in.kernel = check_array(kernel, "kernel", in.dtype, {c.I, GH});
  if (!bias.is_none()) {
    if (c.reset_after)
      in.bias = check_array(bias, "bias", in.dtype, {2, GH});
    else
      in.bias = check_array(bias, "bias", in.dtype, {GH});
  }
  if (!h0.is_none()) in.h0 = check_array(h0, "h0", in.dtype, {c.B, c.H});
  if (!c0.is_none()) {
    if (c.cell != CellKind::LSTM) value_error("c0 is only for the lstm cell");
    in.c0 = check_array(c0, "c0", in.dtype, {c.B, c.H});
  }
  if (!mask.is_none()) in.mask = check_array(mask, "mask", py::dtype::of<bool>(), {c.T, c.B});
  if (!dropout_mask.is_none())
    in.dropout_mask = check_array(dropout_mask, "dropout_mask", in.dtype, {c.B, c.I});
  if (!recurrent_dropout_mask.is_none())
    in.rec_dropout_mask =
        check_array(recurrent_dropout_mask, "recurrent_dropout_mask", in.dtype, {c.B, c.H});
  return in;
}

template <typename T>
const T* ptr(const py::object& a) {
  return a.is_none() ? nullptr : static_cast<const T*>(py::reinterpret_borrow<py::array>(a).data());
}

template <typename T>
void fill_forward(ForwardParams<T>& p, const Inputs& in) {
  static_cast<CellConfig&>(p) = in.cfg;
  p.x = ptr<T>(in.x);
  p.kernel = ptr<T>(in.kernel);
  p.recurrent_kernel = ptr<T>(in.recurrent_kernel);
  p.bias = ptr<T>(in.bias);
  p.h0 = ptr<T>(in.h0);
  p.c0 = ptr<T>(in.c0);
  p.mask = in.mask.is_none() ? nullptr : ptr<std::uint8_t>(in.mask);
  p.dropout_mask = ptr<T>(in.dropout_mask);
  p.recurrent_dropout_mask = ptr<T>(in.rec_dropout_mask);
}

template <typename T>
py::tuple forward_typed(const Inputs& in, bool training) {
  const CellConfig& c = in.cfg;
  py::array_t<T> outputs({c.T, c.B, c.H}), h_last({c.B, c.H});
  py::object c_last = py::none(), workspace = py::none();
  ForwardParams<T> p;
  fill_forward(p, in);
  p.outputs = outputs.mutable_data();
  p.h_last = h_last.mutable_data();
  if (c.cell == CellKind::LSTM) {
    py::array_t<T> cl({c.B, c.H});
    p.c_last = cl.mutable_data();
    c_last = cl;
  }
  if (training) {
    py::array_t<T> ws(workspace_layout(c).size);
    p.workspace = ws.mutable_data();
    workspace = ws;
  }
  {
    py::gil_scoped_release release;
    cpu::rnn_forward<T>(p);
  }
  return py::make_tuple(outputs, h_last, c_last, workspace);
}

template <typename T>
py::tuple backward_typed(const Inputs& in, const py::object& workspace, const py::object& d_outputs,
                         const py::object& d_h_last, const py::object& d_c_last) {
  const CellConfig& c = in.cfg;
  py::array ws = check_array(workspace, "workspace", in.dtype, {workspace_layout(c).size});
  py::object dout = py::none(), dhl = py::none(), dcl = py::none();
  if (!d_outputs.is_none()) dout = check_array(d_outputs, "d_outputs", in.dtype, {c.T, c.B, c.H});
  if (!d_h_last.is_none()) dhl = check_array(d_h_last, "d_h_last", in.dtype, {c.B, c.H});
  if (!d_c_last.is_none()) {
    if (c.cell != CellKind::LSTM) value_error("d_c_last is only for the lstm cell");
    dcl = check_array(d_c_last, "d_c_last", in.dtype, {c.B, c.H});
  }
  const index_t GH = c.G * c.H;
  py::array_t<T> dx({c.T, c.B, c.I}), dk({c.I, GH}), drk({c.H, GH}), dh0({c.B, c.H});
  py::object dbias = py::none(), dc0 = py::none();
  BackwardParams<T> p;
  fill_forward(p, in);
  p.workspace = const_cast<T*>(ptr<T>(ws));  // read only in backward
  p.d_outputs = ptr<T>(dout);
  p.d_h_last = ptr<T>(dhl);
  p.d_c_last = ptr<T>(dcl);
  p.dx = dx.mutable_data();
  p.dkernel = dk.mutable_data();
  p.drecurrent_kernel = drk.mutable_data();
  p.dh0 = dh0.mutable_data();
  if (!in.bias.is_none()) {
    const py::array b = py::reinterpret_borrow<py::array>(in.bias);
    py::array_t<T> db(std::vector<py::ssize_t>(b.shape(), b.shape() + b.ndim()));
    p.dbias = db.mutable_data();
    dbias = db;
  }
  if (c.cell == CellKind::LSTM) {
    py::array_t<T> a({c.B, c.H});
    p.dc0 = a.mutable_data();
    dc0 = a;
  }
  {
    py::gil_scoped_release release;
    cpu::rnn_backward<T>(p);
  }
  return py::make_tuple(dx, dk, drk, dbias, dh0, dc0);
}

}  // namespace

PYBIND11_MODULE(_cpu, m) {
  m.doc() = "fastrnn CPU kernels (validated entry points; use fastrnn.ops)";
  detail::blas_init();

  m.def(
      "forward",
      [](const std::string& cell, const py::object& x, const py::object& kernel,
         const py::object& recurrent_kernel, const py::object& bias, const py::object& h0,
         const py::object& c0, const py::object& mask, const py::object& dropout_mask,
         const py::object& recurrent_dropout_mask, const std::string& activation,
         const std::string& recurrent_activation, bool reset_after, bool go_backwards,
         bool training) {
        Inputs in = validate(cell, x, kernel, recurrent_kernel, bias, h0, c0, mask, dropout_mask,
                             recurrent_dropout_mask, activation, recurrent_activation, reset_after,
                             go_backwards);
        return in.dtype.is(py::dtype::of<float>()) ? forward_typed<float>(in, training)
                                                   : forward_typed<double>(in, training);
      },
      py::arg("cell"), py::arg("x"), py::arg("kernel"), py::arg("recurrent_kernel"),
      py::arg("bias") = py::none(), py::arg("h0") = py::none(), py::arg("c0") = py::none(),
      py::arg("mask") = py::none(), py::arg("dropout_mask") = py::none(),
      py::arg("recurrent_dropout_mask") = py::none(), py::arg("activation") = "tanh",
      py::arg("recurrent_activation") = "sigmoid", py::arg("reset_after") = true,
      py::arg("go_backwards") = false, py::arg("training") = false,
      "Forward pass. Returns (outputs (T,B,H), h_last (B,H), c_last or None, workspace or None).");

  m.def(
      "backward",
      [](const std::string& cell, const py::object& x, const py::object& kernel,
         const py::object& recurrent_kernel, const py::object& bias, const py::object& h0,
         const py::object& c0, const py::object& mask, const py::object& dropout_mask,
         const py::object& recurrent_dropout_mask, const std::string& activation,
         const std::string& recurrent_activation, bool reset_after, bool go_backwards,
         const py::object& workspace, const py::object& d_outputs, const py::object& d_h_last,
         const py::object& d_c_last) {
        Inputs in = validate(cell, x, kernel, recurrent_kernel, bias, h0, c0, mask, dropout_mask,
                             recurrent_dropout_mask, activation, recurrent_activation, reset_after,
                             go_backwards);
        return in.dtype.is(py::dtype::of<float>())
                   ? backward_typed<float>(in, workspace, d_outputs, d_h_last, d_c_last)
                   : backward_typed<double>(in, workspace, d_outputs, d_h_last, d_c_last);
      },
      py::arg("cell"), py::arg("x"), py::arg("kernel"), py::arg("recurrent_kernel"),
      py::arg("bias") = py::none(), py::arg("h0") = py::none(), py::arg("c0") = py::none(),
      py::arg("mask") = py::none(), py::arg("dropout_mask") = py::none(),
      py::arg("recurrent_dropout_mask") = py::none(), py::arg("activation") = "tanh",
      py::arg("recurrent_activation") = "sigmoid", py::arg("reset_after") = true,
      py::arg("go_backwards") = false, py::arg("workspace") = py::none(),
      py::arg("d_outputs") = py::none(), py::arg("d_h_last") = py::none(),
      py::arg("d_c_last") = py::none(),
      "BPTT backward. Returns (dx, dkernel, drecurrent_kernel, dbias or None, dh0, dc0 or None).");

  m.def("workspace_size",
        [](const std::string& cell, index_t T, index_t B, index_t H, bool reset_after) {
          CellConfig c;
          c.cell = parse_cell(cell);
          c.G = gate_count(c.cell);
          c.T = T;
          c.B = B;
          c.H = H;
          c.reset_after = reset_after;
          return workspace_layout(c).size;
        });
  m.def("set_num_threads", &detail::set_num_threads, py::arg("n"),
        "Threads for the CPU kernels (n >= 1; 0 restores the default, OMP_NUM_THREADS).");
  m.def("get_num_threads", &detail::num_threads);
  m.def("available_isas", &detail::available_isas);
  m.def("get_isa", []() { return std::string(detail::isa_name(detail::active_isa())); });
  m.def("set_isa", &detail::set_active_isa, py::arg("name"));
}
