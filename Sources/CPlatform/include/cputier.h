// Which instruction-set tier the running CPU can execute, from cpuid (and xgetbv for the register
// state the OS saves). Header-only (static inline): shared by the shipped library's dispatcher
// (dispatch/dispatch.c), the CLI launcher (dispatch/launcher.c) and the Swift kernels
// (CPUTier.swift), so all three agree. Nothing here is exported from libdeformrt.so.
#ifndef DEFORMRT_CPUTIER_H
#define DEFORMRT_CPUTIER_H

#include <stdio.h>
#include <string.h>

// Tiers, ordered: a CPU that runs tier N runs every tier below it.
#define DEFORMRT_TIER_NONE 0     // below x86-64-v2 (or not x86-64): no tier of the library runs
#define DEFORMRT_TIER_BASELINE 1 // x86-64-v2: SSE3, SSSE3, SSE4.1, SSE4.2, POPCNT, CX16, LAHF (Nehalem, 2008)
#define DEFORMRT_TIER_AVX2 2     // x86-64-v3: + AVX, AVX2, FMA, BMI1, BMI2, F16C, LZCNT, MOVBE (Haswell, Zen 1)
#define DEFORMRT_TIER_AVX512 3   // x86-64-v4: + AVX-512 F, CD, BW, DQ, VL (Skylake-SP, Zen 4)

#if defined(__x86_64__) || defined(__i386__)
static inline void deformrt_cpuid(unsigned leaf, unsigned sub, unsigned r[4]) {
    __asm__ __volatile__("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}

// XCR0: which register files the OS saves on a context switch. Only valid when OSXSAVE is set.
static inline unsigned long long deformrt_xgetbv0(void) {
    unsigned lo, hi;
    __asm__ __volatile__(".byte 0x0f, 0x01, 0xd0" : "=a"(lo), "=d"(hi) : "c"(0)); // xgetbv
    return ((unsigned long long)hi << 32) | lo;
}
#endif

// The widest tier this CPU (and OS) supports.
static inline int deformrt_cpu_best_tier(void) {
#if defined(__x86_64__)
    unsigned r[4], max, ext[4] = {0, 0, 0, 0}, l7[4] = {0, 0, 0, 0};
    deformrt_cpuid(0, 0, r);
    max = r[0];
    if (max < 1) return DEFORMRT_TIER_NONE;
    deformrt_cpuid(1, 0, r);
    unsigned ecx1 = r[2];
    if (max >= 7) deformrt_cpuid(7, 0, l7);
    deformrt_cpuid(0x80000000u, 0, ext);
    unsigned extecx = 0;
    if (ext[0] >= 0x80000001u) { deformrt_cpuid(0x80000001u, 0, ext); extecx = ext[2]; }
#define DRT_BIT(value, bit) (((value) >> (bit)) & 1u)
    int v2 = DRT_BIT(ecx1, 0) && DRT_BIT(ecx1, 9) && DRT_BIT(ecx1, 13) && DRT_BIT(ecx1, 19) &&
             DRT_BIT(ecx1, 20) && DRT_BIT(ecx1, 23) && DRT_BIT(extecx, 0);
    if (!v2) return DEFORMRT_TIER_NONE;
    int osxsave = DRT_BIT(ecx1, 27);
    unsigned long long xcr0 = osxsave ? deformrt_xgetbv0() : 0;
    int ymmState = (xcr0 & 0x6) == 0x6;     // SSE and AVX state
    int zmmState = (xcr0 & 0xe6) == 0xe6;   // + opmask, ZMM_Hi256, Hi16_ZMM
    unsigned ebx7 = l7[1];
    int v3 = ymmState && DRT_BIT(ecx1, 28) /* AVX */ && DRT_BIT(ecx1, 12) /* FMA */ &&
             DRT_BIT(ecx1, 29) /* F16C */ && DRT_BIT(ecx1, 22) /* MOVBE */ && DRT_BIT(ebx7, 5) /* AVX2 */ &&
             DRT_BIT(ebx7, 3) /* BMI1 */ && DRT_BIT(ebx7, 8) /* BMI2 */ && DRT_BIT(extecx, 5) /* LZCNT */;
    if (!v3) return DEFORMRT_TIER_BASELINE;
    int v4 = zmmState && DRT_BIT(ebx7, 16) /* F */ && DRT_BIT(ebx7, 17) /* DQ */ &&
             DRT_BIT(ebx7, 28) /* CD */ && DRT_BIT(ebx7, 30) /* BW */ && DRT_BIT(ebx7, 31) /* VL */;
#undef DRT_BIT
    return v4 ? DEFORMRT_TIER_AVX512 : DEFORMRT_TIER_AVX2;
#else
    return DEFORMRT_TIER_NONE;
#endif
}

static inline const char *deformrt_tier_name(int tier) {
    switch (tier) {
    case DEFORMRT_TIER_BASELINE: return "baseline";
    case DEFORMRT_TIER_AVX2: return "avx2";
    case DEFORMRT_TIER_AVX512: return "avx512";
    default: return "none";
    }
}

// The tier named by DEFORMRT_CPU's value, or -1 for a value that names no tier.
static inline int deformrt_tier_from_name(const char *name) {
    if (strcmp(name, "baseline") == 0) return DEFORMRT_TIER_BASELINE;
    if (strcmp(name, "avx2") == 0) return DEFORMRT_TIER_AVX2;
    if (strcmp(name, "avx512") == 0) return DEFORMRT_TIER_AVX512;
    return -1;
}

// The dispatch rule, shared by the library and the CLI launcher: the widest tier the CPU supports,
// or the one `forced` (DEFORMRT_CPU's value; NULL or "" when unset) names. On a refusal returns
// DEFORMRT_TIER_NONE with `*status` 1 (invalid argument: no such tier) or 4 (unsupported: the CPU
// lacks it, or is below x86-64-v2) and a message in `message`; otherwise `*status` is 0.
static inline int deformrt_choose_tier(const char *forced, int *status, char *message, size_t size) {
    int best = deformrt_cpu_best_tier();
    *status = 0;
    if (size) message[0] = 0;
    if (forced && forced[0]) {
        int wanted = deformrt_tier_from_name(forced);
        if (wanted < 0) {
            *status = 1;
            snprintf(message, size, "DEFORMRT_CPU=%s names no CPU tier (use baseline, avx2 or avx512)", forced);
            return DEFORMRT_TIER_NONE;
        }
        if (wanted > best) {
            *status = 4;
            if (best == DEFORMRT_TIER_NONE)
                snprintf(message, size, "DEFORMRT_CPU=%s: this CPU lacks the %s tier (it is below x86-64-v2)", forced, forced);
            else
                snprintf(message, size, "DEFORMRT_CPU=%s: this CPU lacks the %s tier (it supports up to %s)", forced, forced,
                         deformrt_tier_name(best));
            return DEFORMRT_TIER_NONE;
        }
        return wanted;
    }
    if (best == DEFORMRT_TIER_NONE) {
        *status = 4;
        snprintf(message, size, "this CPU is below x86-64-v2 (SSE4.2, POPCNT), the least any DeformRT tier needs");
    }
    return best;
}

#endif
