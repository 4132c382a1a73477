#include "numpy_args.h"

#include <algorithm>

namespace fedrobust::bindings {

std::string shape_text(const py::array& a) {
  std::string text = "(";
  for (py::ssize_t k = 0; k < a.ndim(); ++k) text += (k ? ", " : "") + std::to_string(a.shape(k));
  return text + (a.ndim() == 1 ? ",)" : ")");
}

void check_matrix(const py::array& a) {
  if (a.ndim() != 2)
    throw py::value_error("U: expected a 2-D array of shape (m workers, d parameters), got shape " +
                          shape_text(a));
  check_matrix_size(a.shape(0), a.shape(1));
}

bool is_float32(const py::array& a) { return a.dtype().is(py::dtype::of<float>()); }
bool is_float64(const py::array& a) { return a.dtype().is(py::dtype::of<double>()); }

py::array_t<int64_t> index_array(const std::vector<int64_t>& idx) {
  py::array_t<int64_t> out(static_cast<py::ssize_t>(idx.size()));
  std::copy(idx.begin(), idx.end(), out.mutable_data());
  return out;
}

std::vector<int64_t> all_rows(int64_t m) {
  std::vector<int64_t> r(m);
  for (int64_t i = 0; i < m; ++i) r[i] = i;
  return r;
}

const int8_t* direction_of(const py::array& s, int64_t cols) {
  check_dense<int8_t>(s, "direction", 1, "a 1-D array of signs");
  if (s.shape(0) != cols)
    throw py::value_error("direction: expected " + std::to_string(cols) + " signs (one per column of U), got " +
                          std::to_string(s.shape(0)));
  const int8_t* p = static_cast<const int8_t*>(s.data());
  for (int64_t j = 0; j < cols; ++j)
    if (p[j] < -1 || p[j] > 1)
      throw py::value_error("direction: values must be -1, 0 or 1, got " + std::to_string(p[j]) + " at index " +
                            std::to_string(j));
  return p;
}

std::vector<int64_t> ids_of(const py::array& ids) {
  check_dense<int64_t>(ids, "out_ids", 1, "a 1-D array of row ids");
  const int64_t* p = static_cast<const int64_t*>(ids.data());
  std::vector<int64_t> copy(p, p + ids.shape(0));
  check_some_ids(copy);
  return copy;
}

}  // namespace fedrobust::bindings
