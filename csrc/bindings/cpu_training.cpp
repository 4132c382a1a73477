// fedrobust._cpu's training family: one local SGD step of multi-class
// logistic regression for every worker (the simulation's LR fast path). The
// binding checks its arguments (numpy_args.h), drops the GIL and calls the
// kernel (csrc/cpu/training.h).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>

#include "../cpu/training.h"
#include "numpy_args.h"

namespace py = pybind11;
namespace cpu = fedrobust::cpu;
using namespace fedrobust::bindings;

namespace {

py::object lr_sgd_step(const py::array& w, const py::array& X, const py::array& y, const py::array& batches,
                       int64_t classes, double lr, std::optional<py::array> U) {
  auto run = [&](auto tag) -> py::object {
    using T = decltype(tag);
    check_dense<T>(X, "X", 2, "a 2-D array of shape (examples, features)");
    check_dense<int64_t>(y, "y", 1, "a 1-D array of labels");
    check_dense<int64_t>(batches, "batches", 2, "a 2-D array of shape (workers, batch) of example indices");
    const int64_t n = X.shape(0), features = X.shape(1), m = batches.shape(0), batch = batches.shape(1);
    if (classes < 1) throw py::value_error("classes must be >= 1, got " + std::to_string(classes));
    const int64_t d = features * classes + classes;
    if (w.shape(0) != d)
      throw py::value_error("w: expected " + std::to_string(d) + " = features * classes + classes parameters, got " +
                            std::to_string(w.shape(0)));
    if (y.shape(0) != n)
      throw py::value_error("y: expected one label per row of X (" + std::to_string(n) + "), got " +
                            std::to_string(y.shape(0)));
    const int64_t* labels = static_cast<const int64_t*>(y.data());
    for (int64_t e = 0; e < n; ++e)
      if (labels[e] < 0 || labels[e] >= classes)
        throw py::value_error("y: labels must lie in [0, " + std::to_string(classes) + "), got " +
                              std::to_string(labels[e]) + " at index " + std::to_string(e));
    const int64_t* idx = static_cast<const int64_t*>(batches.data());
    for (int64_t k = 0; k < m * batch; ++k)
      if (idx[k] < -1 || idx[k] >= n)
        throw py::value_error("batches: indices must lie in [-1, " + std::to_string(n) + ") (-1 = empty slot), got " +
                              std::to_string(idx[k]));
    py::array_t<T> out = U ? py::array_t<T>(py::reinterpret_borrow<py::array_t<T>>(*U)) : py::array_t<T>({m, d});
    if (U) {
      check_dense<T>(*U, "U", 2, "a 2-D array of shape (workers, d)");
      if (U->shape(0) != m || U->shape(1) != d)
        throw py::value_error("U: expected shape (" + std::to_string(m) + ", " + std::to_string(d) + "), got " +
                              shape_text(*U));
      if (!U->writeable()) throw py::value_error("U: expected a writable array");
    }
    cpu::LrStep<T> step{static_cast<const T*>(w.data()), static_cast<const T*>(X.data()), labels, idx,
                        out.mutable_data(), features, classes, m, batch, static_cast<T>(lr), !U};
    {
      py::gil_scoped_release nogil;
      cpu::lr_sgd_step<T>(step);
    }
    return std::move(out);
  };
  if (w.ndim() != 1) throw py::value_error("w: expected a 1-D array of parameters, got shape " + shape_text(w));
  if (!(w.flags() & py::array::c_style)) throw py::value_error("w: expected a C-contiguous array");
  if (is_float32(w)) return run(float{});
  if (is_float64(w)) return run(double{});
  throw py::type_error("w: expected float32 or float64 values, got dtype " + std::string(py::str(w.dtype())));
}

}  // namespace

void bind_training(py::module_& m) {
  m.def("lr_sgd_step", &lr_sgd_step, py::arg("w"), py::arg("X"), py::arg("y"), py::arg("batches"),
        py::arg("classes"), py::arg("lr"), py::arg("U") = py::none(),
        "One local SGD step of multi-class LR for every worker; returns U (updated in place when given).");
}
