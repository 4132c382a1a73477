#include "krum.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "threads.h"

namespace fedrobust::cpu {

std::vector<double> krum_scores(const double* sq_dist, int64_t n, const std::vector<int64_t>& members,
                                int64_t c, bool squared) {
  const int64_t size = static_cast<int64_t>(members.size());
  const int64_t k = std::max<int64_t>(size - c - 2, 0);
  std::vector<double> scores(members.size(), 0.0);
  // Rows in parallel: each score is one row's own sum, the same for any thread count.
#pragma omp parallel if (worth_threads(size * size * 8))
  {
    std::vector<double> others;
    others.reserve(members.size());
#pragma omp for schedule(static)
    for (int64_t p = 0; p < size; ++p) {
      const double* row = sq_dist + members[p] * n;
      others.clear();
      for (int64_t q = 0; q < size; ++q)
        if (q != p) others.push_back(squared ? row[members[q]] : std::sqrt(row[members[q]]));
      scores[p] = sum_of_smallest(others, k);
    }
  }
  return scores;
}

double sum_of_smallest(std::vector<double>& others, int64_t k) {
  std::partial_sort(others.begin(), others.begin() + k, others.end());
  double s = 0.0;
  for (int64_t r = 0; r < k; ++r) s += others[r];
  return s;
}

std::vector<int64_t> smallest_scores(const std::vector<double>& scores, int64_t count) {
  std::vector<int64_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return scores[a] < scores[b]; });
  order.resize(static_cast<size_t>(count));
  return order;
}

namespace {

// Each row's (distance, row) to the other rows, ascending. A Krum score within a subset of
// the rows is then the sum of the first k entries of the row's list that are in the subset:
// the values krum_scores sums, in the same (ascending) order.
using Nearest = std::vector<std::vector<std::pair<double, int64_t>>>;

Nearest nearest_rows(const double* sq_dist, int64_t n, bool squared) {
  Nearest nearest(n);
#pragma omp parallel for schedule(static) if (worth_threads(n * n * 8))
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j)
      if (j != i) {
        const double d = sq_dist[i * n + j];
        nearest[i].emplace_back(squared ? d : std::sqrt(d), j);
      }
    std::sort(nearest[i].begin(), nearest[i].end());
  }
  return nearest;
}

// The Krum score of a row within a subset: the sum, in ascending order, of the first k
// entries of its nearest list whose row is in the subset (left_out(j) false).
template <class LeftOut>
double score_within(const std::vector<std::pair<double, int64_t>>& nearest, int64_t k, LeftOut left_out) {
  double score = 0.0;
  int64_t taken = 0;
  for (const auto& [d, j] : nearest) {
    if (taken == k) break;
    if (left_out(j)) continue;
    score += d;
    ++taken;
  }
  return score;
}

}  // namespace

void krum_leave_one_out_scores(const double* sq_dist, int64_t n, int64_t c, bool squared, double* out) {
  const Nearest nearest = nearest_rows(sq_dist, n, squared);
  const int64_t k = std::max<int64_t>((n - 1) - c - 2, 0);
#pragma omp parallel for schedule(static) if (worth_threads(n * n * k))
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t p = 0; p < n; ++p) {
      if (p == i) {
        out[i * n + p] = INFINITY;
        continue;
      }
      out[i * n + p] = score_within(nearest[p], k, [i](int64_t j) { return j == i; });
    }
  }
}

std::vector<int64_t> bulyan_select(const double* sq_dist, int64_t n, int64_t c, bool squared) {
  // A Krum score within the rows not chosen yet: O(n) per row and round (score_within).
  const Nearest nearest = nearest_rows(sq_dist, n, squared);
  std::vector<char> chosen_flag(n, 0);
  std::vector<int64_t> chosen;
  const int64_t theta = n - 2 * c;
  std::vector<double> score(static_cast<size_t>(n));
  for (int64_t round = 0; round < theta; ++round) {
    const int64_t k = std::max<int64_t>((n - round) - c - 2, 0);
    // The remaining rows' scores in parallel (each its own sum), then the least, ties to the lowest row.
#pragma omp parallel for schedule(static) if (worth_threads(n * k))
    for (int64_t i = 0; i < n; ++i)
      if (!chosen_flag[i]) score[i] = score_within(nearest[i], k, [&](int64_t j) { return chosen_flag[j] != 0; });
    int64_t best = -1;
    double best_score = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      if (chosen_flag[i]) continue;
      if (best < 0 || score[i] < best_score) {
        best = i;
        best_score = score[i];
      }
    }
    chosen_flag[best] = 1;
    chosen.push_back(best);
  }
  return chosen;
}

}  // namespace fedrobust::cpu
