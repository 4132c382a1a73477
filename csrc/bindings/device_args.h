// Arrays in CUDA memory as the CUDA kernels take them (fc::Matrix, device
// pointers, the stream), read from the one argument type (array.h); the
// device checked; scratch memory for one call. Shared by the families of
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
#include "../cuda/statistics.h"
#include "array.h"
#include "checks.h"

namespace fedrobust::bindings {

namespace fc = fedrobust::cuda;

// ValueError unless a CUDA device is visible (the first thing every kernel binding does).
inline void require_device() {
  if (fc::device_count() == 0)
    throw py::value_error("no CUDA device is visible to fedrobust (" + fc::device_error() +
                          "; fedrobust.backend_info()['cuda'] shows what was found)");
}

// The matrix U (m, d) in CUDA memory, float32 / float64: the first argument of most bindings.
inline Array device_matrix(const py::handle& obj, const char* name = "U") {
  require_device();
  return matrix_in(obj, Memory::kCuda, name);
}

// A dense device array of T of exactly `shape` (an output when `writable`).
template <class T>
Array device_dense(const py::handle& obj, const char* name, const std::vector<int64_t>& shape, bool writable) {
  return dense_in(obj, Memory::kCuda, name, shape, dtype_of<T>(), writable);
}

// The kernels' view of a device matrix.
template <class T>
fc::Matrix<T> matrix(const Array& a) {
  return fc::Matrix<T>{a.as<const T>(), a.shape[0], a.shape[1], a.strides[0], a.strides[1]};
}

// The stream the array's data is ready on: where the kernels run.
inline cudaStream_t stream_of(const Array& a) { return reinterpret_cast<cudaStream_t>(a.stream); }

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

// The matrix itself, or a dense copy of its listed rows (in list order) in scratch memory.
template <class T>
struct RowsOnDevice {
  std::unique_ptr<DeviceRows> rows;
  std::unique_ptr<Scratch> copy;
  fc::Matrix<T> view;
  RowsOnDevice(const Array& a, const std::vector<int64_t>* subset, cudaStream_t s) : view(matrix<T>(a)) {
    if (!subset) return;
    check_some_rows(*subset);
    const int64_t n = static_cast<int64_t>(subset->size()), d = view.cols;
    rows = std::make_unique<DeviceRows>(*subset, view.rows, s);
    copy = std::make_unique<Scratch>(static_cast<size_t>(n * d) * sizeof(T), s);
    fc::gather_rows<T>(view, rows->data(), n, copy->template as<T>(), s);
    view = fc::Matrix<T>{copy->template as<const T>(), n, d, d, 1};
  }
};

}  // namespace fedrobust::bindings
