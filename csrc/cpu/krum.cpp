#include "krum.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace fedrobust::cpu {

std::vector<double> krum_scores(const double* sq_dist, int64_t n, const std::vector<int64_t>& members,
                                int64_t c, bool squared) {
  const int64_t size = static_cast<int64_t>(members.size());
  const int64_t k = std::max<int64_t>(size - c - 2, 0);
  std::vector<double> scores(members.size(), 0.0);
  std::vector<double> others;
  others.reserve(members.size());
  for (int64_t p = 0; p < size; ++p) {
    const double* row = sq_dist + members[p] * n;
    others.clear();
    for (int64_t q = 0; q < size; ++q)
      if (q != p) others.push_back(squared ? row[members[q]] : std::sqrt(row[members[q]]));
    std::partial_sort(others.begin(), others.begin() + k, others.end());
    double s = 0.0;
    for (int64_t r = 0; r < k; ++r) s += others[r];
    scores[p] = s;
  }
  return scores;
}

std::vector<int64_t> smallest_scores(const std::vector<double>& scores, int64_t count) {
  std::vector<int64_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return scores[a] < scores[b]; });
  order.resize(static_cast<size_t>(count));
  return order;
}

std::vector<int64_t> bulyan_select(const double* sq_dist, int64_t n, int64_t c, bool squared) {
  std::vector<int64_t> remaining(n);
  std::iota(remaining.begin(), remaining.end(), 0);
  std::vector<int64_t> chosen;
  const int64_t theta = n - 2 * c;
  while (static_cast<int64_t>(chosen.size()) < theta) {
    const std::vector<double> scores = krum_scores(sq_dist, n, remaining, c, squared);
    const int64_t best = smallest_scores(scores, 1)[0];
    chosen.push_back(remaining[best]);
    remaining.erase(remaining.begin() + best);
  }
  return chosen;
}

}  // namespace fedrobust::cpu
