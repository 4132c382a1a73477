#include "krum.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
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

// Scratch of radix_sort_by_value: two buffers of keys and of rows.
struct RadixScratch {
  std::vector<uint64_t> keys[2];
  std::vector<int64_t> rows[2];
};

// Sort list (values with their rows, the rows ascending) by (value, row) when it holds at
// least kRadixMinSize entries, every value +0 or above and none NaN: there the values' bit
// patterns, read as unsigned integers, order like the values, and a stable LSD radix sort on
// them (11-bit digits; a digit that every value shares is skipped) keeps equal values in row
// order: std::sort's order of the pairs (measured 2.7x faster at 999 entries). Returns false,
// leaving list as it is, otherwise (shorter, or a value negative, -0 or NaN).
constexpr size_t kRadixMinSize = 256;
bool radix_sort_by_value(std::vector<std::pair<double, int64_t>>& list, RadixScratch& scratch) {
  constexpr int kDigit = 11;
  constexpr uint64_t kBuckets = uint64_t{1} << kDigit;
  const size_t size = list.size();
  if (size < kRadixMinSize) return false;
  for (int b = 0; b < 2; ++b) {
    scratch.keys[b].resize(size);
    scratch.rows[b].resize(size);
  }
  uint64_t* from = scratch.keys[0].data();
  uint64_t* keys = scratch.keys[1].data();
  int64_t* from_rows = scratch.rows[0].data();
  int64_t* rows = scratch.rows[1].data();
  for (size_t k = 0; k < size; ++k) {
    uint64_t bits;
    std::memcpy(&bits, &list[k].first, sizeof(bits));
    if ((bits >> 63) != 0 || std::isnan(list[k].first)) return false;
    from[k] = bits;
    from_rows[k] = list[k].second;
  }
  for (int shift = 0; shift < 64; shift += kDigit) {
    uint32_t start[kBuckets] = {};
    for (size_t k = 0; k < size; ++k) ++start[(from[k] >> shift) & (kBuckets - 1)];
    if (start[(from[0] >> shift) & (kBuckets - 1)] == size) continue;  // one digit for all
    uint32_t total = 0;
    for (uint64_t b = 0; b < kBuckets; ++b) {
      const uint32_t c = start[b];
      start[b] = total;
      total += c;
    }
    for (size_t k = 0; k < size; ++k) {
      const uint32_t at = start[(from[k] >> shift) & (kBuckets - 1)]++;
      keys[at] = from[k];
      rows[at] = from_rows[k];
    }
    std::swap(from, keys);
    std::swap(from_rows, rows);
  }
  for (size_t k = 0; k < size; ++k) {
    std::memcpy(&list[k].first, &from[k], sizeof(double));
    list[k].second = from_rows[k];
  }
  return true;
}

