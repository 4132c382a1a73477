// fedrobust._cuda: built when a CUDA compiler is found. One binding file per
// family (cuda_aggregation.cpp, cuda_attacks.cpp); here the module itself and
// the device probe. It links the CUDA runtime statically, so it imports on
// machines without a driver; every call into CUDA sits behind device_count().
//
// The bindings take the arrays themselves (array.h: __cuda_array_interface__
// or DLPack), with the same names and signatures as fedrobust._cpu; the
// Python side (fedrobust.dispatch) allocates the outputs with the input's own
// library, so nothing is copied and the work runs on the producer's stream.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "../cuda/coordinatewise.h"
#include "../cuda/device.h"
#include "../cuda/distances.h"
#include "checks.h"

namespace py = pybind11;
namespace fc = fedrobust::cuda;

void bind_aggregation(py::module_& m);  // cuda_aggregation.cpp
void bind_attacks(py::module_& m);      // cuda_attacks.cpp

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "fedrobust CUDA kernels. Use fedrobust.aggregators with torch CUDA tensors or cupy arrays.";
  bind_aggregation(m);
  bind_attacks(m);
  fedrobust::bindings::bind_checks(m);  // checks.h: check_krum, check_trimmed_mean, ...

  m.def("device_count", &fc::device_count);
  m.def("device_error", &fc::device_error, "Why device_count() is 0 (empty when it is not).");
  m.def("runtime_version", &fc::runtime_version);
  m.def("driver_version", &fc::driver_version);
  m.def("device_names", [] {
    std::vector<std::string> names;
    for (int i = 0; i < fc::device_count(); ++i) names.push_back(fc::device_name(i));
    return names;
  });
  m.attr("sort_rows") = fc::kMaxRows;
  m.attr("max_distance_rows") = fc::kMaxDistanceRows;
  m.attr("architectures") = FEDROBUST_CUDA_ARCHS;
}
