/// Where the output positions of one axis read from when resizing linearly:
/// out[o] = in[lower[o]] * lowerWeight[o] + in[upper[o]] * upperWeight[o]. Indices are in range.
public struct LinearAxisTaps {
    public let lower: UnsafePointer<Int>
    public let upper: UnsafePointer<Int>
    public let lowerWeight: UnsafePointer<Float>
    public let upperWeight: UnsafePointer<Float>

    public init(lower: UnsafePointer<Int>, upper: UnsafePointer<Int>, lowerWeight: UnsafePointer<Float>, upperWeight: UnsafePointer<Float>) {
        self.lower = lower
        self.upper = upper
        self.lowerWeight = lowerWeight
        self.upperWeight = upperWeight
    }
}

/// Resize: nearest (any element size, any rank) and bilinear (float planes).
public enum ResizeKernels {
    /// Floats of scratch each worker of `linear` needs.
    public static func linearScratchCount(outWidth: Int) -> Int { 2 * outWidth }

    /// Bilinear resize of `planes` row-major planes (inHeight x inWidth -> outHeight x outWidth).
    /// Each output row blends two horizontally interpolated source rows, kept in the worker's
    /// scratch (`linearScratchCount` floats per thread) and reused by the next output row when it
    /// reads the same source rows, as upsampling does.
    public static func linear(source: UnsafePointer<Float>, planes: Int, inHeight: Int, inWidth: Int,
                              destination: UnsafeMutablePointer<Float>, outHeight: Int, outWidth: Int,
                              rows: LinearAxisTaps, columns: LinearAxisTaps,
                              scratch: UnsafeMutablePointer<Float>, parallel: Parallel) {
        if outWidth == 0 || outHeight == 0 || planes == 0 { return }
        parallel.forEachRange(planes * outHeight) { worker, range in
            var rowA = scratch + worker * linearScratchCount(outWidth: outWidth)
            var rowB = rowA + outWidth
            // Source row (plane * inHeight + y) held in rowA / rowB, -1 for none.
            var heldA = -1, heldB = -1
            for r in range {
                let plane = r / outHeight, oy = r - plane * outHeight
                let wantA = plane * inHeight + rows.lower[oy], wantB = plane * inHeight + rows.upper[oy]
                if heldA != wantA {
                    if heldB == wantA {
                        swap(&rowA, &rowB)
                        swap(&heldA, &heldB)
                    } else {
                        interpolateRow(source + wantA * inWidth, columns, rowA, outWidth)
                        heldA = wantA
                    }
                }
                if heldB != wantB {
                    interpolateRow(source + wantB * inWidth, columns, rowB, outWidth)
                    heldB = wantB
                }
                blend(rowA, rows.lowerWeight[oy], rowB, rows.upperWeight[oy], destination + r * outWidth, outWidth)
            }
        }
    }

    /// Bilinear resize of channels-last images [batch, inHeight, inWidth, C] -> [batch, outHeight,
    /// outWidth, C]: per output pixel the two source rows' horizontal blends (`scratch`: 2 C floats
    /// per thread), then their vertical blend, 16 channels at a time. The same products and sums
    /// per element as `linear`, so the two layouts give identical results.
    public static func linearChannelsLast(
        source: UnsafePointer<Float>, batch: Int, inHeight: Int, inWidth: Int, channels c: Int,
        destination: UnsafeMutablePointer<Float>, outHeight: Int, outWidth: Int,
        rows: LinearAxisTaps, columns: LinearAxisTaps, scratch: UnsafeMutablePointer<Float>, parallel: Parallel
    ) {
        if outWidth == 0 || outHeight == 0 || batch == 0 || c == 0 { return }
        parallel.forEachRange(batch * outHeight, totalWork: batch * outHeight * outWidth * c * 3) { worker, range in
            let rowA = scratch + worker * 2 * c, rowB = rowA + c
            for r in range {
                let n = r / outHeight, oy = r - n * outHeight
                let image = source + n * inHeight * inWidth * c
                let a = image + rows.lower[oy] * inWidth * c, b = image + rows.upper[oy] * inWidth * c
                let wa = rows.lowerWeight[oy], wb = rows.upperWeight[oy]
                var out = destination + r * outWidth * c
                for ox in 0..<outWidth {
                    let left = columns.lower[ox] * c, right = columns.upper[ox] * c
                    let wl = columns.lowerWeight[ox], wr = columns.upperWeight[ox]
                    blend(a + left, wl, a + right, wr, rowA, c)
                    blend(b + left, wl, b + right, wr, rowB, c)
                    blend(rowA, wa, rowB, wb, out, c)
                    out += c
                }
            }
        }
    }

