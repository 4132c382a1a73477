// fedrobust._cuda's aggregation family: the median, the trimmed mean, the
// mean, the coordinate statistics, Bulyan, the distances and Krum, on device
// matrices. Each binding checks its arguments (checks.h; the device-size
// limits here), drops the GIL and calls the kernel (csrc/cuda/*.h) on the
// producer's stream.
#include <cuda_runtime.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "../cpu/krum.h"
#include "../cuda/coordinatewise.h"
#include "../cuda/distances.h"
#include "../cuda/launch.h"
#include "../cuda/statistics.h"
#include "checks.h"
#include "device_args.h"

namespace py = pybind11;
namespace fc = fedrobust::cuda;
using namespace fedrobust::bindings;

namespace {

void median(uintptr_t data, int64_t m, int64_t d, int64_t row_stride, int64_t col_stride, const std::string& dtype,
            uintptr_t out, uintptr_t stream) {
  require_device();
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    const auto u = matrix<T>(data, m, d, row_stride, col_stride);
    py::gil_scoped_release nogil;
    fc::median<T>(u, reinterpret_cast<T*>(out), reinterpret_cast<cudaStream_t>(stream));
  });
}

void trimmed_mean(uintptr_t data, int64_t m, int64_t d, int64_t row_stride, int64_t col_stride, int64_t beta,
                  const std::string& dtype, uintptr_t out, uintptr_t stream) {
  require_device();
  check_trimmed_mean(m, beta);
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    const auto u = matrix<T>(data, m, d, row_stride, col_stride);
    py::gil_scoped_release nogil;
    fc::trimmed_mean<T>(u, beta, reinterpret_cast<T*>(out), reinterpret_cast<cudaStream_t>(stream));
  });
}

// The distance kernels' device-size limit: at most kMaxDistanceRows rows (their
// (m, m) double buffers), and a non-empty matrix.
void check_distance_rows(int64_t m, int64_t d) {
  check_matrix_size(m, d);
  if (m > fc::kMaxDistanceRows)
    throw py::value_error("U: distances on CUDA take at most " + std::to_string(fc::kMaxDistanceRows) +
                          " workers (rows), got " + std::to_string(m));
}

// The (m, m) squared distances (double) of the device matrix in a new scratch buffer, on
// stream s; also written to out (m, m) in T, squared or plain, when out is not null.
template <class T>
std::unique_ptr<Scratch> device_sq_distances(uintptr_t data, int64_t m, int64_t d, int64_t row_stride,
                                             int64_t col_stride, cudaStream_t s, T* out = nullptr,
                                             bool squared = true) {
  const fc::Matrix<T> u{reinterpret_cast<const T*>(data), m, d, row_stride, col_stride};
  auto sq = std::make_unique<Scratch>(static_cast<size_t>(m * m) * sizeof(double), s);
  fc::pairwise_sq_distances<T>(u, sq->template as<double>(), out, squared, s);
  return sq;
}

void pairwise_distances(uintptr_t data, int64_t m, int64_t d, int64_t row_stride, int64_t col_stride,
                        const std::string& dtype, bool squared, uintptr_t out, uintptr_t stream) {
  require_device();
  check_distance_rows(m, d);
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    py::gil_scoped_release nogil;
    device_sq_distances<T>(data, m, d, row_stride, col_stride, reinterpret_cast<cudaStream_t>(stream),
                           reinterpret_cast<T*>(out), squared);
  });
}

// The (m, m) squared distances in double, copied to the host (numpy): what the host-side
// selections (Multi-Krum, Bulyan, the Krum attack's search) start from.
py::array_t<double> sq_distances(uintptr_t data, int64_t m, int64_t d, int64_t row_stride, int64_t col_stride,
                                 const std::string& dtype, uintptr_t stream) {
  require_device();
  check_distance_rows(m, d);
  py::array_t<double> host({m, m});
  double* dst = host.mutable_data();
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    const auto s = reinterpret_cast<cudaStream_t>(stream);
    py::gil_scoped_release nogil;
    const auto sq = device_sq_distances<T>(data, m, d, row_stride, col_stride, s);
    fc::check(cudaMemcpyAsync(dst, sq->p, static_cast<size_t>(m * m) * sizeof(double), cudaMemcpyDeviceToHost, s),
              "copying the distances to the host");
    fc::check(cudaStreamSynchronize(s), "distances on the device");
  });
  return host;
}

py::tuple krum_select(uintptr_t data, int64_t m, int64_t d, int64_t row_stride, int64_t col_stride,
                      const std::string& dtype, int64_t c, bool squared, uintptr_t stream) {
  require_device();
  check_krum(m, c);
  check_distance_rows(m, d);
  std::vector<double> scores(static_cast<size_t>(m));
  int64_t chosen = -1;
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    const auto s = reinterpret_cast<cudaStream_t>(stream);
    py::gil_scoped_release nogil;
    const auto sq = device_sq_distances<T>(data, m, d, row_stride, col_stride, s);
    Scratch dev_scores(static_cast<size_t>(m) * sizeof(double), s), dev_chosen(sizeof(int64_t), s);
    fc::krum_select(sq->template as<double>(), m, c, squared, dev_scores.as<double>(), dev_chosen.as<int64_t>(), s);
    cudaMemcpyAsync(scores.data(), dev_scores.p, scores.size() * sizeof(double), cudaMemcpyDeviceToHost, s);
    cudaMemcpyAsync(&chosen, dev_chosen.p, sizeof(int64_t), cudaMemcpyDeviceToHost, s);
    const cudaError_t status = cudaStreamSynchronize(s);
    if (status != cudaSuccess) throw std::runtime_error(std::string("Krum on the device: ") + cudaGetErrorString(status));
  });
  return py::make_tuple(chosen, scores);
}

