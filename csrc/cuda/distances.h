// Host entry points of the CUDA distances and Krum (distances.cu).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "coordinatewise.h"

namespace fedrobust::cuda {

// The most rows pairwise_sq_distances takes (its (m, m) double buffers).
constexpr int64_t kMaxDistanceRows = 16384;

// sq (m, m) device doubles: squared distances (+Inf for non-finite rows, 0 on the
// diagonal); out (m, m) in T, squared or plain, when not null.
template <class T>
void pairwise_sq_distances(const Matrix<T>& u, double* sq, T* out, bool squared, cudaStream_t stream);

// From sq: scores (m,) device doubles and the chosen row (device int64), Krum with
// m - c - 2 neighbours, ties to the lowest index.
void krum_select(const double* sq, int64_t m, int64_t c, bool squared, double* scores, int64_t* chosen,
                 cudaStream_t stream);

}  // namespace fedrobust::cuda
