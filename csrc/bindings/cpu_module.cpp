// fedrobust._cpu: the CPU kernels for Python. Argument checks live here,
// once; the Python layer (fedrobust.arrays) only converts array types.
#include <omp.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "attack_args.h"
#include "fedrobust/column.h"
#include "fedrobust/distance_tile.h"
#include "fedrobust/krum_craft.h"
#include "attacks.h"
#include "coordinatewise.h"
#include "distances.h"
#include "krum.h"
#include "simd_level.h"
#include "statistics.h"
#include "training.h"

namespace py = pybind11;
using fedrobust::RowsView;
namespace cpu = fedrobust::cpu;

namespace {

// A RowsView over a 2-D numpy array (any strides), optionally over a subset of its rows.
template <class T>
struct Rows {
  std::vector<const T*> pointers;
  RowsView<T> view;
};

template <class T>
Rows<T> rows_of(const py::array& a, const std::vector<int64_t>* subset = nullptr) {
  const auto item = static_cast<py::ssize_t>(sizeof(T));
  if (a.strides(0) % item != 0 || a.strides(1) % item != 0)
    throw py::value_error("U: strides must be multiples of the item size");
  const char* base = static_cast<const char*>(a.data());
  Rows<T> r;
  const int64_t m = a.shape(0);
  auto row = [&](int64_t i) { return reinterpret_cast<const T*>(base + i * a.strides(0)); };
  if (subset) {
    for (int64_t i : *subset) {
      if (i < 0 || i >= m)
        throw py::value_error("row index " + std::to_string(i) + " is out of range for " +
                              std::to_string(m) + " rows");
      r.pointers.push_back(row(i));
    }
  } else {
    for (int64_t i = 0; i < m; ++i) r.pointers.push_back(row(i));
  }
  r.view = RowsView<T>{r.pointers.data(), static_cast<int64_t>(r.pointers.size()), a.shape(1),
                       a.strides(1) / item};
  return r;
}

// The shape as Python prints a tuple: "(9,)", "(2, 3, 4)".
std::string shape_text(const py::array& a) {
  std::string text = "(";
  for (py::ssize_t k = 0; k < a.ndim(); ++k) text += (k ? ", " : "") + std::to_string(a.shape(k));
  return text + (a.ndim() == 1 ? ",)" : ")");
}

void check_matrix(const py::array& a) {
  if (a.ndim() != 2)
    throw py::value_error("U: expected a 2-D array of shape (m workers, d parameters), got shape " +
                          shape_text(a));
  if (a.shape(0) < 1 || a.shape(1) < 1)
    throw py::value_error("U: expected at least one row and one column, got shape " + shape_text(a));
}

bool is_float32(const py::array& a) { return a.dtype().is(py::dtype::of<float>()); }
bool is_float64(const py::array& a) { return a.dtype().is(py::dtype::of<double>()); }

// Call f.template operator()<T>() with T the array's float type.
template <class F>
auto dispatch_float(const py::array& a, F&& f) {
  check_matrix(a);
  if (is_float32(a)) return f(float{});
  if (is_float64(a)) return f(double{});
  throw py::type_error("U: expected float32 or float64 values, got dtype " +
                       std::string(py::str(a.dtype())));
}

void check_count(const char* name, int64_t value) {
  if (value < 0)
    throw py::value_error(std::string(name) + " must be >= 0, got " + std::to_string(value));
}

void check_krum(int64_t m, int64_t c) {
  check_count("c", c);
  if (c > (m - 3) / 2 || m < 3)  // m > 2c + 2, without overflow for huge c
    throw py::value_error("Krum needs m > 2c + 2 workers: got m = " + std::to_string(m) +
                          ", c = " + std::to_string(c) + " (at most c = " +
                          std::to_string((m - 3) / 2) + " for this m)");
}

template <class T>
std::vector<double> sq_distances(const RowsView<T>& v) {
  std::vector<double> d(static_cast<size_t>(v.n_rows * v.n_rows));
  cpu::pairwise_sq_distances<T>(v, d.data());
  return d;
}

template <class T>
py::array_t<T> to_array(const std::vector<double>& values) {
  py::array_t<T> out(static_cast<py::ssize_t>(values.size()));
  T* p = out.mutable_data();
  for (size_t i = 0; i < values.size(); ++i) p[i] = static_cast<T>(values[i]);
  return out;
}

py::array_t<int64_t> index_array(const std::vector<int64_t>& idx) {
  py::array_t<int64_t> out(static_cast<py::ssize_t>(idx.size()));
  std::copy(idx.begin(), idx.end(), out.mutable_data());
  return out;
}

std::vector<int64_t> all_rows(int64_t m) {
  std::vector<int64_t> r(m);
  for (int64_t i = 0; i < m; ++i) r[i] = i;
  return r;
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
    if (rows && rows->empty()) throw py::value_error("rows: expected at least one row index, got none");
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

py::tuple krum(const py::array& a, int64_t c, int64_t multi, bool squared) {
  return dispatch_float(a, [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    Rows<T> r = rows_of<T>(a);
    const int64_t m = r.view.n_rows;
    check_krum(m, c);
    if (multi < 1 || multi > m - c)
      throw py::value_error("multi must be in [1, m - c] = [1, " + std::to_string(m - c) +
                            "], got " + std::to_string(multi));
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
    check_count("c", c);
    if (c > (m - 3) / 4 || m < 3)  // m >= 4c + 3, without overflow for huge c
      throw py::value_error("Bulyan needs m >= 4c + 3 workers: got m = " + std::to_string(m) +
                            ", c = " + std::to_string(c));
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
    const int64_t m = r.view.n_rows;
    check_count("beta", beta);
    if (beta > (m - 1) / 2)  // 2 beta < m, without overflow for huge beta
      throw py::value_error("trimmed mean needs 2*beta < m: got beta = " + std::to_string(beta) +
                            ", m = " + std::to_string(m) + " (at most beta = " +
                            std::to_string((m - 1) / 2) + " for this m)");
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
    if (idx.empty()) throw py::value_error("rows: expected at least one row index, got none");
    return mean_of_rows<T>(a, idx);
  });
}

py::tuple coordinate_stats(const py::array& a, std::optional<std::vector<int64_t>> rows) {
  return dispatch_float(a, [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    std::vector<int64_t> idx = rows ? *rows : all_rows(a.shape(0));
    if (idx.empty()) throw py::value_error("rows: expected at least one row index, got none");
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

// A C-contiguous array of T with the given number of dimensions, or a ValueError/TypeError.
template <class T>
void check_dense(const py::array& a, const char* name, py::ssize_t ndim, const char* what) {
  if (a.ndim() != ndim)
    throw py::value_error(std::string(name) + ": expected " + what + ", got shape " + shape_text(a));
  if (!a.dtype().is(py::dtype::of<T>()))
    throw py::type_error(std::string(name) + ": expected dtype " + std::string(py::str(py::dtype::of<T>())) +
                         ", got " + std::string(py::str(a.dtype())));
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + ": expected a C-contiguous array");
}

py::object lr_sgd_step(const py::array& w, const py::array& X, const py::array& y, const py::array& batches,
                       int64_t classes, double lr, std::optional<py::array> U) {
  auto run = [&](auto tag) -> py::object {
    using T = decltype(tag);
    check_dense<T>(X, "X", 2, "a 2-D array of shape (examples, features)");
    check_dense<int64_t>(y, "y", 1, "a 1-D array of labels");
    check_dense<int64_t>(batches, "batches", 2, "a 2-D array of shape (workers, batch) of example indices");
    const int64_t n = X.shape(0), features = X.shape(1), m = batches.shape(0), batch = batches.shape(1);
    if (classes < 1) throw py::value_error("classes must be >= 1, got " + std::to_string(classes));
    const int64_t d = features * classes + classes;
    if (w.shape(0) != d)
      throw py::value_error("w: expected " + std::to_string(d) + " = features * classes + classes parameters, got " +
                            std::to_string(w.shape(0)));
    if (y.shape(0) != n)
      throw py::value_error("y: expected one label per row of X (" + std::to_string(n) + "), got " +
                            std::to_string(y.shape(0)));
    const int64_t* labels = static_cast<const int64_t*>(y.data());
    for (int64_t e = 0; e < n; ++e)
      if (labels[e] < 0 || labels[e] >= classes)
        throw py::value_error("y: labels must lie in [0, " + std::to_string(classes) + "), got " +
                              std::to_string(labels[e]) + " at index " + std::to_string(e));
    const int64_t* idx = static_cast<const int64_t*>(batches.data());
    for (int64_t k = 0; k < m * batch; ++k)
      if (idx[k] < -1 || idx[k] >= n)
        throw py::value_error("batches: indices must lie in [-1, " + std::to_string(n) + ") (-1 = empty slot), got " +
                              std::to_string(idx[k]));
    py::array_t<T> out = U ? py::array_t<T>(py::reinterpret_borrow<py::array_t<T>>(*U)) : py::array_t<T>({m, d});
    if (U) {
      check_dense<T>(*U, "U", 2, "a 2-D array of shape (workers, d)");
      if (U->shape(0) != m || U->shape(1) != d)
        throw py::value_error("U: expected shape (" + std::to_string(m) + ", " + std::to_string(d) + "), got " +
                              shape_text(*U));
      if (!U->writeable()) throw py::value_error("U: expected a writable array");
    }
    cpu::LrStep<T> step{static_cast<const T*>(w.data()), static_cast<const T*>(X.data()), labels, idx,
                        out.mutable_data(), features, classes, m, batch, static_cast<T>(lr), !U};
    {
      py::gil_scoped_release nogil;
      cpu::lr_sgd_step<T>(step);
    }
    return std::move(out);
  };
  if (w.ndim() != 1) throw py::value_error("w: expected a 1-D array of parameters, got shape " + shape_text(w));
  if (!(w.flags() & py::array::c_style)) throw py::value_error("w: expected a C-contiguous array");
  if (is_float32(w)) return run(float{});
  if (is_float64(w)) return run(double{});
  throw py::type_error("w: expected float32 or float64 values, got dtype " + std::string(py::str(w.dtype())));
}

// A direction s: (cols,) int8 with values in {-1, 0, 1}.
const int8_t* direction_of(const py::array& s, int64_t cols) {
  check_dense<int8_t>(s, "direction", 1, "a 1-D array of signs");
  if (s.shape(0) != cols)
    throw py::value_error("direction: expected " + std::to_string(cols) + " signs (one per column of U), got " +
                          std::to_string(s.shape(0)));
  const int8_t* p = static_cast<const int8_t*>(s.data());
  for (int64_t j = 0; j < cols; ++j)
    if (p[j] < -1 || p[j] > 1)
      throw py::value_error("direction: values must be -1, 0 or 1, got " + std::to_string(p[j]) + " at index " +
                            std::to_string(j));
  return p;
}

std::vector<int64_t> ids_of(const py::array& ids) {
  check_dense<int64_t>(ids, "out_ids", 1, "a 1-D array of row ids");
  if (ids.shape(0) < 1) throw py::value_error("out_ids: expected at least one id, got none");
  const int64_t* p = static_cast<const int64_t*>(ids.data());
  return std::vector<int64_t>(p, p + ids.shape(0));
}

py::tuple craft_coordinates(const py::array& a, const std::vector<int64_t>& rows, const std::string& mode,
                            const py::array& out_ids, uint64_t seed, uint64_t round,
                            std::optional<py::array> direction, std::optional<py::array> base, double b,
                            double sigma_lo, double sigma_hi) {
  return dispatch_float(a, [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    if (rows.empty()) throw py::value_error("rows: expected at least one row index, got none");
    Rows<T> r = rows_of<T>(a, &rows);
    const int64_t d = r.view.cols;
    cpu::CraftSpec<T> spec{};
    spec.rows = r.view;
    spec.mode = fedrobust::bindings::craft_mode(mode, direction.has_value(), b, sigma_lo, sigma_hi);
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
    if (rows && rows->empty()) throw py::value_error("rows: expected at least one row index, got none");
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

// The CUDA krum_craft's steps (fedrobust/krum_craft.h) on the CPU, in plain scalar code:
// each pair of normals on its own (not the vectorised normal_pairs), then the chunk sums,
// the scales and the values. How the tests check that path without a GPU.
template <class T>
void krum_craft_scalar_steps(const cpu::KrumCraft<T>& s) {
  const int64_t d = s.cols, n_chunks = fedrobust::krum_chunks(d);
  std::vector<double> chunk_sq(static_cast<size_t>(n_chunks)), scale(static_cast<size_t>(s.n_out), 0.0);
  for (int64_t k = 1; k < s.n_out; ++k) {
    const uint64_t prefix = fedrobust::counter_prefix(s.seed, s.round, static_cast<uint64_t>(s.out_ids[k]));
    T* row = s.out + k * d;
    for (int64_t j = 0; j < d; j += 2) fedrobust::krum_normal_pair<T>(prefix, j, d, row);
    for (int64_t c = 0; c < n_chunks; ++c) {
      const int64_t j0 = c * fedrobust::kKrumChunk;
      chunk_sq[c] = fedrobust::krum_chunk_sq(row + j0, std::min(fedrobust::kKrumChunk, d - j0));
    }
    scale[k] = fedrobust::krum_scale(chunk_sq.data(), n_chunks, s.eps, prefix, d);
  }
  for (int64_t k = 0; k < s.n_out; ++k)
    for (int64_t j = 0; j < d; ++j) {
      T* x = s.out + k * d + j;
      *x = k == 0 ? fedrobust::krum_center<T>(s.lambda, s.direction[j])
                  : fedrobust::krum_supporter<T>(s.lambda, s.direction[j], scale[k], *x);
    }
}

py::object krum_craft_with(const py::array& direction, double lambda, double eps, uint64_t seed, uint64_t round,
                           const py::array& out_ids, const py::dtype& dtype, bool scalar_steps) {
  fedrobust::bindings::check_krum_craft(lambda, eps);
  auto run = [&](auto tag) -> py::object {
    using T = decltype(tag);
    if (direction.ndim() != 1)
      throw py::value_error("direction: expected a 1-D array of signs, got shape " + shape_text(direction));
    const int64_t d = direction.shape(0);
    const std::vector<int64_t> ids = ids_of(out_ids);
    cpu::KrumCraft<T> spec{direction_of(direction, d), d, lambda, eps, seed, round, ids.data(),
                           static_cast<int64_t>(ids.size()), nullptr};
    py::array_t<T> out({spec.n_out, d});
    spec.out = out.mutable_data();
    {
      py::gil_scoped_release nogil;
      if (scalar_steps)
        krum_craft_scalar_steps(spec);
      else
        cpu::krum_craft<T>(spec);
    }
    return std::move(out);
  };
  if (dtype.is(py::dtype::of<float>())) return run(float{});
  if (dtype.is(py::dtype::of<double>())) return run(double{});
  throw py::type_error("dtype must be float32 or float64, got " + std::string(py::str(dtype)));
}

py::object krum_craft(const py::array& direction, double lambda, double eps, uint64_t seed, uint64_t round,
                      const py::array& out_ids, const py::dtype& dtype) {
  return krum_craft_with(direction, lambda, eps, seed, round, out_ids, dtype, false);
}

py::object krum_craft_scalar(const py::array& direction, double lambda, double eps, uint64_t seed, uint64_t round,
                             const py::array& out_ids, const py::dtype& dtype) {
  return krum_craft_with(direction, lambda, eps, seed, round, out_ids, dtype, true);
}

// The CUDA distance kernel's arithmetic (fedrobust/distance_tile.h) on the CPU, in the
// kernel's order: every 4 x 4 micro-tile of row pairs, per column chunk, stage by stage,
// the chunk sums added in chunk order; +Inf where not finite, 0 on the diagonal. The
// tests compare it with the reference here and with the CUDA kernel, bit for bit, on a GPU.
template <class T>
void distances_by_micro_tiles_into(const RowsView<T>& v, double* out) {
  constexpr int S = fedrobust::kStageCols<T>, R = fedrobust::kMicroTile;
  const int64_t m = v.n_rows, d = v.cols, chunk = fedrobust::distance_chunk_cols(m, d);
  const int64_t blocks = (m + R - 1) / R;
  std::vector<T> a(S * R), b(S * R);  // one stage of the two micro-tile rows, column-major
  auto stage = [&](std::vector<T>& dst, int64_t row0, int64_t k0, int cols) {
    for (int c = 0; c < cols; ++c)
      for (int x = 0; x < R; ++x) dst[c * R + x] = row0 + x < m ? v.at(row0 + x, k0 + c) : T(0);
  };
  for (int64_t p = 0; p < blocks; ++p)
    for (int64_t q = p; q < blocks; ++q) {
      double sum[R][R] = {};
      for (int64_t c0 = 0; c0 < d; c0 += chunk) {
        const int64_t c1 = std::min(d, c0 + chunk);
        double total[R][R] = {};
        for (int64_t k0 = c0; k0 < c1; k0 += S) {
          const int cols = static_cast<int>(std::min<int64_t>(S, c1 - k0));
          stage(a, R * p, k0, cols);
          stage(b, R * q, k0, cols);
          fedrobust::micro_tile_stage<T>(a.data(), b.data(), R, cols, total);
        }
        for (int x = 0; x < R; ++x)
          for (int y = 0; y < R; ++y) sum[x][y] += total[x][y];
      }
      for (int x = 0; x < R; ++x)
        for (int y = 0; y < R; ++y) {
          const int64_t i = R * p + x, j = R * q + y;
          if (i >= j || j >= m) continue;
          const double s = sum[x][y] <= std::numeric_limits<double>::max() ? sum[x][y]
                                                                          : std::numeric_limits<double>::infinity();
          out[i * m + j] = out[j * m + i] = s;
        }
    }
  for (int64_t i = 0; i < m; ++i) out[i * m + i] = 0.0;
}

py::array_t<double> distances_by_micro_tiles(const py::array& a) {
  return dispatch_float(a, [&](auto tag) -> py::array_t<double> {
    using T = decltype(tag);
    Rows<T> r = rows_of<T>(a);
    py::array_t<double> out({r.view.n_rows, r.view.n_rows});
    double* p = out.mutable_data();
    py::gil_scoped_release nogil;
    distances_by_micro_tiles_into(r.view, p);
    return out;
  });
}

// The per-column code of the CUDA kernels (fedrobust/column.h) run on the CPU, one column
// at a time: how the tests check that logic without a GPU. Up to 128 rows it sorts, like
// the CUDA kernels; beyond, it selects by radix. `rows` (mean, stats, bulyan) lists the
// rows in the order the kernels read them (all rows when empty).
constexpr int kColumnMaxRows = 128;

// column_median_network / column_trimmed_mean_network for the smallest N in {16, 32, 64, 128}
// with m <= N, as the CUDA kernels pick it.
template <class T>
T column_network(const T* x, int64_t m, bool median, int64_t beta) {
  auto run = [&](auto n) {
    constexpr int N = decltype(n)::value;
    return median ? fedrobust::column_median_network<T, N>(x, 1, m)
                  : fedrobust::column_trimmed_mean_network<T, N>(x, 1, m, beta);
  };
  if (m <= 16) return run(std::integral_constant<int, 16>{});
  if (m <= 32) return run(std::integral_constant<int, 32>{});
  if (m <= 64) return run(std::integral_constant<int, 64>{});
  return run(std::integral_constant<int, 128>{});
}

py::object column_rule_scalar(const py::array& a, const std::string& rule, int64_t beta,
                              const std::vector<int64_t>& rows, int64_t gamma, bool network) {
  return dispatch_float(a, [&](auto tag) -> py::object {
    using T = decltype(tag);
    Rows<T> r = rows_of<T>(a);
    const int64_t m = r.view.n_rows, d = r.view.cols;
    for (int64_t i : rows)
      if (i < 0 || i >= m) throw py::value_error("rows: index " + std::to_string(i) + " is out of range");
    const int64_t n = rows.empty() ? m : static_cast<int64_t>(rows.size());
    const int64_t* listed = rows.empty() ? nullptr : rows.data();
    if (rule == "trimmed_mean" && (beta < 0 || beta > (m - 1) / 2))
      throw py::value_error("trimmed mean needs 0 <= beta and 2*beta < m");
    if (rule == "bulyan" && (gamma < 1 || gamma > n || n > kColumnMaxRows))
      throw py::value_error("bulyan needs 1 <= gamma <= n <= 128 listed rows");
    if (network && (m > kColumnMaxRows || (rule != "median" && rule != "trimmed_mean")))
      throw py::value_error("the network path takes the median or the trimmed mean of at most 128 rows");
    const int n_out = rule == "stats" ? 4 : 1;
    std::vector<py::array_t<T>> outs;
    for (int k = 0; k < n_out; ++k) outs.emplace_back(d);
    std::vector<T> column(static_cast<size_t>(m));
    for (int64_t j = 0; j < d; ++j) {
      for (int64_t i = 0; i < m; ++i) column[i] = r.view.at(i, j);
      const T* x = column.data();
      T* out = outs[0].mutable_data() + j;
      if (network) {
        *out = column_network(x, m, rule == "median", beta);
      } else if (rule == "median") {
        *out = fedrobust::column_median<T, kColumnMaxRows>(x, 1, m);
      } else if (rule == "trimmed_mean") {
        *out = fedrobust::column_trimmed_mean<T, kColumnMaxRows>(x, 1, m, beta);
      } else if (rule == "mean") {
        *out = fedrobust::column_mean(x, 1, listed, n);
      } else if (rule == "bulyan") {
        *out = fedrobust::column_bulyan<T, kColumnMaxRows>(x, 1, listed, n, gamma);
      } else if (rule == "stats") {
        fedrobust::column_stats(x, 1, listed, n, out, outs[1].mutable_data() + j, outs[2].mutable_data() + j,
                                outs[3].mutable_data() + j);
      } else {
        throw py::value_error("rule must be 'median', 'trimmed_mean', 'mean', 'bulyan' or 'stats', got '" + rule +
                              "'");
      }
    }
    if (n_out == 1) return std::move(outs[0]);
    return py::make_tuple(outs[0], outs[1], outs[2], outs[3]);
  });
}

}  // namespace

PYBIND11_MODULE(_cpu, m) {
  m.doc() = "fedrobust CPU kernels (C++17, OpenMP). Use fedrobust.aggregators, not this module.";
  m.def("pairwise_distances", &pairwise_distances, py::arg("U"), py::arg("squared"), py::arg("rows") = py::none(),
        py::arg("as_double") = false,
        "Distances between the given rows (all by default), in that order; in U's dtype, or float64 "
        "(the values Krum scores) with as_double.");
  m.def("krum_scores", &krum_scores, py::arg("U"), py::arg("c"), py::arg("squared"));
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
  m.def("lr_sgd_step", &lr_sgd_step, py::arg("w"), py::arg("X"), py::arg("y"), py::arg("batches"),
        py::arg("classes"), py::arg("lr"), py::arg("U") = py::none(),
        "One local SGD step of multi-class LR for every worker; returns U (updated in place when given).");
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
  m.def("krum_craft_scalar", &krum_craft_scalar, py::arg("direction"), py::arg("lam"), py::arg("eps"), py::arg("seed"),
        py::arg("round"), py::arg("out_ids"), py::arg("dtype"),
        "krum_craft by the CUDA kernel's steps (fedrobust/krum_craft.h) in scalar code on the CPU, for tests.");
  m.def("distances_by_micro_tiles", &distances_by_micro_tiles, py::arg("U"),
        "(m, m) squared distances (float64) by the CUDA kernel's arithmetic and order "
        "(fedrobust/distance_tile.h) on the CPU, for tests.");
  m.def("column_rule_scalar", &column_rule_scalar, py::arg("U"), py::arg("rule"), py::arg("beta") = 0,
        py::arg("rows") = std::vector<int64_t>{}, py::arg("gamma") = 0, py::arg("network") = false,
        "The CUDA kernels' per-column code (fedrobust/column.h) on the CPU, for tests: rule 'median', "
        "'trimmed_mean', 'mean', 'bulyan' (gamma) or 'stats' (a (mean, std, min, max) tuple); `network` "
        "takes the register path (Batcher's network) of the median / trimmed mean.");
  m.def("check_matrix", &check_matrix, py::arg("U"),
        "Raise ValueError unless U is 2-D with at least one row and one column.");

  m.def("simd_level", [] { return std::string(cpu::simd_level()); });
  m.def("set_simd_level", [](const std::string& s) {
    try {
      cpu::set_simd_level(s.c_str());
    } catch (const std::invalid_argument& e) {
      throw py::value_error(e.what());
    }
  });
  m.def("simd_level_available", [](const std::string& s) { return cpu::simd_level_available(s.c_str()); });
  m.def("max_threads", [] { return omp_get_max_threads(); });
  m.def("set_num_threads", [](int n) {
    if (n < 1) throw py::value_error("num_threads must be >= 1, got " + std::to_string(n));
    omp_set_num_threads(n);
  });
  m.attr("version") = FEDROBUST_VERSION;
  m.attr("openmp_version") = _OPENMP;
  m.attr("compiler") = __VERSION__;
}
