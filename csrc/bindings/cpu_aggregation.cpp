// fedrobust._cpu's aggregation family: the median, the trimmed mean, the
// mean, the coordinate statistics, the distances, Krum's selection, Bulyan
// and the non-finite row scan, on host arrays. The same names and signatures
// as fedrobust._cuda's (cuda_aggregation.cpp): arrays in (array.h), outputs
// written into the arrays passed as `out`, host results returned as numpy
// arrays. Each binding checks its arguments (checks.h, host_args.h), drops
// the GIL and calls the kernel (csrc/cpu/*.h).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <vector>

#include "../cpu/coordinatewise.h"
#include "../cpu/distances.h"
#include "../cpu/gram.h"
#include "../cpu/krum.h"
#include "../cpu/statistics.h"
#include "checks.h"
#include "signatures.h"
#include "host_args.h"

namespace py = pybind11;
namespace cpu = fedrobust::cpu;
using fedrobust::RowsView;
using namespace fedrobust::bindings;

namespace {

// (n, n) squared distances of the rows, row-major, in double.
template <class T>
std::vector<double> sq_distances_of(const RowsView<T>& v) {
  std::vector<double> d(static_cast<size_t>(v.n_rows * v.n_rows));
  cpu::pairwise_sq_distances<T>(v, d.data());
  return d;
}

// The listed rows (all when none), at least one, in ascending order (the order sums run in).
std::vector<int64_t> sorted_rows(const OptionalRows& rows, int64_t m) {
  std::vector<int64_t> idx = rows ? *rows : all_rows(m);
  check_some_rows(idx);
  std::sort(idx.begin(), idx.end());
  return idx;
}

// out (d,) = kernel(the listed rows of U, ascending, as a RowsView; out), without the GIL: the
// shared body of the per-column rules.
template <class Kernel>
void rows_into(const Array& u, const std::vector<int64_t>& idx, const py::object& out, Kernel kernel) {
  dispatch_float(u, [&](auto tag) {
    using T = decltype(tag);
    const Array o = host_dense<T>(out, "out", {u.shape[1]}, true);
    Rows<T> r = rows_of<T>(u, &idx);
    py::gil_scoped_release nogil;
    kernel(r.view, o.as<T>());
  });
}

void median(const py::object& U, const OptionalRows& rows, const py::object& out) {
  const Array u = host_matrix(U);
  rows_into(u, sorted_rows(rows, u.shape[0]), out, [](const auto& v, auto* o) { cpu::median(v, o); });
}

void trimmed_mean(const py::object& U, int64_t beta, const OptionalRows& rows, const py::object& out) {
  const Array u = host_matrix(U);
  const std::vector<int64_t> idx = sorted_rows(rows, u.shape[0]);
  check_trimmed_mean(static_cast<int64_t>(idx.size()), beta);
  rows_into(u, idx, out, [beta](const auto& v, auto* o) { cpu::trimmed_mean(v, beta, o); });
}

void mean(const py::object& U, const OptionalRows& rows, const py::object& out) {
  const Array u = host_matrix(U);
  rows_into(u, sorted_rows(rows, u.shape[0]), out, [](const auto& v, auto* o) { cpu::mean(v, o); });
}

void coordinate_stats(const py::object& U, const OptionalRows& rows, const py::object& mean, const py::object& std,
                      const py::object& min, const py::object& max) {
  const Array u = host_matrix(U);
  const std::vector<int64_t> idx = sorted_rows(rows, u.shape[0]);
  dispatch_float(u, [&](auto tag) {
    using T = decltype(tag);
    const std::vector<int64_t> d = {u.shape[1]};
    const Array mu = host_dense<T>(mean, "mean", d, true), sd = host_dense<T>(std, "std", d, true),
                lo = host_dense<T>(min, "min", d, true), hi = host_dense<T>(max, "max", d, true);
    Rows<T> r = rows_of<T>(u, &idx);
    py::gil_scoped_release nogil;
    cpu::coordinate_stats<T>(r.view, mu.as<T>(), sd.as<T>(), lo.as<T>(), hi.as<T>());
  });
}

void pairwise_distances(const py::object& U, bool squared, const OptionalRows& rows, const py::object& out) {
  const Array u = host_matrix(U);
  if (rows) check_some_rows(*rows);
  dispatch_float(u, [&](auto tag) {
    using T = decltype(tag);
    Rows<T> r = rows ? rows_of<T>(u, &*rows) : rows_of<T>(u);
    const int64_t k = r.view.n_rows;
    const Array o = host_dense<T>(out, "out", {k, k}, true);
    T* p = o.as<T>();
    py::gil_scoped_release nogil;
    const std::vector<double> d = sq_distances_of(r.view);
    for (int64_t e = 0; e < k * k; ++e) p[e] = static_cast<T>(squared ? d[e] : std::sqrt(d[e]));
  });
}

py::array_t<double> sq_distances(const py::object& U, const OptionalRows& rows) {
  const Array u = host_matrix(U);
  if (rows) check_some_rows(*rows);
  return dispatch_float(u, [&](auto tag) {
    using T = decltype(tag);
    Rows<T> r = rows ? rows_of<T>(u, &*rows) : rows_of<T>(u);
    const int64_t k = r.view.n_rows;
    py::array_t<double> out({k, k});
    double* p = out.mutable_data();
    py::gil_scoped_release nogil;
    cpu::pairwise_sq_distances<T>(r.view, p);
    return out;
  });
}

py::tuple krum_select(const py::object& U, int64_t c, int64_t multi, bool squared) {
  const Array u = host_matrix(U);
  const int64_t m = u.shape[0];
  check_multi_krum(m, c, multi);
  std::vector<double> scores = dispatch_float(u, [&](auto tag) {
    using T = decltype(tag);
    Rows<T> r = rows_of<T>(u);
    py::gil_scoped_release nogil;
    const std::vector<double> d = sq_distances_of(r.view);
    return cpu::krum_scores(d.data(), m, all_rows(m), c, squared);
  });
  return py::make_tuple(index_array(cpu::smallest_scores(scores, multi)), to_array<double>(scores));
}

py::tuple krum_choose(const py::object& U, int64_t c, int64_t multi, bool squared) {
  const Array u = host_matrix(U);
  const int64_t m = u.shape[0];
  check_multi_krum(m, c, multi);
  const cpu::KrumChoice choice = dispatch_float(u, [&](auto tag) {
    using T = decltype(tag);
    Rows<T> r = rows_of<T>(u);
    py::gil_scoped_release nogil;
    return cpu::krum_choose<T>(r.view, c, multi, squared);
  });
  return py::make_tuple(index_array(choice.rows), choice.candidates);
}

// Host-only, for the tests of krum_choose: (lo, hi), each (m, m) float64, the bounds on the
// float32 direct kernel's squared distances from the quantized Gram matrix of U centred on
// `centre` (d,); None where the Gram matrix refuses U (a non-finite or huge centred value).
py::object krum_distance_bounds(const py::object& U, const py::object& centre) {
  const Array u = host_matrix(U);
  if (u.dtype != DType::kFloat32) throw py::type_error("krum_distance_bounds takes float32 rows");
  const int64_t m = u.shape[0];
  const Array c = host_dense<float>(centre, "centre", {u.shape[1]}, false);
  py::array_t<double> lo({m, m}), hi({m, m});
  bool ok;
  {
    Rows<float> r = rows_of<float>(u);
    py::gil_scoped_release nogil;
    std::vector<double> gram(static_cast<size_t>(m * m)), residual(static_cast<size_t>(m));
    ok = cpu::quantized_gram(r.view, c.as<float>(), gram.data(), residual.data());
    if (ok) {
      const cpu::DistanceBounds bounds(gram.data(), residual.data(), m, u.shape[1]);
      for (int64_t i = 0; i < m; ++i) bounds.row(i, lo.mutable_data() + i * m, hi.mutable_data() + i * m);
    }
  }
  if (!ok) return py::none();
  return py::make_tuple(lo, hi);
}

py::array_t<int64_t> bulyan(const py::object& U, int64_t c, bool squared, const py::object& out) {
  const Array u = host_matrix(U);
  const int64_t m = u.shape[0];
  check_bulyan(m, c);
  return dispatch_float(u, [&](auto tag) {
    using T = decltype(tag);
    const Array o = host_dense<T>(out, "out", {u.shape[1]}, true);
    std::vector<int64_t> chosen;
    {
      py::gil_scoped_release nogil;
      Rows<T> all = rows_of<T>(u);
      const std::vector<double> d = sq_distances_of(all.view);
      chosen = cpu::bulyan_select(d.data(), m, c, squared);
      Rows<T> sel = rows_of<T>(u, &chosen);
      cpu::closest_to_median_mean<T>(sel.view, m - 4 * c, o.as<T>());  // gamma = theta - 2c
    }
    return index_array(chosen);
  });
}

void closest_to_median_mean(const py::object& U, int64_t gamma, const std::vector<int64_t>& rows,
                            const py::object& out) {
  const Array u = host_matrix(U);
  const std::vector<int64_t> idx = sorted_rows(rows, u.shape[0]);
  check_closest_to_median(static_cast<int64_t>(idx.size()), gamma);
  rows_into(u, idx, out, [gamma](const auto& v, auto* o) { cpu::closest_to_median_mean(v, gamma, o); });
}

py::array_t<bool> nonfinite_rows(const py::object& U) {
  const Array u = host_matrix(U);
  py::array_t<bool> out(u.shape[0]);
  auto* p = reinterpret_cast<uint8_t*>(out.mutable_data());
  dispatch_float(u, [&](auto tag) {
    using T = decltype(tag);
    Rows<T> r = rows_of<T>(u);
    py::gil_scoped_release nogil;
    cpu::nonfinite_rows<T>(r.view, p);
  });
  return out;
}

void leave_one_out_median(const py::object& U, const py::object& out) {
  const Array u = host_matrix(U);
  check_leave_one_out(u.shape[0]);
  dispatch_float(u, [&](auto tag) {
    using T = decltype(tag);
    const Array o = host_dense<T>(out, "out", {u.shape[0], u.shape[1]}, true);
    Rows<T> r = rows_of<T>(u);
    py::gil_scoped_release nogil;
    cpu::leave_one_out_median<T>(r.view, o.as<T>());
  });
}

void leave_one_out_trimmed_mean(const py::object& U, int64_t beta, const py::object& out) {
  const Array u = host_matrix(U);
  check_leave_one_out_trimmed_mean(u.shape[0], beta);
  dispatch_float(u, [&](auto tag) {
    using T = decltype(tag);
    const Array o = host_dense<T>(out, "out", {u.shape[0], u.shape[1]}, true);
    Rows<T> r = rows_of<T>(u);
    py::gil_scoped_release nogil;
    cpu::leave_one_out_trimmed_mean<T>(r.view, beta, o.as<T>());
  });
}

// A host (n, n) float64 matrix of squared distances, read in place.
Array square_distances_in(const py::object& sq_distances) {
  const Array sq = array_of(sq_distances, "sq_distances");
  require_memory(sq, Memory::kHost);
  if (sq.ndim() != 2 || sq.shape[0] != sq.shape[1])
    throw py::value_error("sq_distances: expected a square (n, n) matrix of squared distances, got shape " +
                          sq.shape_text());
  check_dense(sq, sq.shape, DType::kFloat64, false);
  return sq;
}

// Krum scores from an (n, n) float64 matrix of squared distances (a host copy of the device's,
// or the attacks' pools): the scores Krum computes after its distance pass, the same code.
py::array_t<double> krum_scores_from_distances(const py::object& sq_distances, int64_t c, bool squared) {
  const Array sq = square_distances_in(sq_distances);
  check_count("c", c);
  const int64_t n = sq.shape[0];
  std::vector<double> scores;
  {
    py::gil_scoped_release nogil;
    scores = cpu::krum_scores(sq.as<const double>(), n, all_rows(n), c, squared);
  }
  return to_array<double>(scores);
}

// Bulyan's selection (the rows, in selection order) from an (n, n) float64 matrix of squared
// distances: the selection the bulyan binding makes after its distance pass, the same code.
py::array_t<int64_t> bulyan_select_from_distances(const py::object& sq_distances, int64_t c, bool squared) {
  const Array sq = square_distances_in(sq_distances);
  const int64_t n = sq.shape[0];
  check_bulyan(n, c);
  std::vector<int64_t> chosen;
  {
    py::gil_scoped_release nogil;
    chosen = cpu::bulyan_select(sq.as<const double>(), n, c, squared);
  }
  return index_array(chosen);
}

// (n, n) float64: row i the Krum scores of the rows without row i (+Inf at i), from (n, n)
// float64 squared distances: krum_scores_from_distances on each n - 1 rows, in one call.
py::array_t<double> krum_leave_one_out_scores(const py::object& sq_distances, int64_t c, bool squared) {
  const Array sq = square_distances_in(sq_distances);
  check_count("c", c);
  const int64_t n = sq.shape[0];
  py::array_t<double> out({n, n});
  double* p = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    cpu::krum_leave_one_out_scores(sq.as<const double>(), n, c, squared, p);
  }
  return out;
}

