// The batched crafting of Fang et al.'s attacks (SPEC sections 5-7), all in
// update space (an update is a local model minus the received global model).
//
// craft_coordinates: per coordinate, statistics of a set of rows, then the
// n_out crafted values of that coordinate, in one pass over column blocks:
//   trim, full knowledge (SPEC 6.1): mx / mn = max / min over the rows (the
//     benign ones), shifted by base_j when the interval refers to model
//     values; s_j = -1: [mx, b mx] (mx > 0) or [mx, mx / b]; s_j = +1:
//     [mn / b, mn] (mn > 0) or [b mn, mn]; s_j = 0: the update 0.
//   trim, partial knowledge (SPEC 6.2): mu, sigma = mean and population std
//     over the rows (the compromised ones), s_j = sign(mu_j); s_j = -1:
//     [mu + lo sigma, mu + hi sigma]; s_j = +1: [mu - hi sigma, mu - lo sigma];
//     s_j = 0: 0.
//   gaussian (SPEC 7): mu + sigma z, z standard normal (Box-Muller pairs over
//     columns 2p, 2p + 1), mu and sigma over the rows (all).
// Every draw comes from random.h's counter (seed, round, out_ids[k], j), so
// the values are the same for any thread count and on any backend.
//
// norms_and_dots: ||u_i||^2 and <u_i, s> per row, in double: what the Krum
// attack's lambda search needs, since ||u_i + lambda s||^2 =
// ||u_i||^2 + 2 lambda <u_i, s> + lambda^2 ||s||^2.
//
// krum_craft: the Krum attack's c sent updates: row 0 is -lambda s (the
// crafted model w_Re - lambda s), row k >= 1 is -lambda s + r_k v_k with v_k
// uniform on the unit sphere (normalised standard normals, rounded to T before
// the norm is taken) and r_k ~ U(0, eps); the per-chunk steps are
// fedrobust/krum_craft.h's, shared with the CUDA kernel.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "fedrobust/craft.h"
#include "fedrobust/krum_craft.h"
#include "fedrobust/random.h"
#include "attacks.h"
#include "threads.h"
#if defined(__x86_64__)
#include <immintrin.h>
#endif

FR_BEGIN_SIMD_CODE

