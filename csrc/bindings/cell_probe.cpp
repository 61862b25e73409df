// Private entry points of fastrnn._cpu that run ONE cell step for one batch row through
// include/fastrnn/cells.h alone (no loop, product, threads or SIMD), so that tests can check a
// step against the reference's <cell>_step_forward / _step_backward directly: a wrong step is
// then found at the step, not only through whole sequences (tests/test_cell_step.py).
//
// float64, one row of H units; the recurrent products are computed by the caller and passed
// in as `acc` (gate blocks of H values).
#include "cell_probe.h"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "fastrnn/cells.h"
#include "names.h"

namespace fastrnn::bindings {
namespace {

namespace py = pybind11;
using Vec = std::vector<double>;

Vec vec(const py::object& a, index_t n, const char* name) {
  if (a.is_none()) return Vec(n, 0.0);
  const auto arr = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(a);
  if (!arr || arr.size() != n)
    throw std::invalid_argument(std::string(name) + " must have " + std::to_string(n) +
                                " float64 values");
  return Vec(arr.data(), arr.data() + n);
}

py::array_t<double> arr(const Vec& v) {
  return py::array_t<double>((py::ssize_t)v.size(), v.data());
}

py::dict step_forward(const std::string& cell, bool reset_after, const std::string& activation,
                      const std::string& recurrent_activation, int phase, const py::object& xp,
                      const py::object& acc, const py::object& b_in, const py::object& b_rec,
                      const py::object& h_prev, const py::object& hd_prev, const py::object& c_prev,
                      const py::object& rmask, const py::object& out_prev,
                      const py::object& gates_in, const py::object& rhd_in, bool masked) {
  const CellConfig c = parse_config(cell, activation, recurrent_activation, reset_after, false);
  const auto hp = py::array_t<double>::ensure(h_prev);
  if (!hp) throw std::invalid_argument("h_prev must be a float64 array");
  const index_t n = hp.size(), GH = c.G * n;
  return with_cell(c.id, [&](auto kind) {
    using Cell = decltype(kind);
    Vec xpv = vec(xp, GH, "xp"), accv = vec(acc, (phase == 2 ? 1 : Cell::GC) * n, "acc"),
        bi = vec(b_in, GH, "b_in"), br = vec(b_rec, GH, "b_rec"), h = vec(h_prev, n, "h_prev"),
        hd = vec(hd_prev, n, "hd_prev"), cp = vec(c_prev, n, "c_prev"),
        rm = rmask.is_none() ? Vec(n, 1.0) : vec(rmask, n, "rmask"),
        op = vec(out_prev, n, "out_prev"), gates = vec(gates_in, GH, "gates"),
        rhd = vec(rhd_in, n, "rhd");
    Vec out(n), h_next(n), hd_next(n), c_next(n), ws_state(n), ws_cell(n), ws_act(n), ws_rh(n);
    ForwardRow<double> r;
    r.H = n;
    r.xp = xpv.data();
    r.b_in = bi.data();
    r.b_rec = br.data();
    r.h_prev = h.data();
    r.hd_prev = hd.data();
    r.c_prev = cp.data();
    r.rmask = rm.data();
    r.out_prev = op.data();
    r.gates = gates.data();
    r.out = out.data();
    r.h_next = h_next.data();
    r.hd_next = hd_next.data();
    r.c_next = c_next.data();
    r.ws_state = ws_state.data();
    r.ws_cell = ws_cell.data();
    r.ws_act_cell = ws_act.data();
    r.ws_rh = ws_rh.data();
    r.rhd = rhd.data();
    for (index_t j = 0; j < n; ++j) {
      if (masked && (phase == 2 || !Cell::second_product)) {
        carry_unit(Cell{}, r, j);
      } else if (phase == 2) {
        if constexpr (Cell::second_product)
          forward_unit_second(Cell{}, r, j, accv[j], c.activation);
        else
          throw std::invalid_argument("phase 2 is only for GRU reset_after=False");
      } else {
        forward_unit(Cell{}, r, j, accv.data() + j, (int)n, c.activation, c.recurrent_activation);
      }
    }
    py::dict d;
    d["gates"] = arr(gates);
    d["out"] = arr(out);
    d["h_next"] = arr(h_next);
    d["hd_next"] = arr(hd_next);
    d["c_next"] = arr(c_next);
    d["ws_state"] = arr(ws_state);
    d["ws_cell"] = arr(ws_cell);
    d["ws_act_cell"] = arr(ws_act);
    d["ws_rh"] = arr(ws_rh);
    d["rhd"] = arr(rhd);
    return d;
  });
}

py::dict step_backward(const std::string& cell, bool reset_after, const std::string& activation,
                       const std::string& recurrent_activation, const std::string& phase,
                       const py::object& gates, const py::object& h_prev, const py::object& c_prev,
                       const py::object& act_cell, const py::object& rh, const py::object& dout,
                       const py::object& rmask, const py::object& carry, const py::object& dh,
                       const py::object& dc, const py::object& dgi_in, const py::object& d_rhd_in,
                       const py::object& acc, bool masked, bool has_prev_step) {
  const CellConfig c = parse_config(cell, activation, recurrent_activation, reset_after, false);
  const auto hp = py::array_t<double>::ensure(h_prev);
  if (!hp) throw std::invalid_argument("h_prev must be a float64 array");
  const index_t n = hp.size(), GH = c.G * n;
  return with_cell(c.id, [&](auto kind) {
    using Cell = decltype(kind);
    Vec g = vec(gates, GH, "gates"), h = vec(h_prev, n, "h_prev"), cp = vec(c_prev, n, "c_prev"),
        ac = vec(act_cell, n, "act_cell"), rhv = vec(rh, n, "rh"), dov = vec(dout, n, "dout"),
        rm = rmask.is_none() ? Vec(n, 1.0) : vec(rmask, n, "rmask"), cr = vec(carry, n, "carry"),
        dhv = vec(dh, n, "dh"), dcv = vec(dc, n, "dc"), dgi = vec(dgi_in, GH, "dgi"),
        d_rhd = vec(d_rhd_in, n, "d_rhd"), accv = vec(acc, n, "acc");
    Vec dgr(GH, 0.0);
    BackwardRow<double> r;
    r.H = n;
    r.gates = g.data();
    r.h_prev = h.data();
    r.c_prev = cp.data();
    r.act_cell = ac.data();
    r.rh = rhv.data();
    r.dout = dov.data();
    r.rmask = rm.data();
    r.carry = cr.data();
    r.dh = dhv.data();
    r.dc = dcv.data();
    r.dgi = dgi.data();
    r.dgr = Cell::separate_rec ? dgr.data() : dgi.data();
    r.d_rhd = d_rhd.data();
    for (index_t j = 0; j < n; ++j) {
      if (phase == "unit") {
        if (masked)
          backward_carry_unit(Cell{}, r, j, has_prev_step);
        else
          backward_unit(Cell{}, r, j, c.activation, c.recurrent_activation);
      } else if (phase == "reset") {
        if constexpr (Cell::second_product)
          reset_unit(Cell{}, r, j, accv[j], masked, c.recurrent_activation);
        else
          throw std::invalid_argument("phase 'reset' is only for GRU reset_after=False");
      } else if (phase == "dh") {
        accumulate_dh(Cell{}, r, j, accv[j]);
      } else {
        throw std::invalid_argument("phase must be 'unit', 'reset' or 'dh'");
      }
    }
    py::dict d;
    d["dgi"] = arr(dgi);
    d["dgr"] = Cell::separate_rec ? arr(dgr) : arr(dgi);
    d["dh"] = arr(dhv);
    d["dc"] = arr(dcv);
    d["carry"] = arr(cr);
    d["d_rhd"] = arr(d_rhd);
    return d;
  });
}

}  // namespace

void def_cell_probe(py::module_& m) {
  m.def("_step_forward", &step_forward, py::arg("cell"), py::arg("reset_after"),
        py::arg("activation"), py::arg("recurrent_activation"), py::arg("phase"), py::arg("xp"),
        py::arg("acc"), py::arg("b_in") = py::none(), py::arg("b_rec") = py::none(),
        py::arg("h_prev"), py::arg("hd_prev"), py::arg("c_prev") = py::none(),
        py::arg("rmask") = py::none(), py::arg("out_prev") = py::none(),
        py::arg("gates") = py::none(), py::arg("rhd") = py::none(), py::arg("masked") = false,
        "Private (tests): one forward step of one row through cells.h, float64.");
  m.def("_step_backward", &step_backward, py::arg("cell"), py::arg("reset_after"),
        py::arg("activation"), py::arg("recurrent_activation"), py::arg("phase"), py::arg("gates"),
        py::arg("h_prev"), py::arg("c_prev") = py::none(), py::arg("act_cell") = py::none(),
        py::arg("rh") = py::none(), py::arg("dout") = py::none(), py::arg("rmask") = py::none(),
        py::arg("carry") = py::none(), py::arg("dh") = py::none(), py::arg("dc") = py::none(),
        py::arg("dgi") = py::none(), py::arg("d_rhd") = py::none(), py::arg("acc") = py::none(),
        py::arg("masked") = false, py::arg("has_prev_step") = true,
        "Private (tests): one backward step of one row through cells.h, float64.");
}

}  // namespace fastrnn::bindings
