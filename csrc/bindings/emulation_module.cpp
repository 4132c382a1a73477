// fedrobust._emulation: the CUDA kernels' arithmetic run on the CPU, in plain
// scalar code and in the kernels' order, so that the tests check that code
// without a GPU (and compare it with the CUDA kernels, bit for bit, on one);
// and what the bindings' argument reader (array.h) sees in an object.
// For tests only: nothing in the fedrobust package imports this module.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "../cpu/attacks.h"
#include "checks.h"
#include "fedrobust/column.h"
#include "fedrobust/distance_tile.h"
#include "fedrobust/krum_craft.h"
#include "fedrobust/random.h"
#include "krum_craft_args.h"
#include "host_args.h"

namespace py = pybind11;
namespace cpu = fedrobust::cpu;
using fedrobust::RowsView;
using namespace fedrobust::bindings;

namespace {

// The CUDA krum_craft's steps (fedrobust/krum_craft.h) on the CPU, in plain scalar code:
// each pair of normals on its own (not the vectorised normal_pairs), then the chunk sums,
// the scales and the values. How the tests check that path without a GPU.
template <class T>
void krum_craft_scalar_steps(const cpu::KrumCraft<T>& s) {
  const int64_t d = s.cols, n_chunks = fedrobust::krum_chunks(d);
  std::vector<double> chunk_sq(static_cast<size_t>(n_chunks)), scale(static_cast<size_t>(s.n_out), 0.0);
  for (int64_t k = 1; k < s.n_out; ++k) {
    const uint64_t prefix = fedrobust::counter_prefix(s.seed, s.round, static_cast<uint64_t>(s.out_ids[k]));
    T* row = s.out + k * d;
    for (int64_t j = 0; j < d; j += 2) fedrobust::krum_normal_pair<T>(prefix, j, d, row);
    for (int64_t c = 0; c < n_chunks; ++c) {
      const int64_t j0 = c * fedrobust::kKrumChunk;
      chunk_sq[c] = fedrobust::krum_chunk_sq(row + j0, std::min(fedrobust::kKrumChunk, d - j0));
    }
    scale[k] = fedrobust::krum_scale(chunk_sq.data(), n_chunks, s.eps, prefix, d);
  }
  for (int64_t k = 0; k < s.n_out; ++k)
    for (int64_t j = 0; j < d; ++j) {
      T* x = s.out + k * d + j;
      *x = k == 0 ? fedrobust::krum_center<T>(s.lambda, s.direction[j])
                  : fedrobust::krum_supporter<T>(s.lambda, s.direction[j], scale[k], *x);
    }
}

void krum_craft_scalar(const py::object& direction, double lambda, double eps, uint64_t seed, uint64_t round,
                       const std::vector<int64_t>& out_ids, const py::object& out) {
  krum_craft_with(direction, lambda, eps, seed, round, out_ids, out,
                  [](const auto& spec) { krum_craft_scalar_steps(spec); });
}

// The CUDA distance kernel's arithmetic (fedrobust/distance_tile.h) on the CPU, in the
// kernel's order: every 4 x 4 micro-tile of row pairs, per column chunk, stage by stage,
// the chunk sums added in chunk order; +Inf where not finite, 0 on the diagonal. The
// tests compare it with the reference here and with the CUDA kernel, bit for bit, on a GPU.
template <class T>
void distances_by_micro_tiles_into(const RowsView<T>& v, double* out) {
  constexpr int S = fedrobust::kStageCols<T>, R = fedrobust::kMicroTile;
  const int64_t m = v.n_rows, d = v.cols, chunk = fedrobust::distance_chunk_cols(m, d);
  const int64_t blocks = (m + R - 1) / R;
  std::vector<T> a(S * R), b(S * R);  // one stage of the two micro-tile rows, column-major
  auto stage = [&](std::vector<T>& dst, int64_t row0, int64_t k0, int cols) {
    for (int c = 0; c < cols; ++c)
      for (int x = 0; x < R; ++x) dst[c * R + x] = row0 + x < m ? v.at(row0 + x, k0 + c) : T(0);
  };
  for (int64_t p = 0; p < blocks; ++p)
    for (int64_t q = p; q < blocks; ++q) {
      double sum[R][R] = {};
      for (int64_t c0 = 0; c0 < d; c0 += chunk) {
        const int64_t c1 = std::min(d, c0 + chunk);
        double total[R][R] = {};
        for (int64_t k0 = c0; k0 < c1; k0 += S) {
          const int cols = static_cast<int>(std::min<int64_t>(S, c1 - k0));
          stage(a, R * p, k0, cols);
          stage(b, R * q, k0, cols);
          fedrobust::micro_tile_stage<T>(a.data(), b.data(), R, cols, total);
        }
        for (int x = 0; x < R; ++x)
          for (int y = 0; y < R; ++y) sum[x][y] += total[x][y];
      }
      for (int x = 0; x < R; ++x)
        for (int y = 0; y < R; ++y) {
          const int64_t i = R * p + x, j = R * q + y;
          if (i >= j || j >= m) continue;
          const double s = sum[x][y] <= std::numeric_limits<double>::max() ? sum[x][y]
                                                                          : std::numeric_limits<double>::infinity();
          out[i * m + j] = out[j * m + i] = s;
        }
    }
  for (int64_t i = 0; i < m; ++i) out[i * m + i] = 0.0;
}

py::array_t<double> distances_by_micro_tiles(const py::object& U) {
  const Array a = host_matrix(U);
  return dispatch_float(a, [&](auto tag) -> py::array_t<double> {
    using T = decltype(tag);
    Rows<T> r = rows_of<T>(a);
    py::array_t<double> out({r.view.n_rows, r.view.n_rows});
    double* p = out.mutable_data();
    py::gil_scoped_release nogil;
    distances_by_micro_tiles_into(r.view, p);
    return out;
  });
}

// The per-column code of the CUDA kernels (fedrobust/column.h) run on the CPU, one column
// at a time: how the tests check that logic without a GPU. Up to 128 rows it sorts, like
// the CUDA kernels; beyond, it selects by radix. `rows` (mean, stats, bulyan) lists the
// rows in the order the kernels read them (all rows when empty).
constexpr int kColumnMaxRows = 128;

// column_median_network / column_trimmed_mean_network for the smallest N in {16, 32, 64, 128}
// with m <= N, as the CUDA kernels pick it.
template <class T>
T column_network(const T* x, int64_t m, bool median, int64_t beta) {
  auto run = [&](auto n) {
    constexpr int N = decltype(n)::value;
    return median ? fedrobust::column_median_network<T, N>(x, 1, m)
                  : fedrobust::column_trimmed_mean_network<T, N>(x, 1, m, beta);
  };
  if (m <= 16) return run(std::integral_constant<int, 16>{});
  if (m <= 32) return run(std::integral_constant<int, 32>{});
  if (m <= 64) return run(std::integral_constant<int, 64>{});
  return run(std::integral_constant<int, 128>{});
}

py::object column_rule_scalar(const py::object& U, const std::string& rule, int64_t beta,
                              const std::vector<int64_t>& rows, int64_t gamma, bool network) {
  const Array a = host_matrix(U);
  return dispatch_float(a, [&](auto tag) -> py::object {
    using T = decltype(tag);
    Rows<T> r = rows_of<T>(a);
    const int64_t m = r.view.n_rows, d = r.view.cols;
    check_rows(rows, m);
    const int64_t n = rows.empty() ? m : static_cast<int64_t>(rows.size());
    const int64_t* listed = rows.empty() ? nullptr : rows.data();
    if (rule == "trimmed_mean") check_trimmed_mean(m, beta);
    if (rule == "bulyan" && (gamma < 1 || gamma > n || n > kColumnMaxRows))
      throw py::value_error("bulyan needs 1 <= gamma <= n <= 128 listed rows");
    if (network && (m > kColumnMaxRows || (rule != "median" && rule != "trimmed_mean")))
      throw py::value_error("the network path takes the median or the trimmed mean of at most 128 rows");
    if (rule == "leave_one_out_median" || rule == "leave_one_out_trimmed_mean") {  // (m, d): row i without row i
      const bool median = rule == "leave_one_out_median";
      if (median) {
        check_leave_one_out(m);
      } else {
        check_leave_one_out_trimmed_mean(m, beta);
      }
      py::array_t<T> out({m, d});
      std::vector<T> column(static_cast<size_t>(m));
      for (int64_t j = 0; j < d; ++j) {
        for (int64_t i = 0; i < m; ++i) column[i] = r.view.at(i, j);
        T* o = out.mutable_data() + j;
        if (median) {
          fedrobust::column_leave_one_out_median<T, kColumnMaxRows>(column.data(), 1, m, o, d);
        } else {
          fedrobust::column_leave_one_out_trimmed_mean<T, kColumnMaxRows>(column.data(), 1, m, beta, o, d);
        }
      }
      return std::move(out);
    }
    const int n_out = rule == "stats" ? 4 : 1;
    std::vector<py::array_t<T>> outs;
    for (int k = 0; k < n_out; ++k) outs.emplace_back(d);
    std::vector<T> column(static_cast<size_t>(m));
    for (int64_t j = 0; j < d; ++j) {
      for (int64_t i = 0; i < m; ++i) column[i] = r.view.at(i, j);
      const T* x = column.data();
      T* out = outs[0].mutable_data() + j;
      if (network) {
        *out = column_network(x, m, rule == "median", beta);
      } else if (rule == "median") {
        *out = fedrobust::column_median<T, kColumnMaxRows>(x, 1, m);
      } else if (rule == "trimmed_mean") {
        *out = fedrobust::column_trimmed_mean<T, kColumnMaxRows>(x, 1, m, beta);
      } else if (rule == "mean") {
        *out = fedrobust::column_mean(x, 1, listed, n);
      } else if (rule == "bulyan") {
        *out = fedrobust::column_bulyan<T, kColumnMaxRows>(x, 1, listed, n, gamma);
      } else if (rule == "stats") {
        fedrobust::column_stats(x, 1, listed, n, out, outs[1].mutable_data() + j, outs[2].mutable_data() + j,
                                outs[3].mutable_data() + j);
      } else {
        throw py::value_error("rule must be 'median', 'trimmed_mean', 'mean', 'bulyan', 'stats', "
                              "'leave_one_out_median' or 'leave_one_out_trimmed_mean', got '" + rule + "'");
      }
    }
    if (n_out == 1) return std::move(outs[0]);
    return py::make_tuple(outs[0], outs[1], outs[2], outs[3]);
  });
}

// What the one argument reader (array.h) reads from an object: how the tests check it
// without a GPU (a host buffer can pose as CUDA memory through __cuda_array_interface__).
py::dict describe_array(const py::object& obj) {
  const Array a = array_of(obj, "U");
  py::dict out;
  out["data"] = reinterpret_cast<uintptr_t>(a.data);
  out["shape"] = py::tuple(py::cast(a.shape));
  out["strides"] = py::tuple(py::cast(a.strides));
  out["dtype"] = a.dtype_name;
  out["known_dtype"] = a.dtype != DType::kOther;
  out["itemsize"] = a.itemsize;
  out["readonly"] = a.readonly;
  out["memory"] = a.memory == Memory::kHost ? "host" : "cuda";
  out["stream"] = a.stream;
  out["c_contiguous"] = a.c_contiguous();
  return out;
}

}  // namespace