namespace fedrobust::cpu::FR_ARCH {
namespace {

constexpr int64_t kBlock = 256;  // columns per block

// The row's values of columns [j0, j0 + w) as a contiguous run (copied when strided).
// With contiguous rows the next block of the row is prefetched (the first pass of a
// block reads every row once; n row streams are too many for the hardware prefetcher).
template <class T>
const T* block_of_row(const RowsView<T>& u, int64_t i, int64_t j0, int64_t w, T* buffer) {
  const T* src = u.rows[i] + j0 * u.col_stride;
  if (u.col_stride == 1) {
    if (j0 + kBlock < u.cols) {
      const int64_t bytes = std::min(kBlock, u.cols - j0 - kBlock) * static_cast<int64_t>(sizeof(T));
      for (int64_t b = 0; b < bytes; b += 64) __builtin_prefetch(reinterpret_cast<const char*>(src + kBlock) + b);
    }
    return src;
  }
  for (int64_t t = 0; t < w; ++t) buffer[t] = src[t * u.col_stride];
  return buffer;
}

#if defined(FR_ARCH_AVX2)
// normal_pair (random.h) on 4 lanes, operation for operation, so the values are the
// same bits as the scalar version's.
using D4 = __m256d;
using U4 = __m256i;

inline U4 mul64(U4 a, U4 b) {  // a * b mod 2^64
  const U4 cross = _mm256_add_epi64(_mm256_mul_epu32(_mm256_srli_epi64(a, 32), b),
                                    _mm256_mul_epu32(a, _mm256_srli_epi64(b, 32)));
  return _mm256_add_epi64(_mm256_mul_epu32(a, b), _mm256_slli_epi64(cross, 32));
}

inline U4 mix64_4(U4 z) {
  z = _mm256_add_epi64(z, _mm256_set1_epi64x(static_cast<int64_t>(0x9e3779b97f4a7c15ULL)));
  z = mul64(_mm256_xor_si256(z, _mm256_srli_epi64(z, 30)), _mm256_set1_epi64x(static_cast<int64_t>(0xbf58476d1ce4e5b9ULL)));
  z = mul64(_mm256_xor_si256(z, _mm256_srli_epi64(z, 27)), _mm256_set1_epi64x(static_cast<int64_t>(0x94d049bb133111ebULL)));
  return _mm256_xor_si256(z, _mm256_srli_epi64(z, 31));
}

inline D4 exact_double(U4 x) {  // x < 2^54, exactly: (2^84 + hi 2^32) - 2^84 + (2^52 + lo) - 2^52
  const U4 lo = _mm256_or_si256(_mm256_and_si256(x, _mm256_set1_epi64x(0xffffffffLL)),
                                _mm256_set1_epi64x(0x4330000000000000LL));
  const U4 hi = _mm256_or_si256(_mm256_srli_epi64(x, 32), _mm256_set1_epi64x(0x4530000000000000LL));
  return _mm256_add_pd(_mm256_sub_pd(_mm256_castsi256_pd(hi), _mm256_set1_pd(0x1.0p84)),
                       _mm256_sub_pd(_mm256_castsi256_pd(lo), _mm256_set1_pd(0x1.0p52)));
}

inline D4 mul(D4 a, D4 b) { return _mm256_mul_pd(a, b); }
inline D4 add(D4 a, D4 b) { return _mm256_add_pd(a, b); }
inline D4 sub(D4 a, D4 b) { return _mm256_sub_pd(a, b); }
inline D4 splat(double x) { return _mm256_set1_pd(x); }

inline D4 estrin6(const double* c, D4 z) {
  const D4 z2 = mul(z, z), z4 = mul(z2, z2);
  return add(add(add(splat(c[0]), mul(splat(c[1]), z)), mul(add(splat(c[2]), mul(splat(c[3]), z)), z2)),
             mul(add(splat(c[4]), mul(splat(c[5]), z)), z4));
}

inline D4 estrin7(const double* c, D4 z) {
  const D4 z2 = mul(z, z), z4 = mul(z2, z2);
  return add(add(add(splat(c[0]), mul(splat(c[1]), z)), mul(add(splat(c[2]), mul(splat(c[3]), z)), z2)),
             mul(add(add(splat(c[4]), mul(splat(c[5]), z)), mul(splat(c[6]), z2)), z4));
}

inline void normal_pair4(U4 h, D4* first, D4* second) {
  // r = sqrt(-2 ln u1), u1 = ((h >> 11) + 1) 2^-53 (counter_log's steps).
  const D4 u1 = mul(exact_double(_mm256_add_epi64(_mm256_srli_epi64(h, 11), _mm256_set1_epi64x(1))), splat(0x1.0p-53));
  const U4 bits = _mm256_castpd_si256(u1);
  const U4 e_raw = _mm256_and_si256(_mm256_srli_epi64(bits, 52), _mm256_set1_epi64x(0x7ff));
  D4 m = _mm256_castsi256_pd(_mm256_or_si256(_mm256_and_si256(bits, _mm256_set1_epi64x(0x000fffffffffffffLL)),
                                             _mm256_set1_epi64x(0x3ff0000000000000LL)));
  const D4 high = _mm256_cmp_pd(m, splat(1.4142135623730950488), _CMP_GT_OQ);
  m = _mm256_blendv_pd(m, mul(splat(0.5), m), high);
  const U4 e_biased = _mm256_sub_epi64(e_raw, _mm256_castpd_si256(high));  // high is all ones: -(-1)
  const D4 ed = sub(exact_double(e_biased), splat(1023.0));
  const D4 sv = _mm256_div_pd(sub(m, splat(1.0)), add(m, splat(1.0))), z = mul(sv, sv);
  const double lc[7] = FR_LOG_C;
  const D4 poly = estrin7(lc, z);
  const D4 two_s = mul(splat(2.0), sv);
  const D4 ln_m = add(two_s, mul(mul(two_s, z), poly));
  const D4 ln = add(mul(ed, splat(6.93147180369123816490e-01)), add(ln_m, mul(ed, splat(1.90821492927058770002e-10))));
  const D4 r = _mm256_sqrt_pd(mul(splat(-2.0), ln));
  // The angle, reduced in turns.
  const U4 k = _mm256_srli_epi64(mix64_4(h), 11);
  const U4 quadrant = _mm256_srli_epi64(k, 51);
  const D4 f = mul(exact_double(_mm256_and_si256(k, _mm256_set1_epi64x((int64_t(1) << 51) - 1))), splat(0x1.0p-53));
  const D4 fold = _mm256_cmp_pd(f, splat(0.125), _CMP_GT_OQ);
  const D4 a = mul(splat(6.283185307179586476925286766559), _mm256_blendv_pd(f, sub(splat(0.25), f), fold));
  const double ps[6] = FR_SIN_C;
  const double pc[7] = FR_COS_C;
  const D4 za = mul(a, a);
  const D4 sf = sub(a, mul(mul(a, za), estrin6(ps, za)));
  const D4 cf = sub(splat(1.0), mul(za, estrin7(pc, za)));
  const D4 s0 = _mm256_blendv_pd(sf, cf, fold), c0 = _mm256_blendv_pd(cf, sf, fold);
  const D4 sign = splat(-0.0);
  const D4 q1 = _mm256_castsi256_pd(_mm256_cmpeq_epi64(quadrant, _mm256_set1_epi64x(1)));
  const D4 q2 = _mm256_castsi256_pd(_mm256_cmpeq_epi64(quadrant, _mm256_set1_epi64x(2)));
  const D4 q3 = _mm256_castsi256_pd(_mm256_cmpeq_epi64(quadrant, _mm256_set1_epi64x(3)));
  // quadrant 0: (s0, c0); 1: (c0, -s0); 2: (-s0, -c0); 3: (-c0, s0)
  D4 sin_a = _mm256_blendv_pd(s0, c0, q1), cos_a = _mm256_blendv_pd(c0, _mm256_xor_pd(s0, sign), q1);
  sin_a = _mm256_blendv_pd(sin_a, _mm256_xor_pd(s0, sign), q2);
  cos_a = _mm256_blendv_pd(cos_a, _mm256_xor_pd(c0, sign), q2);
  sin_a = _mm256_blendv_pd(sin_a, _mm256_xor_pd(c0, sign), q3);
  cos_a = _mm256_blendv_pd(cos_a, s0, q3);
  *first = mul(r, cos_a);
  *second = mul(r, sin_a);
}
#endif

// z[2p], z[2p + 1] = normal_pair(counter_hash_at(prefix, column0 + 2p)) for p < pairs.
void normal_pairs(uint64_t prefix, uint64_t column0, int64_t pairs, double* z) {
  int64_t p = 0;
#if defined(FR_ARCH_AVX2)
  const U4 base = _mm256_set1_epi64x(static_cast<int64_t>(prefix));
  for (; p + 4 <= pairs; p += 4) {
    const uint64_t c = column0 + 2 * static_cast<uint64_t>(p);
    const U4 columns = _mm256_set_epi64x(static_cast<int64_t>(c + 6), static_cast<int64_t>(c + 4),
                                         static_cast<int64_t>(c + 2), static_cast<int64_t>(c));
    D4 first, second;
    normal_pair4(mix64_4(_mm256_xor_si256(base, columns)), &first, &second);
    alignas(32) double f[4], s[4];
    _mm256_store_pd(f, first);
    _mm256_store_pd(s, second);
    for (int k = 0; k < 4; ++k) {
      z[2 * (p + k)] = f[k];
      z[2 * (p + k) + 1] = s[k];
    }
  }
#endif
  for (; p < pairs; ++p) {
    const NormalPair pair = normal_pair(counter_hash_at(prefix, column0 + 2 * static_cast<uint64_t>(p)));
    z[2 * p] = pair.first;
    z[2 * p + 1] = pair.second;
  }
}

}  // namespace

template <class T>
void craft_coordinates(const CraftSpec<T>& s) {
  const RowsView<T>& u = s.rows;
  const int64_t n = u.n_rows, d = u.cols;
  const int64_t n_blocks = (d + kBlock - 1) / kBlock;
  std::vector<uint64_t> prefix(static_cast<size_t>(s.n_out));
  for (int64_t k = 0; k < s.n_out; ++k) prefix[k] = counter_prefix(s.seed, s.round, static_cast<uint64_t>(s.out_ids[k]));
#pragma omp parallel if (worth_threads((n + s.n_out) * d))
  {
    double a[kBlock], b[kBlock];  // max / min, or sum / sum of squared deviations
    T buffer[kBlock];
#pragma omp for schedule(static)
    for (int64_t blk = 0; blk < n_blocks; ++blk) {
      const int64_t j0 = blk * kBlock, w = std::min(kBlock, d - j0);
      // Statistics over the rows, in row order: per column what craft.h's
      // column_extremes / column_mean_std compute, a block of columns at a time.
      if (s.mode == CraftMode::kTrimFull) {
        std::fill(a, a + w, -std::numeric_limits<double>::infinity());
        std::fill(b, b + w, std::numeric_limits<double>::infinity());
        for (int64_t i = 0; i < n; ++i) {
          const T* x = block_of_row(u, i, j0, w, buffer);
          for (int64_t t = 0; t < w; ++t) {
            a[t] = std::max(a[t], static_cast<double>(x[t]));
            b[t] = std::min(b[t], static_cast<double>(x[t]));
          }
        }
      } else {
        std::fill(a, a + w, 0.0);
        std::fill(b, b + w, 0.0);
        for (int64_t i = 0; i < n; ++i) {
          const T* x = block_of_row(u, i, j0, w, buffer);
          for (int64_t t = 0; t < w; ++t) a[t] += static_cast<double>(x[t]);
        }
        for (int64_t t = 0; t < w; ++t) a[t] /= static_cast<double>(n);  // mean
        for (int64_t i = 0; i < n; ++i) {
          const T* x = block_of_row(u, i, j0, w, buffer);
          for (int64_t t = 0; t < w; ++t) {
            const double dev = static_cast<double>(x[t]) - a[t];
            b[t] += dev * dev;
          }
        }
        for (int64_t t = 0; t < w; ++t) b[t] = std::sqrt(b[t] / static_cast<double>(n));  // population std
      }
      if (s.mode == CraftMode::kGaussian) {
        // Box-Muller pairs: columns 2p and 2p + 1 from the hash of column 2p (blocks
        // start at even columns).
        alignas(32) double z[kBlock + 1];
        for (int64_t k = 0; k < s.n_out; ++k) {
          normal_pairs(prefix[k], static_cast<uint64_t>(j0), (w + 1) / 2, z);
          T* row = s.out + k * d + j0;
          for (int64_t t = 0; t < w; ++t) row[t] = static_cast<T>(a[t] + b[t] * z[t]);
        }
        if (s.direction_out) std::fill(s.direction_out + j0, s.direction_out + j0 + w, int8_t(0));
        continue;
      }
      // The trim attack's values of the block (fedrobust/craft.h).
      for (int64_t t = 0; t < w; ++t) {
        const int64_t j = j0 + t;
        const TrimInterval iv =
            s.mode == CraftMode::kTrimFull
                ? trim_full_interval(s.direction[j], a[t], b[t], s.base ? static_cast<double>(s.base[j]) : 0.0, s.b)
                : trim_partial_interval(a[t], b[t], s.sigma_lo, s.sigma_hi);
        if (s.direction_out) s.direction_out[j] = static_cast<int8_t>(iv.direction);
        for (int64_t k = 0; k < s.n_out; ++k)
          s.out[k * d + j] = static_cast<T>(trim_value(iv, prefix[k], static_cast<uint64_t>(j)));
      }
    }
  }
}

template <class T>
void norms_and_dots(const RowsView<T>& u, const int8_t* direction, double* sq_norms, double* dots) {
  const int64_t n = u.n_rows, d = u.cols;
#pragma omp parallel for schedule(static) if (worth_threads(n * d))
  for (int64_t i = 0; i < n; ++i) {
    constexpr int kLanes = 8;
    double nn[kLanes] = {}, dd[kLanes] = {};
    const T* x = u.rows[i];
    int64_t j = 0;
    for (; j + kLanes <= d; j += kLanes)
      for (int k = 0; k < kLanes; ++k) {
        const double v = static_cast<double>(x[(j + k) * u.col_stride]);
        nn[k] += v * v;
        dd[k] += v * static_cast<double>(direction[j + k]);
      }
    double sn = 0.0, sd = 0.0;
    for (int k = 0; k < kLanes; ++k) {
      sn += nn[k];
      sd += dd[k];
    }
    for (; j < d; ++j) {
      const double v = static_cast<double>(x[j * u.col_stride]);
      sn += v * v;
      sd += v * static_cast<double>(direction[j]);
    }
    sq_norms[i] = sn;
    dots[i] = sd;
  }
}

template <class T>
void krum_craft(const KrumCraft<T>& s) {
  // Row k >= 1: out = z (standard normals rounded to T) and its sum of squares per
  // chunk (fedrobust/krum_craft.h), then out = -lambda s + (r_k / ||z||) z.
  const int64_t d = s.cols, n_chunks = krum_chunks(d), n_sup = s.n_out - 1;
  std::vector<double> chunk_sq(static_cast<size_t>(std::max<int64_t>(n_sup, 0) * n_chunks));
  std::vector<uint64_t> prefix(static_cast<size_t>(s.n_out));
  for (int64_t k = 0; k < s.n_out; ++k) prefix[k] = counter_prefix(s.seed, s.round, static_cast<uint64_t>(s.out_ids[k]));
#pragma omp parallel for schedule(static) if (worth_threads(s.n_out * d))
  for (int64_t item = 0; item < n_sup * n_chunks; ++item) {
    const int64_t k = 1 + item / n_chunks, j0 = (item % n_chunks) * kKrumChunk, w = std::min(d - j0, kKrumChunk);
    T* row = s.out + k * d;
    std::vector<double> z(static_cast<size_t>(kKrumChunk + 1));
    normal_pairs(prefix[k], static_cast<uint64_t>(j0), (w + 1) / 2, z.data());
    for (int64_t t = 0; t < w; ++t) row[j0 + t] = static_cast<T>(z[t]);
    chunk_sq[item] = krum_chunk_sq(row + j0, w);
  }
  std::vector<double> scale(static_cast<size_t>(s.n_out), 0.0);
  for (int64_t k = 1; k < s.n_out; ++k)
    scale[k] = krum_scale(chunk_sq.data() + (k - 1) * n_chunks, n_chunks, s.eps, prefix[k], d);
#pragma omp parallel for schedule(static) if (worth_threads(s.n_out * d))
  for (int64_t item = 0; item < s.n_out * n_chunks; ++item) {
    const int64_t k = item / n_chunks, j0 = (item % n_chunks) * kKrumChunk, j1 = std::min(d, j0 + kKrumChunk);
    T* row = s.out + k * d;
    if (k == 0) {
      for (int64_t j = j0; j < j1; ++j) row[j] = krum_center<T>(s.lambda, s.direction[j]);
    } else {
      for (int64_t j = j0; j < j1; ++j) row[j] = krum_supporter<T>(s.lambda, s.direction[j], scale[k], row[j]);
    }
  }
}

template void craft_coordinates<float>(const CraftSpec<float>&);
template void craft_coordinates<double>(const CraftSpec<double>&);
template void norms_and_dots<float>(const RowsView<float>&, const int8_t*, double*, double*);
template void norms_and_dots<double>(const RowsView<double>&, const int8_t*, double*, double*);
template void krum_craft<float>(const KrumCraft<float>&);
template void krum_craft<double>(const KrumCraft<double>&);

}  // namespace fedrobust::cpu::FR_ARCH
