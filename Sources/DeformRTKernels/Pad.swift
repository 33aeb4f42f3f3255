/// Pad (constant, edge, reflect) of any rank and element size.
public enum PadKernels {
    /// out[o_0, ..., o_k] = in[index_0[o_0], ..., index_k[o_k]], or `constant` where any index is
    /// -1. `index[d]` holds outShape[d] entries, each -1 or in range for inShape[d]. Along the last
    /// axis, the run where the index steps by one (the copied middle) is moved with one memcpy.
    public static func pad(elementSize: Int, source: UnsafeRawPointer, inShape: [Int],
                           destination: UnsafeMutableRawPointer, outShape: [Int],
                           index: [UnsafePointer<Int>], constant: UnsafeRawPointer, parallel: Parallel) {
        switch elementSize {
        case 1: pad(UInt8.self, source, inShape, destination, outShape, index, constant, parallel)
        case 2: pad(UInt16.self, source, inShape, destination, outShape, index, constant, parallel)
        case 4: pad(UInt32.self, source, inShape, destination, outShape, index, constant, parallel)
        default: pad(UInt64.self, source, inShape, destination, outShape, index, constant, parallel)
        }
    }

    private static func pad<T>(_: T.Type, _ source: UnsafeRawPointer, _ inShape: [Int],
                               _ destination: UnsafeMutableRawPointer, _ outShape: [Int],
                               _ index: [UnsafePointer<Int>], _ constant: UnsafeRawPointer, _ parallel: Parallel) {
        let rank = outShape.count
        let src = source.assumingMemoryBound(to: T.self), dst = destination.assumingMemoryBound(to: T.self)
        let fill = constant.loadUnaligned(as: T.self)
        if rank == 0 {
            dst[0] = src[0]
            return
        }
        if outShape.contains(0) { return }
        let inner = outShape[rank - 1], innerIndex = index[rank - 1]
        // The copied middle of every row: the longest run where the source index steps by one.
        var runStart = 0, runLength = 0
        var i = 0
        while i < inner {
            if innerIndex[i] < 0 { i += 1; continue }
            var j = i + 1
            while j < inner && innerIndex[j] == innerIndex[j - 1] + 1 { j += 1 }
            if j - i > runLength { runStart = i; runLength = j - i }
            i = j
        }
        let rows = outShape.dropLast().reduce(1, *)
        withUnsafeTemporaryAllocation(of: Int.self, capacity: rank) { buffer in
            let inStrides = RowOdometer.strides(inShape, into: buffer)
            parallel.forEachRange(rows) { _, range in
                RowOdometer.walk(shape: outShape, rows: range) { r, odometer in
                    let out = dst + r * inner
                    var offset = 0, inside = true
                    for d in 0..<(rank - 1) {
                        let s = index[d][odometer.position[d]]
                        if s < 0 { inside = false; break }
                        offset += s * inStrides[d]
                    }
                    if inside {
                        let row = src + offset
                        for o in 0..<runStart { let s = innerIndex[o]; out[o] = s < 0 ? fill : row[s] }
                        if runLength > 0 { (out + runStart).update(from: row + innerIndex[runStart], count: runLength) }
                        for o in (runStart + runLength)..<inner { let s = innerIndex[o]; out[o] = s < 0 ? fill : row[s] }
                    } else {
                        out.update(repeating: fill, count: inner)
                    }
                }
            }
        }
    }
}

/// The multi-index over the outer axes (all but the last) of the rows of `shape`, started at any
/// row and advanced one row at a time like an odometer, so a row walk never divides per row. Its
/// digits live on the stack (`walk`): a run allocates nothing.
struct RowOdometer {
    private let shape: [Int]
    let position: UnsafeMutablePointer<Int>

    private init(shape: [Int], row: Int, digits: UnsafeMutablePointer<Int>) {
        self.shape = shape
        position = digits
        position.initialize(repeating: 0, count: shape.count)
        var rest = row
        for d in stride(from: shape.count - 2, through: 0, by: -1) {
            position[d] = rest % shape[d]
            rest /= shape[d]
        }
    }

    /// Calls body(row, odometer) for every row of `rows`, the odometer at that row.
    @inline(__always)
    static func walk(shape: [Int], rows: Range<Int>, _ body: (Int, RowOdometer) -> Void) {
        withUnsafeTemporaryAllocation(of: Int.self, capacity: max(shape.count, 1)) { digits in
            var odometer = RowOdometer(shape: shape, row: rows.lowerBound, digits: digits.baseAddress!)
            for row in rows {
                body(row, odometer)
                odometer.advance()
            }
        }
    }

    /// Row-major element strides of `shape`, written into `buffer` (shape.count entries).
    static func strides(_ shape: [Int], into buffer: UnsafeMutableBufferPointer<Int>) -> UnsafeMutablePointer<Int> {
        let strides = buffer.baseAddress!
        var running = 1
        for d in stride(from: shape.count - 1, through: 0, by: -1) {
            strides[d] = running
            running *= shape[d]
        }
        return strides
    }

    private mutating func advance() {
        var d = shape.count - 2
        while d >= 0 {
            position[d] += 1
            if position[d] < shape[d] { return }
            position[d] = 0
            d -= 1
        }
    }
}
