// The per-chunk steps of the Krum attack's crafting (SPEC 5), shared by the CPU
// kernel (csrc/cpu/attacks.cpp krum_craft) and the CUDA one (csrc/cuda/attacks.cu),
// so both send the same bits (both built without FMA contraction).
//
// The c sent updates, for a direction s (d,) in {-1, 0, +1}:
//   row 0:      -lambda s                        (the crafted model w_Re - lambda s)
//   row k >= 1: -lambda s + (r_k / ||z_k||) z_k  (a supporter within eps of it)
// with z_k (d,) standard normals of the counter row out_ids[k] (random.h: columns
// 2p and 2p + 1 are the normal_pair of the hash of column 2p), rounded to T before
// they are squared, and r_k = eps * uniform01(hash of column d) in [0, eps).
//
// ||z_k||^2 is summed per chunk of kKrumChunk columns, in column order inside a
// chunk, and the chunk sums are added in chunk order: the sum does not depend on
// how the chunks are spread over threads.
#pragma once
#include <cmath>
#include <cstdint>

#include "fedrobust/common.h"
#include "fedrobust/random.h"

namespace fedrobust {

// Columns per chunk; even, so a Box-Muller pair never straddles two chunks.
constexpr int64_t kKrumChunk = 4096;

FR_HD int64_t krum_chunks(int64_t d) { return (d + kKrumChunk - 1) / kKrumChunk; }

// z[j] and z[j + 1] (the latter only when j + 1 < d) of the supporter row with
// counter prefix `prefix`, rounded to T; j is even.
template <class T>
FR_HD void krum_normal_pair(uint64_t prefix, int64_t j, int64_t d, T* z) {
  const NormalPair pair = normal_pair(counter_hash_at(prefix, static_cast<uint64_t>(j)));
  z[j] = static_cast<T>(pair.first);
  if (j + 1 < d) z[j + 1] = static_cast<T>(pair.second);
}

// sum_{t < w} z[t]^2 in double, in t order: one chunk's part of ||z||^2.
template <class T>
FR_HD double krum_chunk_sq(const T* z, int64_t w) {
  double sq = 0.0;
  for (int64_t t = 0; t < w; ++t) sq += static_cast<double>(z[t]) * static_cast<double>(z[t]);
  return sq;
}

// r / ||z|| for a supporter row: ||z||^2 = chunk_sq[0] + ... + chunk_sq[n_chunks - 1]
// (in that order), r = eps * uniform01(counter_hash_at(prefix, d)); 0 when ||z|| = 0.
FR_HD double krum_scale(const double* chunk_sq, int64_t n_chunks, double eps, uint64_t prefix, int64_t d) {
  double sq = 0.0;
  for (int64_t c = 0; c < n_chunks; ++c) sq += chunk_sq[c];
  const double r = eps * uniform01(counter_hash_at(prefix, static_cast<uint64_t>(d)));
  return sq > 0 ? r / sqrt(sq) : 0.0;
}

// Row 0 at a column with direction s_j: -lambda s_j.
template <class T>
FR_HD T krum_center(double lambda, int8_t s_j) {
  return static_cast<T>(-lambda * static_cast<double>(s_j));
}

// A supporter row at a column: -lambda s_j + scale z_j, in double, rounded to T.
template <class T>
FR_HD T krum_supporter(double lambda, int8_t s_j, double scale, T z_j) {
  return static_cast<T>(-lambda * static_cast<double>(s_j) + scale * static_cast<double>(z_j));
}

}  // namespace fedrobust
