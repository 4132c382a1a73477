// fedrobust._cpu's aggregation family: distances, Krum / Multi-Krum, Bulyan,
// the median, the trimmed mean, the mean, the coordinate statistics and the
// non-finite row scan. Each binding checks its arguments (checks.h,
// numpy_args.h), drops the GIL and calls the kernel (csrc/cpu/*.h).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <vector>

#include "../cpu/coordinatewise.h"
#include "../cpu/distances.h"
#include "../cpu/krum.h"
#include "../cpu/statistics.h"
#include "checks.h"
#include "numpy_args.h"

namespace py = pybind11;
namespace cpu = fedrobust::cpu;
using fedrobust::RowsView;
using namespace fedrobust::bindings;

namespace {

// (n, n) squared distances of the rows, row-major, in double.
template <class T>
std::vector<double> sq_distances(const RowsView<T>& v) {
  std::vector<double> d(static_cast<size_t>(v.n_rows * v.n_rows));
  cpu::pairwise_sq_distances<T>(v, d.data());
  return d;
}

// Mean of the given rows of `a`, rows summed in ascending index order.
template <class T>
py::array_t<T> mean_of_rows(const py::array& a, std::vector<int64_t> rows) {
  std::sort(rows.begin(), rows.end());
  Rows<T> r = rows_of<T>(a, &rows);
  py::array_t<T> out(a.shape(1));
  T* p = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    cpu::mean<T>(r.view, p);
  }
  return out;
}

py::object pairwise_distances(const py::array& a, bool squared, std::optional<std::vector<int64_t>> rows,
                              bool as_double) {
  return dispatch_float(a, [&](auto tag) -> py::object {
    using T = decltype(tag);
    if (rows) check_some_rows(*rows);
    Rows<T> r = rows ? rows_of<T>(a, &*rows) : rows_of<T>(a);
    const int64_t m = r.view.n_rows;
    std::vector<double> d;
    {
      py::gil_scoped_release nogil;
      d = sq_distances(r.view);
      if (!squared)
        for (double& x : d) x = std::sqrt(x);
    }
    if (as_double) {
      py::array_t<double> out({m, m});
      std::copy(d.begin(), d.end(), out.mutable_data());
      return std::move(out);
    }
    py::array_t<T> out({m, m});
    T* p = out.mutable_data();
    for (int64_t i = 0; i < m * m; ++i) p[i] = static_cast<T>(d[i]);
    return std::move(out);
  });
}

py::object krum_scores(const py::array& a, int64_t c, bool squared) {
  return dispatch_float(a, [&](auto tag) -> py::object {
    using T = decltype(tag);
    Rows<T> r = rows_of<T>(a);
    check_krum(r.view.n_rows, c);
    std::vector<double> scores;
    {
      py::gil_scoped_release nogil;
      std::vector<double> d = sq_distances(r.view);
      scores = cpu::krum_scores(d.data(), r.view.n_rows, all_rows(r.view.n_rows), c, squared);
    }
    return to_array<T>(scores);
  });
}

// Krum scores from an (n, n) float64 matrix of squared distances (a host copy of the device's,
// or the attacks' pools): the scores Krum computes after its distance pass, the same code.
py::array_t<double> krum_scores_from_distances(const py::array& sq, int64_t c, bool squared) {
  check_dense<double>(sq, "sq_distances", 2, "a 2-D array of shape (n, n) of squared distances");
  const int64_t n = sq.shape(0);
  if (sq.shape(1) != n) throw py::value_error("sq_distances: expected a square matrix, got shape " + shape_text(sq));
  check_count("c", c);
  std::vector<double> scores;
  {
    py::gil_scoped_release nogil;
    scores = cpu::krum_scores(static_cast<const double*>(sq.data()), n, all_rows(n), c, squared);
  }
  return to_array<double>(scores);
}

py::tuple krum(const py::array& a, int64_t c, int64_t multi, bool squared) {
  return dispatch_float(a, [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    Rows<T> r = rows_of<T>(a);
    const int64_t m = r.view.n_rows;
    check_multi_krum(m, c, multi);
    std::vector<double> scores;
    std::vector<int64_t> chosen;
    {
      py::gil_scoped_release nogil;
      std::vector<double> d = sq_distances(r.view);
      scores = cpu::krum_scores(d.data(), m, all_rows(m), c, squared);
      chosen = cpu::smallest_scores(scores, multi);
    }
    // Krum returns the selected row itself; Multi-Krum the mean of the selected rows.
    py::object aggregate = multi == 1 ? py::object(a[py::int_(chosen[0])].attr("copy")())
                                      : py::object(mean_of_rows<T>(a, chosen));
    return py::make_tuple(aggregate, index_array(chosen), to_array<T>(scores));
  });
}

