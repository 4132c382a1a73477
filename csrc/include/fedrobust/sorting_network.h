// Comparator networks that select order statistics of m values.
//
// Batcher's odd-even merge sort on the next power of two n >= m, with every
// comparator that touches a wire >= m removed (those wires would hold +Inf
// padding, which no comparator ever moves), then pruned backwards to the
// comparators that can influence the requested output ranks (a comparator
// whose two outputs are never read again changes nothing that is read).
// A comparator (a, b) with a < b puts the smaller value on wire a.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

namespace fedrobust {

using Comparator = std::pair<int32_t, int32_t>;

// Batcher's odd-even merge sort on n wires (a power of two), in order,
// passing each comparator (a, b) with its phase p (1, 2, 4, ...) to emit.
// Phases below p only ever connect wires of the same aligned 2p-block, so
// the comparators of phases < B sort each aligned block of B wires.
template <class Emit>
constexpr void batcher_network(int64_t n, Emit&& emit) {
  for (int64_t p = 1; p < n; p <<= 1)
    for (int64_t k = p; k >= 1; k >>= 1)
      for (int64_t j = k % p; j + k < n; j += 2 * k)
        for (int64_t i = 0; i < k && i + j + k < n; ++i)
          if ((i + j) / (2 * p) == (i + j + k) / (2 * p)) emit(i + j, i + j + k, p);
}

// The comparators, in order, that select the given ranks of m values when
// every full aligned block of `presorted` wires (rows [B*b, B*b + B) with
// B*b + B <= m) has been sorted beforehand. presorted = 1 gives the whole
// network. Requires presorted to be a power of two.
inline std::vector<Comparator> selection_network(int64_t m, const std::vector<int64_t>& ranks,
                                                 int64_t presorted = 1) {
  std::vector<Comparator> all;
  int64_t n = 1;
  while (n < m) n <<= 1;
  const int64_t full_blocks_end = (m / presorted) * presorted;
  batcher_network(n, [&](int64_t a, int64_t b, int64_t phase) {
    if (b >= m) return;                                    // touches +Inf padding: no-op
    if (phase < presorted && b < full_blocks_end) return;  // inside a presorted block
    all.emplace_back(static_cast<int32_t>(a), static_cast<int32_t>(b));
  });

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

// The number of comparators of Batcher's network on n wires.
constexpr int batcher_size(int64_t n) {
  int count = 0;
  batcher_network(n, [&](int64_t, int64_t, int64_t) { ++count; });
  return count;
}

// Batcher's sorting network on N wires (a power of two), as constants: comparator c
// is (a[c], b[c]).
template <int N>
struct Batcher {
  static constexpr int size = batcher_size(N);
  uint8_t a[size] = {}, b[size] = {};
};
template <int N>
constexpr Batcher<N> make_batcher() {
  Batcher<N> s{};
  int c = 0;
  batcher_network(N, [&](int64_t a, int64_t b, int64_t) {
    s.a[c] = static_cast<uint8_t>(a);
    s.b[c] = static_cast<uint8_t>(b);
    ++c;
  });
  return s;
}

using Sort16 = Batcher<16>;  // 63 comparators
constexpr Sort16 make_sort16() { return make_batcher<16>(); }

}  // namespace fedrobust
