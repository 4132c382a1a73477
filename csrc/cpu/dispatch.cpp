// Run-time choice of the SIMD level (simd_level.h): AVX-512 (F, BW, DQ, VL) where the CPU
// has it and the build made that variant, else AVX2+FMA where the CPU has both, else the
// generic x86-64 (SSE2) build. FEDROBUST_SIMD=generic|avx2|avx512 overrides.
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "simd_level.h"

namespace fedrobust::cpu {
namespace {

enum Level : int { kGeneric = 0, kAvx2 = 1, kAvx512 = 2 };

bool cpu_has_avx2() {
#if defined(FR_HAVE_AVX2_VARIANT) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

bool cpu_has_avx512() {
#if defined(FR_HAVE_AVX512_VARIANT) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  return cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
#else
  return false;
#endif
}

Level resolve(const char* name) {
  std::string s = name ? name : "auto";
  if (s == "auto" || s.empty()) return cpu_has_avx512() ? kAvx512 : cpu_has_avx2() ? kAvx2 : kGeneric;
  if (s == "generic") return kGeneric;
  if (s == "avx2") {
    if (!cpu_has_avx2())
      throw std::invalid_argument("SIMD level 'avx2' is not available: this build or CPU lacks AVX2+FMA");
    return kAvx2;
  }
  if (s == "avx512") {
    if (!cpu_has_avx512())
      throw std::invalid_argument(
          "SIMD level 'avx512' is not available: this build or CPU lacks AVX-512 (F, BW, DQ, VL) with AVX2+FMA");
    return kAvx512;
  }
  throw std::invalid_argument("SIMD level must be 'auto', 'generic', 'avx2' or 'avx512', got '" + s + "'");
}

std::atomic<int>& level_flag() {
  static std::atomic<int> flag{resolve(std::getenv("FEDROBUST_SIMD"))};
  return flag;
}

}  // namespace

bool avx2_in_use() { return level_flag().load(std::memory_order_relaxed) >= kAvx2; }
bool avx512_in_use() { return level_flag().load(std::memory_order_relaxed) == kAvx512; }

const char* simd_level() {
  const int level = level_flag().load();
  return level == kAvx512 ? "avx512" : level == kAvx2 ? "avx2" : "generic";
}
void set_simd_level(const char* name) { level_flag().store(resolve(name)); }
bool simd_level_available(const char* name) {
  if (std::strcmp(name, "generic") == 0) return true;
  if (std::strcmp(name, "avx2") == 0) return cpu_has_avx2();
  if (std::strcmp(name, "avx512") == 0) return cpu_has_avx512();
  return false;
}

}  // namespace fedrobust::cpu
