// fedrobust._cuda's aggregation family: the median, the trimmed mean, the
// mean, the coordinate statistics, the distances, Krum's selection, Bulyan
// and the non-finite row scan, on arrays in CUDA memory. The same names and
// signatures as fedrobust._cpu's (cpu_aggregation.cpp): arrays in (array.h),
// outputs written into the arrays passed as `out`, host results returned as
// numpy arrays. Each binding checks its arguments (checks.h; the device-size
// limits here), drops the GIL and calls the kernel (csrc/cuda/*.h) on the
// stream U's data is ready on.
#include <cuda_runtime.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "../cpu/krum.h"
#include "../cuda/coordinatewise.h"
#include "../cuda/distances.h"
#include "../cuda/launch.h"
#include "../cuda/statistics.h"
#include "checks.h"
#include "signatures.h"
#include "device_args.h"

namespace py = pybind11;
namespace fc = fedrobust::cuda;
using namespace fedrobust::bindings;

namespace {

// The listed rows (none = all, as an empty list), at least one when listed, ascending.
std::vector<int64_t> sorted_rows(const OptionalRows& rows) {
  if (!rows) return {};
  check_some_rows(*rows);
  std::vector<int64_t> idx = *rows;
  std::sort(idx.begin(), idx.end());
  return idx;
}

// out (d,) = kernel(the listed rows of U, gathered in ascending order into a dense copy, or
// all of U; out; the stream), without the GIL: the shared body of the sorting rules.
template <class Kernel>
void rows_into(const Array& u, const OptionalRows& rows, const py::object& out, Kernel kernel) {
  const std::vector<int64_t> idx = sorted_rows(rows);
  dispatch_float(u, [&](auto tag) {
    using T = decltype(tag);
    const Array o = device_dense<T>(out, "out", {u.shape[1]}, true);
    const RowsOnDevice<T> r(u, rows ? &idx : nullptr, stream_of(u));
    py::gil_scoped_release nogil;
    kernel(r.view, o.as<T>(), stream_of(u));
  });
}

void median(const py::object& U, const OptionalRows& rows, const py::object& out) {
  rows_into(device_matrix(U), rows, out, [](const auto& v, auto* o, cudaStream_t s) { fc::median(v, o, s); });
}

void trimmed_mean(const py::object& U, int64_t beta, const OptionalRows& rows, const py::object& out) {
  const Array u = device_matrix(U);
  if (rows) check_some_rows(*rows);
  check_trimmed_mean(rows ? static_cast<int64_t>(rows->size()) : u.shape[0], beta);
  rows_into(u, rows, out, [beta](const auto& v, auto* o, cudaStream_t s) { fc::trimmed_mean(v, beta, o, s); });
}

// out (d,) = kernel(U's matrix, the listed rows on the device, their count, out, stream), without
// the GIL: the shared body of the rules that read a row list on the device.
template <class Kernel>
void listed_rows_into(const Array& u, const std::vector<int64_t>& idx, const py::object& out, Kernel kernel) {
  dispatch_float(u, [&](auto tag) {
    using T = decltype(tag);
    const Array o = device_dense<T>(out, "out", {u.shape[1]}, true);
    const cudaStream_t s = stream_of(u);
    DeviceRows r(idx, u.shape[0], s);
    py::gil_scoped_release nogil;
    kernel(matrix<T>(u), r.data(), r.n, o.as<T>(), s);
  });
}

void mean(const py::object& U, const OptionalRows& rows, const py::object& out) {
  const Array u = device_matrix(U);
  listed_rows_into(u, sorted_rows(rows), out, [](const auto& v, const int64_t* r, int64_t n, auto* o, cudaStream_t s) {
    fc::mean(v, r, n, o, s);
  });
}

void coordinate_stats(const py::object& U, const OptionalRows& rows, const py::object& mean, const py::object& std,
                      const py::object& min, const py::object& max) {
  const Array u = device_matrix(U);
  const std::vector<int64_t> idx = sorted_rows(rows);
  dispatch_float(u, [&](auto tag) {
    using T = decltype(tag);
    const std::vector<int64_t> d = {u.shape[1]};
    const Array mu = device_dense<T>(mean, "mean", d, true), sd = device_dense<T>(std, "std", d, true),
                lo = device_dense<T>(min, "min", d, true), hi = device_dense<T>(max, "max", d, true);
    const cudaStream_t s = stream_of(u);
    DeviceRows r(idx, u.shape[0], s);
    py::gil_scoped_release nogil;
    fc::coordinate_stats<T>(matrix<T>(u), r.data(), r.n, mu.as<T>(), sd.as<T>(), lo.as<T>(), hi.as<T>(), s);
  });
}

// The distance kernels' device-size limit: at most kMaxDistanceRows rows (their (k, k)
// double buffers).
void check_distance_rows(int64_t k) {
  if (k > fc::kMaxDistanceRows)
    throw py::value_error("U: distances on CUDA take at most " + std::to_string(fc::kMaxDistanceRows) +
                          " workers (rows), got " + std::to_string(k));
}

// The (k, k) squared distances (double) between the listed rows (all when null) in a new
// scratch buffer, on stream s; also written to out (k, k) in T, squared or plain, when out
// is not null.
template <class T>
std::unique_ptr<Scratch> device_sq_distances(const Array& u, const std::vector<int64_t>* rows, cudaStream_t s,
                                             T* out = nullptr, bool squared = true) {
  const RowsOnDevice<T> r(u, rows, s);
  const int64_t k = r.view.rows;
  auto sq = std::make_unique<Scratch>(static_cast<size_t>(k * k) * sizeof(double), s);
  fc::pairwise_sq_distances<T>(r.view, sq->template as<double>(), out, squared, s);
  return sq;
}

const std::vector<int64_t>* listed(const OptionalRows& rows) { return rows ? &*rows : nullptr; }

void pairwise_distances(const py::object& U, bool squared, const OptionalRows& rows, const py::object& out) {
  const Array u = device_matrix(U);
  const int64_t k = rows ? static_cast<int64_t>(rows->size()) : u.shape[0];
  check_distance_rows(k);
  dispatch_float(u, [&](auto tag) {
    using T = decltype(tag);
    const Array o = device_dense<T>(out, "out", {k, k}, true);
    py::gil_scoped_release nogil;
    device_sq_distances<T>(u, listed(rows), stream_of(u), o.as<T>(), squared);
  });
}

// The (k, k) squared distances in double, copied to the host into `host` (k * k values).
void sq_distances_to_host(const Array& u, const OptionalRows& rows, double* host) {
  const int64_t k = rows ? static_cast<int64_t>(rows->size()) : u.shape[0];
  dispatch_float(u, [&](auto tag) {
    using T = decltype(tag);
    const cudaStream_t s = stream_of(u);
    py::gil_scoped_release nogil;
    const auto sq = device_sq_distances<T>(u, listed(rows), s);
    fc::check(cudaMemcpyAsync(host, sq->p, static_cast<size_t>(k * k) * sizeof(double), cudaMemcpyDeviceToHost, s),
              "copying the distances to the host");
    fc::check(cudaStreamSynchronize(s), "distances on the device");
  });
}

py::array_t<double> sq_distances(const py::object& U, const OptionalRows& rows) {
  const Array u = device_matrix(U);
  const int64_t k = rows ? static_cast<int64_t>(rows->size()) : u.shape[0];
  check_distance_rows(k);
  py::array_t<double> host({k, k});
  sq_distances_to_host(u, rows, host.mutable_data());
  return host;
}

py::tuple krum_select(const py::object& U, int64_t c, int64_t multi, bool squared);

// The device computes every score anyway (krum_select): the choice is its first part.
py::tuple krum_choose(const py::object& U, int64_t c, int64_t multi, bool squared) {
  return py::make_tuple(krum_select(U, c, multi, squared)[0], -1);
}

py::tuple krum_select(const py::object& U, int64_t c, int64_t multi, bool squared) {
  const Array u = device_matrix(U);
  const int64_t m = u.shape[0];
  check_multi_krum(m, c, multi);
  check_distance_rows(m);
  std::vector<double> scores(static_cast<size_t>(m));
  dispatch_float(u, [&](auto tag) {
    using T = decltype(tag);
    const cudaStream_t s = stream_of(u);
    py::gil_scoped_release nogil;
    const auto sq = device_sq_distances<T>(u, nullptr, s);
    Scratch dev_scores(static_cast<size_t>(m) * sizeof(double), s), dev_chosen(sizeof(int64_t), s);
    fc::krum_select(sq->template as<double>(), m, c, squared, dev_scores.as<double>(), dev_chosen.as<int64_t>(), s);
    fc::check(cudaMemcpyAsync(scores.data(), dev_scores.p, scores.size() * sizeof(double), cudaMemcpyDeviceToHost, s),
              "copying the Krum scores to the host");
    fc::check(cudaStreamSynchronize(s), "Krum on the device");
  });
  // The order of the selection: the CPU's code, on the device's scores (the same bits).
  return py::make_tuple(to_array<int64_t>(fedrobust::cpu::smallest_scores(scores, multi)), to_array<double>(scores));
}

// Bulyan: the distances on the device, the selection on the host (csrc/cpu/krum.cpp, the
// CPU's own code, from the copied (m, m) matrix), the second stage on the device.
py::array_t<int64_t> bulyan(const py::object& U, int64_t c, bool squared, const py::object& out) {
  const Array u = device_matrix(U);
  const int64_t m = u.shape[0];
  check_bulyan(m, c);
  check_distance_rows(m);
  if (m - 2 * c > fc::kMaxRows)
    throw py::value_error("Bulyan on CUDA takes at most " + std::to_string(fc::kMaxRows) +
                          " selected rows (m - 2c), got " + std::to_string(m - 2 * c) + "; pass a CPU array");
  std::vector<double> sq(static_cast<size_t>(m * m));
  sq_distances_to_host(u, std::nullopt, sq.data());
  std::vector<int64_t> chosen;
  {
    py::gil_scoped_release nogil;
    chosen = fedrobust::cpu::bulyan_select(sq.data(), m, c, squared);
  }
  dispatch_float(u, [&](auto tag) {
    using T = decltype(tag);
    const Array o = device_dense<T>(out, "out", {u.shape[1]}, true);
    const cudaStream_t s = stream_of(u);
    DeviceRows r(chosen, m, s);
    py::gil_scoped_release nogil;
    fc::closest_to_median_mean<T>(matrix<T>(u), r.data(), r.n, m - 4 * c, o.as<T>(), s);  // gamma = theta - 2c
  });
  return to_array<int64_t>(chosen);
}

void closest_to_median_mean(const py::object& U, int64_t gamma, const std::vector<int64_t>& rows,
                            const py::object& out) {
  const Array u = device_matrix(U);
  const std::vector<int64_t> idx = sorted_rows(rows);
  const int64_t n = static_cast<int64_t>(idx.size());
  check_closest_to_median(n, gamma);
  if (n > fc::kMaxRows)
    throw py::value_error("closest_to_median_mean on CUDA takes at most " + std::to_string(fc::kMaxRows) +
                          " rows, got " + std::to_string(n) + "; pass a CPU array");
  listed_rows_into(u, idx, out, [gamma](const auto& v, const int64_t* r, int64_t k, auto* o, cudaStream_t s) {
    fc::closest_to_median_mean(v, r, k, gamma, o, s);
  });
}

py::array_t<bool> nonfinite_rows(const py::object& U) {
  const Array u = device_matrix(U);
  const int64_t m = u.shape[0];
  py::array_t<bool> host(m);
  auto* p = reinterpret_cast<uint8_t*>(host.mutable_data());
  dispatch_float(u, [&](auto tag) {
    using T = decltype(tag);
    const cudaStream_t s = stream_of(u);
    py::gil_scoped_release nogil;
    Scratch flags(static_cast<size_t>(m), s);
    fc::nonfinite_rows<T>(matrix<T>(u), flags.as<uint8_t>(), s);
    fc::check(cudaMemcpyAsync(p, flags.p, static_cast<size_t>(m), cudaMemcpyDeviceToHost, s), "copying the flags");
    fc::check(cudaStreamSynchronize(s), "the non-finite row scan on the device");
  });
  return host;
}

void leave_one_out_median(const py::object& U, const py::object& out) {
  const Array u = device_matrix(U);
  check_leave_one_out(u.shape[0]);
  dispatch_float(u, [&](auto tag) {
    using T = decltype(tag);
    const Array o = device_dense<T>(out, "out", {u.shape[0], u.shape[1]}, true);
    py::gil_scoped_release nogil;
    fc::leave_one_out_median<T>(matrix<T>(u), o.as<T>(), stream_of(u));
  });
}

void leave_one_out_trimmed_mean(const py::object& U, int64_t beta, const py::object& out) {
  const Array u = device_matrix(U);
  check_leave_one_out_trimmed_mean(u.shape[0], beta);
  dispatch_float(u, [&](auto tag) {
    using T = decltype(tag);
    const Array o = device_dense<T>(out, "out", {u.shape[0], u.shape[1]}, true);
    py::gil_scoped_release nogil;
    fc::leave_one_out_trimmed_mean<T>(matrix<T>(u), beta, o.as<T>(), stream_of(u));
  });
}

}  // namespace

void bind_aggregation(py::module_& m) {
  def_aggregation(m, AggregationFunctions{&median, &trimmed_mean, &mean, &coordinate_stats, &pairwise_distances,
                                          &sq_distances, &krum_select, &krum_choose, &bulyan, &nonfinite_rows,
                                          &leave_one_out_median, &leave_one_out_trimmed_mean,
                                          &closest_to_median_mean});  // signatures.h
}
