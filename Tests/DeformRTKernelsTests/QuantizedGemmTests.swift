import DeformRTKernels
import XCTest

/// QuantizedGemm (packed Int16 rows x unsigned pairs, zero points corrected afterwards) and
/// Quantization.requantize against plain scalar references, at sizes that leave partial panels,
/// odd k, partial vectors and partial 256-column blocks, on 1 and 3 threads. Exact: integer sums.
final class QuantizedGemmTests: XCTestCase {
    struct Generator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return state >> 33
        }
        mutating func byte() -> UInt8 { UInt8(truncatingIfNeeded: next()) }
    }

    /// The value of an 8-bit byte as its type reads it.
    func value(_ byte: UInt8, signed: Bool) -> Int32 { signed ? Int32(Int8(bitPattern: byte)) : Int32(byte) }

    func check(rows: Int, k: Int, columns: Int, aSigned: Bool, bSigned: Bool, threads: Int, seed: UInt64) {
        var random = Generator(state: seed)
        let a = (0..<(rows * k)).map { _ in random.byte() }
        let b = (0..<(k * columns)).map { _ in random.byte() }
        // Zero points of the data's type, one per row of A and one per column of B.
        let aZeros = (0..<rows).map { _ in value(random.byte(), signed: aSigned) }
        let bZeros = (0..<columns).map { _ in value(random.byte(), signed: bSigned) }

        var expected = [Int32](repeating: 0, count: rows * columns)
        for r in 0..<rows {
            for n in 0..<columns {
                var sum: Int32 = 0
                for kk in 0..<k {
                    sum &+= (value(a[r * k + kk], signed: aSigned) - aZeros[r]) * (value(b[kk * columns + n], signed: bSigned) - bZeros[n])
                }
                expected[r * columns + n] = sum
            }
        }

        let parallel = Parallel(threads: threads)
        var packed = [Int16](repeating: 7, count: QuantizedGemm.packedRowsCount(rows: rows, k: k))
        var rowSums = [Int32](repeating: 0, count: rows)
        var columnsPacked = [UInt32](repeating: 0, count: max(1, QuantizedGemm.packedColumnsCount(k: k, n: columns)))
        var scratch = [Int32](repeating: 0, count: QuantizedGemm.scratchCount(threads: threads))
        let columnZeros = bZeros.map { QuantizedGemm.unsignedValue($0, signed: bSigned) }
        var result = [Int32](repeating: -1, count: rows * columns)
        a.withUnsafeBytes { aBytes in
            b.withUnsafeBytes { bBytes in
                QuantizedGemm.packRows(aBytes.baseAddress!, signed: aSigned, rows: rows, k: k, rowStride: k, zeroPoints: aZeros,
                                       zeroPointStride: 1, into: &packed, rowSums: &rowSums)
                QuantizedGemm.packColumns(bBytes.baseAddress!, signed: bSigned, k: k, n: columns, rowStride: columns, into: &columnsPacked)
            }
        }
        result.withUnsafeMutableBufferPointer { out in
            let out = out.baseAddress!
            QuantizedGemm.gemm(rows: rows, columns: columns, k: k, packedRows: packed, packedColumns: columnsPacked,
                               scratch: &scratch, parallel: parallel) { row, rowCount, column, width, sums, stride in
                for r in 0..<rowCount {
                    let line = sums + r * stride
                    columnZeros.withUnsafeBufferPointer {
                        QuantizedGemm.correct(line, count: width, rowSum: rowSums[row + r], columnZeros: $0.baseAddress! + column)
                    }
                    (out + (row + r) * columns + column).update(from: line, count: width)
                }
            }
        }
        XCTAssertEqual(result, expected, "rows \(rows) k \(k) columns \(columns) signed \(aSigned)/\(bSigned) threads \(threads)")
    }

    func testGemmMatchesScalarSumsAtAwkwardSizes() {
        var seed: UInt64 = 1
        for (rows, k, columns) in [(1, 1, 1), (3, 2, 5), (4, 7, 17), (5, 33, 33), (7, 9, 300), (9, 64, 257), (13, 27, 95), (2, 0, 6)] {
            for (aSigned, bSigned) in [(true, false), (false, true), (true, true), (false, false)] {
                for threads in [1, 3] {
                    check(rows: rows, k: k, columns: columns, aSigned: aSigned, bSigned: bSigned, threads: threads, seed: seed)
                    seed += 1
                }
            }
        }
    }

    /// Extreme values: every product at +-255 * 255, k long enough to pass 2^24 (where a float
    /// accumulator would lose exactness) but within the documented exact Int32 range.
    func testGemmIsExactAtExtremeValues() {
        let k = 600, columns = 40, rows = 4
        let a = [UInt8](repeating: 0x80, count: rows * k)          // int8 -128, zero point 127: -255
        let b = [UInt8](repeating: 0xFF, count: k * columns)      // uint8 255, zero point 0
        var packed = [Int16](repeating: 0, count: QuantizedGemm.packedRowsCount(rows: rows, k: k))
        var rowSums = [Int32](repeating: 0, count: rows)
        var columnsPacked = [UInt32](repeating: 0, count: QuantizedGemm.packedColumnsCount(k: k, n: columns))
        var scratch = [Int32](repeating: 0, count: QuantizedGemm.scratchCount(threads: 1))
        let zeros = [Int32](repeating: 127, count: rows), columnZeros = [Int32](repeating: 0, count: columns)
        a.withUnsafeBytes { QuantizedGemm.packRows($0.baseAddress!, signed: true, rows: rows, k: k, rowStride: k, zeroPoints: zeros,
                                                   zeroPointStride: 1, into: &packed, rowSums: &rowSums) }
        b.withUnsafeBytes { QuantizedGemm.packColumns($0.baseAddress!, signed: false, k: k, n: columns, rowStride: columns, into: &columnsPacked) }
        var seen: [Int32] = []
        QuantizedGemm.gemm(rows: rows, columns: columns, k: k, packedRows: packed, packedColumns: columnsPacked,
                           scratch: &scratch, parallel: .serial) { _, rowCount, _, width, sums, stride in
            for r in 0..<rowCount {
                columnZeros.withUnsafeBufferPointer { QuantizedGemm.correct(sums + r * stride, count: width, rowSum: rowSums[r], columnZeros: $0.baseAddress!) }
                seen += UnsafeBufferPointer(start: sums + r * stride, count: width)
            }
        }
        XCTAssertEqual(seen, [Int32](repeating: Int32(-255 * 255 * k), count: rows * columns))
    }

    func testRequantizeMatchesScalarRounding() {
        var random = Generator(state: 99)
        let count = 53
        let acc = (0..<count).map { _ in Int32(truncatingIfNeeded: random.next() % 40_001) - 20_000 } + [0, 50, -50, 150, -150]
        for signed in [false, true] {
            for zeroPoint: Int32 in signed ? [-3, 0, 100] : [0, 7, 200] {
                let multipliers = (0..<acc.count).map { _ in Float(random.next() % 1000) / 50_000 + 0.001 }
                for stride in [0, 1] {
                    var y = [UInt8](repeating: 0, count: acc.count)
                    Quantization.requantize(acc, count: acc.count, multipliers: multipliers, multiplierStride: stride, zeroPoint: zeroPoint,
                                            signed: signed, into: &y)
                    let (low, high) = Quantization.range(signed: signed)
                    for i in 0..<acc.count {
                        let scaled = Float(acc[i]) * multipliers[stride * i]
                        let q = min(max(Int32(scaled.rounded(.toNearestOrEven)) + zeroPoint, low), high)
                        XCTAssertEqual(y[i], UInt8(truncatingIfNeeded: q), "i \(i) acc \(acc[i]) signed \(signed) zero point \(zeroPoint) stride \(stride)")
                    }
                }
            }
        }
        // Halves go to even; a NaN multiplier gives the type's lowest value.
        var y = [UInt8](repeating: 9, count: 4)
        Quantization.requantize([1, 3, 5, -1], count: 4, multipliers: [0.5], multiplierStride: 0, zeroPoint: 10, signed: false, into: &y)
        XCTAssertEqual(y, [10, 12, 12, 10])
        Quantization.requantize([1, 3, 5, -1], count: 4, multipliers: [Float.nan], multiplierStride: 0, zeroPoint: 10, signed: true, into: &y)
        XCTAssertEqual(y, [UInt8](repeating: 0x80, count: 4))
    }
}
