// Krum's choice at integer matrix-multiply speed, with the exact answer.
//
// The direct-difference distances (distances.cpp) cost a subtraction and a float multiply-add
// per pair and coordinate; the quantized Gram matrix (gram.cpp) costs half an integer
// multiply-add, at the rate of a matrix product. Krum needs the exact scores of only the few
// rows that can win, so:
//   1. centre = the coordinate-wise median of up to kCentreRows evenly spaced rows (close
//      rows stay close after centring, and the quantization keeps their digits);
//   2. G = the Gram matrix of the centred rows quantized to 16-bit integers per row and block,
//      with the norm of each row's quantization residual; from them a bound
//      lo_ij <= D_ij <= hi_ij on the value D_ij that the direct kernel computes
//      (DistanceBounds);
//   3. per row the sums of the k smallest lo and of the k smallest hi bound its Krum score
//      (the sums the exact path takes, up to their own double rounding);
//   4. the rows whose lower bound is at most the multi-th smallest upper bound are the only
//      ones that can be chosen: their distance rows are computed directly
//      (sq_distance_rows, the bits of the full matrix) and their exact scores decide.
// The result is the rows smallest_scores(krum_scores(pairwise_sq_distances(u))) would give.
// Where the Gram path cannot help (float64, few rows, non-finite or huge values, or too
// many candidates) the full direct path runs instead.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <omp.h>
#include <vector>

#include "coordinatewise.h"
#include "distances.h"
#include "gram.h"
#include "krum.h"
#include "threads.h"

namespace fedrobust::cpu {
namespace {

constexpr int64_t kCentreRows = 31;

// The centre: the coordinate-wise median of up to kCentreRows evenly spaced rows.
std::vector<float> sample_median(const RowsView<float>& u) {
  const int64_t n = u.n_rows, s = std::min(n, kCentreRows);
  std::vector<const float*> rows(static_cast<size_t>(s));
  for (int64_t r = 0; r < s; ++r) rows[r] = u.rows[(2 * r + 1) * n / (2 * s)];
  std::vector<float> centre(static_cast<size_t>(u.cols));
  median<float>(RowsView<float>{rows.data(), s, u.cols, u.col_stride}, centre.data());
  return centre;
}

// Outward rounding of a few double operations on nonnegative values.
constexpr double kWiden = 1e-14;

}  // namespace

DistanceBounds::DistanceBounds(const double* gram, const double* residual, int64_t n, int64_t cols)
    : gram_(gram), residual_(residual), n_(n) {
  e_g_ = gram_relative_error(cols);
  e_d_ = direct_relative_error(cols);
  a_d_ = direct_absolute_error(cols);
  // ||z_i|| <= norm_z_[i] (G_ii is within e_g ||z_i||^2 of ||z_i||^2), ||x_i|| <= norm_z_[i] + residual_i.
  norm_z_.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) norm_z_[i] = std::sqrt(std::max(gram[i * n + i], 0.0) / (1.0 - e_g_)) * (1.0 + kWiden);
  // x_i rounds u_i - centre (relative 2^-24, absolute 2^-150 below the normal range), so
  // ||(x_i - x_j) - (u_i - u_j)|| <= shift_ (||x_i|| + ||x_j||) + tiny_.
  const double u = 0x1p-24;
  shift_ = u / (1.0 - u) / (1.0 - u);
  tiny_ = 2.0 * std::sqrt(static_cast<double>(cols)) * 0x1p-149;
}

void DistanceBounds::row(int64_t i, double* lo, double* hi) const {
  const double* g = gram_ + i * n_;
  const double gii = g[i];
  for (int64_t j = 0; j < n_; ++j) {
    const double s = norm_z_[i] + norm_z_[j];
    // ||z_i - z_j||^2 = G_ii + G_jj - 2 G_ij up to the Gram's errors and the three roundings here.
    const double estimate = gii + gram_[j * n_ + j] - 2.0 * g[j];
    const double err = (e_g_ + 8.0 * 0x1p-53) * s * s;
    const double z_lo = std::sqrt(std::max(estimate - err, 0.0)) * (1.0 - kWiden);
    const double z_hi = std::sqrt(std::max(estimate + err, 0.0)) * (1.0 + kWiden);
    // ||x_i - x_j|| is within ||e_i|| + ||e_j|| of ||z_i - z_j||, and ||u_i - u_j|| within delta of it.
    const double residuals = (residual_[i] + residual_[j]) * (1.0 + kWiden);
    const double delta = shift_ * (s + residuals) + tiny_;
    const double root_lo = std::max((z_lo - residuals) * (1.0 - kWiden) - delta, 0.0);
    const double root_hi = (z_hi + residuals) * (1.0 + kWiden) + delta;
    lo[j] = std::max(((1.0 - e_d_) * root_lo * root_lo - a_d_) * (1.0 - kWiden), 0.0);
    hi[j] = ((1.0 + e_d_) * root_hi * root_hi + a_d_) * (1.0 + kWiden);
  }
  lo[i] = hi[i] = 0.0;
}

