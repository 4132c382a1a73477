// Counter-based random numbers for the attacks: the draw for (seed, round,
// row, column) is a pure function of those four integers, so crafted values
// do not depend on the thread count, the order of the work, or the backend.
//
//   hash = mix(mix(mix(mix(seed) ^ round) ^ row) ^ column)
//
// with `mix` the splitmix64 finalizer (a bijection of 64-bit integers with
// full avalanche). A uniform double in [0, 1) takes the top 53 bits.
#pragma once
#include <cmath>
#include <cstdint>

#include "fedrobust/common.h"

namespace fedrobust {

FR_HD uint64_t mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// The part of the hash that depends on (seed, round, row) only: computed once per row.
FR_HD uint64_t counter_prefix(uint64_t seed, uint64_t round, uint64_t row) {
  return mix64(mix64(mix64(seed) ^ round) ^ row);
}

FR_HD uint64_t counter_hash_at(uint64_t prefix, uint64_t column) { return mix64(prefix ^ column); }

FR_HD uint64_t counter_hash(uint64_t seed, uint64_t round, uint64_t row, uint64_t column) {
  return counter_hash_at(counter_prefix(seed, round, row), column);
}

// Uniform in [0, 1): k * 2^-53 with k the top 53 bits of h.
FR_HD double uniform01(uint64_t h) { return static_cast<double>(h >> 11) * 0x1.0p-53; }

// Uniform in (0, 1]: for logarithms.
FR_HD double uniform01_open_low(uint64_t h) { return static_cast<double>((h >> 11) + 1) * 0x1.0p-53; }

// Two standard normals from one hash h (Box-Muller): r cos(a) and r sin(a) with
// r = sqrt(-2 ln u1), u1 = uniform01_open_low(h), a = 2 pi u2, u2 = uniform01(mix64(h)).
struct NormalPair {
  double first, second;
};
FR_HD NormalPair normal_pair(uint64_t h) {
  const double r = sqrt(-2.0 * log(uniform01_open_low(h)));
  const double a = 6.283185307179586476925286766559 * uniform01(mix64(h));
  return {r * cos(a), r * sin(a)};
}

// A value drawn uniformly from [lo, hi] (lo <= hi) by u in [0, 1): lo + u * (hi - lo) in
// double, clamped to hi against rounding. With lo and hi representable in T,
// the result rounded to T stays inside [lo, hi].
FR_HD double uniform_between(double lo, double hi, double u) {
  const double v = lo + u * (hi - lo);
  return v > hi ? hi : v;
}

}  // namespace fedrobust
