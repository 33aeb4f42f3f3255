import DeformRTKernels
import TestSupport
import XCTest

/// PackedLinearPlan (B packed by PackedMatrixShape.pack) against PackedLinearPlan.reference
/// (Double sums) at sizes that are not multiples of the 6-row groups, the 16-column strips, the
/// 64-column blocks or the 640-deep k blocks; 1 row; B stored transposed; every epilogue.
/// Tolerance: max |a - b| / (1 + |b|) <= 1e-4 (float32 sums of up to ~1300 products of U(-1, 1)).
/// Results must be bit-identical for 1, 2 and 3 threads (the tiling and k blocks do not depend on them).
final class PackedLinearTests: XCTestCase {
    static let tolerance: Float = 1e-4

    enum Epilogue: CaseIterable { case none, columnBias, fullAddend, accumulate }

    func check(m: Int, n: Int, k: Int, transposeB: Bool, epilogue: Epilogue, seed: UInt64,
               file: StaticString = #filePath, line: UInt = #line) {
        var rng = SeededGenerator(seed: seed)
        let a = rng.floats(m * k), b = rng.floats(k * n)
        let initial = rng.floats(m * n)
        let bias = rng.floats(n)
        let alpha: Float = epilogue == .fullAddend ? 0.75 : 1, beta: Float = epilogue == .fullAddend ? -1.5 : 1
        let expected: [Float]
        switch epilogue {
        case .none:
            expected = PackedLinearPlan.reference(transposeB: transposeB, m: m, n: n, k: k, a: a, lda: k, b: b,
                                                  ldb: transposeB ? k : n)
        case .columnBias:
            expected = PackedLinearPlan.reference(transposeB: transposeB, m: m, n: n, k: k, a: a, lda: k, b: b,
                                                  ldb: transposeB ? k : n, addend: bias, addendRowStride: 0)
        case .fullAddend, .accumulate:
            expected = PackedLinearPlan.reference(transposeB: transposeB, m: m, n: n, k: k, alpha: alpha, a: a, lda: k,
                                                  b: b, ldb: transposeB ? k : n, beta: beta, addend: initial,
                                                  addendRowStride: n)
        }
        let shape = PackedMatrixShape(k: k, n: n)
        let plan = PackedLinearPlan(m: m, n: n, k: k)
        var first: [Float]?
        for threads in [1, 2, 3] {
            let parallel = Parallel(threads: threads)
            let packed = UnsafeMutablePointer<Float>.allocate(capacity: max(shape.floatCount, 1))
            let scratch = UnsafeMutablePointer<Float>.allocate(capacity: max(plan.scratchFloats(threads: threads), 1))
            // Garbage in the scratch must not reach the result.
            scratch.initialize(repeating: .nan, count: max(plan.scratchFloats(threads: threads), 1))
            defer { packed.deallocate(); scratch.deallocate() }
            shape.pack(b, ldb: transposeB ? k : n, transposed: transposeB, into: packed, parallel: parallel)
            var got = epilogue == .accumulate ? initial : [Float](repeating: .nan, count: m * n)
            a.withUnsafeBufferPointer { ap in
                bias.withUnsafeBufferPointer { bp in
                    initial.withUnsafeBufferPointer { ip in
                        let e: LinearEpilogue
                        switch epilogue {
                        case .none: e = .none
                        case .columnBias: e = LinearEpilogue(addend: bp.baseAddress, addendRowStride: 0)
                        case .fullAddend: e = LinearEpilogue(alpha: alpha, addend: ip.baseAddress, addendRowStride: n, beta: beta)
                        case .accumulate: e = LinearEpilogue(accumulates: true)
                        }
                        got.withUnsafeMutableBufferPointer { cp in
                            plan.run(a: ap.baseAddress!, lda: k, packed: packed, c: cp.baseAddress!, ldc: n, epilogue: e,
                                     scratch: scratch, parallel: parallel)
                        }
                    }
                }
            }
            XCTAssertLessThanOrEqual(maxMixedError(got, expected), Self.tolerance,
                                     "m \(m) n \(n) k \(k) transB \(transposeB) \(epilogue) threads \(threads)",
                                     file: file, line: line)
            if let first {
                XCTAssertEqual(got.map(\.bitPattern), first.map(\.bitPattern),
                               "m \(m) n \(n) k \(k) \(epilogue): threads \(threads) differ from 1 thread", file: file, line: line)
            } else {
                first = got
            }
        }
    }

    func testAwkwardSizes() {
        var seed: UInt64 = 1
        for (m, n, k) in [(1, 1, 1), (1, 17, 3), (5, 16, 7), (6, 64, 15), (7, 65, 16), (13, 129, 17), (3, 127, 33),
                          (37, 48, 9), (1, 200, 50), (50, 31, 1)] {
            for transposeB in [false, true] {
                for epilogue in Epilogue.allCases {
                    check(m: m, n: n, k: k, transposeB: transposeB, epilogue: epilogue, seed: seed)
                    seed += 1
                }
            }
        }
    }

    /// K beyond one 640-deep block (two k blocks of 650), rows past one tile.
    func testSeveralKBlocksAndTiles() {
        check(m: 61, n: 70, k: 1300, transposeB: true, epilogue: .fullAddend, seed: 99)
        check(m: 205, n: 20, k: 40, transposeB: false, epilogue: .accumulate, seed: 98)
    }

    /// K = 0: C is the epilogue of a zero product.
    func testEmptyInnerDimension() {
        check(m: 4, n: 5, k: 0, transposeB: false, epilogue: .fullAddend, seed: 7)
        check(m: 4, n: 5, k: 0, transposeB: false, epilogue: .accumulate, seed: 8)
    }
}
