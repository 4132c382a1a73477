// krum_craft's arguments turned into a cpu::KrumCraft spec and its output
// array: shared by _cpu.krum_craft (the CPU kernel, cpu_attacks.cpp) and
// _emulation.krum_craft_scalar (the CUDA kernel's steps in scalar code,
// emulation_module.cpp), which differ only in the code that fills the output.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "../cpu/attacks.h"
#include "checks.h"
#include "numpy_args.h"

namespace fedrobust::bindings {

// The (len(out_ids), d) array of `dtype` (float32 or float64) that fill(spec)
// writes, spec a cpu::KrumCraft<T> over direction (d,) int8; fill runs
// without the GIL.
template <class Fill>
py::object krum_craft_with(const py::array& direction, double lambda, double eps, uint64_t seed, uint64_t round,
                           const py::array& out_ids, const py::dtype& dtype, Fill&& fill) {
  check_krum_craft(lambda, eps);
  auto run = [&](auto tag) -> py::object {
    using T = decltype(tag);
    if (direction.ndim() != 1)
      throw py::value_error("direction: expected a 1-D array of signs, got shape " + shape_text(direction));
    const int64_t d = direction.shape(0);
    const std::vector<int64_t> ids = ids_of(out_ids);
    cpu::KrumCraft<T> spec{direction_of(direction, d), d, lambda, eps, seed, round, ids.data(),
                           static_cast<int64_t>(ids.size()), nullptr};
    py::array_t<T> out({spec.n_out, d});
    spec.out = out.mutable_data();
    {
      py::gil_scoped_release nogil;
      fill(spec);
    }
    return std::move(out);
  };
  if (dtype.is(py::dtype::of<float>())) return run(float{});
  if (dtype.is(py::dtype::of<double>())) return run(double{});
  throw py::type_error("dtype must be float32 or float64, got " + std::string(py::str(dtype)));
}

}  // namespace fedrobust::bindings
