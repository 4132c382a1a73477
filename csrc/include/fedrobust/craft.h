// The per-coordinate rules of the trim attack (SPEC 6), shared by the CPU
// kernel (csrc/cpu/attacks.cpp) and the CUDA one (csrc/cuda/attacks.cu), so
// both craft the same bits from the same column statistics.
//
// All values are updates (local model minus received global model); `offset`
// (the received global model's coordinate, or 0) moves the interval to model
// values when the b-interval refers to them (trim_reference "model").
#pragma once
#include <cstdint>

#include "fedrobust/common.h"
#include "fedrobust/random.h"

namespace fedrobust {

// What craft_coordinates crafts (both backends).
enum class CraftMode : int { kTrimFull = 0, kTrimPartial = 1, kGaussian = 2 };

struct TrimInterval {
  double lo, hi, offset;
  int direction;  // -1: values above the benign maximum, +1: below the minimum, 0: the update 0
};

// Full knowledge: mx / mn = benign maximum / minimum of the updates, shifted by offset:
//   s = -1: [mx, b mx] (mx > 0) or [mx, mx / b];  s = +1: [mn / b, mn] (mn > 0) or [b mn, mn].
FR_HD TrimInterval trim_full_interval(int direction, double mx, double mn, double offset, double b) {
  mx += offset;
  mn += offset;
  TrimInterval iv{0.0, 0.0, offset, direction};
  if (direction < 0) {
    iv.lo = mx;
    iv.hi = mx > 0 ? b * mx : mx / b;
  } else if (direction > 0) {
    iv.lo = mn > 0 ? mn / b : b * mn;
    iv.hi = mn;
  }
  return iv;
}

// Partial knowledge: mu, sigma of the compromised updates; s = sign(mu);
//   s = -1: [mu + lo sigma, mu + hi sigma];  s = +1: [mu - hi sigma, mu - lo sigma].
FR_HD TrimInterval trim_partial_interval(double mu, double sigma, double sigma_lo, double sigma_hi) {
  const int direction = mu > 0 ? 1 : (mu < 0 ? -1 : 0);
  TrimInterval iv{0.0, 0.0, 0.0, direction};
  if (direction < 0) {
    iv.lo = mu + sigma_lo * sigma;
    iv.hi = mu + sigma_hi * sigma;
  } else if (direction > 0) {
    iv.lo = mu - sigma_hi * sigma;
    iv.hi = mu - sigma_lo * sigma;
  }
  return iv;
}

// The crafted update of the counter row with hash prefix `prefix` (random.h) at `column`:
// a uniform draw in [lo, hi] minus the offset, or 0 where the direction is 0.
FR_HD double trim_value(const TrimInterval& iv, uint64_t prefix, uint64_t column) {
  const double value =
      iv.direction == 0 ? iv.offset : uniform_between(iv.lo, iv.hi, uniform01(counter_hash_at(prefix, column)));
  return value - iv.offset;
}

}  // namespace fedrobust
