// OpenBLAS through its CBLAS interface; the include path comes from pkg-config (openblas.pc).
#include <cblas.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

// The widest x86 SIMD level that both the CPU and the operating system support: 3 = AVX-512
// (F, DQ, BW, VL, with the OS saving the opmask and ZMM state), 2 = AVX2 with FMA, 1 = AVX,
// 0 = none of them (or not x86). Used to pick an OpenBLAS kernel set when OpenBLAS's own
// detection does not know the CPU model and falls back to SSE kernels.
static inline int nasmpi_cpu_simd_level(void) {
#if defined(__x86_64__) || defined(__i386__)
    unsigned int a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1;
    if (!osxsave || !avx) return 0;
    unsigned int xlo = 0, xhi = 0;
    __asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
    if ((xlo & 0x6) != 0x6) return 0;  // XMM and YMM state saved by the OS
    int level = 1;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return level;
    int avx2 = (b >> 5) & 1;
    if (avx2 && fma) level = 2;
    int avx512 = ((b >> 16) & 1) && ((b >> 17) & 1) && ((b >> 30) & 1) && ((b >> 31) & 1);
    if (level == 2 && avx512 && (xlo & 0xE0) == 0xE0) level = 3;  // opmask, ZMM_Hi256, Hi16_ZMM
    return level;
#else
    return 0;
#endif
}

// Asks for the cache line at p to be brought into all cache levels (a hint; never faults).
static inline void nasmpi_prefetch(const void *p) { __builtin_prefetch(p, 0, 3); }

// Asks for the cache line at p to be brought in for writing (a hint; never faults).
static inline void nasmpi_prefetch_write(void *p) { __builtin_prefetch(p, 1, 3); }