Nearest nearest_rows(const double* sq_dist, int64_t n, bool squared) {
  Nearest nearest(n);
#pragma omp parallel if (worth_threads(n * n * 8))
  {
    RadixScratch scratch;
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      nearest[i].reserve(static_cast<size_t>(n - 1));
      for (int64_t j = 0; j < n; ++j)
        if (j != i) {
          const double d = sq_dist[i * n + j];
          nearest[i].emplace_back(squared ? d : std::sqrt(d), j);
        }
      if (!radix_sort_by_value(nearest[i], scratch))
        std::sort(nearest[i].begin(), nearest[i].end());
    }
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

namespace {

// Bulyan's rounds keep, for every remaining row i, the k entries of nearest[i] that its
// Krum score sums: the entries that are not chosen yet among positions 0..last[i]. That
// set only shrinks from round to round (k drops by one and one row is chosen), so the sum
// of its finite values is kept by subtraction, O(1) per row and round (amortized), and
// the number of its +Inf values beside it. The kept sum is an approximation of the score
// that krum_scores computes (a fresh ascending sum), with a stated error bound; only the
// rows whose bound can reach the least score get their score computed exactly.
class RunningScores {
 public:
  // Every row's set: the first k entries of its list other than `left_out` (-1: none).
  RunningScores(const double* sq_dist, const Nearest& nearest, int64_t n, int64_t k, bool squared, int64_t left_out)
      : sq_dist_(sq_dist), nearest_(nearest), n_(n), k_(k), squared_(squared), last_(n, -1), sum_(n), start_(n),
        infinite_(n, 0), ops_(n, k) {
    for (int64_t i = 0; i < n; ++i) {
      if (i == left_out) continue;
      double s = 0.0;
      for (int64_t p = 0, taken = 0; taken < k; ++p) {
        if (nearest[i][p].second == left_out) continue;
        add(i, nearest[i][p].first, s);
        ++taken;
        last_[i] = p;
      }
      sum_[i] = start_[i] = s;
    }
  }

  // Row r is chosen and k drops by one (k = 0 stays 0): every other remaining row
  // loses r from its set if r is in it, else the largest value of its set (rows flagged
  // in `chosen`, the left-out one included, are in no set).
  void choose(int64_t r, const std::vector<char>& chosen) {
    const bool shrink = k_ > 0;
    if (shrink) --k_;
    for (int64_t i = 0; i < n_; ++i) {
      if (chosen[i]) continue;
      const auto& list = nearest_[i];
      // r is in the set iff it sorts at or before the entry at last_[i] (by value, then row).
      const double d = squared_ ? sq_dist_[i * n_ + r] : std::sqrt(sq_dist_[i * n_ + r]);
      if (last_[i] >= 0 && std::make_pair(d, r) <= list[last_[i]]) {
        remove(i, d);
      } else if (shrink) {
        while (chosen[list[last_[i]].second]) --last_[i];
        remove(i, list[last_[i]].first);
        --last_[i];
      }
    }
  }

  // lo <= the exact score of row i <= hi. A sum of k0 nonnegative values (S0) followed by t
  // subtractions of members is within (k0 + t) * u * S0 * (1 + small) of the exact sum of
  // the set left, and the ascending sum of its k values within (k - 1) * u of that
  // (u = 2^-53); the bound takes (k0 + t + k + 2) * 2^-52 * S0. A set with a +Inf scores
  // +Inf; a non-finite kept sum (overflow) bounds nothing.
  void bounds(int64_t i, double& lo, double& hi) const {
    constexpr double inf = std::numeric_limits<double>::infinity();
    if (infinite_[i] > 0) {
      lo = hi = inf;
      return;
    }
    const double err = static_cast<double>(ops_[i] + k_ + 2) * 0x1p-52 * start_[i];
    if (!std::isfinite(sum_[i]) || !std::isfinite(err)) {
      lo = 0.0;
      hi = inf;
      return;
    }
    lo = sum_[i] - err;
    hi = sum_[i] + err;
  }

 private:
  void add(int64_t i, double v, double& s) {
    if (v == std::numeric_limits<double>::infinity())
      ++infinite_[i];
    else
      s += v;
  }
  void remove(int64_t i, double v) {
    if (v == std::numeric_limits<double>::infinity()) {
      --infinite_[i];
    } else {
      sum_[i] -= v;
      ++ops_[i];
    }
  }

  const double* sq_dist_;
  const Nearest& nearest_;
  const int64_t n_;
  int64_t k_;
  const bool squared_;
  std::vector<int64_t> last_;  // the set: the entries of nearest[i] at 0..last_[i] not chosen yet
  std::vector<double> sum_, start_;  // its finite values' kept sum; that sum at the start (S0)
  std::vector<int64_t> infinite_, ops_;  // its +Inf values; k0 + the subtractions so far
};

// Whether a value breaks the bounds' premise (nonnegative values): a NaN or a negative one.
bool holds_unbounded(const Nearest& nearest) {
  for (const auto& list : nearest)
    for (const auto& entry : list)
      if (!(entry.first >= 0.0)) return true;
  return false;
}

// Bulyan's selection among the rows other than `left_out` (-1: none), from their sorted
// lists: the n' = n - (left_out >= 0) rows' n' - 2c rounds. every_row = holds_unbounded(nearest):
// with a NaN or a negative value among the distances (never from the distance kernels) every
// remaining row is scored exactly in every round.
std::vector<int64_t> select_rounds(const double* sq_dist, const Nearest& nearest, int64_t n, int64_t c, bool squared,
                                   int64_t left_out, bool every_row) {
  const int64_t rows = n - (left_out >= 0);
  std::vector<char> chosen_flag(n, 0);
  if (left_out >= 0) chosen_flag[left_out] = 1;  // in no set and never a candidate
  std::vector<int64_t> chosen;
  const int64_t theta = rows - 2 * c;
  RunningScores running(sq_dist, nearest, n, std::max<int64_t>(rows - c - 2, 0), squared, left_out);
  std::vector<double> lo(static_cast<size_t>(n)), hi(static_cast<size_t>(n)), score(static_cast<size_t>(n));
  std::vector<int64_t> candidates;
  for (int64_t round = 0; round < theta; ++round) {
    const int64_t k = std::max<int64_t>((rows - round) - c - 2, 0);
    candidates.clear();
    if (every_row) {
      for (int64_t i = 0; i < n; ++i)
        if (!chosen_flag[i]) candidates.push_back(i);
    } else {
      if (round > 0) running.choose(chosen.back(), chosen_flag);
      // Candidates: the rows whose lower bound is at most the least upper bound (the
      // least exact score is at most that, so every row that has it is a candidate).
      double least_hi = std::numeric_limits<double>::infinity();
      for (int64_t i = 0; i < n; ++i) {
        if (chosen_flag[i]) continue;
        running.bounds(i, lo[i], hi[i]);
        least_hi = std::min(least_hi, hi[i]);
      }
      for (int64_t i = 0; i < n; ++i)
        if (!chosen_flag[i] && !(lo[i] > least_hi)) candidates.push_back(i);
    }
    const int64_t count = static_cast<int64_t>(candidates.size());
    // Their exact scores (each its own ascending sum, as krum_scores), then the least,
    // ties to the lowest row.
#pragma omp parallel for schedule(static) if (worth_threads(count * (k + round)))
    for (int64_t q = 0; q < count; ++q) {
      const int64_t i = candidates[q];
      score[i] = score_within(nearest[i], k, [&](int64_t j) { return chosen_flag[j] != 0; });
    }
    int64_t best = -1;
    double best_score = 0.0;
    for (const int64_t i : candidates) {
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

}  // namespace

std::vector<int64_t> bulyan_select(const double* sq_dist, int64_t n, int64_t c, bool squared) {
  const Nearest nearest = nearest_rows(sq_dist, n, squared);
  return select_rounds(sq_dist, nearest, n, c, squared, -1, holds_unbounded(nearest));
}

void bulyan_leave_one_out_selections(const double* sq_dist, int64_t n, int64_t c, bool squared, int64_t* out) {
  // Row p's list without row i is row p's list on the n - 1 rows (the same values, the
  // same order: rows keep their order when one is taken out), so the lists are sorted once.
  const Nearest nearest = nearest_rows(sq_dist, n, squared);
  const bool every_row = holds_unbounded(nearest);  // once, not per selection
  const int64_t theta = (n - 1) - 2 * c;
#pragma omp parallel for schedule(dynamic) if (worth_threads(n * n * theta))
  for (int64_t i = 0; i < n; ++i) {
    const std::vector<int64_t> chosen = select_rounds(sq_dist, nearest, n, c, squared, i, every_row);
    std::copy(chosen.begin(), chosen.end(), out + i * theta);
  }
}

}  // namespace fedrobust::cpu