namespace {

// The sum of the k smallest of values[j], j != self, squared or of their square roots, in no
// particular order (a bound's side: any order of k nonnegative terms is
// within (k - 1) 2^-53 of the exact sum). values (n,), `self` excluded; reorders `values`.
double k_smallest_sum_unordered(double* values, int64_t n, int64_t self, int64_t k, bool squared) {
  values[self] = std::numeric_limits<double>::infinity();
  std::nth_element(values, values + (k - 1), values + n);
  double s = 0.0;
  for (int64_t r = 0; r < k; ++r) s += squared ? values[r] : std::sqrt(values[r]);
  return s;
}

template <class T>
std::vector<int64_t> krum_choose_direct(const RowsView<T>& u, int64_t c, int64_t multi, bool squared) {
  const int64_t n = u.n_rows;
  std::vector<double> d(static_cast<size_t>(n * n));
  pairwise_sq_distances<T>(u, d.data());
  std::vector<int64_t> all(static_cast<size_t>(n));
  std::iota(all.begin(), all.end(), 0);
  return smallest_scores(krum_scores(d.data(), n, all, c, squared), multi);
}

}  // namespace

template <>
KrumChoice krum_choose<double>(const RowsView<double>& u, int64_t c, int64_t multi, bool squared) {
  return {krum_choose_direct(u, c, multi, squared), -1};
}

template <>
KrumChoice krum_choose<float>(const RowsView<float>& u, int64_t c, int64_t multi, bool squared) {
  const int64_t n = u.n_rows, k = std::max<int64_t>(n - c - 2, 0);
  if (n < kGramMinRows || k == 0 || multi > n / 4) return {krum_choose_direct(u, c, multi, squared), -1};

  const std::vector<float> centre = sample_median(u);
  std::vector<double> gram(static_cast<size_t>(n * n)), residual(static_cast<size_t>(n));
  if (!quantized_gram(u, centre.data(), gram.data(), residual.data()))
    return {krum_choose_direct(u, c, multi, squared), -1};
  const DistanceBounds bounds(gram.data(), residual.data(), n, u.cols);

  // Bounds on every row's score; a double sum of k values is within (k + 1) 2^-53 of the
  // exact sum, on both the bound's side and the exact path's.
  std::vector<double> score_lo(static_cast<size_t>(n)), score_hi(static_cast<size_t>(n));
  const double sum_err = 2.0 * (static_cast<double>(k) + 1.0) * 0x1p-53;
#pragma omp parallel if (worth_threads(n * n * 16))
  {
    std::vector<double> lo(static_cast<size_t>(n)), hi(static_cast<size_t>(n));
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      bounds.row(i, lo.data(), hi.data());
      score_lo[i] = k_smallest_sum_unordered(lo.data(), n, i, k, squared) * (1.0 - sum_err) * (1.0 - kWiden);
      score_hi[i] = k_smallest_sum_unordered(hi.data(), n, i, k, squared) * (1.0 + sum_err) * (1.0 + kWiden);
    }
  }
  std::vector<double> sorted_hi = score_hi;
  std::nth_element(sorted_hi.begin(), sorted_hi.begin() + (multi - 1), sorted_hi.end());
  const double threshold = sorted_hi[multi - 1];
  std::vector<int64_t> candidates;
  for (int64_t i = 0; i < n; ++i)
    if (score_lo[i] <= threshold) candidates.push_back(i);
  const int64_t count = static_cast<int64_t>(candidates.size());
  if (count > n / 4) {
    std::vector<double>().swap(gram);  // the direct path needs its own (n, n)
    return {krum_choose_direct(u, c, multi, squared), count};
  }

  // The candidates' exact scores, from their rows of the direct distance matrix.
  std::vector<double> rows(static_cast<size_t>(count * n)), exact(static_cast<size_t>(count));
  sq_distance_rows<float>(u, candidates.data(), count, rows.data());
  std::vector<double> others;
  for (int64_t r = 0; r < count; ++r) {
    const double* row = rows.data() + r * n;
    others.clear();
    for (int64_t j = 0; j < n; ++j)
      if (j != candidates[r]) others.push_back(squared ? row[j] : std::sqrt(row[j]));
    exact[r] = sum_of_smallest(others, k);  // krum_scores' sum, in its order
  }
  std::vector<int64_t> chosen = smallest_scores(exact, multi);
  for (int64_t& r : chosen) r = candidates[r];
  return {chosen, count};
}

}  // namespace fedrobust::cpu
