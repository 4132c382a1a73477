// A block's partial sums added in a fixed tree order, so that a reduction over a
// block gives the same bits on every run.
#pragma once
#include <cuda_runtime.h>

namespace fedrobust::cuda {

// a[t] and b[t] (shared memory, one entry per thread; blockDim.x a power of two) hold
// thread t's partial sums; afterwards a[0] and b[0] hold the totals, added pairwise
// (t with t + half, half = blockDim.x / 2, / 4, ...). Every thread of the block calls it.
template <class A, class B>
__device__ void block_tree_sum(A* a, B* b) {
  __syncthreads();
  for (unsigned half = blockDim.x / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) {
      a[threadIdx.x] += a[threadIdx.x + half];
      b[threadIdx.x] += b[threadIdx.x + half];
    }
    __syncthreads();
  }
}

}  // namespace fedrobust::cuda
