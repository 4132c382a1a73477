// Vector types and exact min / max for the vectorised units: 64-byte vectors
// with AVX-512, 32-byte vectors with AVX2, 16-byte vectors on baseline x86-64 (SSE2),
// plain GCC vectors elsewhere. Included after FR_BEGIN_SIMD_CODE; <immintrin.h> (x86) must be
// included before it.
//
// min(a, b) = a < b ? a : b lane by lane (the x86 minps rule). The ordering
// kernels only ever feed it canonical values (no NaN, no -0), where it is
// the exact minimum whatever the argument order.
#pragma once

namespace fedrobust::cpu::FR_ARCH::simd {

#if defined(FR_ARCH_AVX512)
constexpr int kBytes = 64;
#elif defined(FR_ARCH_AVX2)
constexpr int kBytes = 32;
#elif defined(__SSE2__)
constexpr int kBytes = 16;
#else
constexpr int kBytes = 16;
#endif

template <class T>
struct Vector {
  typedef T type __attribute__((vector_size(kBytes)));
  static constexpr int64_t lanes = kBytes / static_cast<int64_t>(sizeof(T));
};
template <class T>
using V = typename Vector<T>::type;
template <class T>
using Mask = decltype(V<T>{} < V<T>{});  // int32 / int64 lanes: -1 true, 0 false

#if defined(FR_ARCH_AVX512)
inline V<float> vmin(V<float> a, V<float> b) { return _mm512_min_ps(a, b); }
inline V<float> vmax(V<float> a, V<float> b) { return _mm512_max_ps(a, b); }
inline V<double> vmin(V<double> a, V<double> b) { return _mm512_min_pd(a, b); }
inline V<double> vmax(V<double> a, V<double> b) { return _mm512_max_pd(a, b); }
#elif defined(FR_ARCH_AVX2)
inline V<float> vmin(V<float> a, V<float> b) { return _mm256_min_ps(a, b); }
inline V<float> vmax(V<float> a, V<float> b) { return _mm256_max_ps(a, b); }
inline V<double> vmin(V<double> a, V<double> b) { return _mm256_min_pd(a, b); }
inline V<double> vmax(V<double> a, V<double> b) { return _mm256_max_pd(a, b); }
#elif defined(__SSE2__)
inline V<float> vmin(V<float> a, V<float> b) { return _mm_min_ps(a, b); }
inline V<float> vmax(V<float> a, V<float> b) { return _mm_max_ps(a, b); }
inline V<double> vmin(V<double> a, V<double> b) { return _mm_min_pd(a, b); }
inline V<double> vmax(V<double> a, V<double> b) { return _mm_max_pd(a, b); }
#else
template <class W>
inline W vmin(W a, W b) { return a < b ? a : b; }
template <class W>
inline W vmax(W a, W b) { return a > b ? a : b; }
#endif
#if defined(FR_ARCH_AVX512) || defined(FR_ARCH_AVX2) || defined(__SSE2__)
// 16-bit integers (BandFinder's keys): one pminsw / pmaxsw.
inline V<int16_t> vmin(V<int16_t> a, V<int16_t> b) { return a < b ? a : b; }
inline V<int16_t> vmax(V<int16_t> a, V<int16_t> b) { return a > b ? a : b; }
#endif

}  // namespace fedrobust::cpu::FR_ARCH::simd
