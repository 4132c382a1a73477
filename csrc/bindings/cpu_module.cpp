// fedrobust._cpu: the CPU kernels for Python, one binding file per family
// (cpu_aggregation.cpp, cpu_attacks.cpp, cpu_training.cpp), the rules' checks
// (checks.h), and here what the build offers (SIMD levels, threads, versions).
// Argument checks live in the bindings, once (checks.h, array.h); the
// Python layer (fedrobust.dispatch) only chooses the backend.
#include <omp.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "../cpu/simd_level.h"
#include "checks.h"

namespace py = pybind11;
namespace cpu = fedrobust::cpu;

void bind_aggregation(py::module_& m);  // cpu_aggregation.cpp
void bind_attacks(py::module_& m);      // cpu_attacks.cpp
void bind_training(py::module_& m);     // cpu_training.cpp

PYBIND11_MODULE(_cpu, m) {
  m.doc() = "fedrobust CPU kernels (C++17, OpenMP). Use fedrobust.aggregators, not this module.";
  bind_aggregation(m);
  bind_attacks(m);
  bind_training(m);
  fedrobust::bindings::bind_checks(m);  // checks.h: check_krum, check_trimmed_mean, ...

  m.def("simd_level", [] { return std::string(cpu::simd_level()); });
  m.def("set_simd_level", [](const std::string& s) {
    try {
      cpu::set_simd_level(s.c_str());
    } catch (const std::invalid_argument& e) {
      throw py::value_error(e.what());
    }
  });
  m.def("simd_level_available", [](const std::string& s) { return cpu::simd_level_available(s.c_str()); });
  m.def("max_threads", [] { return omp_get_max_threads(); });
  m.def("set_num_threads", [](int n) {
    if (n < 1) throw py::value_error("num_threads must be >= 1, got " + std::to_string(n));
    omp_set_num_threads(n);
  });
  m.attr("version") = FEDROBUST_VERSION;
  m.attr("openmp_version") = _OPENMP;
  m.attr("compiler") = __VERSION__;
}
