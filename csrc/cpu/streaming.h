// Stores that bypass the caches, for large results that are not read back while
// the kernel runs: an ordinary store first reads the line it writes (the whole
// result crosses memory twice), a streaming store does not.
//
// Included by the vectorised units AFTER FR_BEGIN_SIMD_CODE (simd_level.h), so
// that it is compiled for the unit's SIMD level, in the level's namespace. It
// needs <algorithm>, <cstdint>, <cstring> and, on x86-64, <immintrin.h> included first.
#pragma once

namespace fedrobust::cpu::FR_ARCH {

// dst[0 .. w) = src[0 .. w) (src any alignment): the values before dst's first 16-byte
// boundary and after its last one by ordinary stores, the rest by streaming stores (a dst
// not aligned to its own type is copied by memcpy). A thread ends its streaming with
// end_streaming() before anyone reads dst.
template <class T>
void store_streaming(const T* src, int64_t w, T* dst) {
#if defined(__x86_64__)
  constexpr int64_t L = 16 / static_cast<int64_t>(sizeof(T));
  const uintptr_t at = reinterpret_cast<uintptr_t>(dst);
  if (at % sizeof(T) == 0) {
    const int64_t head = std::min<int64_t>(w, static_cast<int64_t>((16 - at % 16) % 16 / sizeof(T)));
    int64_t t = 0;
    for (; t < head; ++t) dst[t] = src[t];
    for (; t + L <= w; t += L) {
      if constexpr (sizeof(T) == 4) {
        _mm_stream_ps(reinterpret_cast<float*>(dst + t), _mm_loadu_ps(reinterpret_cast<const float*>(src + t)));
      } else {
        _mm_stream_pd(reinterpret_cast<double*>(dst + t), _mm_loadu_pd(reinterpret_cast<const double*>(src + t)));
      }
    }
    for (; t < w; ++t) dst[t] = src[t];
    return;
  }
#endif
  std::memcpy(dst, src, static_cast<size_t>(w) * sizeof(T));
}

// Orders this thread's streaming stores before its later memory accesses (and so before
// the end of its parallel region).
inline void end_streaming() {
#if defined(__x86_64__)
  _mm_sfence();
#endif
}

}  // namespace fedrobust::cpu::FR_ARCH
