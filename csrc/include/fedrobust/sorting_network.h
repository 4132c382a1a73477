// Comparator networks that select order statistics of m values.
//
// merge_network: bitonic merges of presorted blocks, with every comparator that touches a
// wire >= m removed (those wires would hold +Inf padding, which no comparator ever moves),
// then pruned backwards to the steps that can influence the requested output ranks (a step
// whose outputs are never read again changes nothing that is read). Batcher's odd-even
// merge sort of 16 wires (Sort16) sorts the blocks in registers. A comparator (a, b) with
// a < b puts the smaller value on wire a.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

namespace fedrobust {

// Batcher's odd-even merge sort on n wires (a power of two), in order,
// passing each comparator (a, b) with its phase p (1, 2, 4, ...) to emit.
template <class Emit>
constexpr void batcher_network(int64_t n, Emit&& emit) {
  for (int64_t p = 1; p < n; p <<= 1)
    for (int64_t k = p; k >= 1; k >>= 1)
      for (int64_t j = k % p; j + k < n; j += 2 * k)
        for (int64_t i = 0; i < k && i + j + k < n; ++i)
          if ((i + j) / (2 * p) == (i + j + k) / (2 * p)) emit(i + j, i + j + k, p);
}

// A step of a merge network (merge_network): the comparator (a, b), or, where b ==
// kBlockStep, the half-cleaners of distances B/2, ..., 2, 1 on the aligned block of B wires
// from wire a (the comparators (a + i, a + i + k) with i mod 2k < k, in that order), which a
// kernel applies with the block's wires in registers (half_cleaners<B>).
struct NetworkStep {
  int32_t a, b;
};
constexpr int32_t kBlockStep = -1;

// The steps, in order, that select the given ranks of m values when every aligned block of
// `presorted` wires (the last one completed with +Inf) has been sorted beforehand.
//
// Bitonic merges, in the form where every comparator puts the smaller value on the lower
// wire: two sorted runs of p wires (aligned, 2p wires in all) merge by the comparators
// (i, 2p - 1 - i), i < p, then half-cleaners of distances p/2, ..., 2, 1, each the comparators
// (i, i + k) inside aligned blocks of 2k wires. Runs of presorted, 2 presorted, ... wires
// merge until one run holds all m. The half-cleaners of distances below `block` never leave
// an aligned block of `block` wires: they are one block step per block, which loads the
// block's wires once instead of once per comparator. Comparators that touch a wire >= m are
// dropped (those wires would hold +Inf, which no comparator moves); then, from the end, the
// steps that cannot influence a requested rank are pruned (a block step counts as touching
// every wire of its block). Requires powers of two with block <= 2 presorted.
inline std::vector<NetworkStep> merge_network(int64_t m, const std::vector<int64_t>& ranks, int64_t presorted,
                                              int64_t block) {
  const int64_t padded = (m + presorted - 1) / presorted * presorted;
  int64_t n = presorted;
  while (n < padded) n <<= 1;
  std::vector<NetworkStep> all;
  auto comparator = [&](int64_t a, int64_t b) {
    if (b < m) all.push_back({static_cast<int32_t>(a), static_cast<int32_t>(b)});
  };
  for (int64_t p = presorted; p < n; p <<= 1) {
    for (int64_t base = 0; base < n; base += 2 * p)
      for (int64_t i = 0; i < p; ++i) comparator(base + i, base + 2 * p - 1 - i);
    for (int64_t k = p / 2; k >= block; k >>= 1)
      for (int64_t base = 0; base < n; base += 2 * k)
        for (int64_t i = 0; i < k; ++i) comparator(base + i, base + i + k);
    for (int64_t a = 0; a < m; a += block) all.push_back({static_cast<int32_t>(a), kBlockStep});
  }

  std::vector<char> live(static_cast<size_t>(padded > 0 ? padded : 1), 0);
  for (int64_t r : ranks) live[static_cast<size_t>(r)] = 1;
  std::vector<NetworkStep> kept;
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    if (it->b != kBlockStep) {
      if (live[it->a] || live[it->b]) {
        kept.push_back(*it);
        live[it->a] = live[it->b] = 1;
      }
      continue;
    }
    const int64_t end = std::min<int64_t>(it->a + block, padded);
    bool any = false;
    for (int64_t w = it->a; w < end; ++w) any = any || live[w];
    if (!any) continue;
    kept.push_back(*it);
    for (int64_t w = it->a; w < end; ++w) live[w] = 1;
  }
  return std::vector<NetworkStep>(kept.rbegin(), kept.rend());
}

// log2(b) for a power of two b.
constexpr int log2_of(int b) {
  int k = 0;
  while ((1 << k) < b) ++k;
  return k;
}

// The half-cleaners of distances B/2, ..., 1 on B wires (a block step), as constants.
template <int B>
struct HalfCleaners {
  static constexpr int size = B / 2 * log2_of(B);
  uint8_t a[size] = {}, b[size] = {};
};
template <int B>
constexpr HalfCleaners<B> half_cleaners() {
  HalfCleaners<B> h{};
  int c = 0;
  for (int k = B / 2; k >= 1; k >>= 1)
    for (int base = 0; base < B; base += 2 * k)
      for (int i = 0; i < k; ++i) {
        h.a[c] = static_cast<uint8_t>(base + i);
        h.b[c] = static_cast<uint8_t>(base + i + k);
        ++c;
      }
  return h;
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
