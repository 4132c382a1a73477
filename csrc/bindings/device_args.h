// The CUDA bindings' arguments: raw device addresses (read by fedrobust.arrays
// from __cuda_array_interface__) turned into what the kernels take, the
// device checked, and scratch memory for one call. Shared by the families of
// fedrobust._cuda (cuda_aggregation.cpp, cuda_attacks.cpp).
#pragma once
#include <cuda_runtime.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "../cuda/coordinatewise.h"
#include "../cuda/device.h"
#include "../cuda/launch.h"
#include "checks.h"

namespace fedrobust::bindings {

namespace py = pybind11;
namespace fc = fedrobust::cuda;

// ValueError unless a CUDA device is visible (the first thing every kernel binding does).
inline void require_device() {
  if (fc::device_count() == 0)
    throw py::value_error("no CUDA device is visible to fedrobust (" + fc::device_error() +
                          "; fedrobust.backend_info()['cuda'] shows what was found)");
}

// The (m, d) device matrix at address `data`, strides in elements; m >= 1, d >= 1.
template <class T>
fc::Matrix<T> matrix(uintptr_t data, int64_t m, int64_t d, int64_t row_stride, int64_t col_stride) {
  check_matrix_size(m, d);
  return fc::Matrix<T>{reinterpret_cast<const T*>(data), m, d, row_stride, col_stride};
}

// Call f(T{}) for dtype "float32" (T = float) or "float64" (T = double); TypeError otherwise.
template <class F>
void dispatch(const std::string& dtype, F&& f) {
  if (dtype == "float32") return f(float{});
  if (dtype == "float64") return f(double{});
  throw py::type_error("U: expected float32 or float64 values, got dtype " + dtype);
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

// Row indices for the per-column kernels: checked against m and copied to the device
// (empty = all m rows, no copy).
struct DeviceRows {
  std::vector<int64_t> host;
  std::unique_ptr<Scratch> device;
  int64_t n;
  DeviceRows(const std::vector<int64_t>& rows, int64_t m, cudaStream_t s) : host(rows), n(rows.empty() ? m : 0) {
    if (rows.empty()) return;
    check_rows(rows, m);
    n = static_cast<int64_t>(rows.size());
    device = std::make_unique<Scratch>(host.size() * sizeof(int64_t), s);
    fc::check(cudaMemcpyAsync(device->p, host.data(), host.size() * sizeof(int64_t), cudaMemcpyHostToDevice, s),
              "copying the row list to the device");
  }
  const int64_t* data() const { return device ? device->as<int64_t>() : nullptr; }
};

}  // namespace fedrobust::bindings