// (n, n - 1 - 2c) int64: row i Bulyan's selection (bulyan_select_from_distances) on the n - 1
// rows other than i, as indices of the n rows, from (n, n) float64 squared distances.
py::array_t<int64_t> bulyan_leave_one_out_selections(const py::object& sq_distances, int64_t c, bool squared) {
  const Array sq = square_distances_in(sq_distances);
  const int64_t n = sq.shape[0];
  check_bulyan(n - 1, c);
  py::array_t<int64_t> out({n, (n - 1) - 2 * c});
  int64_t* p = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    cpu::bulyan_leave_one_out_selections(sq.as<const double>(), n, c, squared, p);
  }
  return out;
}

}  // namespace

void bind_aggregation(py::module_& m) {
  def_aggregation(m, AggregationFunctions{&median, &trimmed_mean, &mean, &coordinate_stats, &pairwise_distances,
                                          &sq_distances, &krum_select, &krum_choose, &bulyan, &nonfinite_rows,
                                          &leave_one_out_median, &leave_one_out_trimmed_mean,
                                          &closest_to_median_mean});  // signatures.h
  // Host-only: the attacks' searches and the defenses score subsets of a distance matrix already computed.
  m.def("krum_scores_from_distances", &krum_scores_from_distances, py::arg("sq_distances"), py::arg("c"),
        py::arg("squared"),
        "(n,) float64 Krum scores from (n, n) float64 squared distances: each row's n - c - 2 smallest "
        "distances to the other rows (clamped at 0 neighbours), summed in ascending order.");
  m.def("bulyan_select_from_distances", &bulyan_select_from_distances, py::arg("sq_distances"), py::arg("c"),
        py::arg("squared"),
        "(n - 2c,) int64: Bulyan's selection, in selection order, from (n, n) float64 squared distances.");
  m.def("krum_distance_bounds", &krum_distance_bounds, py::arg("U"), py::arg("centre"),
        "Tests of krum_choose: float32 U (m, d) and centre (d,) -> (lo, hi), (m, m) float64 bounds on the "
        "direct squared distances from the quantized Gram matrix of the centred rows; None where it refuses U.");
  m.def("krum_leave_one_out_scores", &krum_leave_one_out_scores, py::arg("sq_distances"), py::arg("c"),
        py::arg("squared"),
        "(n, n) float64: row i the Krum scores (krum_scores_from_distances) of the n - 1 rows other than i, "
        "with c, +Inf at column i.");
  m.def("bulyan_leave_one_out_selections", &bulyan_leave_one_out_selections, py::arg("sq_distances"), py::arg("c"),
        py::arg("squared"),
        "(n, n - 1 - 2c) int64: row i Bulyan's selection (bulyan_select_from_distances) on the n - 1 rows other "
        "than i, as indices of the n rows, in selection order; needs n - 1 >= 4c + 3.");
}
