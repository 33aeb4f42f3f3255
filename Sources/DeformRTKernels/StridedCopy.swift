/// Walks rows of a strided multi-operand view: for each row (a run of the innermost axis) in a
/// range of rows, calls body(offsets, innerStrides, outOffset, length) with every operand's
/// element offset and innermost stride, and the row's offset in a dense output of `shape`.
/// The odometer and offsets live on the stack and start at any row (one division per axis per
/// call), so callers can split the rows over threads and a walk allocates nothing.
public enum StridedRows {
    /// `stride(operand, axis)`: the element stride of `operand` along `axis` of `shape`.
    @inline(__always)
    public static func walk(
        _ range: Range<Int>, shape: [Int], operands count: Int, stride: (_ operand: Int, _ axis: Int) -> Int,
        _ body: (_ offsets: UnsafeMutablePointer<Int>, _ innerStrides: UnsafeMutablePointer<Int>,
                 _ outOffset: Int, _ length: Int) -> Void
    ) {
        let rank = shape.count
        let inner = shape[rank - 1]
        // Strides as [axis][operand], the multi-index and the offsets in one stack buffer, so the
        // per-row step touches no array (it runs once per row, which can be 4 elements long).
        withUnsafeTemporaryAllocation(of: Int.self, capacity: rank * count + rank + count) { buffer in
            let stepStrides = buffer.baseAddress!
            let index = stepStrides + rank * count
            let offsets = index + rank
            for d in 0..<rank {
                for k in 0..<count { stepStrides[d * count + k] = stride(k, d) }
            }
            // The odometer and offsets at the range's first row.
            offsets.initialize(repeating: 0, count: count)
            index[rank - 1] = 0
            var rest = range.lowerBound
            for d in Swift.stride(from: rank - 2, through: 0, by: -1) {
                index[d] = rest % shape[d]
                rest /= shape[d]
                for k in 0..<count { offsets[k] += index[d] * stepStrides[d * count + k] }
            }
            let innerStrides = stepStrides + (rank - 1) * count
            for row in range {
                body(offsets, innerStrides, row * inner, inner)
                var d = rank - 2
                while d >= 0 {
                    let step = stepStrides + d * count
                    index[d] += 1
                    for k in 0..<count { offsets[k] += step[k] }
                    if index[d] < shape[d] { break }
                    for k in 0..<count { offsets[k] -= step[k] * shape[d] }
                    index[d] = 0
                    d -= 1
                }
            }
        }
    }
}

/// Copies a strided view (any element size) into a dense destination: Transpose, Slice, Expand,
/// Tile and broadcasts. Rows (the innermost axis) are split over the threads of `parallel` when
/// there is enough to copy; nothing is allocated.
public enum StridedCopy {
    public static func copy(elementSize: Int, shape: [Int], sourceStrides: [Int],
                            source: UnsafeRawPointer, destination: UnsafeMutableRawPointer,
                            parallel: Parallel = .serial) {
        let count = shape.reduce(1, *)
        if count == 0 { return }
        if shape.isEmpty {
            destination.copyMemory(from: source, byteCount: elementSize)
            return
        }
        if elementSize == 4, transposesPlanes(shape: shape, sourceStrides: sourceStrides, source: source,
                                              destination: destination, parallel: parallel) { return }
        let rows = count / shape[shape.count - 1]
        parallel.forEachRange(rows, totalWork: count) { _, range in
            StridedRows.walk(range, shape: shape, operands: 1, stride: { _, axis in sourceStrides[axis] }) {
                offsets, innerStrides, outOffset, inner in
                let offset = offsets[0], innerStride = innerStrides[0]
                let out = destination + outOffset * elementSize
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
            }
        }
    }

    /// A view that is, once adjacent axes that are contiguous in the source are merged, a batch
    /// of matrix transposes (out[b, i, j] = source[b-offset + i + j * X]: NHWC <-> NCHW and
    /// the like): copied in 16 x 16 register blocks (ConvLayout.transpose) instead of a strided
    /// gather per row (a channels-last 80 x 128 x 128 map to NCHW: ~3x faster). False: not
    /// that shape, nothing copied.
    static func transposesPlanes(
        shape: [Int], sourceStrides: [Int], source: UnsafeRawPointer, destination: UnsafeMutableRawPointer,
        parallel: Parallel
    ) -> Bool {
        // Merge from the innermost axis outwards; size-1 axes drop out. At most 3 axes are kept
        // (batch, rows, columns): anything else is not this pattern. (Sizes and strides on the
        // stack: a run allocates nothing.)
        withUnsafeTemporaryAllocation(of: Int.self, capacity: 6) { buffer -> Bool in
            let sizes = buffer.baseAddress!, strides = sizes + 3
            var merged = 0
            for d in stride(from: shape.count - 1, through: 0, by: -1) where shape[d] != 1 {
                if merged > 0, sourceStrides[d] == strides[merged - 1] * sizes[merged - 1] {
                    sizes[merged - 1] *= shape[d]
                } else {
                    if merged == 3 { return false }
                    sizes[merged] = shape[d]
                    strides[merged] = sourceStrides[d]
                    merged += 1
                }
            }
            // Axis 0: columns (j, source stride X), axis 1: rows (i, stride 1), axis 2: batch.
            guard merged >= 2, strides[1] == 1, strides[0] > 1 else { return false }
            let columns = sizes[0], x = strides[0], rows = sizes[1]
            guard rows >= 16, columns >= 16 else { return false }
            let batch = merged == 3 ? sizes[2] : 1, batchStride = merged == 3 ? strides[2] : 0
            let src = source.assumingMemoryBound(to: Float.self), dst = destination.assumingMemoryBound(to: Float.self)
            let strips = (rows + 63) / 64
            parallel.forEachRange(batch * strips, totalWork: batch * rows * columns) { _, items in
                for item in items {
                    let b = item / strips, i0 = (item - b * strips) * 64
                    ConvLayout.transpose(src + b * batchStride + i0, srcStride: x,
                                         dst + b * rows * columns + i0 * columns, dstStride: columns,
                                         rows: min(64, rows - i0), columns: columns, rowBias: nil)
                }
            }
            return true
        }
    }
}
