// The simulation's minibatch draw (minibatch.cpp): every worker's examples
// with the `batch` smallest random keys among its local set, in slot order.
// fedrobust.simulation.Simulation.sample_indices draws the keys.
#pragma once
#include <cstdint>

namespace fedrobust::cpu {

struct MinibatchDraw {
  const int64_t* table;  // (workers, slots) row-major: worker i's examples, -1 = empty slot
  const double* keys;    // (workers, slots) row-major: one key per slot, none NaN
  int64_t* out;          // (workers, batch) row-major
  int64_t workers, slots, batch;
};

// out[i] = table[i, s_1], ..., table[i, s_k], then -1 up to `batch`, where
// s_1 < s_2 < ... < s_k are the slots of row i with table[i, s] >= 0 whose
// (keys[i, s], s) are the k = min(batch, their number) smallest.
void minibatch_indices(const MinibatchDraw& draw);

}  // namespace fedrobust::cpu
