// The SIMD levels of the CPU kernels and the choice between them.
//
// Every vectorised kernel file (distances.cpp, coordinatewise.cpp,
// statistics.cpp, attacks.cpp, training.cpp) is compiled once per level into
// its own namespace: fedrobust::cpu::generic (baseline x86-64, SSE2) and, on
// x86-64, fedrobust::cpu::avx2 (AVX2+FMA); coordinatewise.cpp and gram.cpp also into
// fedrobust::cpu::avx512 (AVX-512 F/BW/DQ/VL, 64-byte vectors); see CMakeLists.txt.
// The file's header (distances.h, ...) declares the builds and defines the entry
// point in fedrobust::cpu that the bindings call: it runs the build of the level in
// use, which dispatch.cpp chooses at run time (AVX-512 where the CPU has it, else
// AVX2+FMA where it has both, else generic; FEDROBUST_SIMD=generic|avx2|avx512
// overrides). At the avx512 level the files without an avx512 build run their avx2 one.
//
// All kernels:
//   - read a RowsView (any layout, any subset of rows), never write to it;
//   - parallelise with OpenMP over fixed blocks (static schedule, or fixed blocks
//     dealt dynamically as in gram.cpp; one thread for small inputs, threads.h), so
//     every output element is computed by one thread in one fixed order and the
//     result is bit-identical for any thread count;
//   - release nothing themselves: the bindings drop the GIL around them.
#pragma once

namespace fedrobust::cpu {

// True when the kernels run their AVX2+FMA build (dispatch.cpp): at the avx2 and avx512 levels.
bool avx2_in_use();
// True at the avx512 level: the kernels that have an AVX-512 build run it.
bool avx512_in_use();

// "generic", "avx2" or "avx512": the level in use; set_simd_level switches (tests).
const char* simd_level();
void set_simd_level(const char* name);  // "auto", "generic", "avx2", "avx512"; throws if unavailable
bool simd_level_available(const char* name);

}  // namespace fedrobust::cpu

#ifdef FR_ARCH
// Every vectorised translation unit includes all its headers first and then
// FR_BEGIN_SIMD_CODE: from there on, functions are compiled for the unit's
// SIMD level. Code from headers (ours and the standard library's) keeps the
// baseline target, so the inline and template copies that the linker merges
// across the per-level objects never carry AVX2 instructions into the
// generic path.
#if defined(FR_ARCH_AVX512)
#define FR_BEGIN_SIMD_CODE _Pragma("GCC target(\"avx2,fma,avx512f,avx512bw,avx512dq,avx512vl\")")
#elif defined(FR_ARCH_AVX2)
#define FR_BEGIN_SIMD_CODE _Pragma("GCC target(\"avx2,fma\")")
#else
#define FR_BEGIN_SIMD_CODE
#endif
#endif
