// krum_craft's arguments turned into a cpu::KrumCraft spec over host arrays:
// shared by _cpu.krum_craft (the CPU kernel, cpu_attacks.cpp) and
// _emulation.krum_craft_scalar (the CUDA kernel's steps in scalar code,
// emulation_module.cpp), which differ only in the code that fills `out`.
#pragma once
#include <pybind11/pybind11.h>

#include <cstdint>
#include <vector>

#include "../cpu/attacks.h"
#include "checks.h"
#include "host_args.h"

namespace fedrobust::bindings {

// fill(spec) writes out (len(out_ids), d), float32 or float64, spec a cpu::KrumCraft<T>
// over direction (d,) int8; fill runs without the GIL.
template <class Fill>
void krum_craft_with(const py::object& direction, double lambda, double eps, uint64_t seed, uint64_t round,
                     const std::vector<int64_t>& out_ids, const py::object& out, Fill&& fill) {
  check_krum_craft(lambda, eps);
  check_some_ids(out_ids);
  const Array s = array_of(direction, "direction");
  require_memory(s, Memory::kHost);
  if (s.ndim() != 1 || s.shape[0] < 1)
    throw py::value_error("direction: expected a 1-D array of at least one sign, got shape " + s.shape_text());
  const int64_t d = s.shape[0], n_out = static_cast<int64_t>(out_ids.size());
  const Array o = array_of(out, "out");
  require_memory(o, Memory::kHost);
  auto run = [&](auto tag) {
    using T = decltype(tag);
    check_dense(o, {n_out, d}, dtype_of<T>(), true);
    const cpu::KrumCraft<T> spec{host_direction(s, d), d, lambda, eps, seed, round, out_ids.data(), n_out,
                                 o.as<T>()};
    py::gil_scoped_release nogil;
    fill(spec);
  };
  if (o.dtype == DType::kFloat32) return run(float{});
  if (o.dtype == DType::kFloat64) return run(double{});
  throw py::type_error("out: expected float32 or float64 values, got dtype " + o.dtype_name);
}

}  // namespace fedrobust::bindings
