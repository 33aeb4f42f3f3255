/// Copies a strided view (any element size) into a dense destination: Transpose, Slice, Expand,
/// Tile and broadcasts. Rows (the innermost axis) are split over the threads of `parallel` when
/// there is enough to copy; nothing is allocated (the odometer lives on the stack).
public enum StridedCopy {
    public static func copy(elementSize: Int, shape: [Int], sourceStrides: [Int],
                            source: UnsafeRawPointer, destination: UnsafeMutableRawPointer,
                            parallel: Parallel = .serial) {
        let count = shape.reduce(1, *)
        if count == 0 { return }
        let rank = shape.count
        if rank == 0 {
            destination.copyMemory(from: source, byteCount: elementSize)
            return
        }
        let inner = shape[rank - 1]
        let rows = count / inner
        parallel.forEachRange(rows, totalWork: count) { _, range in
            copyRows(range, elementSize: elementSize, shape: shape, sourceStrides: sourceStrides, source: source,
                     destination: destination + range.lowerBound * inner * elementSize)
        }
    }

    /// Rows `rows` of the view (row r = the elements whose outer index is r, in row-major order).
    private static func copyRows(_ rows: Range<Int>, elementSize: Int, shape: [Int], sourceStrides: [Int],
                                 source: UnsafeRawPointer, destination: UnsafeMutableRawPointer) {
        let rank = shape.count
        let inner = shape[rank - 1], innerStride = sourceStrides[rank - 1]
        withUnsafeTemporaryAllocation(of: Int.self, capacity: rank) { index in
            // The odometer at the first row, and its source offset.
            var rest = rows.lowerBound, offset = 0
            index[rank - 1] = 0
            for d in stride(from: rank - 2, through: 0, by: -1) {
                index[d] = rest % shape[d]
                rest /= shape[d]
                offset += index[d] * sourceStrides[d]
            }
            var out = destination
            for _ in rows {
                if innerStride == 1 {
                    out.copyMemory(from: source + offset * elementSize, byteCount: inner * elementSize)
                } else if elementSize == 4 {
                    let s = (source + offset * 4).assumingMemoryBound(to: UInt32.self)
                    let d = out.assumingMemoryBound(to: UInt32.self)
                    for i in 0..<inner { d[i] = s[i * innerStride] }
                } else {
                    for i in 0..<inner {
                        (out + i * elementSize).copyMemory(from: source + (offset + i * innerStride) * elementSize,
                                                           byteCount: elementSize)
                    }
                }
                out += inner * elementSize
                var d = rank - 2
                while d >= 0 {
                    index[d] += 1
                    offset += sourceStrides[d]
                    if index[d] < shape[d] { break }
                    offset -= sourceStrides[d] * shape[d]
                    index[d] = 0
                    d -= 1
                }
            }
        }
    }
}
