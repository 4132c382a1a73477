// fedrobust._cuda: built when a CUDA compiler is found. It links the CUDA
// runtime statically, so it imports on machines without a driver; every
// call into CUDA sits behind device_count().
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "device.h"

namespace py = pybind11;

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "fedrobust CUDA module (device probe).";
  m.def("device_count", &fedrobust::cuda::device_count);
  m.def("runtime_version", &fedrobust::cuda::runtime_version);
  m.def("driver_version", &fedrobust::cuda::driver_version);
  m.def("device_names", [] {
    std::vector<std::string> names;
    for (int i = 0; i < fedrobust::cuda::device_count(); ++i) names.push_back(fedrobust::cuda::device_name(i));
    return names;
  });
  m.attr("architectures") = FEDROBUST_CUDA_ARCHS;
}
