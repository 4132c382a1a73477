// Comparator networks that select order statistics of m values.
//
// Batcher's odd-even merge sort on the next power of two n >= m, with every
// comparator that touches a wire >= m removed (those wires would hold +Inf
// padding, which no comparator ever moves), then pruned backwards to the
// comparators that can influence the requested output ranks.
// A comparator (a, b) with a < b puts the smaller value on wire a.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

namespace fedrobust {

using Comparator = std::pair<int32_t, int32_t>;

inline std::vector<Comparator> selection_network(int64_t m, const std::vector<int64_t>& ranks) {
  std::vector<Comparator> all;
  int64_t n = 1;
  while (n < m) n <<= 1;
  for (int64_t p = 1; p < n; p <<= 1)
    for (int64_t k = p; k >= 1; k >>= 1)
      for (int64_t j = k % p; j + k < n; j += 2 * k)
        for (int64_t i = 0; i < k && i + j + k < n; ++i)
          if ((i + j) / (2 * p) == (i + j + k) / (2 * p) && i + j + k < m)
            all.emplace_back(static_cast<int32_t>(i + j), static_cast<int32_t>(i + j + k));

  std::vector<char> live(static_cast<size_t>(m > 0 ? m : 1), 0);
  for (int64_t r : ranks) live[static_cast<size_t>(r)] = 1;
  std::vector<Comparator> kept;
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    if (live[it->first] || live[it->second]) {
      kept.push_back(*it);
      live[it->first] = live[it->second] = 1;
    }
  }
  return std::vector<Comparator>(kept.rbegin(), kept.rend());
}

}  // namespace fedrobust
