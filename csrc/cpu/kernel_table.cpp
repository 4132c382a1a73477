// The KernelTable of one SIMD level (compiled once per level, see CMakeLists).
#include "kernels.h"

FR_BEGIN_SIMD_CODE

namespace fedrobust::cpu::FR_ARCH {

template <class T>
const KernelTable<T>& kernel_table() {
  static const KernelTable<T> table{
      &pairwise_sq_distances<T>, &median<T>, &trimmed_mean<T>, &closest_to_median_mean<T>,
      &mean<T>, &coordinate_stats<T>, &nonfinite_rows<T>, &lr_sgd_step<T>,
      &craft_coordinates<T>, &norms_and_dots<T>, &krum_craft<T>};
  return table;
}
template const KernelTable<float>& kernel_table<float>();
template const KernelTable<double>& kernel_table<double>();

}  // namespace fedrobust::cpu::FR_ARCH
