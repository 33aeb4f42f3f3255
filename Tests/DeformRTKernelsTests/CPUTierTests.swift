import DeformRTKernels
import Glibc
import XCTest

/// CPUTier: what a plain `swift build` reports, and the cpuid detection against the kernel's own
/// reading of the CPU (/proc/cpuinfo flags). The tiered library itself is tested from Python
/// (Tests/python/test_cpu_dispatch.py), since only `make build` makes it.
final class CPUTierTests: XCTestCase {
    func testPlainBuildIsGenericAndNotRefused() throws {
        XCTAssertEqual(CPUTier.compiled, .generic)
        XCTAssertNil(CPUDispatch.refusal)
    }

    func testDetectionAgreesWithProcCpuinfo() throws {
        guard let file = fopen("/proc/cpuinfo", "r") else { throw XCTSkip("no /proc/cpuinfo") }
        defer { fclose(file) }
        var flags = Set<String>()
        var line: UnsafeMutablePointer<CChar>?
        var capacity = 0
        while getline(&line, &capacity, file) > 0 {
            let text = String(cString: line!)
            if text.hasPrefix("flags") {
                flags = Set(text.split(separator: ":", maxSplits: 1)[1].split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init))
                break
            }
        }
        free(line)
        let v2: Set = ["pni", "ssse3", "sse4_1", "sse4_2", "popcnt", "cx16", "lahf_lm"]
        let v3: Set = ["avx", "avx2", "fma", "bmi1", "bmi2", "f16c", "movbe", "abm"]
        let v4: Set = ["avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"]
        let expected: CPUTier? = !v2.isSubset(of: flags) ? nil : !v3.isSubset(of: flags) ? .baseline
            : v4.isSubset(of: flags) ? .avx512 : .avx2
        XCTAssertEqual(CPUTier.widestSupported, expected)
    }
}
