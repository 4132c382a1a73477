// The functions both native modules define, written once: their names, argument names,
// documentation and C++ types. fedrobust._cpu (cpu_*.cpp) and fedrobust._cuda
// (cuda_*.cpp) each fill a table with their implementations and call def_*(); a binding
// of another signature does not compile, so the two modules cannot drift apart.
// Arrays are taken as Python objects and read with array.h; outputs are written into
// the arrays passed as `out` (and mean / std / min / max / direction_out); host results
// come back as numpy arrays.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace fedrobust::bindings {

namespace py = pybind11;

using Object = const py::object&;
using OptionalRows = std::optional<std::vector<int64_t>>;
using Ids = const std::vector<int64_t>&;

struct AggregationFunctions {
  void (*median)(Object U, const OptionalRows& rows, Object out);
  void (*trimmed_mean)(Object U, int64_t beta, const OptionalRows& rows, Object out);
  void (*mean)(Object U, const OptionalRows& rows, Object out);
  void (*coordinate_stats)(Object U, const OptionalRows& rows, Object mean, Object std, Object min, Object max);
  void (*pairwise_distances)(Object U, bool squared, const OptionalRows& rows, Object out);
  py::array_t<double> (*sq_distances)(Object U, const OptionalRows& rows);
  py::tuple (*krum_select)(Object U, int64_t c, int64_t multi, bool squared);
  py::tuple (*krum_choose)(Object U, int64_t c, int64_t multi, bool squared);
  py::array_t<int64_t> (*bulyan)(Object U, int64_t c, bool squared, Object out);
  py::array_t<bool> (*nonfinite_rows)(Object U);
  void (*leave_one_out_median)(Object U, Object out);
  void (*leave_one_out_trimmed_mean)(Object U, int64_t beta, Object out);
  void (*closest_to_median_mean)(Object U, int64_t gamma, Ids rows, Object out);
};

struct AttackFunctions {
  void (*craft_coordinates)(Object U, Ids rows, const std::string& mode, Ids out_ids, uint64_t seed, uint64_t round,
                            Object direction, Object base, double b, double sigma_lo, double sigma_hi, Object out,
                            Object direction_out);
  py::tuple (*norms_and_dots)(Object U, Object direction, const OptionalRows& rows);
  void (*krum_craft)(Object direction, double lam, double eps, uint64_t seed, uint64_t round, Ids out_ids, Object out);
};

inline void def_aggregation(py::module_& m, const AggregationFunctions& f) {
  m.def("median", f.median, py::arg("U"), py::arg("rows"), py::arg("out"),
        "Coordinate-wise median of the listed rows of U (all when None) into out (d,).");
  m.def("trimmed_mean", f.trimmed_mean, py::arg("U"), py::arg("beta"), py::arg("rows"), py::arg("out"),
        "Coordinate-wise trimmed mean of the listed rows of U (all when None; summed in ascending row order) "
        "into out (d,): beta values removed at each end.");
  m.def("mean", f.mean, py::arg("U"), py::arg("rows"), py::arg("out"),
        "Mean over the listed rows (all when None), summed in ascending row order in double, into out (d,).");
  m.def("coordinate_stats", f.coordinate_stats, py::arg("U"), py::arg("rows"), py::arg("mean"), py::arg("std"),
        py::arg("min"), py::arg("max"),
        "Per-coordinate mean, population std, min and max over the listed rows (all when None); NaN counts as +Inf.");
  m.def("pairwise_distances", f.pairwise_distances, py::arg("U"), py::arg("squared"), py::arg("rows"),
        py::arg("out"), "(k, k) distances between the listed rows (all m when None), in that order, into out.");
  m.def("sq_distances", f.sq_distances, py::arg("U"), py::arg("rows"),
        "(k, k) squared distances (float64) between the listed rows (all m when None), as a host numpy array.");
  m.def("krum_select", f.krum_select, py::arg("U"), py::arg("c"), py::arg("multi"), py::arg("squared"),
        "Krum's choice: returns (the `multi` rows of smallest score, ascending by score, ties to the lower "
        "row, host int64; the (m,) float64 scores, host).");
  m.def("krum_choose", f.krum_choose, py::arg("U"), py::arg("c"), py::arg("multi"), py::arg("squared"),
        "Krum's choice without the scores: returns (krum_select's rows; the number of rows scored exactly "
        "after bounding every score from a Gram matrix, -1 where the full distance matrix was used).");
  m.def("bulyan", f.bulyan, py::arg("U"), py::arg("c"), py::arg("squared"), py::arg("out"),
        "Bulyan of U into out (d,); returns the selected rows in selection order (host int64).");
  m.def("nonfinite_rows", f.nonfinite_rows, py::arg("U"), "(m,) host bool: the rows of U that hold a NaN or an Inf.");
  m.def("leave_one_out_median", f.leave_one_out_median, py::arg("U"), py::arg("out"),
        "Leave-one-out medians of U (m >= 2 rows) into out (m, d): row i is the median of the rows other than i.");
  m.def("leave_one_out_trimmed_mean", f.leave_one_out_trimmed_mean, py::arg("U"), py::arg("beta"), py::arg("out"),
        "Leave-one-out trimmed means of U (m >= 2 rows) into out (m, d): row i is the trimmed mean (beta "
        "removed at each end, 2 beta < m - 1) of the rows other than i, summed in ascending row order.");
  m.def("closest_to_median_mean", f.closest_to_median_mean, py::arg("U"), py::arg("gamma"), py::arg("rows"),
        py::arg("out"),
        "Bulyan's second stage over the listed rows of U into out (d,): per coordinate, the mean of the gamma "
        "values closest to their median (summed in ascending order in double).");
}

inline void def_attacks(py::module_& m, const AttackFunctions& f) {
  m.def("craft_coordinates", f.craft_coordinates, py::arg("U"), py::arg("rows"), py::arg("mode"), py::arg("out_ids"),
        py::arg("seed"), py::arg("round"), py::arg("direction"), py::arg("base"), py::arg("b"), py::arg("sigma_lo"),
        py::arg("sigma_hi"), py::arg("out"), py::arg("direction_out"),
        "Trim / Gaussian attack values from the per-coordinate statistics of U[rows] into out (len(out_ids), d), "
        "the direction used into direction_out (d,) int8.");
  m.def("norms_and_dots", f.norms_and_dots, py::arg("U"), py::arg("direction"), py::arg("rows"),
        "Returns (||u_i||^2, <u_i, direction>), (k,) float64 host arrays, for the listed rows (all when None).");
  m.def("krum_craft", f.krum_craft, py::arg("direction"), py::arg("lam"), py::arg("eps"), py::arg("seed"),
        py::arg("round"), py::arg("out_ids"), py::arg("out"),
        "The Krum attack's sent updates into out (len(out_ids), d): row 0 = -lam * direction, row k = row 0 + "
        "r_k v_k, |v_k| = 1, r_k ~ U(0, eps).");
}

}  // namespace fedrobust::bindings
