// One local SGD step of multi-class logistic regression for every worker,
// written straight into the (m, d) update array: the LR fast path of the
// simulation (fedrobust.models.LogisticRegression.sgd_step).
//
// Worker i holds the model P_i = w + U_i (P_i = w on the first step, where U
// is not read): weights W (C, F) row-major, then biases b (C,). Its batch is
// the examples batches[i, 0..B) that are >= 0 (n_i of them). With
//   p_b = softmax(W x_b + b),   g_b = (p_b - onehot(y_b)) / n_i,
// the batch-mean cross-entropy gradient is  dW = sum_b g_b x_b^T,
// db = sum_b g_b, and the step is U_i <- U_i - lr * (dW, db). A worker with
// no examples gets a zero gradient. On request the step also flags the rows
// of U that hold a NaN or an Inf afterwards, while each row is in L1 (the
// simulation's non-finite check, without a pass over U of its own).
//
// Each worker is computed by one thread in a fixed order, so the result is
// the same on any thread count. At the vector levels every product is fused
// into the sum it joins (written out: plus_product, mul_add), so
// AVX2 and AVX-512 give the same bits; the generic level rounds each product on
// its own and can differ from them in the last bits.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "training.h"
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "threads.h"

FR_BEGIN_SIMD_CODE
#include "finite.h"
#include "simd.h"
#include "streaming.h"

