// Run-time choice of the SIMD level (simd_level.h): AVX2+FMA where the CPU
// has both, else the generic x86-64 (SSE2) build. FEDROBUST_SIMD=generic|avx2
// overrides.
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "simd_level.h"

namespace fedrobust::cpu {
namespace {

bool cpu_has_avx2() {
#if defined(FR_HAVE_AVX2_VARIANT) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

bool resolve(const char* name) {  // true = avx2
  std::string s = name ? name : "auto";
  if (s == "auto" || s.empty()) return cpu_has_avx2();
  if (s == "generic") return false;
  if (s == "avx2") {
    if (!cpu_has_avx2())
      throw std::invalid_argument("SIMD level 'avx2' is not available: this build or CPU lacks AVX2+FMA");
    return true;
  }
  throw std::invalid_argument("SIMD level must be 'auto', 'generic' or 'avx2', got '" + s + "'");
}

std::atomic<bool>& avx2_flag() {
  static std::atomic<bool> flag{resolve(std::getenv("FEDROBUST_SIMD"))};
  return flag;
}

}  // namespace

bool avx2_in_use() { return avx2_flag().load(std::memory_order_relaxed); }

const char* simd_level() { return avx2_flag().load() ? "avx2" : "generic"; }
void set_simd_level(const char* name) { avx2_flag().store(resolve(name)); }
bool simd_level_available(const char* name) {
  if (std::strcmp(name, "generic") == 0) return true;
  if (std::strcmp(name, "avx2") == 0) return cpu_has_avx2();
  return false;
}

}  // namespace fedrobust::cpu
