// The minibatch draw of minibatch.h. Per worker: when at most `batch` slots
// hold examples, all of them; otherwise the batch-th smallest (key, slot) pair
// is found and one pass keeps every pair up to it, in slot order.
//
// The batch-th pair comes first from a threshold: the simulation's keys are
// uniform on [0, 1), so about 2 (batch + 8) valid pairs have a key below
// kOversample (batch + kSpare) / valid; when at least `batch` do, the batch-th
// pair is among them (every other pair has a larger key) and std::nth_element
// finds it there, after one pass over the slots. Otherwise (keys drawn some
// other way) it comes from a histogram: the valid keys go to kBuckets
// equal-width buckets between their minimum and maximum (the bucket of a key
// is monotone in the key, so all keys of a lower bucket are smaller), the
// bucket holding rank `batch` is found from the counts, and std::nth_element
// runs on that bucket's pairs alone. Keys that are not finite, or all equal,
// take std::nth_element on every valid pair. Each worker is one thread's, so
// any thread count gives the same result.
#include "minibatch.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "threads.h"

namespace fedrobust::cpu {
namespace {

constexpr int kBuckets = 64;
using Pair = std::pair<double, int64_t>;  // (key, slot), ordered as a pair

// The r-th smallest (1-based) of `pairs` (reordered).
Pair rth_smallest(std::vector<Pair>& pairs, int64_t r) {
  std::nth_element(pairs.begin(), pairs.begin() + (r - 1), pairs.end());
  return pairs[static_cast<size_t>(r - 1)];
}

// The batch-th smallest (key, slot) among the valid slots of one worker
// (count > batch >= 1 of them).
Pair batch_th_pair(const int64_t* table, const double* keys, int64_t slots, int64_t batch, std::vector<Pair>& pairs,
                   std::vector<uint8_t>& bucket) {
  double lo = INFINITY, hi = -INFINITY;
  for (int64_t s = 0; s < slots; ++s)
    if (table[s] >= 0) {
      lo = std::min(lo, keys[s]);
      hi = std::max(hi, keys[s]);
    }
  const double scale = kBuckets / (hi - lo);
  pairs.clear();
  if (!(std::isfinite(lo) && std::isfinite(hi) && std::isfinite(scale))) {
    for (int64_t s = 0; s < slots; ++s)
      if (table[s] >= 0) pairs.emplace_back(keys[s], s);
    return rth_smallest(pairs, batch);
  }
  int64_t counts[kBuckets] = {};
  for (int64_t s = 0; s < slots; ++s) {  // a valid key's position lies in [0, kBuckets]; clamped for any key
    const auto b = static_cast<uint8_t>(std::clamp((keys[s] - lo) * scale, 0.0, kBuckets - 1.0));
    bucket[static_cast<size_t>(s)] = b;
    counts[b] += table[s] >= 0;
  }
  int target = 0;
  int64_t below = 0;  // valid keys in the buckets before `target`
  while (below + counts[target] < batch) below += counts[target++];
  for (int64_t s = 0; s < slots; ++s)
    if (table[s] >= 0 && bucket[static_cast<size_t>(s)] == target) pairs.emplace_back(keys[s], s);
  return rth_smallest(pairs, batch - below);
}

// The batch-th smallest (key, slot) among the valid slots of one worker (count > batch >= 1
// of them), when it has a key below `threshold`; false (and `pairs` unusable) otherwise.
bool batch_th_pair_below(const int64_t* table, const double* keys, int64_t slots, int64_t batch, double threshold,
                         std::vector<Pair>& pairs, Pair* last) {
  pairs.clear();
  for (int64_t s = 0; s < slots; ++s)
    if (table[s] >= 0 && keys[s] < threshold) pairs.emplace_back(keys[s], s);
  if (static_cast<int64_t>(pairs.size()) < batch) return false;
  *last = rth_smallest(pairs, batch);
  return true;
}

constexpr double kOversample = 2.0;
constexpr int64_t kSpare = 8;

}  // namespace

void minibatch_indices(const MinibatchDraw& d) {
#pragma omp parallel if (worth_threads(d.workers * d.slots))
  {
    std::vector<Pair> pairs;
    std::vector<uint8_t> bucket(static_cast<size_t>(d.slots));
    std::vector<int64_t> kept(static_cast<size_t>(d.slots));
    pairs.reserve(static_cast<size_t>(d.slots));
#pragma omp for schedule(static)
    for (int64_t i = 0; i < d.workers; ++i) {
      const int64_t* table = d.table + i * d.slots;
      const double* keys = d.keys + i * d.slots;
      int64_t* out = d.out + i * d.batch;
      int64_t valid = 0;
      for (int64_t s = 0; s < d.slots; ++s) valid += table[s] >= 0;
      int64_t k = 0;
      if (valid <= d.batch) {
        for (int64_t s = 0; s < d.slots; ++s)
          if (table[s] >= 0) out[k++] = table[s];
      } else if (d.batch > 0) {
        const double threshold = kOversample * static_cast<double>(d.batch + kSpare) / static_cast<double>(valid);
        Pair last;
        if (!batch_th_pair_below(table, keys, d.slots, d.batch, threshold, pairs, &last))
          last = batch_th_pair(table, keys, d.slots, d.batch, pairs, bucket);
        for (int64_t s = 0; s < d.slots; ++s) {  // without a branch: kept[k] is overwritten until kept
          kept[static_cast<size_t>(k)] = table[s];
          k += (table[s] >= 0) & ((keys[s] < last.first) | ((keys[s] == last.first) & (s <= last.second)));
        }
        std::copy(kept.begin(), kept.begin() + k, out);
      }
      std::fill(out + k, out + d.batch, int64_t{-1});
    }
  }
}

}  // namespace fedrobust::cpu
