// Argument validation for the pybind11 entry points: every array that reaches
// a kernel has been checked here for type, dtype, rank, shape, contiguity and
// size overflow, with the argument's name in the message.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "fastrnn/config.h"

namespace fastrnn::bindings {

namespace py = pybind11;

inline std::string shape_str(const std::vector<index_t>& shape) {
  std::ostringstream os;
  os << "(";
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << (shape.size() == 1 ? ",)" : ")");
  return os.str();
}

inline std::vector<index_t> shape_of(const py::array& a) {
  return std::vector<index_t>(a.shape(), a.shape() + a.ndim());
}

[[noreturn]] inline void value_error(const std::string& msg) { throw std::invalid_argument(msg); }

// Returns obj as an array of `dtype` with exactly `shape` (-1: any size), C-contiguous.
inline void check_contiguous(const py::array& a, const char* name) {
  if (!(a.flags() & py::array::c_style))
    value_error(std::string(name) + " must be C-contiguous (fastrnn.ops makes a copy for you)");
  if (!a.dtype().is(py::dtype::of<bool>()) && !a.attr("flags").attr("aligned").cast<bool>())
    value_error(std::string(name) + " must be aligned");
}

// With contiguous=false the caller checks contiguity later (after its size checks).
inline py::array check_array(const py::handle& obj, const char* name, const py::dtype& dtype,
                             const std::vector<index_t>& shape, bool contiguous = true) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(std::string(name) + " must be a numpy.ndarray, got " +
                         std::string(py::str(py::type::of(obj).attr("__name__"))));
  py::array a = py::reinterpret_borrow<py::array>(obj);
  if (!a.dtype().is(dtype))
    throw py::type_error(std::string(name) + " must have dtype " + std::string(py::str(dtype)) +
                         ", got " + std::string(py::str(a.dtype())));
  if (a.ndim() != (py::ssize_t)shape.size())
    value_error(std::string(name) + " must be " + std::to_string(shape.size()) + "-D with shape " +
                shape_str(shape) + ", got shape " + shape_str(shape_of(a)));
  for (size_t i = 0; i < shape.size(); ++i)
    if (shape[i] >= 0 && a.shape((py::ssize_t)i) != shape[i])
      value_error(std::string(name) + " must have shape " + shape_str(shape) + ", got " +
                  shape_str(shape_of(a)));
  if (contiguous) check_contiguous(a, name);
  return a;
}

inline bool is_none(const py::handle& obj) { return obj.is_none(); }

// a*b*... with an overflow check against the limit (int64, or BLAS's int32).
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

}  // namespace fastrnn::bindings
