// fedrobust._cuda: built when a CUDA compiler is found. It links the CUDA
// runtime statically, so it imports on machines without a driver; every
// call into CUDA sits behind device_count().
//
// The kernels take raw device pointers, element strides and the producer's
// stream; fedrobust.arrays reads them from __cuda_array_interface__ (torch,
// cupy) and allocates the output with the input's own library, so nothing is
// copied and the work is ordered on the producer's stream.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "checks.h"
#include "attacks.h"
#include "coordinatewise.h"
#include "device.h"
#include "distances.h"
#include "../cpu/krum.h"
#include "launch.h"
#include "statistics.h"
#include "fedrobust/random.h"

namespace py = pybind11;
namespace fc = fedrobust::cuda;

namespace {

void require_device() {
  if (fc::device_count() == 0)
    throw py::value_error("no CUDA device is visible to fedrobust (" + fc::device_error() +
                          "; fedrobust.backend_info()['cuda'] shows what was found)");
}

template <class T>
fc::Matrix<T> matrix(uintptr_t data, int64_t m, int64_t d, int64_t row_stride, int64_t col_stride) {
  if (m < 1 || d < 1)
    throw py::value_error("U: expected at least one row and one column, got shape (" + std::to_string(m) + ", " +
                          std::to_string(d) + ")");
  return fc::Matrix<T>{reinterpret_cast<const T*>(data), m, d, row_stride, col_stride};
}

// Call f(T{}) for dtype "float32" or "float64".
template <class F>
void dispatch(const std::string& dtype, F&& f) {
  if (dtype == "float32") return f(float{});
  if (dtype == "float64") return f(double{});
  throw py::type_error("U: expected float32 or float64 values, got dtype " + dtype);
}

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
  if (beta < 0 || beta > (m - 1) / 2)  // 2 beta < m, without overflow
    throw py::value_error("trimmed mean needs 0 <= beta and 2*beta < m: got beta = " + std::to_string(beta) +
                          ", m = " + std::to_string(m));
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    const auto u = matrix<T>(data, m, d, row_stride, col_stride);
    py::gil_scoped_release nogil;
    fc::trimmed_mean<T>(u, beta, reinterpret_cast<T*>(out), reinterpret_cast<cudaStream_t>(stream));
  });
}

// Device scratch memory for one call, allocated and freed in stream order.
struct Scratch {
  void* p = nullptr;
  cudaStream_t stream;
  Scratch(size_t bytes, cudaStream_t s) : stream(s) {
    if (cudaMallocAsync(&p, bytes, s) != cudaSuccess) throw std::runtime_error("cudaMallocAsync failed");
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch() { cudaFreeAsync(p, stream); }
  template <class V>
  V* as() const { return static_cast<V*>(p); }
};

void check_distance_rows(int64_t m, int64_t d) {
  if (m < 1 || d < 1) throw py::value_error("U: expected at least one row and one column");
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
  if (c < 0 || m < 3 || c > (m - 3) / 2)  // m > 2c + 2, without overflow
    throw py::value_error("Krum needs m > 2c + 2 workers: got m = " + std::to_string(m) + ", c = " + std::to_string(c));
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

// Row indices for the per-column kernels: checked against m and copied to the device
// (empty = all m rows, no copy).
struct DeviceRows {
  std::vector<int64_t> host;
  std::unique_ptr<Scratch> device;
  int64_t n;
  DeviceRows(const std::vector<int64_t>& rows, int64_t m, cudaStream_t s) : host(rows), n(rows.empty() ? m : 0) {
    if (rows.empty()) return;
    for (int64_t i : rows)
      if (i < 0 || i >= m)
        throw py::value_error("rows: index " + std::to_string(i) + " is out of range for " + std::to_string(m) +
                              " rows");
    n = static_cast<int64_t>(rows.size());
    device = std::make_unique<Scratch>(host.size() * sizeof(int64_t), s);
    fc::check(cudaMemcpyAsync(device->p, host.data(), host.size() * sizeof(int64_t), cudaMemcpyHostToDevice, s),
              "copying the row list to the device");
  }
  const int64_t* data() const { return device ? device->as<int64_t>() : nullptr; }
};

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
  if (c < 0 || m < 3 || c > (m - 3) / 4)  // m >= 4c + 3, without overflow
    throw py::value_error("Bulyan needs m >= 4c + 3 workers: got m = " + std::to_string(m) + ", c = " +
                          std::to_string(c));
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

// The attack crafting of csrc/cpu/attacks.cpp on the device; pointers are device
// addresses (0 for none), rows and out_ids host lists.
void craft_coordinates(uintptr_t data, int64_t m, int64_t d, int64_t row_stride, int64_t col_stride,
                       const std::vector<int64_t>& rows, const std::string& mode, const std::vector<int64_t>& out_ids,
                       uint64_t seed, uint64_t round, uintptr_t direction, uintptr_t base, double b, double sigma_lo,
                       double sigma_hi, const std::string& dtype, uintptr_t out, uintptr_t direction_out,
                       uintptr_t stream) {
  require_device();
  if (rows.empty()) throw py::value_error("rows: expected at least one row index, got none");
  for (int64_t i : rows)
    if (i < 0 || i >= m)
      throw py::value_error("row index " + std::to_string(i) + " is out of range for " + std::to_string(m) + " rows");
  if (out_ids.empty()) throw py::value_error("out_ids: expected at least one id, got none");
  const fc::CraftMode kind = fedrobust::bindings::craft_mode(mode, direction != 0, b, sigma_lo, sigma_hi);
  std::vector<uint64_t> prefix;
  for (int64_t id : out_ids) prefix.push_back(fedrobust::counter_prefix(seed, round, static_cast<uint64_t>(id)));
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    if (m < 1 || d < 1) throw py::value_error("U: expected at least one row and one column");
    const fc::Matrix<T> u{reinterpret_cast<const T*>(data), m, d, row_stride, col_stride};
    const fc::CraftSpec<T> spec{u, rows, kind, reinterpret_cast<const int8_t*>(direction),
                                reinterpret_cast<const T*>(base), b, sigma_lo, sigma_hi, prefix,
                                reinterpret_cast<T*>(out), reinterpret_cast<int8_t*>(direction_out)};
    py::gil_scoped_release nogil;
    fc::craft_coordinates<T>(spec, reinterpret_cast<cudaStream_t>(stream));
  });
}

