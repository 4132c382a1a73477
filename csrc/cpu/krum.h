// Krum, Multi-Krum and Bulyan's selection stage on a precomputed (n, n)
// squared-distance matrix (distances.cpp). O(n^2 log n) scalar work; the
// O(n^2 d) part is the distance kernel.
#pragma once
#include <cstdint>
#include <vector>

#include "fedrobust/common.h"

namespace fedrobust::cpu {

// Krum score of every row i in `members` (indices into the n x n matrix):
// the sum of its k smallest distances to the other members (self excluded
// by index), squared distances if `squared`, else their square roots;
// summed in ascending order in double. k = members.size() - c - 2 clamped
// at 0.
std::vector<double> krum_scores(const double* sq_dist, int64_t n, const std::vector<int64_t>& members,
                                int64_t c, bool squared);

// A Krum score from one row's distances to the others (self already left out): the sum of
// the k smallest, added in ascending order in double. Reorders `others`.
double sum_of_smallest(std::vector<double>& others, int64_t k);

// Krum scores without each row in turn (the defenses' leave-one-out Krum): out (n, n),
// row-major, out[i * n + p] = the Krum score of row p among the n - 1 rows other than i,
// with c (krum_scores on those rows: the same values, summed in the same order), and
// out[i * n + i] = +Inf. O(n^3) scalar work after one sort of each row's distances.
void krum_leave_one_out_scores(const double* sq_dist, int64_t n, int64_t c, bool squared, double* out);

// Positions (into `scores`) of the `count` smallest scores, ascending by
// score, ties to the lower position.
std::vector<int64_t> smallest_scores(const std::vector<double>& scores, int64_t count);

// Bulyan selection: theta = n - 2c rows chosen by Krum applied repeatedly
// to the rows not chosen yet (with the same c), reusing one distance matrix.
// Returns the chosen rows in the order they were chosen.
std::vector<int64_t> bulyan_select(const double* sq_dist, int64_t n, int64_t c, bool squared);

// Bulyan's selection without each row in turn (the defenses' leave-one-out Bulyan): out
// (n, n - 1 - 2c), row-major; row i holds bulyan_select on the n - 1 rows other than i, as
// indices of the n rows, in selection order (the same choice, ties included). Each row's
// distances are sorted once for all n selections.
void bulyan_leave_one_out_selections(const double* sq_dist, int64_t n, int64_t c, bool squared, int64_t* out);

// Below this many rows Krum's choice takes the full direct path (krum_choose).
constexpr int64_t kGramMinRows = 144;

// Bounds on the float32 direct kernel's squared distances (pairwise_sq_distances) from the
// quantized Gram matrix of the centred rows and the residual norms (quantized_gram, gram.h),
// krum_gram.cpp: lo_ij <= the kernel's D_ij <= hi_ij, from the Gram's rounding, the
// quantization residuals, the centring's rounding and the direct kernel's own
// (direct_relative_error).
class DistanceBounds {
 public:
  // gram (n, n) and residual (n,), kept by pointer.
  DistanceBounds(const double* gram, const double* residual, int64_t n, int64_t cols);
  void row(int64_t i, double* lo, double* hi) const;  // lo, hi (n,); 0 at i
 private:
  const double* gram_;
  const double* residual_;
  int64_t n_;
  std::vector<double> norm_z_;
  double e_g_, e_d_, a_d_, shift_, tiny_;
};

struct KrumChoice {
  std::vector<int64_t> rows;  // smallest_scores(krum_scores(all rows), multi)
  int64_t candidates;         // rows scored exactly after the Gram bounds; -1: the direct path ran
};

// Krum's choice: the `multi` rows of smallest Krum score, ascending, ties to the lower row,
// exactly as from the full direct distance matrix, but for float32 rows with the bulk of
// the distances from a quantized Gram matrix (krum_gram.cpp).
// float64 rows, and float32 ones where the Gram path cannot help, take the full direct path.
template <class T>
KrumChoice krum_choose(const RowsView<T>& u, int64_t c, int64_t multi, bool squared);

}  // namespace fedrobust::cpu
