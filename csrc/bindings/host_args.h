// Arrays in host memory as the CPU kernels take them (RowsView, pointers),
// read from the one argument type (array.h). Shared by fedrobust._cpu
// (cpu_*.cpp) and fedrobust._emulation (emulation_module.cpp).
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "array.h"
#include "checks.h"
#include "fedrobust/common.h"

namespace fedrobust::bindings {

// The matrix U (m, d) in host memory, float32 / float64: the first argument of most bindings.
inline Array host_matrix(const py::handle& obj, const char* name = "U") { return matrix_in(obj, Memory::kHost, name); }

// A dense host array of T of exactly `shape` (an output when `writable`).
template <class T>
Array host_dense(const py::handle& obj, const char* name, const std::vector<int64_t>& shape, bool writable) {
  return dense_in(obj, Memory::kHost, name, shape, dtype_of<T>(), writable);
}

// A RowsView over a host matrix (any strides), optionally over a subset of its rows.
template <class T>
struct Rows {
  std::vector<const T*> pointers;
  RowsView<T> view;
};

// The rows of `a` (all, or those listed in `subset`, in that order), each index checked.
template <class T>
Rows<T> rows_of(const Array& a, const std::vector<int64_t>* subset = nullptr) {
  const T* base = a.as<const T>();
  const int64_t m = a.shape[0];
  Rows<T> r;
  if (subset) {
    for (int64_t i : *subset) {
      check_row_index(i, m);
      r.pointers.push_back(base + i * a.strides[0]);
    }
  } else {
    for (int64_t i = 0; i < m; ++i) r.pointers.push_back(base + i * a.strides[0]);
  }
  r.view = RowsView<T>{r.pointers.data(), static_cast<int64_t>(r.pointers.size()), a.shape[1], a.strides[1]};
  return r;
}

// The indices as a 1-D int64 array.
inline py::array_t<int64_t> index_array(const std::vector<int64_t>& idx) { return to_array<int64_t>(idx); }

// 0, 1, ..., m - 1.
inline std::vector<int64_t> all_rows(int64_t m) {
  std::vector<int64_t> r(static_cast<size_t>(m));
  for (int64_t i = 0; i < m; ++i) r[i] = i;
  return r;
}

// A direction s: a host (cols,) C-contiguous int8 array with values in {-1, 0, 1}.
inline const int8_t* host_direction(const Array& s, int64_t cols) {
  check_direction(s, cols);
  const int8_t* p = s.as<const int8_t>();
  for (int64_t j = 0; j < cols; ++j)
    if (p[j] < -1 || p[j] > 1)
      throw py::value_error("direction: values must be -1, 0 or 1, got " + std::to_string(p[j]) + " at index " +
                            std::to_string(j));
  return p;
}

}  // namespace fedrobust::bindings
