// Processor hints the Swift kernels have no spelling for. Header-only (static inline): nothing
// here is exported from libdeformrt.so.
#ifndef DEFORMRT_CPLATFORM_H
#define DEFORMRT_CPLATFORM_H

// One iteration of a spin-wait: tells the core it is spinning (x86 PAUSE), so a hyper-thread
// sibling keeps the execution units and leaving the loop does not flush the pipeline.
static inline void deformrt_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

// Asks for the cache line at `address` to be brought into L2 ahead of use (prefetcht1). A hint:
// it never faults, whatever the address.
static inline void deformrt_prefetch_l2(const void *address) {
#if defined(__GNUC__) || defined(__clang__)
    __builtin_prefetch(address, 0, 2);
#endif
}

#endif
