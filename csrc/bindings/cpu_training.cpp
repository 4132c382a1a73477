// fedrobust._cpu's training family: one local SGD step of multi-class
// logistic regression for every worker (the simulation's LR fast path). The
// binding checks its arguments (array.h, host_args.h), drops the GIL and calls the
// kernel (csrc/cpu/training.h).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>

#include "../cpu/minibatch.h"
#include "../cpu/training.h"
#include "host_args.h"

namespace py = pybind11;
namespace cpu = fedrobust::cpu;
using namespace fedrobust::bindings;

namespace {

// A host, C-contiguous array of `dtype` with `ndim` dimensions (`what` says which).
Array dense_host(const py::object& obj, const char* name, int64_t ndim, const char* what, DType dtype,
                 bool writable = false) {
  Array a = array_of(obj, name);
  require_memory(a, Memory::kHost);
  if (a.ndim() != ndim) throw py::value_error(std::string(name) + ": expected " + what + ", got shape " + a.shape_text());
  check_dense(a, a.shape, dtype, writable);
  return a;
}

py::object lr_sgd_step(const py::object& w_obj, const py::object& X_obj, const py::object& y_obj,
                       const py::object& batches_obj, int64_t classes, double lr, const py::object& U_obj,
                       const py::object& out_obj, const py::object& nonfinite_obj) {
  if (!U_obj.is_none() && !out_obj.is_none())
    throw py::value_error("give U (a later step, updated in place) or out (a first step's destination), not both");
  Array w = array_of(w_obj, "w");
  require_memory(w, Memory::kHost);
  if (w.ndim() != 1) throw py::value_error("w: expected a 1-D array of parameters, got shape " + w.shape_text());
  if (w.dtype != DType::kFloat32 && w.dtype != DType::kFloat64)
    throw py::type_error("w: expected float32 or float64 values, got dtype " + w.dtype_name);
  if (!w.c_contiguous()) throw py::value_error("w: expected a C-contiguous array");
  auto run = [&](auto tag) -> py::object {
    using T = decltype(tag);
    const Array X = dense_host(X_obj, "X", 2, "a 2-D array of shape (examples, features)", dtype_of<T>());
    const Array y = dense_host(y_obj, "y", 1, "a 1-D array of labels", DType::kInt64);
    const Array batches = dense_host(batches_obj, "batches", 2,
                                     "a 2-D array of shape (workers, batch) of example indices", DType::kInt64);
    const int64_t n = X.shape[0], features = X.shape[1], m = batches.shape[0], batch = batches.shape[1];
    if (classes < 1) throw py::value_error("classes must be >= 1, got " + std::to_string(classes));
    const int64_t d = features * classes + classes;
    if (w.shape[0] != d)
      throw py::value_error("w: expected " + std::to_string(d) + " = features * classes + classes parameters, got " +
                            std::to_string(w.shape[0]));
    if (y.shape[0] != n)
      throw py::value_error("y: expected one label per row of X (" + std::to_string(n) + "), got " +
                            std::to_string(y.shape[0]));
    const int64_t* labels = y.as<const int64_t>();
    for (int64_t e = 0; e < n; ++e)
      if (labels[e] < 0 || labels[e] >= classes)
        throw py::value_error("y: labels must lie in [0, " + std::to_string(classes) + "), got " +
                              std::to_string(labels[e]) + " at index " + std::to_string(e));
    const int64_t* idx = batches.as<const int64_t>();
    for (int64_t k = 0; k < m * batch; ++k)
      if (idx[k] < -1 || idx[k] >= n)
        throw py::value_error("batches: indices must lie in [-1, " + std::to_string(n) + ") (-1 = empty slot), got " +
                              std::to_string(idx[k]));
    const char* name = out_obj.is_none() ? "U" : "out";
    py::object result = !U_obj.is_none() ? U_obj : !out_obj.is_none() ? out_obj : py::object(py::array_t<T>({m, d}));
    const Array U = dense_host(result, name, 2, "a 2-D array of shape (workers, d)", dtype_of<T>(), true);
    if (U.shape[0] != m || U.shape[1] != d)
      throw py::value_error(std::string(name) + ": expected shape (" + std::to_string(m) + ", " + std::to_string(d) +
                            "), got " + U.shape_text());
    uint8_t* flags = nullptr;
    if (!nonfinite_obj.is_none()) {
      const Array f = dense_host(nonfinite_obj, "nonfinite", 1, "a 1-D bool array with one flag per worker",
                                 DType::kBool, true);
      if (f.shape[0] != m)
        throw py::value_error("nonfinite: expected shape (" + std::to_string(m) + ",) (one flag per worker), got " +
                              f.shape_text());
      flags = f.as<uint8_t>();
    }
    cpu::LrStep<T> step{w.as<const T>(), X.as<const T>(), labels, idx, U.as<T>(), features, classes, m, batch,
                        static_cast<T>(lr), U_obj.is_none(), flags};
    {
      py::gil_scoped_release nogil;
      cpu::lr_sgd_step<T>(step);
    }
    return result;
  };
  if (w.dtype == DType::kFloat32) return run(float{});
  return run(double{});
}

py::array_t<int64_t> minibatch_indices(const py::object& table_obj, const py::object& keys_obj, int64_t batch) {
  const Array table = dense_host(table_obj, "table", 2, "a 2-D array of shape (workers, slots) of example indices",
                                 DType::kInt64);
  const Array keys = dense_host(keys_obj, "keys", 2, "a 2-D array of shape (workers, slots) of keys", DType::kFloat64);
  if (keys.shape[0] != table.shape[0] || keys.shape[1] != table.shape[1])
    throw py::value_error("keys: expected the shape of table " + table.shape_text() + ", got " + keys.shape_text());
  if (batch < 0) throw py::value_error("batch must be >= 0, got " + std::to_string(batch));
  const int64_t m = table.shape[0], slots = table.shape[1];
  const double* k = keys.as<const double>();
  bool nan = false;
  for (int64_t e = 0; e < m * slots; ++e) nan |= k[e] != k[e];
  for (int64_t e = 0; nan; ++e)
    if (k[e] != k[e]) throw py::value_error("keys: expected no NaN, got one at flat index " + std::to_string(e));
  py::array_t<int64_t> out({m, batch});
  cpu::MinibatchDraw draw{table.as<const int64_t>(), k, out.mutable_data(), m, slots, batch};
  {
    py::gil_scoped_release nogil;
    cpu::minibatch_indices(draw);
  }
  return out;
}

}  // namespace

void bind_training(py::module_& m) {
  m.def("lr_sgd_step", &lr_sgd_step, py::arg("w"), py::arg("X"), py::arg("y"), py::arg("batches"),
        py::arg("classes"), py::arg("lr"), py::arg("U") = py::none(), py::arg("out") = py::none(),
        py::arg("nonfinite") = py::none(),
        "One local SGD step of multi-class LR for every worker; returns U (updated in place when given), "
        "else the first step's updates (written into out when given). nonfinite, a (workers,) bool array, "
        "is set to whether each row of the result holds a NaN or an Inf.");
  m.def("minibatch_indices", &minibatch_indices, py::arg("table"), py::arg("keys"), py::arg("batch"),
        "(workers, batch) int64: each row's examples (table >= 0) with the smallest (key, slot), in slot "
        "order; -1 fills the rest.");
}