// The Krum attack's passes over d on the device (csrc/cuda/attacks.cu); direction is a
// device int8 (d,) address. Returns (||u_i||^2 (m,), <u_i, s> (m,)) in float64 as host
// numpy arrays; waits for the stream.
py::tuple norms_and_dots(uintptr_t data, int64_t m, int64_t d, int64_t row_stride, int64_t col_stride,
                         const std::string& dtype, uintptr_t direction, uintptr_t stream) {
  require_device();
  if (m < 1 || d < 1) throw py::value_error("U: expected at least one row and one column");
  if (!direction) throw py::value_error("norms_and_dots needs a direction");
  py::array_t<double> sq_norms(m), dots(m);
  double *host_sq = sq_norms.mutable_data(), *host_dots = dots.mutable_data();
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    const fc::Matrix<T> u{reinterpret_cast<const T*>(data), m, d, row_stride, col_stride};
    const auto s = reinterpret_cast<cudaStream_t>(stream);
    py::gil_scoped_release nogil;
    Scratch sums(static_cast<size_t>(2 * m) * sizeof(double), s);
    fc::norms_and_dots<T>(u, reinterpret_cast<const int8_t*>(direction), sums.as<double>(), sums.as<double>() + m, s);
    const size_t bytes = static_cast<size_t>(m) * sizeof(double);
    fc::check(cudaMemcpyAsync(host_sq, sums.as<double>(), bytes, cudaMemcpyDeviceToHost, s), "copying the norms");
    fc::check(cudaMemcpyAsync(host_dots, sums.as<double>() + m, bytes, cudaMemcpyDeviceToHost, s), "copying the dots");
    fc::check(cudaStreamSynchronize(s), "norms_and_dots on the device");
  });
  return py::make_tuple(sq_norms, dots);
}

