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
// the norm is taken) and r_k ~ U(0, eps).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "fedrobust/random.h"
#include "kernels.h"

FR_BEGIN_SIMD_CODE

namespace fedrobust::cpu::FR_ARCH {
namespace {

constexpr int64_t kBlock = 256;  // columns per block

// The row's values of columns [j0, j0 + w) as a contiguous run (copied when strided).
template <class T>
const T* block_of_row(const RowsView<T>& u, int64_t i, int64_t j0, int64_t w, T* buffer) {
  const T* src = u.rows[i] + j0 * u.col_stride;
  if (u.col_stride == 1) return src;
  for (int64_t t = 0; t < w; ++t) buffer[t] = src[t * u.col_stride];
  return buffer;
}

}  // namespace

template <class T>
void craft_coordinates(const CraftSpec<T>& s) {
  const RowsView<T>& u = s.rows;
  const int64_t n = u.n_rows, d = u.cols;
  const int64_t n_blocks = (d + kBlock - 1) / kBlock;
  std::vector<uint64_t> prefix(static_cast<size_t>(s.n_out));
  for (int64_t k = 0; k < s.n_out; ++k) prefix[k] = counter_prefix(s.seed, s.round, static_cast<uint64_t>(s.out_ids[k]));
#pragma omp parallel
  {
    double a[kBlock], b[kBlock];  // max / min, or sum / sum of squared deviations
    T buffer[kBlock];
#pragma omp for schedule(static)
    for (int64_t blk = 0; blk < n_blocks; ++blk) {
      const int64_t j0 = blk * kBlock, w = std::min(kBlock, d - j0);
      // Statistics over the rows, in row order.
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
        for (int64_t k = 0; k < s.n_out; ++k) {
          T* row = s.out + k * d + j0;
          for (int64_t t = 0; t < w; t += 2) {
            const NormalPair z = normal_pair(counter_hash_at(prefix[k], static_cast<uint64_t>(j0 + t)));
            row[t] = static_cast<T>(a[t] + b[t] * z.first);
            if (t + 1 < w) row[t + 1] = static_cast<T>(a[t + 1] + b[t + 1] * z.second);
          }
        }
        if (s.direction_out) std::fill(s.direction_out + j0, s.direction_out + j0 + w, int8_t(0));
        continue;
      }
      // The trim attack's values of the block.
      for (int64_t t = 0; t < w; ++t) {
        const int64_t j = j0 + t;
        double lo = 0.0, hi = 0.0, offset = 0.0;
        int direction = 0;
        switch (s.mode) {
          case CraftMode::kTrimFull: {
            direction = s.direction[j];
            offset = s.base ? static_cast<double>(s.base[j]) : 0.0;
            const double mx = a[t] + offset, mn = b[t] + offset;
            if (direction < 0) {
              lo = mx;
              hi = mx > 0 ? s.b * mx : mx / s.b;
            } else if (direction > 0) {
              lo = mn > 0 ? mn / s.b : s.b * mn;
              hi = mn;
            }
            break;
          }
          case CraftMode::kTrimPartial: {
            direction = a[t] > 0 ? 1 : (a[t] < 0 ? -1 : 0);
            if (direction < 0) {
              lo = a[t] + s.sigma_lo * b[t];
              hi = a[t] + s.sigma_hi * b[t];
            } else if (direction > 0) {
              lo = a[t] - s.sigma_hi * b[t];
              hi = a[t] - s.sigma_lo * b[t];
            }
            break;
          }
          case CraftMode::kGaussian:
            break;  // handled above
        }
        if (s.direction_out) s.direction_out[j] = static_cast<int8_t>(direction);
        for (int64_t k = 0; k < s.n_out; ++k) {
          const double value = direction == 0
                                   ? offset  // the base point: the update 0
                                   : uniform_between(lo, hi, uniform01(counter_hash_at(prefix[k], static_cast<uint64_t>(j))));
          s.out[k * d + j] = static_cast<T>(value - offset);
        }
      }
    }
  }
}

template <class T>
void norms_and_dots(const RowsView<T>& u, const int8_t* direction, double* sq_norms, double* dots) {
  const int64_t n = u.n_rows, d = u.cols;
#pragma omp parallel for schedule(static)
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
  // Row k >= 1: out = z (standard normals) with the sum of squares per chunk of
  // kChunk columns, then out = -lambda s + (r_k / ||z||) z. The chunks are fixed,
  // so the norm, summed over chunks in order, does not depend on the threads.
  constexpr int64_t kChunk = 4096;  // even: Box-Muller pairs never straddle chunks
  const int64_t d = s.cols, n_chunks = (d + kChunk - 1) / kChunk, n_sup = s.n_out - 1;
  std::vector<double> chunk_sq(static_cast<size_t>(std::max<int64_t>(n_sup, 0) * n_chunks));
  std::vector<uint64_t> prefix(static_cast<size_t>(s.n_out));
  for (int64_t k = 0; k < s.n_out; ++k) prefix[k] = counter_prefix(s.seed, s.round, static_cast<uint64_t>(s.out_ids[k]));
#pragma omp parallel for schedule(static)
  for (int64_t item = 0; item < n_sup * n_chunks; ++item) {
    const int64_t k = 1 + item / n_chunks, j0 = (item % n_chunks) * kChunk, j1 = std::min(d, j0 + kChunk);
    T* row = s.out + k * d;
    double sq = 0.0;
    for (int64_t j = j0; j < j1; j += 2) {
      const NormalPair z = normal_pair(counter_hash_at(prefix[k], static_cast<uint64_t>(j)));
      const T z0 = static_cast<T>(z.first);
      row[j] = z0;
      sq += static_cast<double>(z0) * static_cast<double>(z0);
      if (j + 1 < j1) {
        const T z1 = static_cast<T>(z.second);
        row[j + 1] = z1;
        sq += static_cast<double>(z1) * static_cast<double>(z1);
      }
    }
    chunk_sq[item] = sq;
  }
  std::vector<double> scale(static_cast<size_t>(s.n_out), 0.0);
  for (int64_t k = 1; k < s.n_out; ++k) {
    double sq = 0.0;
    for (int64_t c = 0; c < n_chunks; ++c) sq += chunk_sq[(k - 1) * n_chunks + c];
    // The radius r ~ U(0, eps) uses the counter's column d.
    const double r = s.eps * uniform01(counter_hash_at(prefix[k], static_cast<uint64_t>(d)));
    scale[k] = sq > 0 ? r / std::sqrt(sq) : 0.0;
  }
#pragma omp parallel for schedule(static)
  for (int64_t item = 0; item < s.n_out * n_chunks; ++item) {
    const int64_t k = item / n_chunks, j0 = (item % n_chunks) * kChunk, j1 = std::min(d, j0 + kChunk);
    T* row = s.out + k * d;
    for (int64_t j = j0; j < j1; ++j) {
      const double base = -s.lambda * static_cast<double>(s.direction[j]);
      row[j] = static_cast<T>(k == 0 ? base : base + scale[k] * static_cast<double>(row[j]));
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