void mean(uintptr_t data, int64_t m, int64_t d, int64_t row_stride, int64_t col_stride,
          const std::vector<int64_t>& rows, const std::string& dtype, uintptr_t out, uintptr_t stream) {
  require_device();
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    const auto u = matrix<T>(data, m, d, row_stride, col_stride);
    const auto s = reinterpret_cast<cudaStream_t>(stream);
    DeviceRows r(rows, m, s);
    py::gil_scoped_release nogil;
    fc::mean<T>(u, r.data(), r.n, reinterpret_cast<T*>(out), s);
  });
}

void coordinate_stats(uintptr_t data, int64_t m, int64_t d, int64_t row_stride, int64_t col_stride,
                      const std::vector<int64_t>& rows, const std::string& dtype, uintptr_t mean_out,
                      uintptr_t std_out, uintptr_t min_out, uintptr_t max_out, uintptr_t stream) {
  require_device();
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    const auto u = matrix<T>(data, m, d, row_stride, col_stride);
    const auto s = reinterpret_cast<cudaStream_t>(stream);
    DeviceRows r(rows, m, s);
    py::gil_scoped_release nogil;
    fc::coordinate_stats<T>(u, r.data(), r.n, reinterpret_cast<T*>(mean_out), reinterpret_cast<T*>(std_out),
                            reinterpret_cast<T*>(min_out), reinterpret_cast<T*>(max_out), s);
  });
}

// Bulyan: the distances on the device, the selection on the host (csrc/cpu/krum.cpp, the
// CPU's own code, from the copied (m, m) matrix), the second stage on the device.
// Returns the selected rows in selection order.
std::vector<int64_t> bulyan(uintptr_t data, int64_t m, int64_t d, int64_t row_stride, int64_t col_stride, int64_t c,
                            bool squared, const std::string& dtype, uintptr_t out, uintptr_t stream) {
  require_device();
  check_bulyan(m, c);
  if (m - 2 * c > fc::kMaxRows)
    throw py::value_error("Bulyan on CUDA takes at most " + std::to_string(fc::kMaxRows) +
                          " selected rows (m - 2c), got " + std::to_string(m - 2 * c) + "; pass a CPU array");
  const py::array_t<double> sq = sq_distances(data, m, d, row_stride, col_stride, dtype, stream);
  std::vector<int64_t> chosen;
  {
    py::gil_scoped_release nogil;
    chosen = fedrobust::cpu::bulyan_select(sq.data(), m, c, squared);
  }
  const int64_t gamma = m - 4 * c;  // theta - 2c
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    const auto u = matrix<T>(data, m, d, row_stride, col_stride);
    const auto s = reinterpret_cast<cudaStream_t>(stream);
    DeviceRows r(chosen, m, s);
    py::gil_scoped_release nogil;
    fc::closest_to_median_mean<T>(u, r.data(), r.n, gamma, reinterpret_cast<T*>(out), s);
  });
  return chosen;
}

}  // namespace

void bind_aggregation(py::module_& m) {
  m.def("median", &median, py::arg("data"), py::arg("m"), py::arg("d"), py::arg("row_stride"),
        py::arg("col_stride"), py::arg("dtype"), py::arg("out"), py::arg("stream"),
        "Coordinate-wise median of the device matrix at `data` into `out` (d,), on `stream`.");
  m.def("trimmed_mean", &trimmed_mean, py::arg("data"), py::arg("m"), py::arg("d"), py::arg("row_stride"),
        py::arg("col_stride"), py::arg("beta"), py::arg("dtype"), py::arg("out"), py::arg("stream"),
        "Coordinate-wise trimmed mean of the device matrix at `data` into `out` (d,), on `stream`.");
  m.def("mean", &mean, py::arg("data"), py::arg("m"), py::arg("d"), py::arg("row_stride"), py::arg("col_stride"),
        py::arg("rows"), py::arg("dtype"), py::arg("out"), py::arg("stream"),
        "Mean over the listed rows (all when empty), summed in list order in double, into `out` (d,).");
  m.def("coordinate_stats", &coordinate_stats, py::arg("data"), py::arg("m"), py::arg("d"), py::arg("row_stride"),
        py::arg("col_stride"), py::arg("rows"), py::arg("dtype"), py::arg("mean"), py::arg("std"), py::arg("min"),
        py::arg("max"), py::arg("stream"),
        "Per-coordinate mean, population std, min and max over the listed rows (all when empty).");
  m.def("bulyan", &bulyan, py::arg("data"), py::arg("m"), py::arg("d"), py::arg("row_stride"), py::arg("col_stride"),
        py::arg("c"), py::arg("squared"), py::arg("dtype"), py::arg("out"), py::arg("stream"),
        "Bulyan into `out` (d,); returns the selected rows in selection order.");
  m.def("pairwise_distances", &pairwise_distances, py::arg("data"), py::arg("m"), py::arg("d"), py::arg("row_stride"),
        py::arg("col_stride"), py::arg("dtype"), py::arg("squared"), py::arg("out"), py::arg("stream"),
        "(m, m) distances of the device matrix into `out` (U's dtype), on `stream`.");
  m.def("sq_distances", &sq_distances, py::arg("data"), py::arg("m"), py::arg("d"), py::arg("row_stride"),
        py::arg("col_stride"), py::arg("dtype"), py::arg("stream"),
        "(m, m) squared distances (float64) of the device matrix, returned as a host numpy array; waits for the stream.");
  m.def("krum_select", &krum_select, py::arg("data"), py::arg("m"), py::arg("d"), py::arg("row_stride"),
        py::arg("col_stride"), py::arg("dtype"), py::arg("c"), py::arg("squared"), py::arg("stream"),
        "Krum on the device: returns (the chosen row, the scores as a list); waits for the stream.");
}
