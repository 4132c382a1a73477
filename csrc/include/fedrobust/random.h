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
#include <cstring>

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

// Polynomials by Estrin's scheme: c0 + c1 z + ... with the pairs (c_2k + c_2k+1 z)
// independent and combined with z^2 and z^4, so the dependency chain is a few
// multiplications long (Horner's would be one per coefficient).
FR_HD double estrin6(const double* c, double z) {  // degree 5
  const double z2 = z * z, z4 = z2 * z2;
  return ((c[0] + c[1] * z) + (c[2] + c[3] * z) * z2) + (c[4] + c[5] * z) * z4;
}
FR_HD double estrin7(const double* c, double z) {  // degree 6
  const double z2 = z * z, z4 = z2 * z2;
  return ((c[0] + c[1] * z) + (c[2] + c[3] * z) * z2) + ((c[4] + c[5] * z) + c[6] * z2) * z4;
}

// The coefficients. Accuracy is that of sampling, not of a math library: about 1e-12
// relative for the logarithm, 1e-14 for sine and cosine.
// ln m = 2 atanh(s) = 2 s (1 + z/3 + ... + z^7/15), z = s^2 (kLogC: 1/3 .. 1/15).
// sin a = a - a z (1/3! - z/5! + ... - z^5/13!), cos a = 1 - z (1/2! - ... + z^6/14!).
#define FR_LOG_C {1.0 / 3.0, 1.0 / 5.0, 1.0 / 7.0, 1.0 / 9.0, 1.0 / 11.0, 1.0 / 13.0, 1.0 / 15.0}
#define FR_SIN_C {1.0 / 6.0, -1.0 / 120.0, 1.0 / 5040.0, -1.0 / 362880.0, 1.0 / 39916800.0, -1.0 / 6227020800.0}
#define FR_COS_C {0.5, -1.0 / 24.0, 1.0 / 720.0, -1.0 / 40320.0, 1.0 / 3628800.0, -1.0 / 479001600.0, \
                  1.0 / 87178291200.0}

// ln(x) for a normal x > 0, in plain arithmetic (the same bits on every backend built
// without FMA contraction): x = m 2^e with m in [sqrt(2)/2, sqrt(2)), ln m = 2 atanh(s),
// s = (m - 1) / (m + 1), |s| < 0.172.
FR_HD double counter_log(double x) {
  const double c[7] = FR_LOG_C;
  uint64_t bits;
  memcpy(&bits, &x, sizeof(bits));
  int64_t e = static_cast<int64_t>((bits >> 52) & 0x7ff) - 1023;
  const uint64_t mantissa_bits = (bits & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL;
  double m;
  memcpy(&m, &mantissa_bits, sizeof(m));
  const bool high = m > 1.4142135623730950488;
  m = high ? 0.5 * m : m;
  e = high ? e + 1 : e;
  const double s = (m - 1.0) / (m + 1.0), z = s * s;
  const double ln_m = 2.0 * s + 2.0 * s * z * estrin7(c, z);
  const double ed = static_cast<double>(e);
  return ed * 6.93147180369123816490e-01 + (ln_m + ed * 1.90821492927058770002e-10);  // ln 2 = hi + lo
}

// sin(a) and cos(a) for |a| <= pi/4.
FR_HD void counter_sincos_small(double a, double* sin_a, double* cos_a) {
  const double ps[6] = FR_SIN_C;
  const double pc[7] = FR_COS_C;
  const double z = a * a;
  *sin_a = a - a * z * estrin6(ps, z);
  *cos_a = 1.0 - z * estrin7(pc, z);
}

// Two standard normals from one hash h (Box-Muller): r cos(a) and r sin(a) with
// r = sqrt(-2 ln u1), u1 = uniform01_open_low(h), a = 2 pi t, t = uniform01(mix64(h)).
// The angle is reduced in turns, which is exact: t = q/4 + f with q the top two of
// t's 53 bits and f in [0, 1/4), and f > 1/8 is folded to 1/4 - f with sine and
// cosine swapped. (csrc/cpu/attacks.cpp has a 4-lane AVX2 copy: keep them in step.)
struct NormalPair {
  double first, second;
};
FR_HD NormalPair normal_pair(uint64_t h) {
  const double r = sqrt(-2.0 * counter_log(uniform01_open_low(h)));
  const uint64_t k = mix64(h) >> 11;  // t = k 2^-53
  const int quadrant = static_cast<int>(k >> 51);  // floor(4 t)
  const double f = static_cast<double>(k & ((uint64_t(1) << 51) - 1)) * 0x1.0p-53;  // t - quadrant / 4
  const bool fold = f > 0.125;
  double sf, cf;
  counter_sincos_small(6.283185307179586476925286766559 * (fold ? 0.25 - f : f), &sf, &cf);
  const double s0 = fold ? cf : sf, c0 = fold ? sf : cf;  // sin and cos of 2 pi f
  const double sin_a = quadrant == 0 ? s0 : quadrant == 1 ? c0 : quadrant == 2 ? -s0 : -c0;
  const double cos_a = quadrant == 0 ? c0 : quadrant == 1 ? -s0 : quadrant == 2 ? -c0 : s0;
  return {r * cos_a, r * sin_a};
}

// A value drawn uniformly from [lo, hi] (lo <= hi) by u in [0, 1): lo + u * (hi - lo) in
// double, clamped to hi against rounding. With lo and hi representable in T,
// the result rounded to T stays inside [lo, hi].
FR_HD double uniform_between(double lo, double hi, double u) {
  const double v = lo + u * (hi - lo);
  return v > hi ? hi : v;
}

}  // namespace fedrobust
