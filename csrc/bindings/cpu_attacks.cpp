// fedrobust._cpu's attacks family: the trim / Gaussian attacks' values
// (craft_coordinates) and the Krum attack's passes (norms_and_dots,
// krum_craft), on host arrays; the same names and signatures as
// fedrobust._cuda's (cuda_attacks.cpp). Each binding checks its arguments
// (checks.h, host_args.h), drops the GIL and calls the kernel
// (csrc/cpu/attacks.h).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "../cpu/attacks.h"
#include "checks.h"
#include "signatures.h"
#include "host_args.h"
#include "krum_craft_args.h"

namespace py = pybind11;
namespace cpu = fedrobust::cpu;
using namespace fedrobust::bindings;

namespace {

void craft_coordinates(const py::object& U, const std::vector<int64_t>& rows, const std::string& mode,
                       const std::vector<int64_t>& out_ids, uint64_t seed, uint64_t round, const py::object& direction,
                       const py::object& base, double b, double sigma_lo, double sigma_hi, const py::object& out,
                       const py::object& direction_out) {
  const Array u = host_matrix(U);
  check_some_rows(rows);
  check_some_ids(out_ids);
  const auto s = optional_array_of(direction, "direction");
  const auto w = optional_array_of(base, "base");
  dispatch_float(u, [&](auto tag) {
    using T = decltype(tag);
    const int64_t d = u.shape[1], n_out = static_cast<int64_t>(out_ids.size());
    Rows<T> r = rows_of<T>(u, &rows);
    cpu::CraftSpec<T> spec{};
    spec.rows = r.view;
    spec.mode = craft_mode(mode, s != nullptr, b, sigma_lo, sigma_hi);
    if (spec.mode == cpu::CraftMode::kTrimFull) {
      require_memory(*s, Memory::kHost);
      spec.direction = host_direction(*s, d);
      if (w) {
        require_memory(*w, Memory::kHost);
        check_dense(*w, {d}, dtype_of<T>(), false);
        spec.base = w->as<const T>();
      }
      spec.b = b;
    } else if (spec.mode == cpu::CraftMode::kTrimPartial) {
      spec.sigma_lo = sigma_lo;
      spec.sigma_hi = sigma_hi;
    }
    const Array o = host_dense<T>(out, "out", {n_out, d}, true);
    const Array used = host_dense<int8_t>(direction_out, "direction_out", {d}, true);
    spec.seed = seed;
    spec.round = round;
    spec.out_ids = out_ids.data();
    spec.n_out = n_out;
    spec.out = o.as<T>();
    spec.direction_out = used.as<int8_t>();
    py::gil_scoped_release nogil;
    cpu::craft_coordinates<T>(spec);
  });
}

py::tuple norms_and_dots(const py::object& U, const py::object& direction,
                         const std::optional<std::vector<int64_t>>& rows) {
  const Array u = host_matrix(U);
  if (rows) check_some_rows(*rows);
  const Array s = array_of(direction, "direction");
  require_memory(s, Memory::kHost);
  return dispatch_float(u, [&](auto tag) {
    using T = decltype(tag);
    Rows<T> r = rows ? rows_of<T>(u, &*rows) : rows_of<T>(u);
    const int8_t* signs = host_direction(s, u.shape[1]);
    py::array_t<double> sq(r.view.n_rows), dots(r.view.n_rows);
    double *ps = sq.mutable_data(), *pd = dots.mutable_data();
    {
      py::gil_scoped_release nogil;
      cpu::norms_and_dots<T>(r.view, signs, ps, pd);
    }
    return py::make_tuple(sq, dots);
  });
}

void krum_craft(const py::object& direction, double lam, double eps, uint64_t seed, uint64_t round,
                const std::vector<int64_t>& out_ids, const py::object& out) {
  krum_craft_with(direction, lam, eps, seed, round, out_ids, out, [](const auto& spec) { cpu::krum_craft(spec); });
}

}  // namespace

void bind_attacks(py::module_& m) {
  def_attacks(m, AttackFunctions{&craft_coordinates, &norms_and_dots, &krum_craft});  // signatures.h
}
