// 16-bit order keys of floats, for counting values below pivots twice as many at a time
// (BandFinder, coordinatewise.cpp).
//
// A float's ordered bits are its bits read as an int32, with a negative value's magnitude
// bits flipped: they order like the floats (-Inf < ... < -0 < +0 < ... < +Inf). Its key is
// the top 16 bits of those: key(x) < key(p) implies x < p, and for any key k,
//   key(x) < k  exactly when  x < key_floor(k),
// key_floor(k) being the least float whose key is k (or -Inf below every float's key). So
// counting the keys below k counts the values below key_floor(k), exactly.
//
// Included by the vectorised units AFTER FR_BEGIN_SIMD_CODE, like tile.h; it includes nothing.
#pragma once

namespace fedrobust::cpu::FR_ARCH {

using Key = int16_t;

inline int32_t ordered_bits(float x) {
  int32_t i;
  std::memcpy(&i, &x, sizeof(i));
  return i ^ ((i >> 31) & 0x7FFFFFFF);
}

inline Key key_of(float x) { return static_cast<Key>(ordered_bits(x) >> 16); }

// The least float whose key is k: the float with ordered bits k * 2^16, or -Inf where those
// bits lie below -Inf's (they are a NaN's).
inline float key_floor(Key k) {
  const int32_t at = static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint16_t>(k)) << 16);
  if (at <= ordered_bits(-std::numeric_limits<float>::infinity())) return -std::numeric_limits<float>::infinity();
  const int32_t bits = at ^ ((at >> 31) & 0x7FFFFFFF);
  float x;
  std::memcpy(&x, &bits, sizeof(x));
  return x;
}

// key_of lane by lane: N floats' bits as int32 lanes (Bits) to N keys (Keys).
template <class Keys, class Bits>
inline Keys keys_of_bits(Bits b) {
  return __builtin_convertvector((b ^ ((b >> 31) & 0x7FFFFFFF)) >> 16, Keys);
}

}  // namespace fedrobust::cpu::FR_ARCH
