// fedrobust._cpu's attacks family: the trim / Gaussian attacks' values
// (craft_coordinates) and the Krum attack's passes (norms_and_dots,
// krum_craft). Each binding checks its arguments (checks.h, numpy_args.h),
// drops the GIL and calls the kernel (csrc/cpu/attacks.h).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>
#include <vector>

#include "../cpu/attacks.h"
#include "checks.h"
#include "krum_craft_args.h"
#include "numpy_args.h"

namespace py = pybind11;
namespace cpu = fedrobust::cpu;
using namespace fedrobust::bindings;

namespace {

py::tuple craft_coordinates(const py::array& a, const std::vector<int64_t>& rows, const std::string& mode,
                            const py::array& out_ids, uint64_t seed, uint64_t round,
                            std::optional<py::array> direction, std::optional<py::array> base, double b,
                            double sigma_lo, double sigma_hi) {
  return dispatch_float(a, [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    check_some_rows(rows);
    Rows<T> r = rows_of<T>(a, &rows);
    const int64_t d = r.view.cols;
    cpu::CraftSpec<T> spec{};
    spec.rows = r.view;
    spec.mode = craft_mode(mode, direction.has_value(), b, sigma_lo, sigma_hi);
    if (spec.mode == cpu::CraftMode::kTrimFull) {
      spec.direction = direction_of(*direction, d);
      if (base) {
        check_dense<T>(*base, "base", 1, "a 1-D array (the global model)");
        if (base->shape(0) != d)
          throw py::value_error("base: expected " + std::to_string(d) + " values, got " + std::to_string(base->shape(0)));
        spec.base = static_cast<const T*>(base->data());
      }
      spec.b = b;
    } else if (spec.mode == cpu::CraftMode::kTrimPartial) {
      spec.sigma_lo = sigma_lo;
      spec.sigma_hi = sigma_hi;
    }
    const std::vector<int64_t> ids = ids_of(out_ids);
    spec.seed = seed;
    spec.round = round;
    spec.out_ids = ids.data();
    spec.n_out = static_cast<int64_t>(ids.size());
    py::array_t<T> out({spec.n_out, d});
    py::array_t<int8_t> used(d);
    spec.out = out.mutable_data();
    spec.direction_out = used.mutable_data();
    {
      py::gil_scoped_release nogil;
      cpu::craft_coordinates<T>(spec);
    }
    return py::make_tuple(out, used);
  });
}

py::tuple norms_and_dots(const py::array& a, const py::array& direction, std::optional<std::vector<int64_t>> rows) {
  return dispatch_float(a, [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    if (rows) check_some_rows(*rows);
    Rows<T> r = rows ? rows_of<T>(a, &*rows) : rows_of<T>(a);
    const int8_t* s = direction_of(direction, r.view.cols);
    py::array_t<double> sq(r.view.n_rows), dots(r.view.n_rows);
    double *ps = sq.mutable_data(), *pd = dots.mutable_data();
    {
      py::gil_scoped_release nogil;
      cpu::norms_and_dots<T>(r.view, s, ps, pd);
    }
    return py::make_tuple(sq, dots);
  });
}

py::object krum_craft(const py::array& direction, double lambda, double eps, uint64_t seed, uint64_t round,
                      const py::array& out_ids, const py::dtype& dtype) {
  return krum_craft_with(direction, lambda, eps, seed, round, out_ids, dtype,
                         [](const auto& spec) { cpu::krum_craft(spec); });
}

}  // namespace

void bind_attacks(py::module_& m) {
  m.def("craft_coordinates", &craft_coordinates, py::arg("U"), py::arg("rows"), py::arg("mode"),
        py::arg("out_ids"), py::arg("seed"), py::arg("round"), py::arg("direction") = py::none(),
        py::arg("base") = py::none(), py::arg("b") = 2.0, py::arg("sigma_lo") = 3.0, py::arg("sigma_hi") = 4.0,
        "Trim / Gaussian attack values from per-coordinate statistics of U[rows]: returns (out (n_out, d), "
        "direction used (d,) int8).");
  m.def("norms_and_dots", &norms_and_dots, py::arg("U"), py::arg("direction"), py::arg("rows") = py::none(),
        "Returns (||u_i||^2, <u_i, direction>) in float64 for the given rows (all by default).");
  m.def("krum_craft", &krum_craft, py::arg("direction"), py::arg("lam"), py::arg("eps"), py::arg("seed"),
        py::arg("round"), py::arg("out_ids"), py::arg("dtype"),
        "The Krum attack's sent updates: row 0 = -lam * direction, row k = row 0 + r_k v_k, |v_k| = 1, r_k ~ U(0, eps).");
}
