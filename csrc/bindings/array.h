// The one array argument type of both native modules. Every binding of
// fedrobust._cpu and fedrobust._cuda that takes an array takes a Python
// object and reads it here, into an Array: pointer, shape, strides (in
// elements), dtype, where the memory is and, for CUDA memory, the stream the
// data is ready on. It is read from
//   - the buffer protocol (numpy arrays, memoryviews): host memory;
//   - __cuda_array_interface__ (torch CUDA tensors, cupy arrays, numba): CUDA
//     memory, the stream from its "stream" entry (version 3; the legacy
//     default stream when absent);
//   - DLPack (__dlpack__ / __dlpack_device__: torch CPU tensors, jax, ...):
//     host or CUDA memory (CUDA on the legacy default stream).
// Nothing is copied. The Array keeps what it read alive (the buffer, the
// DLPack capsule) for as long as it lives, i.e. the binding's call.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace fedrobust::bindings {

namespace py = pybind11;

enum class DType { kFloat32, kFloat64, kInt8, kInt64, kBool, kOther };
enum class Memory { kHost, kCuda };

struct Array {
  void* data = nullptr;
  std::vector<int64_t> shape;
  std::vector<int64_t> strides;  // in elements
  DType dtype = DType::kOther;
  std::string dtype_name;  // numpy's spelling: "float32", "int64", "float16", ...
  int64_t itemsize = 0;
  bool readonly = false;
  Memory memory = Memory::kHost;
  uintptr_t stream = 0;  // CUDA memory: the stream its data is ready on (0 / 1 = legacy default, 2 = per thread)
  std::string name;      // the argument's name, for messages
  std::shared_ptr<void> keep_alive;

  int64_t ndim() const { return static_cast<int64_t>(shape.size()); }
  int64_t size() const;
  bool c_contiguous() const;
  std::string shape_text() const;  // as Python prints a tuple: "(9,)", "(2, 3)"
  template <class T>
  T* as() const { return static_cast<T*>(data); }
};

// The Array of `obj` (argument `name`); TypeError for an object that offers none
// of the three protocols, or whose element type or strides cannot be read.
Array array_of(const py::handle& obj, const char* name);

// The same for an argument that may be None (a null optional).
std::unique_ptr<Array> optional_array_of(const py::handle& obj, const char* name);

// --- checks on an Array ------------------------------------------------------

// ValueError / TypeError unless `a` lives in host memory (the CPU module) or CUDA memory
// (the CUDA module): "U: expected a CPU array (numpy, a CPU torch tensor), got CUDA memory".
void require_memory(const Array& a, Memory where);

// U: 2-D with m >= 1 rows and d >= 1 columns, float32 or float64.
void check_float_matrix(const Array& a);

// An output or an auxiliary argument: exactly `shape`, dtype `dtype`, C-contiguous and,
// when `writable`, not read-only.
void check_dense(const Array& a, const std::vector<int64_t>& shape, DType dtype, bool writable);

// A direction s: (cols,) C-contiguous int8, one sign per column of U (values not read).
void check_direction(const Array& s, int64_t cols);

// The matrix argument U (m, d): float32 / float64, in `where` memory.
inline Array matrix_in(const py::handle& obj, Memory where, const char* name) {
  Array a = array_of(obj, name);
  require_memory(a, where);
  check_float_matrix(a);
  return a;
}

// A dense array argument of `dtype`, exactly `shape`, in `where` memory (an output when `writable`).
inline Array dense_in(const py::handle& obj, Memory where, const char* name, const std::vector<int64_t>& shape,
                      DType dtype, bool writable) {
  Array a = array_of(obj, name);
  require_memory(a, where);
  check_dense(a, shape, dtype, writable);
  return a;
}

// The dtype's name ("float32", ...), for messages.
const char* dtype_text(DType t);

template <class T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() { return DType::kFloat32; }
template <>
constexpr DType dtype_of<double>() { return DType::kFloat64; }
template <>
constexpr DType dtype_of<int8_t>() { return DType::kInt8; }
template <>
constexpr DType dtype_of<int64_t>() { return DType::kInt64; }

// Call f(T{}) with T the float type of the matrix U (float32 -> float, float64 -> double),
// after check_float_matrix.
template <class F>
auto dispatch_float(const Array& a, F&& f) {
  check_float_matrix(a);
  if (a.dtype == DType::kFloat32) return f(float{});
  return f(double{});
}

// --- host results --------------------------------------------------------------

// The values as a new 1-D numpy array of T (each rounded to T).
template <class T, class V>
py::array_t<T> to_array(const std::vector<V>& values) {
  py::array_t<T> out(static_cast<py::ssize_t>(values.size()));
  T* p = out.mutable_data();
  for (size_t i = 0; i < values.size(); ++i) p[i] = static_cast<T>(values[i]);
  return out;
}

}  // namespace fedrobust::bindings