    @inline(__always)
    static func interpolateRow(_ row: UnsafePointer<Float>, _ taps: LinearAxisTaps, _ out: UnsafeMutablePointer<Float>, _ count: Int) {
        for o in 0..<count {
            out[o] = row[taps.lower[o]] * taps.lowerWeight[o] + row[taps.upper[o]] * taps.upperWeight[o]
        }
    }

    @inline(__always)
    static func blend(_ a: UnsafePointer<Float>, _ wa: Float, _ b: UnsafePointer<Float>, _ wb: Float,
                      _ out: UnsafeMutablePointer<Float>, _ count: Int) {
        let va = SIMD16<Float>(repeating: wa), vb = SIMD16<Float>(repeating: wb)
        var i = 0
        while i + 16 <= count {
            ElementwiseKernels.store16(ElementwiseKernels.load16(a + i) * va + ElementwiseKernels.load16(b + i) * vb, out + i)
            i += 16
        }
        while i < count {
            out[i] = a[i] * wa + b[i] * wb
            i += 1
        }
    }

    /// Nearest resize of any rank: out[o_0, ..., o_k] = in[index_0[o_0], ..., index_k[o_k]], with
    /// `index[d]` holding outShape[d] in-range source indices. An output row whose source row is
    /// the previous row's is copied from that row.
    public static func nearest(elementSize: Int, source: UnsafeRawPointer, inShape: [Int],
                               destination: UnsafeMutableRawPointer, outShape: [Int],
                               index: [UnsafePointer<Int>], parallel: Parallel) {
        switch elementSize {
        case 1: nearest(UInt8.self, source, inShape, destination, outShape, index, parallel)
        case 2: nearest(UInt16.self, source, inShape, destination, outShape, index, parallel)
        case 4: nearest(UInt32.self, source, inShape, destination, outShape, index, parallel)
        default: nearest(UInt64.self, source, inShape, destination, outShape, index, parallel)
        }
    }

    private static func nearest<T>(_: T.Type, _ source: UnsafeRawPointer, _ inShape: [Int],
                                   _ destination: UnsafeMutableRawPointer, _ outShape: [Int],
                                   _ index: [UnsafePointer<Int>], _ parallel: Parallel) {
        let rank = outShape.count
        if outShape.contains(0) || rank == 0 { return }
        let src = source.assumingMemoryBound(to: T.self), dst = destination.assumingMemoryBound(to: T.self)
        let inner = outShape[rank - 1], innerIndex = index[rank - 1]
        let rows = outShape.dropLast().reduce(1, *)
        withUnsafeTemporaryAllocation(of: Int.self, capacity: rank) { buffer in
            let inStrides = RowOdometer.strides(inShape, into: buffer)
            parallel.forEachRange(rows) { _, range in
                var previousOffset = -1
                RowOdometer.walk(shape: outShape, rows: range) { r, odometer in
                    var offset = 0
                    for d in 0..<(rank - 1) { offset += index[d][odometer.position[d]] * inStrides[d] }
                    let out = dst + r * inner
                    if offset == previousOffset {
                        out.update(from: out - inner, count: inner)
                    } else {
                        let row = src + offset
                        for i in 0..<inner { out[i] = row[innerIndex[i]] }
                        previousOffset = offset
                    }
                }
            }
        }
    }
}
