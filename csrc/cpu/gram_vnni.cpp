// The quantized Gram matrix's micro-kernel with AVX-512 VNNI's vpdpwssd (gram.cpp calls it
// where the CPU has VNNI): one instruction for the two 16-bit products and their sum per
// 32-bit lane, where pmaddwd + paddd take two. Compiled for the avx512 level only, with VNNI
// allowed in this unit alone, so no other code carries VNNI instructions.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>

#include "gram.h"

FR_BEGIN_SIMD_CODE
#pragma GCC target("avx2,fma,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")
#include "simd.h"
#include "gram_tile.h"

namespace fedrobust::cpu::FR_ARCH {
namespace {

struct VnniMultiplyAdd {
  static Words apply(Words acc, Words a, Words b) {
    return (Words)_mm512_dpwssd_epi32((__m512i)acc, (__m512i)a, (__m512i)b);
  }
};

}  // namespace

void panel_strip_vnni(const int32_t* panels, int64_t q, int64_t words, double* strip) {
  panel_strip<VnniMultiplyAdd>(panels, q, words, strip);
}

}  // namespace fedrobust::cpu::FR_ARCH
