// fedrobust._cuda's attacks family: the trim / Gaussian attacks' values and
// the Krum attack's passes (csrc/cuda/attacks.h), the twins of the CPU's
// (csrc/cpu/attacks.h) with the same bits. Each binding checks its arguments
// (checks.h), drops the GIL and calls the kernel on the producer's stream.
#include <cuda_runtime.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "../cuda/attacks.h"
#include "../cuda/launch.h"
#include "checks.h"
#include "device_args.h"
#include "fedrobust/random.h"

namespace py = pybind11;
namespace fc = fedrobust::cuda;
using namespace fedrobust::bindings;

namespace {

// The attack crafting of csrc/cpu/attacks.cpp on the device; pointers are device
// addresses (0 for none), rows and out_ids host lists.
void craft_coordinates(uintptr_t data, int64_t m, int64_t d, int64_t row_stride, int64_t col_stride,
                       const std::vector<int64_t>& rows, const std::string& mode, const std::vector<int64_t>& out_ids,
                       uint64_t seed, uint64_t round, uintptr_t direction, uintptr_t base, double b, double sigma_lo,
                       double sigma_hi, const std::string& dtype, uintptr_t out, uintptr_t direction_out,
                       uintptr_t stream) {
  require_device();
  check_some_rows(rows);
  check_rows(rows, m);
  check_some_ids(out_ids);
  const fc::CraftMode kind = craft_mode(mode, direction != 0, b, sigma_lo, sigma_hi);
  std::vector<uint64_t> prefix;
  for (int64_t id : out_ids) prefix.push_back(fedrobust::counter_prefix(seed, round, static_cast<uint64_t>(id)));
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    check_matrix_size(m, d);
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
  check_matrix_size(m, d);
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
  check_krum_craft(lam, eps);
  if (d < 1) throw py::value_error("d: expected at least one column, got " + std::to_string(d));
  check_some_ids(out_ids);
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

void bind_attacks(py::module_& m) {
  m.def("craft_coordinates", &craft_coordinates, py::arg("data"), py::arg("m"), py::arg("d"), py::arg("row_stride"),
        py::arg("col_stride"), py::arg("rows"), py::arg("mode"), py::arg("out_ids"), py::arg("seed"), py::arg("round"),
        py::arg("direction"), py::arg("base"), py::arg("b"), py::arg("sigma_lo"), py::arg("sigma_hi"),
        py::arg("dtype"), py::arg("out"), py::arg("direction_out"), py::arg("stream"),
        "The trim / Gaussian attack values (csrc/cpu/attacks.cpp craft_coordinates) on the device.");
  m.def("norms_and_dots", &norms_and_dots, py::arg("data"), py::arg("m"), py::arg("d"), py::arg("row_stride"),
        py::arg("col_stride"), py::arg("dtype"), py::arg("direction"), py::arg("stream"),
        "(||u_i||^2 (m,), <u_i, direction> (m,)) in float64 for the rows of the device matrix, as host numpy "
        "arrays; waits for the stream.");
  m.def("krum_craft", &krum_craft, py::arg("direction"), py::arg("d"), py::arg("lam"), py::arg("eps"),
        py::arg("seed"), py::arg("round"), py::arg("out_ids"), py::arg("dtype"), py::arg("out"), py::arg("stream"),
        "The Krum attack's sent updates (csrc/cpu/attacks.cpp krum_craft, the same bits) into `out` "
        "(len(out_ids), d) on the device; waits for the stream.");
}