namespace fedrobust::cpu::FR_ARCH {
namespace {

// The forward dot products keep kLanes partial sums (element f goes to sum
// f % kLanes, the sums are added in lane order, then the tail), whatever the
// vector width and however the products are blocked.
constexpr int64_t kLanes = 8;

// This file's vectors: the level's (32 bytes at AVX2), and 32 bytes in the avx512 build too,
// which gains the 16 more registers for larger blocks (kExamples, kClasses), not wider lanes:
// the same instructions, so the same bits as AVX2.
template <class T>
struct Lanes {
#if defined(FR_ARCH_AVX512)
  typedef T type __attribute__((vector_size(32)));
#else
  typedef simd::V<T> type;
#endif
  static constexpr int64_t count = static_cast<int64_t>(sizeof(type) / sizeof(T));
};
template <class T>
using LaneVec = typename Lanes<T>::type;
// Examples per forward block of 5 classes, and classes per update block of 4 vectors.
#if defined(FR_ARCH_AVX512)
constexpr int kExamples = 4, kClasses = 5;
#else
constexpr int kExamples = 2, kClasses = 2;
#endif

// a * b + c for the scalar parts, rounded as the vector code rounds it: one fused rounding
// where the level has FMA, else two. Written out, so that no build turns a tail into vector
// products added in order (GCC vectorizes such strict reductions at avx512, with products
// rounded on their own).
template <class T>
inline T mul_add(T a, T b, T c) {
#if defined(FR_ARCH_AVX2) || defined(FR_ARCH_AVX512)
  return std::fma(a, b, c);
#else
  return a * b + c;
#endif
}

// c + a * b lane by lane, with one rounding at the vector levels whatever the compiler would
// contract (it may share a * b between two branches and round it on its own). c - a * b is
// plus_product(c, -a, b): negation is exact, so the bits are those of a fused c - a * b.
template <class T>
inline LaneVec<T> plus_product(LaneVec<T> c, LaneVec<T> a, LaneVec<T> b) {
#if defined(FR_ARCH_AVX2) || defined(FR_ARCH_AVX512)
  if constexpr (sizeof(T) == 4) return (LaneVec<T>)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
  else return (LaneVec<T>)_mm256_fmadd_pd((__m256d)a, (__m256d)b, (__m256d)c);
#else
  return c + a * b;
#endif
}

template <class T>
LaneVec<T> load(const T* p) {
  LaneVec<T> v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// logits[b * C + c] = sum_f P_c[f] * x_b[f] for the NC classes from c0 and the
// NB examples from b0, with P_c = w_c + u_c (kWithU) or w_c: every loaded
// parameter vector serves NB examples and every example vector NC classes.
// `next` (NB examples or null) is prefetched on the way into L1: examples come
// from anywhere in the training set, so the first class block finds them in L2
// (lr_sgd_step prefetched them during the worker before) or in memory.
template <int NC, int NB, bool kWithU, class T>
void logits_block(const T* w, const T* u, const T* const* xs, int64_t F, int64_t C, int64_t c0, int64_t b0,
                  const T* const* next, T* logits) {
  using Vec = LaneVec<T>;
  constexpr int64_t L = Lanes<T>::count, kVectors = kLanes / L;
  Vec acc[NC][NB][kVectors] = {};
  int64_t f = 0;
  for (; f + kLanes <= F; f += kLanes)
    for (int64_t k = 0; k < kVectors; ++k) {
      if (next != nullptr)
        for (int j = 0; j < NB; ++j) __builtin_prefetch(next[j] + f + k * L);
      Vec x[NB];
      for (int j = 0; j < NB; ++j) x[j] = load(xs[b0 + j] + f + k * L);
      for (int i = 0; i < NC; ++i) {
        const int64_t at = (c0 + i) * F + f + k * L;
        const Vec p = kWithU ? load(w + at) + load(u + at) : load(w + at);
        for (int j = 0; j < NB; ++j) acc[i][j][k] = plus_product<T>(acc[i][j][k], p, x[j]);
      }
    }
  for (int i = 0; i < NC; ++i)
    for (int j = 0; j < NB; ++j) {
      alignas(64) T lanes[kLanes];
      std::memcpy(lanes, acc[i][j], sizeof(lanes));
      T total = 0;
      for (int64_t k = 0; k < kLanes; ++k) total += lanes[k];
      const T* pw = w + (c0 + i) * F;
      const T* pu = kWithU ? u + (c0 + i) * F : nullptr;
      for (int64_t t = f; t < F; ++t) total = mul_add(kWithU ? pw[t] + pu[t] : pw[t], xs[b0 + j][t], total);
      logits[(b0 + j) * C + c0 + i] = total;
    }
}

// No examples to prefetch (logits_block's `next`).
template <class T>
constexpr const T* const* kNone = nullptr;

// All n x C logits (without the biases), in blocks of 5 classes x kExamples examples:
// the 5 classes' parameter rows stay in L1 while the examples stream past them.
template <bool kWithU, class T>
void all_logits(const T* w, const T* u, const T* const* xs, int64_t n, int64_t F, int64_t C, T* logits) {
  int64_t c0 = 0;
  for (; c0 + 5 <= C; c0 += 5) {
    int64_t b0 = 0;
    for (; b0 + kExamples <= n; b0 += kExamples) {
      const T* const* next = c0 == 0 && b0 + 2 * kExamples <= n ? xs + b0 + kExamples : nullptr;
      logits_block<5, kExamples, kWithU>(w, u, xs, F, C, c0, b0, next, logits);
    }
    for (; b0 < n; ++b0) logits_block<5, 1, kWithU>(w, u, xs, F, C, c0, b0, kNone<T>, logits);
  }
  for (; c0 < C; ++c0) {
    int64_t b0 = 0;
    for (; b0 + 4 <= n; b0 += 4) logits_block<1, 4, kWithU>(w, u, xs, F, C, c0, b0, kNone<T>, logits);
    for (; b0 < n; ++b0) logits_block<1, 1, kWithU>(w, u, xs, F, C, c0, b0, kNone<T>, logits);
  }
}

// The weight part of the update for NC classes from c0 and NV vectors of
// features from f0: acc[i][k] = sum_b g[b * C + c0 + i] * x_b[f0 + k L ..], the
// sum over b in order, then u_c <- u_c - lr * acc (u_c = 0 without u_in). Every
// loaded example vector serves NC classes; NC * NV sums hide the FMA latency.
template <int NC, int NV, class T>
void update_block(const T* g, const T* const* xs, int64_t n, int64_t F, int64_t C, int64_t c0, int64_t f0, T lr,
                  const T* u_in, T* u) {
  using Vec = LaneVec<T>;
  constexpr int64_t L = Lanes<T>::count;
  Vec acc[NC][NV] = {};
  for (int64_t b = 0; b < n; ++b) {
    Vec x[NV];
    for (int k = 0; k < NV; ++k) x[k] = load(xs[b] + f0 + k * L);
    for (int i = 0; i < NC; ++i) {
      const Vec coef = Vec{} + g[b * C + c0 + i];
      for (int k = 0; k < NV; ++k) acc[i][k] = plus_product<T>(acc[i][k], coef, x[k]);
    }
  }
  const Vec minus_rate = -(Vec{} + lr);  // an exact negation
  for (int i = 0; i < NC; ++i)
    for (int k = 0; k < NV; ++k) {
      T* at = u + (c0 + i) * F + f0 + k * L;
      const Vec before = u_in ? load(at) : Vec{};
      const Vec after = plus_product<T>(before, minus_rate, acc[i][k]);
      std::memcpy(at, &after, sizeof(Vec));
    }
}

}  // namespace

template <class T>
void lr_sgd_step(const LrStep<T>& s) {
  const int64_t F = s.features, C = s.classes, d = F * C + C;
#pragma omp parallel if (worth_threads(s.workers * s.batch * d))
  {
    std::vector<const T*> xs(static_cast<size_t>(s.batch));
    std::vector<T> g(static_cast<size_t>(s.batch * C));  // g[b * C + c]
    std::vector<int64_t> labels(static_cast<size_t>(s.batch));
    // A first step writes each worker's row here, in L1, then streams it to U (store_streaming):
    // U (300 MB at 10,000 workers on MNIST) is not read again before the rule reads it.
    std::vector<T> row(static_cast<size_t>(s.first ? d : 0));
#pragma omp for schedule(static)
    for (int64_t i = 0; i < s.workers; ++i) {
      T* u = s.first ? row.data() : s.U + i * d;
      const T* u_in = s.first ? nullptr : u;
      int64_t n = 0;
      for (int64_t b = 0; b < s.batch; ++b) {
        const int64_t e = s.batches[i * s.batch + b];
        if (e < 0) continue;
        xs[n] = s.X + e * F;
        labels[n] = s.y[e];
        ++n;
      }
      // The next worker's examples (anywhere in the training set) are fetched while this
      // worker computes.
      if (i + 1 < s.workers)
        for (int64_t b = 0; b < s.batch; ++b) {
          const int64_t e = s.batches[(i + 1) * s.batch + b];
          if (e < 0) continue;
          const char* at = reinterpret_cast<const char*>(s.X + e * F);
          for (int64_t byte = 0; byte < F * static_cast<int64_t>(sizeof(T)); byte += 64)
            __builtin_prefetch(at + byte, 0, 2);
        }
      // Forward: logits, softmax, gradient of the batch-mean loss.
      if (u_in) {
        all_logits<true>(s.w, u_in, xs.data(), n, F, C, g.data());
      } else {
        all_logits<false>(s.w, u_in, xs.data(), n, F, C, g.data());
      }
      for (int64_t b = 0; b < n; ++b) {
        T* gb = g.data() + b * C;
        T top = -std::numeric_limits<T>::infinity();
        for (int64_t c = 0; c < C; ++c) {
          gb[c] += u_in ? s.w[F * C + c] + u_in[F * C + c] : s.w[F * C + c];
          top = std::max(top, gb[c]);
        }
        T z = 0;
        for (int64_t c = 0; c < C; ++c) {
          gb[c] = std::exp(gb[c] - top);
          z += gb[c];
        }
        const T scale = T(1) / (z * static_cast<T>(n));
        for (int64_t c = 0; c < C; ++c) gb[c] *= scale;
        gb[labels[b]] -= T(1) / static_cast<T>(n);
      }
      // Update: U_i <- U_i - lr * (sum_b g_b x_b^T, sum_b g_b), each sum over b in order.
      constexpr int64_t L = Lanes<T>::count;
      const T* const* x = xs.data();
      int64_t f0 = 0;
      for (; f0 + 4 * L <= F; f0 += 4 * L) {
        int64_t c0 = 0;
        for (; c0 + kClasses <= C; c0 += kClasses) update_block<kClasses, 4>(g.data(), x, n, F, C, c0, f0, s.lr, u_in, u);
        for (; c0 + 2 <= C; c0 += 2) update_block<2, 4>(g.data(), x, n, F, C, c0, f0, s.lr, u_in, u);
        if (c0 < C) update_block<1, 4>(g.data(), x, n, F, C, c0, f0, s.lr, u_in, u);
      }
      for (; f0 + L <= F; f0 += L) {
        int64_t c0 = 0;
        for (; c0 + 4 <= C; c0 += 4) update_block<4, 1>(g.data(), x, n, F, C, c0, f0, s.lr, u_in, u);
        for (; c0 < C; ++c0) update_block<1, 1>(g.data(), x, n, F, C, c0, f0, s.lr, u_in, u);
      }
      for (int64_t c = 0; c < C; ++c) {
        for (int64_t f = f0; f < F; ++f) {
          T acc = 0;
          for (int64_t b = 0; b < n; ++b) acc = mul_add(g[b * C + c], xs[b][f], acc);
          u[c * F + f] = mul_add(-s.lr, acc, u_in ? u[c * F + f] : T(0));
        }
        T acc = 0;
        for (int64_t b = 0; b < n; ++b) acc += g[b * C + c];
        u[F * C + c] = mul_add(-s.lr, acc, u_in ? u[F * C + c] : T(0));
      }
      if (s.nonfinite) s.nonfinite[i] = holds_nonfinite(u, d);  // the row is still in L1
      if (s.first) store_streaming(row.data(), d, s.U + i * d);
    }
    end_streaming();
  }
}

template void lr_sgd_step<float>(const LrStep<float>&);
template void lr_sgd_step<double>(const LrStep<double>&);

}  // namespace fedrobust::cpu::FR_ARCH
