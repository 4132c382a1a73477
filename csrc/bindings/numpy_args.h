// The CPU bindings' arguments: numpy arrays turned into what the kernels take
// (RowsView, pointers, index lists), with their shape and dtype checked, and
// the kernels' results turned back into numpy arrays. Shared by fedrobust._cpu
// (cpu_*.cpp) and fedrobust._emulation (emulation_module.cpp).
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "checks.h"
#include "fedrobust/common.h"

namespace fedrobust::bindings {

namespace py = pybind11;

// A RowsView over a 2-D numpy array (any strides), optionally over a subset of its rows.
template <class T>
struct Rows {
  std::vector<const T*> pointers;
  RowsView<T> view;
};

// The rows of `a` (all, or those listed in `subset`, in that order), each index
// checked against a.shape(0). Requires strides that are multiples of sizeof(T).
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
      check_row_index(i, m);
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
std::string shape_text(const py::array& a);

// ValueError unless U is 2-D with at least one row and one column.
void check_matrix(const py::array& a);

bool is_float32(const py::array& a);
bool is_float64(const py::array& a);

// Call f(T{}) with T the float type of U (float32 -> float, float64 -> double),
// after check_matrix; TypeError for any other dtype.
template <class F>
auto dispatch_float(const py::array& a, F&& f) {
  check_matrix(a);
  if (is_float32(a)) return f(float{});
  if (is_float64(a)) return f(double{});
  throw py::type_error("U: expected float32 or float64 values, got dtype " +
                       std::string(py::str(a.dtype())));
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

// The values as a 1-D array of T (rounded from double).
template <class T>
py::array_t<T> to_array(const std::vector<double>& values) {
  py::array_t<T> out(static_cast<py::ssize_t>(values.size()));
  T* p = out.mutable_data();
  for (size_t i = 0; i < values.size(); ++i) p[i] = static_cast<T>(values[i]);
  return out;
}

// The indices as a 1-D int64 array.
py::array_t<int64_t> index_array(const std::vector<int64_t>& idx);

// 0, 1, ..., m - 1.
std::vector<int64_t> all_rows(int64_t m);

// A direction s: (cols,) C-contiguous int8 with values in {-1, 0, 1}.
const int8_t* direction_of(const py::array& s, int64_t cols);

// out_ids: a non-empty 1-D C-contiguous int64 array, copied.
std::vector<int64_t> ids_of(const py::array& ids);

}  // namespace fedrobust::bindings
