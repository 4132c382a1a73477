// The local training step of the simulation's LR fast path (training.cpp).
#pragma once
#include <cstdint>

#include "simd_level.h"

namespace fedrobust::cpu {

// Arguments of lr_sgd_step: one local SGD step of multi-class LR for
// `workers` workers. d = features * classes + classes.
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
  uint8_t* nonfinite;       // (workers,) or null: 1 where the row of U after the step holds a NaN or Inf
};

// The build of each SIMD level (training.cpp, compiled once per level).
namespace generic {
template <class T> void lr_sgd_step(const LrStep<T>& step);
}  // namespace generic
namespace avx2 {
template <class T> void lr_sgd_step(const LrStep<T>& step);
}  // namespace avx2
namespace avx512 {
template <class T> void lr_sgd_step(const LrStep<T>& step);
}  // namespace avx512

// U_i <- U_i - lr * grad of worker i's batch-mean cross-entropy at w + U_i,
// for every worker i (U_i = 0 when step.first).
template <class T>
void lr_sgd_step(const LrStep<T>& step) {
#ifdef FR_HAVE_AVX512_VARIANT
  if (avx512_in_use()) return avx512::lr_sgd_step(step);
#endif
#ifdef FR_HAVE_AVX2_VARIANT
  if (avx2_in_use()) return avx2::lr_sgd_step(step);
#endif
  generic::lr_sgd_step(step);
}

}  // namespace fedrobust::cpu
