// When a kernel's parallel region is worth its threads. Waking the OpenMP
// team costs microseconds on a quiet machine and can cost a scheduler time
// slice on a busy one (a woken thread waits for a core), so an input whose
// whole work is below kMinParallelWork runs on the calling thread alone. The
// results do not change: every kernel gives the same bits for any thread
// count (simd_level.h).
#pragma once
#include <cstdint>

namespace fedrobust::cpu {

// Element operations below which one thread does the whole call (about 10 us of work).
constexpr int64_t kMinParallelWork = int64_t{1} << 14;

// For `#pragma omp parallel if(worth_threads(work))`; work in element operations.
constexpr bool worth_threads(int64_t work) { return work >= kMinParallelWork; }

}  // namespace fedrobust::cpu
