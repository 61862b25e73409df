// Private test entry points: one cell step through cells.h (see cell_probe.cpp).
#pragma once

#include <pybind11/pybind11.h>

namespace fastrnn::bindings {
void def_cell_probe(pybind11::module_& m);
}  // namespace fastrnn::bindings
