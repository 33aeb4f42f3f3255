import CPlatform

/// The instruction-set tier this copy of the code was compiled for, the tiers the running CPU
/// supports, and the shipped library's dispatch verdict.
///
/// The shipped libdeformrt.so holds the whole engine three times, compiled for `baseline`
/// (x86-64-v2), `avx2` (x86-64-v3) and `avx512` (x86-64-v4), plus a small C dispatcher
/// (dispatch/dispatch.c) that picks one copy once at load from cpuid, or from DEFORMRT_CPU, and
/// forwards every `drt_*` call to it (README, "How the library is built"). Each copy knows its own
/// tier from a compile condition; a plain `swift build` (no `-target-cpu`) is `generic`.
public enum CPUTier: String, Sendable, CaseIterable {
    /// Compiled without a tier (plain `swift build`): plain x86-64, SIMD lowered to SSE2.
    case generic
    /// x86-64-v2 (Nehalem and later): SSE4.2, POPCNT. Convolutions run on OpenBLAS.
    case baseline
    /// x86-64-v3 (Haswell, Zen 1 and later): AVX2 and FMA; the packed SIMD16 micro-kernels.
    case avx2
    /// x86-64-v4 (Skylake-SP, Zen 4 and later): AVX-512 F/CD/BW/DQ/VL; SIMD16 in one register.
    case avx512

    /// The tier of the code that is running.
    public static let compiled: CPUTier = {
        #if DEFORMRT_TIER_AVX512
        return .avx512
        #elseif DEFORMRT_TIER_AVX2
        return .avx2
        #elseif DEFORMRT_TIER_BASELINE
        return .baseline
        #else
        return .generic
        #endif
    }()

    /// The widest tier the running CPU and OS support (cpuid, xgetbv); nil below x86-64-v2.
    public static let widestSupported: CPUTier? = {
        switch deformrt_cpu_best_tier() {
        case DEFORMRT_TIER_AVX512: return .avx512
        case DEFORMRT_TIER_AVX2: return .avx2
        case DEFORMRT_TIER_BASELINE: return .baseline
        default: return nil
        }
    }()
}

/// Why the dispatcher refused every tier (DEFORMRT_CPU named a tier this CPU lacks, or a value that
/// is no tier, or the CPU is below x86-64-v2): set once by the dispatcher at load, before any other
/// call into this copy; model loading and session creation then fail with it.
public enum CPUDispatch {
    public struct Refusal: Sendable {
        /// 1: invalid argument (a bad DEFORMRT_CPU value), 4: unsupported (the CPU lacks the tier).
        public let status: Int32
        public let message: String
    }

    nonisolated(unsafe) public private(set) static var refusal: Refusal?

    public static func refuse(status: Int32, message: String) {
        refusal = Refusal(status: status, message: message)
    }
}