PYBIND11_MODULE(_emulation, m) {
  m.doc() = "The CUDA kernels' arithmetic on the CPU, for fedrobust's tests; the package never imports it.";
  m.def("describe_array", &describe_array, py::arg("obj"),
        "What the bindings' argument reader (csrc/bindings/array.h) reads from obj: data, shape, strides (in "
        "elements), dtype, itemsize, readonly, memory ('host' / 'cuda'), stream, c_contiguous.");
  m.def("krum_craft_scalar", &krum_craft_scalar, py::arg("direction"), py::arg("lam"), py::arg("eps"), py::arg("seed"),
        py::arg("round"), py::arg("out_ids"), py::arg("out"),
        "krum_craft by the CUDA kernel's steps (fedrobust/krum_craft.h) in scalar code on the CPU, for tests.");
  m.def("distances_by_micro_tiles", &distances_by_micro_tiles, py::arg("U"),
        "(m, m) squared distances (float64) by the CUDA kernel's arithmetic and order "
        "(fedrobust/distance_tile.h) on the CPU, for tests.");
  m.def("column_rule_scalar", &column_rule_scalar, py::arg("U"), py::arg("rule"), py::arg("beta") = 0,
        py::arg("rows") = std::vector<int64_t>{}, py::arg("gamma") = 0, py::arg("network") = false,
        "The CUDA kernels' per-column code (fedrobust/column.h) on the CPU, for tests: rule 'median', "
        "'trimmed_mean', 'mean', 'bulyan' (gamma), 'stats' (a (mean, std, min, max) tuple) or "
        "'leave_one_out_median' / 'leave_one_out_trimmed_mean' (beta for m - 1 rows; (m, d)); `network` "
        "takes the register path (Batcher's network) of the median / trimmed mean.");
}
