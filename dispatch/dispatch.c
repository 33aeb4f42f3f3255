// The CPU dispatcher of the shipped libdeformrt.so (not part of the SwiftPM package; the Makefile
// builds it; README, "How the library is built").
//
// The library holds the whole engine three times, compiled for the baseline (x86-64-v2), avx2
// (x86-64-v3) and avx512 (x86-64-v4) tiers. dispatch/tier-object.sh renamed each copy's entry
// points `drt_X` to `deformrt_<tier>__drt_X` (and every other global symbol apart), so the copies
// do not collide. The exported `drt_X` are the stubs of dispatch_stubs.S (generated from
// abi/symbols.txt): each jumps through its slot of deformrt_dispatch_table, which the constructor
// below fills once, at load, with the chosen copy's entry points. A jump through a table leaves
// every argument register untouched, so one stub fits every signature.
//
// The choice (deformrt_choose_tier in cputier.h): the widest tier cpuid reports, or the one
// DEFORMRT_CPU names. When that is impossible (a tier the CPU lacks, a value that is no tier, a CPU
// below x86-64-v2) the baseline copy answers the calls that run no model, and is told to refuse
// model loading and session creation with the reason, so the caller gets a status and a message
// (drt_last_error_message) instead of SIGILL.
#include <stdlib.h>
#include <string.h>

#include "cputier.h"

#define DRT_TIER_COPY_DECLARATIONS(name) \
    extern char deformrt_baseline__##name[], deformrt_avx2__##name[], deformrt_avx512__##name[];
#define DRT_ENTRY(name) DRT_TIER_COPY_DECLARATIONS(name)
#include "dispatch_entries.h"
#undef DRT_ENTRY
DRT_TIER_COPY_DECLARATIONS(deformrt_tier_refuse)

#define DRT_ENTRY(name) (void *)deformrt_baseline__##name,
static void *const baseline_entries[] = {
#include "dispatch_entries.h"
};
#undef DRT_ENTRY
#define DRT_ENTRY(name) (void *)deformrt_avx2__##name,
static void *const avx2_entries[] = {
#include "dispatch_entries.h"
};
#undef DRT_ENTRY
#define DRT_ENTRY(name) (void *)deformrt_avx512__##name,
static void *const avx512_entries[] = {
#include "dispatch_entries.h"
};
#undef DRT_ENTRY

#define DRT_ENTRY_COUNT (sizeof baseline_entries / sizeof baseline_entries[0])

// Read by the stubs (dispatch_stubs.S). Written once, by the constructor, before any caller can
// reach a stub: the dynamic loader runs this library's constructors before those of anything that
// links it, and dlopen returns only after them.
__attribute__((visibility("hidden"))) void *deformrt_dispatch_table[DRT_ENTRY_COUNT];

typedef void (*refuse_fn)(int status, const char *message);

__attribute__((constructor)) static void deformrt_dispatch_init(void) {
    static void *const *const tables[] = {baseline_entries, avx2_entries, avx512_entries};
    static const refuse_fn refusers[] = {
        (refuse_fn)(void *)deformrt_baseline__deformrt_tier_refuse,
        (refuse_fn)(void *)deformrt_avx2__deformrt_tier_refuse,
        (refuse_fn)(void *)deformrt_avx512__deformrt_tier_refuse,
    };
    int status;
    char message[256];
    int tier = deformrt_choose_tier(getenv("DEFORMRT_CPU"), &status, message, sizeof message);
    int index = status == 0 ? tier - DEFORMRT_TIER_BASELINE : 0;
    memcpy(deformrt_dispatch_table, tables[index], sizeof deformrt_dispatch_table);
    if (status != 0) refusers[index](status, message);
}