py::tuple bulyan(const py::array& a, int64_t c, bool squared) {
  return dispatch_float(a, [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    Rows<T> r = rows_of<T>(a);
    const int64_t m = r.view.n_rows;
    check_bulyan(m, c);
    std::vector<int64_t> chosen;
    {
      py::gil_scoped_release nogil;
      std::vector<double> d = sq_distances(r.view);
      chosen = cpu::bulyan_select(d.data(), m, c, squared);
    }
    const int64_t theta = m - 2 * c, gamma = theta - 2 * c;
    Rows<T> sel = rows_of<T>(a, &chosen);
    py::array_t<T> out(a.shape(1));
    T* p = out.mutable_data();
    {
      py::gil_scoped_release nogil;
      cpu::closest_to_median_mean<T>(sel.view, gamma, p);
    }
    return py::make_tuple(out, index_array(chosen));
  });
}

py::object median(const py::array& a) {
  return dispatch_float(a, [&](auto tag) -> py::object {
    using T = decltype(tag);
    Rows<T> r = rows_of<T>(a);
    py::array_t<T> out(a.shape(1));
    T* p = out.mutable_data();
    py::gil_scoped_release nogil;
    cpu::median<T>(r.view, p);
    return std::move(out);
  });
}

py::object trimmed_mean(const py::array& a, int64_t beta) {
  return dispatch_float(a, [&](auto tag) -> py::object {
    using T = decltype(tag);
    Rows<T> r = rows_of<T>(a);
    check_trimmed_mean(r.view.n_rows, beta);
    py::array_t<T> out(a.shape(1));
    T* p = out.mutable_data();
    py::gil_scoped_release nogil;
    cpu::trimmed_mean<T>(r.view, beta, p);
    return std::move(out);
  });
}

py::object mean(const py::array& a, std::optional<std::vector<int64_t>> rows) {
  return dispatch_float(a, [&](auto tag) -> py::object {
    using T = decltype(tag);
    std::vector<int64_t> idx = rows ? *rows : all_rows(a.shape(0));
    check_some_rows(idx);
    return mean_of_rows<T>(a, idx);
  });
}

py::tuple coordinate_stats(const py::array& a, std::optional<std::vector<int64_t>> rows) {
  return dispatch_float(a, [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    std::vector<int64_t> idx = rows ? *rows : all_rows(a.shape(0));
    check_some_rows(idx);
    std::sort(idx.begin(), idx.end());
    Rows<T> r = rows_of<T>(a, &idx);
    const py::ssize_t d = a.shape(1);
    py::array_t<T> mu(d), sd(d), lo(d), hi(d);
    T *pm = mu.mutable_data(), *ps = sd.mutable_data(), *pl = lo.mutable_data(), *ph = hi.mutable_data();
    {
      py::gil_scoped_release nogil;
      cpu::coordinate_stats<T>(r.view, pm, ps, pl, ph);
    }
    return py::make_tuple(mu, sd, lo, hi);
  });
}

py::object nonfinite_rows(const py::array& a) {
  return dispatch_float(a, [&](auto tag) -> py::object {
    using T = decltype(tag);
    Rows<T> r = rows_of<T>(a);
    py::array_t<bool> out(a.shape(0));
    auto* p = reinterpret_cast<uint8_t*>(out.mutable_data());
    py::gil_scoped_release nogil;
    cpu::nonfinite_rows<T>(r.view, p);
    return std::move(out);
  });
}

}  // namespace

void bind_aggregation(py::module_& m) {
  m.def("pairwise_distances", &pairwise_distances, py::arg("U"), py::arg("squared"), py::arg("rows") = py::none(),
        py::arg("as_double") = false,
        "Distances between the given rows (all by default), in that order; in U's dtype, or float64 "
        "(the values Krum scores) with as_double.");
  m.def("krum_scores", &krum_scores, py::arg("U"), py::arg("c"), py::arg("squared"));
  m.def("krum_scores_from_distances", &krum_scores_from_distances, py::arg("sq_distances"), py::arg("c"),
        py::arg("squared"),
        "(n,) float64 Krum scores from (n, n) float64 squared distances: each row's n - c - 2 smallest "
        "distances to the other rows (clamped at 0 neighbours), summed in ascending order.");
  m.def("krum", &krum, py::arg("U"), py::arg("c"), py::arg("multi"), py::arg("squared"),
        "Returns (aggregate, selected rows, scores).");
  m.def("bulyan", &bulyan, py::arg("U"), py::arg("c"), py::arg("squared"),
        "Returns (aggregate, selected rows in selection order).");
  m.def("median", &median, py::arg("U"));
  m.def("trimmed_mean", &trimmed_mean, py::arg("U"), py::arg("beta"));
  m.def("mean", &mean, py::arg("U"), py::arg("rows") = py::none());
  m.def("coordinate_stats", &coordinate_stats, py::arg("U"), py::arg("rows") = py::none(),
        "Returns (mean, population std, min, max) over the given rows.");
  m.def("nonfinite_rows", &nonfinite_rows, py::arg("U"));
  // The shape rule of every U, for fedrobust.arrays.
  m.def("check_matrix", &check_matrix, py::arg("U"),
        "Raise ValueError unless U is 2-D with at least one row and one column.");
}
