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
// no examples gets a zero gradient.
//
// Each worker is computed by one thread in a fixed order, and the sums use a
// fixed pattern of 8 partial sums, so the result is the same on any thread
// count and at every SIMD level.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels.h"
#if defined(__x86_64__)
#include <immintrin.h>
#endif

FR_BEGIN_SIMD_CODE
#include "simd.h"

namespace fedrobust::cpu::FR_ARCH {
namespace {

// The forward dot products keep kLanes partial sums (element f goes to sum
// f % kLanes), whatever the vector width: 4 AVX2 or 8 SSE2 vectors.
constexpr int64_t kLanes = 32;

template <class T>
simd::V<T> load(const T* p) {
  simd::V<T> v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// sum_f p[f] * x[f] with p = w + u (kWithU) or p = w.
template <bool kWithU, class T>
T dot_params(const T* w, const T* u, const T* x, int64_t n) {
  using Vec = simd::V<T>;
  constexpr int64_t L = simd::Vector<T>::lanes, kVectors = kLanes / L;
  Vec acc[kVectors] = {};
  int64_t f = 0;
  for (; f + kLanes <= n; f += kLanes)
    for (int64_t k = 0; k < kVectors; ++k) {
      const Vec p = kWithU ? load(w + f + k * L) + load(u + f + k * L) : load(w + f + k * L);
      acc[k] += p * load(x + f + k * L);
    }
  alignas(64) T lanes[kLanes];
  std::memcpy(lanes, acc, sizeof(lanes));
  T total = 0;
  for (int64_t k = 0; k < kLanes; ++k) total += lanes[k];
  for (; f < n; ++f) total += (kWithU ? w[f] + u[f] : w[f]) * x[f];
  return total;
}

}  // namespace

template <class T>
void lr_sgd_step(const LrStep<T>& s) {
  const int64_t F = s.features, C = s.classes, d = F * C + C;
#pragma omp parallel
  {
    std::vector<const T*> xs(static_cast<size_t>(s.batch));
    std::vector<T> g(static_cast<size_t>(s.batch * C));  // g[b * C + c]
    std::vector<int64_t> labels(static_cast<size_t>(s.batch));
#pragma omp for schedule(static)
    for (int64_t i = 0; i < s.workers; ++i) {
      T* u = s.U + i * d;
      const T* u_in = s.first ? nullptr : u;
      int64_t n = 0;
      for (int64_t b = 0; b < s.batch; ++b) {
        const int64_t e = s.batches[i * s.batch + b];
        if (e < 0) continue;
        xs[n] = s.X + e * F;
        labels[n] = s.y[e];
        ++n;
      }
      // Forward: logits, softmax, gradient of the batch-mean loss.
      for (int64_t b = 0; b < n; ++b) {
        T* gb = g.data() + b * C;
        T top = -std::numeric_limits<T>::infinity();
        for (int64_t c = 0; c < C; ++c) {
          gb[c] = u_in ? dot_params<true>(s.w + c * F, u_in + c * F, xs[b], F) + (s.w[F * C + c] + u_in[F * C + c])
                       : dot_params<false>(s.w + c * F, u_in, xs[b], F) + s.w[F * C + c];
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
      // Update: U_i <- U_i - lr * (sum_b g_b x_b^T, sum_b g_b), each sum over b in
      // order. kBlock features at a time for every class, the sums in registers.
      using Vec = simd::V<T>;
      constexpr int64_t L = simd::Vector<T>::lanes, kBlock = 4 * L;
      const Vec lr = Vec{} + s.lr;
      int64_t f0 = 0;
      for (; f0 + kBlock <= F; f0 += kBlock)
        for (int64_t c = 0; c < C; ++c) {
          Vec acc[4] = {};
          for (int64_t b = 0; b < n; ++b) {
            const Vec coef = Vec{} + g[b * C + c];
            for (int64_t k = 0; k < 4; ++k) acc[k] += coef * load(xs[b] + f0 + k * L);
          }
          T* row = u + c * F + f0;
          for (int64_t k = 0; k < 4; ++k) {
            const Vec before = u_in ? load(row + k * L) : Vec{};
            const Vec after = before - lr * acc[k];
            std::memcpy(row + k * L, &after, sizeof(Vec));
          }
        }
      for (int64_t c = 0; c < C; ++c) {
        for (int64_t f = f0; f < F; ++f) {
          T acc = 0;
          for (int64_t b = 0; b < n; ++b) acc += g[b * C + c] * xs[b][f];
          u[c * F + f] = (u_in ? u[c * F + f] : T(0)) - s.lr * acc;
        }
        T acc = 0;
        for (int64_t b = 0; b < n; ++b) acc += g[b * C + c];
        u[F * C + c] = (u_in ? u[F * C + c] : T(0)) - s.lr * acc;
      }
    }
  }
}

template void lr_sgd_step<float>(const LrStep<float>&);
template void lr_sgd_step<double>(const LrStep<double>&);

}  // namespace fedrobust::cpu::FR_ARCH
