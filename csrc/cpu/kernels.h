// The vectorised CPU kernels. Each is compiled once per SIMD level into
// fedrobust::cpu::<level> (generic, avx2); dispatch.cpp picks the level at
// run time and hands out its KernelTable. All kernels:
//   - read a RowsView (any layout, any subset of rows), never write to it;
//   - parallelise with OpenMP over fixed blocks (static schedule), so every
//     output element is computed by one thread in one fixed order and the
//     result is bit-identical for any thread count;
//   - release nothing themselves: the bindings drop the GIL around them.
#pragma once
#include <cstdint>

#include "fedrobust/common.h"
#include "fedrobust/craft.h"

namespace fedrobust::cpu {

// Arguments of lr_sgd_step (training.cpp): one local SGD step of multi-class
// LR for `workers` workers. d = features * classes + classes.
template <class T>
struct LrStep {
  const T* w;               // (d,) the global model
  const T* X;               // (N, features) row-major
  const int64_t* y;         // (N,) labels in [0, classes)
  const int64_t* batches;   // (workers, batch) example indices into X, -1 = empty slot
  T* U;                     // (workers, d) row-major, in/out (only out when first)
  int64_t features, classes, workers, batch;
  T lr;
  bool first;               // U holds no update yet: the model is w itself
};

// Arguments of craft_coordinates (attacks.cpp).
using fedrobust::CraftMode;

template <class T>
struct CraftSpec {
  RowsView<T> rows;          // the rows whose per-coordinate statistics set the values
  CraftMode mode;
  const int8_t* direction;   // (cols,) s_j in {-1, 0, 1}: kTrimFull only
  const T* base;             // (cols,) or null: kTrimFull intervals on base + value (model values)
  double b;                  // kTrimFull interval factor, > 1
  double sigma_lo, sigma_hi; // kTrimPartial interval in standard deviations
  uint64_t seed, round;      // the counter of random.h, with out_ids[k] and the column
  const int64_t* out_ids;    // (n_out,)
  int64_t n_out;
  T* out;                    // (n_out, cols) row-major
  int8_t* direction_out;     // (cols,) or null: the direction used
};

// Arguments of krum_craft (attacks.cpp).
template <class T>
struct KrumCraft {
  const int8_t* direction;   // (cols,) s
  int64_t cols;
  double lambda, eps;
  uint64_t seed, round;
  const int64_t* out_ids;    // (n_out,) counter rows
  int64_t n_out;
  T* out;                    // (n_out, cols) row-major
};

template <class T>
struct KernelTable {
  // out (n, n) row-major: squared Euclidean distances in double; exactly 0 on
  // the diagonal; +Inf where either row holds a non-finite value.
  void (*pairwise_sq_distances)(const RowsView<T>& u, double* out);
  // out (cols,): coordinate-wise median (even n: lo/2 + hi/2, see order.h).
  void (*median)(const RowsView<T>& u, T* out);
  // out (cols,): coordinate-wise mean of the values ranked beta .. n-beta-1.
  void (*trimmed_mean)(const RowsView<T>& u, int64_t beta, T* out);
  // out (cols,): Bulyan's second stage, the mean of the gamma values closest
  // to the coordinate's median.
  void (*closest_to_median_mean)(const RowsView<T>& u, int64_t gamma, T* out);
  // out (cols,): mean over rows, summed in row order in double.
  void (*mean)(const RowsView<T>& u, T* out);
  // Per-coordinate mean, population std, min and max over the rows.
  void (*coordinate_stats)(const RowsView<T>& u, T* mean, T* std, T* min, T* max);
  // out (n,): 1 where the row holds a NaN or an Inf.
  void (*nonfinite_rows)(const RowsView<T>& u, uint8_t* out);
  // U_i <- U_i - lr * grad of worker i's batch-mean CE at w + U_i (training.cpp).
  void (*lr_sgd_step)(const LrStep<T>& step);
  // Attack crafting (attacks.cpp).
  void (*craft_coordinates)(const CraftSpec<T>& spec);
  // sq_norms[i] = ||u_i||^2, dots[i] = <u_i, direction>, in double.
  void (*norms_and_dots)(const RowsView<T>& u, const int8_t* direction, double* sq_norms, double* dots);
  void (*krum_craft)(const KrumCraft<T>& spec);
};

#define FR_DECLARE_LEVEL(level)                   \
  namespace level {                               \
  template <class T>                              \
  const KernelTable<T>& kernel_table();           \
  }
FR_DECLARE_LEVEL(generic)
FR_DECLARE_LEVEL(avx2)
#undef FR_DECLARE_LEVEL

// The table of the level in use (see dispatch.cpp).
template <class T>
const KernelTable<T>& kernels();

// "generic" or "avx2": the level in use; set_simd_level switches (tests).
const char* simd_level();
void set_simd_level(const char* name);  // "auto", "generic", "avx2"; throws if unavailable
bool simd_level_available(const char* name);

}  // namespace fedrobust::cpu

#ifdef FR_ARCH
// Every vectorised translation unit includes all its headers first and then
// FR_BEGIN_SIMD_CODE: from there on, functions are compiled for the unit's
// SIMD level. Code from headers (ours and the standard library's) keeps the
// baseline target, so the inline and template copies that the linker merges
// across the per-level objects never carry AVX2 instructions into the
// generic path.
#if defined(FR_ARCH_AVX2)
#define FR_BEGIN_SIMD_CODE _Pragma("GCC target(\"avx2,fma\")")
#else
#define FR_BEGIN_SIMD_CODE
#endif

namespace fedrobust::cpu::FR_ARCH {
template <class T> void pairwise_sq_distances(const RowsView<T>& u, double* out);
template <class T> void median(const RowsView<T>& u, T* out);
template <class T> void trimmed_mean(const RowsView<T>& u, int64_t beta, T* out);
template <class T> void closest_to_median_mean(const RowsView<T>& u, int64_t gamma, T* out);
template <class T> void mean(const RowsView<T>& u, T* out);
template <class T> void coordinate_stats(const RowsView<T>& u, T* mean, T* std, T* min, T* max);
template <class T> void nonfinite_rows(const RowsView<T>& u, uint8_t* out);
template <class T> void lr_sgd_step(const LrStep<T>& step);
template <class T> void craft_coordinates(const CraftSpec<T>& spec);
template <class T> void norms_and_dots(const RowsView<T>& u, const int8_t* direction, double* sq_norms, double* dots);
template <class T> void krum_craft(const KrumCraft<T>& spec);
}  // namespace fedrobust::cpu::FR_ARCH
#endif
