// The argument checks of the attack kernels' bindings, shared by the CPU module
// (cpu_module.cpp) and the CUDA one (cuda_module.cpp), so both refuse the same
// input with the same message.
#pragma once
#include <pybind11/pybind11.h>

#include <cmath>
#include <string>

#include "fedrobust/craft.h"

namespace fedrobust::bindings {

namespace py = pybind11;

// craft_coordinates: the mode by name, with its own parameters checked
// (has_direction: a direction was passed; trim_full needs one).
inline CraftMode craft_mode(const std::string& mode, bool has_direction, double b, double sigma_lo,
                            double sigma_hi) {
  if (mode == "trim_full") {
    if (!has_direction) throw py::value_error("mode 'trim_full' needs a direction");
    if (!(b > 1.0)) throw py::value_error("b must be > 1, got " + std::to_string(b));
    return CraftMode::kTrimFull;
  }
  if (mode == "trim_partial") {
    if (!(0.0 <= sigma_lo && sigma_lo <= sigma_hi))
      throw py::value_error("sigma interval must satisfy 0 <= sigma_lo <= sigma_hi, got [" + std::to_string(sigma_lo) +
                            ", " + std::to_string(sigma_hi) + "]");
    return CraftMode::kTrimPartial;
  }
  if (mode == "gaussian") return CraftMode::kGaussian;
  throw py::value_error("mode must be 'trim_full', 'trim_partial' or 'gaussian', got '" + mode + "'");
}

// krum_craft: a finite lambda and a finite eps >= 0.
inline void check_krum_craft(double lambda, double eps) {
  if (!std::isfinite(lambda)) throw py::value_error("lambda must be finite, got " + std::to_string(lambda));
  if (!(eps >= 0.0 && std::isfinite(eps))) throw py::value_error("eps must be >= 0, got " + std::to_string(eps));
}

}  // namespace fedrobust::bindings
