// The argument checks of the bindings, each written once and used by both
// fedrobust._cpu (cpu_*.cpp) and fedrobust._cuda (cuda_*.cpp), so both refuse
// the same input with the same message. Each throws ValueError. The rules'
// checks are also exported by both modules (bind_checks), so the Python
// settings validation runs this code and gives these messages too.
#pragma once
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "fedrobust/craft.h"

namespace fedrobust::bindings {

namespace py = pybind11;

// ---------------------------------------------------------------------------
// Counts, rows, ids.
// ---------------------------------------------------------------------------

// A count such as c or beta: value >= 0.
inline void check_count(const char* name, int64_t value) {
  if (value < 0) throw py::value_error(std::string(name) + " must be >= 0, got " + std::to_string(value));
}

// A matrix U of m rows and d columns: m >= 1 and d >= 1.
inline void check_matrix_size(int64_t m, int64_t d) {
  if (m < 1 || d < 1)
    throw py::value_error("U: expected at least one row and one column, got shape (" + std::to_string(m) + ", " +
                          std::to_string(d) + ")");
}

// A row index into a matrix of m rows: 0 <= i < m.
inline void check_row_index(int64_t i, int64_t m) {
  if (i < 0 || i >= m)
    throw py::value_error("row index " + std::to_string(i) + " is out of range for " + std::to_string(m) + " rows");
}

// Every index of `rows` is a row of a matrix of m rows.
inline void check_rows(const std::vector<int64_t>& rows, int64_t m) {
  for (int64_t i : rows) check_row_index(i, m);
}

// A list of rows that must name at least one.
inline void check_some_rows(const std::vector<int64_t>& rows) {
  if (rows.empty()) throw py::value_error("rows: expected at least one row index, got none");
}

// The attacks' out_ids: at least one.
inline void check_some_ids(const std::vector<int64_t>& ids) {
  if (ids.empty()) throw py::value_error("out_ids: expected at least one id, got none");
}

// ---------------------------------------------------------------------------
// The aggregation rules, for m rows (workers). Each bound is tested without
// forming 2c + 2, 2 beta or 4c + 3, which overflow for huge counts.
// ---------------------------------------------------------------------------

// floor(a / 2), also for negative a (where C++'s / rounds towards 0): the
// largest valid count in the messages, negative where none is valid.
inline int64_t half_down(int64_t a) { return a >= 0 ? a / 2 : -((1 - a) / 2); }

// Krum: c >= 0 and m > 2c + 2.
inline void check_krum(int64_t m, int64_t c) {
  check_count("c", c);
  if (c > (m - 3) / 2 || m < 3)
    throw py::value_error("Krum needs m > 2c + 2 workers: got m = " + std::to_string(m) + ", c = " +
                          std::to_string(c) + " (at most c = " + std::to_string(half_down(m - 3)) + " for this m)");
}

// Multi-Krum: Krum's rule, and 1 <= multi <= m - c rows averaged.
inline void check_multi_krum(int64_t m, int64_t c, int64_t multi) {
  check_krum(m, c);
  if (multi < 1 || multi > m - c)
    throw py::value_error("multi must be in [1, m - c] = [1, " + std::to_string(m - c) + "], got " +
                          std::to_string(multi));
}

// The trimmed mean: beta >= 0 and 2 beta < m.
inline void check_trimmed_mean(int64_t m, int64_t beta) {
  check_count("beta", beta);
  if (beta > (m - 1) / 2 || m < 1)
    throw py::value_error("trimmed mean needs 2*beta < m: got beta = " + std::to_string(beta) + ", m = " +
                          std::to_string(m) + " (at most beta = " + std::to_string(half_down(m - 1)) + " for this m)");
}

// Leave-one-out aggregation: at least 2 rows (each result has m - 1 of them).
inline void check_leave_one_out(int64_t m) {
  if (m < 2)
    throw py::value_error("leave-one-out aggregation needs at least 2 rows, got m = " + std::to_string(m));
}

// Leave-one-out trimmed means: m >= 2 rows, and the rule valid on m - 1 of them.
inline void check_leave_one_out_trimmed_mean(int64_t m, int64_t beta) {
  check_leave_one_out(m);
  check_trimmed_mean(m - 1, beta);
}

// Bulyan: c >= 0 and m >= 4c + 3.
inline void check_bulyan(int64_t m, int64_t c) {
  check_count("c", c);
  if (c > (m - 3) / 4 || m < 3)
    throw py::value_error("Bulyan needs m >= 4c + 3 workers: got m = " + std::to_string(m) + ", c = " +
                          std::to_string(c));
}

// Bulyan's second stage over n listed rows: 1 <= gamma <= n.
inline void check_closest_to_median(int64_t n, int64_t gamma) {
  if (gamma < 1 || gamma > n)
    throw py::value_error("closest_to_median_mean needs 1 <= gamma <= the number of rows: got gamma = " +
                          std::to_string(gamma) + ", " + std::to_string(n) + " rows");
}

// ---------------------------------------------------------------------------
// The attacks.
// ---------------------------------------------------------------------------

// craft_coordinates: the mode by name, with its own parameters checked
// (has_direction: a direction was passed; trim_full needs one).
inline CraftMode craft_mode(const std::string& mode, bool has_direction, double b, double sigma_lo,
                            double sigma_hi) {
  if (mode == "trim_full") {
    if (!has_direction) throw py::value_error("mode 'trim_full' needs a direction");
    if (!(b > 1.0)) throw py::value_error("b must be > 1, got " + std::to_string(b));
    return CraftMode::kTrimFull;
  }
  if (mode == "trim_partial") {
    if (!(0.0 <= sigma_lo && sigma_lo <= sigma_hi))
      throw py::value_error("sigma interval must satisfy 0 <= sigma_lo <= sigma_hi, got [" + std::to_string(sigma_lo) +
                            ", " + std::to_string(sigma_hi) + "]");
    return CraftMode::kTrimPartial;
  }
  if (mode == "gaussian") return CraftMode::kGaussian;
  throw py::value_error("mode must be 'trim_full', 'trim_partial' or 'gaussian', got '" + mode + "'");
}

// krum_craft: a finite lambda and a finite eps >= 0.
inline void check_krum_craft(double lambda, double eps) {
  if (!std::isfinite(lambda)) throw py::value_error("lambda must be finite, got " + std::to_string(lambda));
  if (!(eps >= 0.0 && std::isfinite(eps))) throw py::value_error("eps must be >= 0, got " + std::to_string(eps));
}

// ---------------------------------------------------------------------------
// The rules' checks as module functions (both modules; no GPU needed).
// ---------------------------------------------------------------------------
inline void bind_checks(py::module_& m) {
  m.def("check_krum", &check_krum, py::arg("m"), py::arg("c"),
        "Raise ValueError unless c >= 0 and m > 2c + 2 (Krum on m workers).");
  m.def("check_multi_krum", &check_multi_krum, py::arg("m"), py::arg("c"), py::arg("multi"),
        "Raise ValueError unless Krum's rule holds and 1 <= multi <= m - c (Multi-Krum on m workers).");
  m.def("check_trimmed_mean", &check_trimmed_mean, py::arg("m"), py::arg("beta"),
        "Raise ValueError unless 0 <= beta and 2*beta < m (the trimmed mean of m workers).");
  m.def("check_bulyan", &check_bulyan, py::arg("m"), py::arg("c"),
        "Raise ValueError unless c >= 0 and m >= 4c + 3 (Bulyan on m workers).");
}

}  // namespace fedrobust::bindings
