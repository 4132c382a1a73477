// fedrobust._cuda's attacks family: the trim / Gaussian attacks' values and
// the Krum attack's passes (csrc/cuda/attacks.h), the twins of the CPU's
// (csrc/cpu/attacks.h) with the same bits, and the same names and signatures
// as fedrobust._cpu's (cpu_attacks.cpp). Each binding checks its arguments
// (checks.h, device_args.h), drops the GIL and calls the kernel on the stream
// the input's data is ready on.
#include <cuda_runtime.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "../cuda/attacks.h"
#include "../cuda/launch.h"
#include "checks.h"
#include "signatures.h"
#include "device_args.h"
#include "fedrobust/random.h"

namespace py = pybind11;
namespace fc = fedrobust::cuda;
using namespace fedrobust::bindings;

namespace {

// One counter prefix (fedrobust/random.h) per output row.
std::vector<uint64_t> prefixes(uint64_t seed, uint64_t round, const std::vector<int64_t>& out_ids) {
  std::vector<uint64_t> prefix;
  for (int64_t id : out_ids) prefix.push_back(fedrobust::counter_prefix(seed, round, static_cast<uint64_t>(id)));
  return prefix;
}

// A direction s: a device (cols,) C-contiguous int8 array (its values are not read on the host).
const int8_t* device_direction(const Array& s, int64_t cols) {
  require_memory(s, Memory::kCuda);
  check_direction(s, cols);
  return s.as<const int8_t>();
}

void craft_coordinates(const py::object& U, const std::vector<int64_t>& rows, const std::string& mode,
                       const std::vector<int64_t>& out_ids, uint64_t seed, uint64_t round, const py::object& direction,
                       const py::object& base, double b, double sigma_lo, double sigma_hi, const py::object& out,
                       const py::object& direction_out) {
  const Array u = device_matrix(U);
  check_some_rows(rows);
  check_rows(rows, u.shape[0]);
  check_some_ids(out_ids);
  const auto s = optional_array_of(direction, "direction");
  const auto w = optional_array_of(base, "base");
  const fc::CraftMode kind = craft_mode(mode, s != nullptr, b, sigma_lo, sigma_hi);
  dispatch_float(u, [&](auto tag) {
    using T = decltype(tag);
    const int64_t d = u.shape[1], n_out = static_cast<int64_t>(out_ids.size());
    const int8_t* signs = kind == fc::CraftMode::kTrimFull ? device_direction(*s, d) : nullptr;
    const T* model = nullptr;
    if (kind == fc::CraftMode::kTrimFull && w) {
      require_memory(*w, Memory::kCuda);
      check_dense(*w, {d}, dtype_of<T>(), false);
      model = w->as<const T>();
    }
    const Array o = device_dense<T>(out, "out", {n_out, d}, true);
    const Array used = device_dense<int8_t>(direction_out, "direction_out", {d}, true);
    const fc::CraftSpec<T> spec{matrix<T>(u), rows, kind, signs, model, b, sigma_lo, sigma_hi,
                                prefixes(seed, round, out_ids), o.as<T>(), used.as<int8_t>()};
    py::gil_scoped_release nogil;
    fc::craft_coordinates<T>(spec, stream_of(u));
  });
}

py::tuple norms_and_dots(const py::object& U, const py::object& direction,
                         const std::optional<std::vector<int64_t>>& rows) {
  const Array u = device_matrix(U);
  const Array s = array_of(direction, "direction");
  const int8_t* signs = device_direction(s, u.shape[1]);
  const int64_t k = rows ? static_cast<int64_t>(rows->size()) : u.shape[0];
  py::array_t<double> sq_norms(k), dots(k);
  double *host_sq = sq_norms.mutable_data(), *host_dots = dots.mutable_data();
  dispatch_float(u, [&](auto tag) {
    using T = decltype(tag);
    const cudaStream_t st = stream_of(u);
    const RowsOnDevice<T> r(u, rows ? &*rows : nullptr, st);
    py::gil_scoped_release nogil;
    Scratch sums(static_cast<size_t>(2 * k) * sizeof(double), st);
    fc::norms_and_dots<T>(r.view, signs, sums.as<double>(), sums.as<double>() + k, st);
    const size_t bytes = static_cast<size_t>(k) * sizeof(double);
    fc::check(cudaMemcpyAsync(host_sq, sums.as<double>(), bytes, cudaMemcpyDeviceToHost, st), "copying the norms");
    fc::check(cudaMemcpyAsync(host_dots, sums.as<double>() + k, bytes, cudaMemcpyDeviceToHost, st), "copying the dots");
    fc::check(cudaStreamSynchronize(st), "norms_and_dots on the device");
  });
  return py::make_tuple(sq_norms, dots);
}

// Runs on the stream of `out` (there is no U).
void krum_craft(const py::object& direction, double lam, double eps, uint64_t seed, uint64_t round,
                const std::vector<int64_t>& out_ids, const py::object& out) {
  require_device();
  check_krum_craft(lam, eps);
  check_some_ids(out_ids);
  const Array s = array_of(direction, "direction");
  require_memory(s, Memory::kCuda);
  if (s.ndim() != 1 || s.shape[0] < 1)
    throw py::value_error("direction: expected a 1-D array of at least one sign, got shape " + s.shape_text());
  const int64_t d = s.shape[0], n_out = static_cast<int64_t>(out_ids.size());
  const Array o = array_of(out, "out");
  require_memory(o, Memory::kCuda);
  auto run = [&](auto tag) {
    using T = decltype(tag);
    check_dense(o, {n_out, d}, dtype_of<T>(), true);
    const fc::KrumCraft<T> spec{device_direction(s, d), d, lam, eps, prefixes(seed, round, out_ids), o.as<T>()};
    py::gil_scoped_release nogil;
    fc::krum_craft<T>(spec, stream_of(o));
  };
  if (o.dtype == DType::kFloat32) return run(float{});
  if (o.dtype == DType::kFloat64) return run(double{});
  throw py::type_error("out: expected float32 or float64 values, got dtype " + o.dtype_name);
}

}  // namespace

void bind_attacks(py::module_& m) {
  def_attacks(m, AttackFunctions{&craft_coordinates, &norms_and_dots, &krum_craft});  // signatures.h
}