// The Krum attack's c sent updates into `out` (a device (n_out, d) row-major array of
// dtype), n_out = len(out_ids): row 0 = -lam s, row k = row 0 + r_k z_k / ||z_k||, the
// CPU krum_craft's bits; waits for the stream.
void krum_craft(uintptr_t direction, int64_t d, double lam, double eps, uint64_t seed, uint64_t round,
                const std::vector<int64_t>& out_ids, const std::string& dtype, uintptr_t out, uintptr_t stream) {
  require_device();
  fedrobust::bindings::check_krum_craft(lam, eps);
  if (d < 1) throw py::value_error("d: expected at least one column, got " + std::to_string(d));
  if (out_ids.empty()) throw py::value_error("out_ids: expected at least one id, got none");
  if (!direction || !out) throw py::value_error("krum_craft needs a direction and an output array");
  std::vector<uint64_t> prefix;
  for (int64_t id : out_ids) prefix.push_back(fedrobust::counter_prefix(seed, round, static_cast<uint64_t>(id)));
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    const fc::KrumCraft<T> spec{reinterpret_cast<const int8_t*>(direction), d, lam, eps, prefix,
                                reinterpret_cast<T*>(out)};
    py::gil_scoped_release nogil;
    fc::krum_craft<T>(spec, reinterpret_cast<cudaStream_t>(stream));
  });
}

}  // namespace

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "fedrobust CUDA kernels. Use fedrobust.aggregators with torch CUDA tensors or cupy arrays.";
  m.def("device_count", &fc::device_count);
  m.def("device_error", &fc::device_error, "Why device_count() is 0 (empty when it is not).");
  m.def("runtime_version", &fc::runtime_version);
  m.def("driver_version", &fc::driver_version);
  m.def("device_names", [] {
    std::vector<std::string> names;
    for (int i = 0; i < fc::device_count(); ++i) names.push_back(fc::device_name(i));
    return names;
  });
  m.def("median", &median, py::arg("data"), py::arg("m"), py::arg("d"), py::arg("row_stride"),
        py::arg("col_stride"), py::arg("dtype"), py::arg("out"), py::arg("stream"),
        "Coordinate-wise median of the device matrix at `data` into `out` (d,), on `stream`.");
  m.def("trimmed_mean", &trimmed_mean, py::arg("data"), py::arg("m"), py::arg("d"), py::arg("row_stride"),
        py::arg("col_stride"), py::arg("beta"), py::arg("dtype"), py::arg("out"), py::arg("stream"),
        "Coordinate-wise trimmed mean of the device matrix at `data` into `out` (d,), on `stream`.");
  m.def("craft_coordinates", &craft_coordinates, py::arg("data"), py::arg("m"), py::arg("d"), py::arg("row_stride"),
        py::arg("col_stride"), py::arg("rows"), py::arg("mode"), py::arg("out_ids"), py::arg("seed"), py::arg("round"),
        py::arg("direction"), py::arg("base"), py::arg("b"), py::arg("sigma_lo"), py::arg("sigma_hi"),
        py::arg("dtype"), py::arg("out"), py::arg("direction_out"), py::arg("stream"),
        "The trim / Gaussian attack values (csrc/cpu/attacks.cpp craft_coordinates) on the device.");
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
  m.def("norms_and_dots", &norms_and_dots, py::arg("data"), py::arg("m"), py::arg("d"), py::arg("row_stride"),
        py::arg("col_stride"), py::arg("dtype"), py::arg("direction"), py::arg("stream"),
        "(||u_i||^2 (m,), <u_i, direction> (m,)) in float64 for the rows of the device matrix, as host numpy "
        "arrays; waits for the stream.");
  m.def("krum_craft", &krum_craft, py::arg("direction"), py::arg("d"), py::arg("lam"), py::arg("eps"),
        py::arg("seed"), py::arg("round"), py::arg("out_ids"), py::arg("dtype"), py::arg("out"), py::arg("stream"),
        "The Krum attack's sent updates (csrc/cpu/attacks.cpp krum_craft, the same bits) into `out` "
        "(len(out_ids), d) on the device; waits for the stream.");
  m.def("pairwise_distances", &pairwise_distances, py::arg("data"), py::arg("m"), py::arg("d"), py::arg("row_stride"),
        py::arg("col_stride"), py::arg("dtype"), py::arg("squared"), py::arg("out"), py::arg("stream"),
        "(m, m) distances of the device matrix into `out` (U's dtype), on `stream`.");
  m.def("sq_distances", &sq_distances, py::arg("data"), py::arg("m"), py::arg("d"), py::arg("row_stride"),
        py::arg("col_stride"), py::arg("dtype"), py::arg("stream"),
        "(m, m) squared distances (float64) of the device matrix, returned as a host numpy array; waits for the stream.");
  m.def("krum_select", &krum_select, py::arg("data"), py::arg("m"), py::arg("d"), py::arg("row_stride"),
        py::arg("col_stride"), py::arg("dtype"), py::arg("c"), py::arg("squared"), py::arg("stream"),
        "Krum on the device: returns (the chosen row, the scores as a list); waits for the stream.");
  m.attr("sort_rows") = fc::kMaxRows;
  m.attr("max_distance_rows") = fc::kMaxDistanceRows;
  m.attr("architectures") = FEDROBUST_CUDA_ARCHS;
}
