/// Weighted sums of four channels-last rows, 16 channels at a time: the gather step of GridSample
/// (bicubic: four calls per pixel), DCNv3 and multi-scale deformable attention, which accumulate
/// every sampling point of a pixel into its output row. Plans come from
/// `DeformableSampling.planVector` (four corner rows q at index[q * stride], weights likewise).
enum SampleGather {
    /// out[c] (+)= sum over q < 4 of weight[q * stride] * rows[index[q * stride] * rowStride + c].
    @inline(__always)
    static func corners(
        rows: UnsafePointer<Float>, rowStride: Int, channels: Int, index: UnsafePointer<Int32>,
        weight: UnsafePointer<Float>, stride: Int, out: UnsafeMutablePointer<Float>, accumulate: Bool
    ) {
        sum(UnsafeRawPointer(rows + Int(index[0]) * rowStride), UnsafeRawPointer(rows + Int(index[stride]) * rowStride),
            UnsafeRawPointer(rows + Int(index[2 * stride]) * rowStride),
            UnsafeRawPointer(rows + Int(index[3 * stride]) * rowStride),
            weight[0], weight[stride], weight[2 * stride], weight[3 * stride], channels: channels, out: out,
            accumulate: accumulate)
    }

    /// `corners` for rows that have no zero row after them: index `zeroRow` reads `zero` (at least
    /// `channels` zeros) instead.
    @inline(__always)
    static func corners(
        rows: UnsafePointer<Float>, rowStride: Int, channels: Int, index: UnsafePointer<Int32>,
        weight: UnsafePointer<Float>, stride: Int, zeroRow: Int32, zero: UnsafePointer<Float>,
        out: UnsafeMutablePointer<Float>, accumulate: Bool
    ) {
        @inline(__always) func row(_ i: Int32) -> UnsafeRawPointer {
            UnsafeRawPointer(i == zeroRow ? zero : rows + Int(i) * rowStride)
        }
        sum(row(index[0]), row(index[stride]), row(index[2 * stride]), row(index[3 * stride]),
            weight[0], weight[stride], weight[2 * stride], weight[3 * stride], channels: channels, out: out,
            accumulate: accumulate)
    }

    /// One sampling point's four corner rows and weights (as `corners` with a zero row reads
    /// them), for kernels that sum a point's channels in registers rather than into memory.
    struct Point {
        let p0, p1, p2, p3: UnsafeRawPointer
        let w0, w1, w2, w3: SIMD16<Float>

        @inline(__always)
        init(rows: UnsafePointer<Float>, rowStride: Int, index: UnsafePointer<Int32>, weight: UnsafePointer<Float>,
             stride: Int, zeroRow: Int32, zero: UnsafePointer<Float>) {
            // Wrapping arithmetic: the plans hold in-range row indices (or zeroRow), so the
            // overflow checks would only cost branches in the hottest loop.
            @inline(__always) func row(_ i: Int32) -> UnsafeRawPointer {
                UnsafeRawPointer(i == zeroRow ? zero : rows + (Int(i) &* rowStride))
            }
            p0 = row(index[0]); p1 = row(index[stride]); p2 = row(index[2 &* stride]); p3 = row(index[3 &* stride])
            w0 = SIMD16(repeating: weight[0]); w1 = SIMD16(repeating: weight[stride])
            w2 = SIMD16(repeating: weight[2 * stride]); w3 = SIMD16(repeating: weight[3 * stride])
        }

        /// The weighted sum of the 16 channels at `byteOffset`, in `sum`'s order of operations.
        @inline(__always)
        func channels16(at byteOffset: Int) -> SIMD16<Float> {
            let top: SIMD16<Float> = w0 * p0.loadUnaligned(fromByteOffset: byteOffset, as: SIMD16<Float>.self)
                + w1 * p1.loadUnaligned(fromByteOffset: byteOffset, as: SIMD16<Float>.self)
            let bottom: SIMD16<Float> = w2 * p2.loadUnaligned(fromByteOffset: byteOffset, as: SIMD16<Float>.self)
                + w3 * p3.loadUnaligned(fromByteOffset: byteOffset, as: SIMD16<Float>.self)
            return top + bottom
        }
    }

    /// Row sums of up to 64 channels (`vectors` x 16) held in registers while the points that
    /// add to the same output row follow each other; `store` writes them once and starts over.
    /// Adding a point to the accumulator gives bit for bit what `corners(accumulate: true)` gives
    /// in memory, without a store and reload per point.
    struct RegisterRow {
        var a0 = SIMD16<Float>(), a1 = SIMD16<Float>(), a2 = SIMD16<Float>(), a3 = SIMD16<Float>()

        /// Whether `channels` fits: a multiple of 16, at most 64.
        @inline(__always)
        static func fits(_ channels: Int) -> Bool { channels > 0 && channels <= 64 && channels % 16 == 0 }

        @inline(__always)
        mutating func add(_ point: Point, vectors: Int) {
            a0 += point.channels16(at: 0)
            if vectors > 1 { a1 += point.channels16(at: 64) }
            if vectors > 2 { a2 += point.channels16(at: 128) }
            if vectors > 3 { a3 += point.channels16(at: 192) }
        }

        @inline(__always)
        mutating func store(to out: UnsafeMutablePointer<Float>, vectors: Int) {
            let o = UnsafeMutableRawPointer(out)
            o.storeBytes(of: a0, as: SIMD16<Float>.self)
            if vectors > 1 { o.storeBytes(of: a1, toByteOffset: 64, as: SIMD16<Float>.self) }
            if vectors > 2 { o.storeBytes(of: a2, toByteOffset: 128, as: SIMD16<Float>.self) }
            if vectors > 3 { o.storeBytes(of: a3, toByteOffset: 192, as: SIMD16<Float>.self) }
            self = RegisterRow()
        }
    }

    @inline(__always)
    static func sum(
        _ p0: UnsafeRawPointer, _ p1: UnsafeRawPointer, _ p2: UnsafeRawPointer, _ p3: UnsafeRawPointer,
        _ w0: Float, _ w1: Float, _ w2: Float, _ w3: Float, channels: Int, out: UnsafeMutablePointer<Float>,
        accumulate: Bool
    ) {
        let o = UnsafeMutableRawPointer(out)
        let a0 = SIMD16<Float>(repeating: w0), a1 = SIMD16<Float>(repeating: w1)
        let a2 = SIMD16<Float>(repeating: w2), a3 = SIMD16<Float>(repeating: w3)
        var c = 0
        // Products and sums rather than FMAs, as in DeformableSampling.gatherPixel.
        while c + 16 <= channels {
            let b = c * 4
            let top: SIMD16<Float> = a0 * p0.loadUnaligned(fromByteOffset: b, as: SIMD16<Float>.self)
                + a1 * p1.loadUnaligned(fromByteOffset: b, as: SIMD16<Float>.self)
            let bottom: SIMD16<Float> = a2 * p2.loadUnaligned(fromByteOffset: b, as: SIMD16<Float>.self)
                + a3 * p3.loadUnaligned(fromByteOffset: b, as: SIMD16<Float>.self)
            var v = top + bottom
            if accumulate { v += o.loadUnaligned(fromByteOffset: b, as: SIMD16<Float>.self) }
            o.storeBytes(of: v, toByteOffset: b, as: SIMD16<Float>.self)
            c += 16
        }
        if c + 8 <= channels {
            let b = c * 4
            let top: SIMD8<Float> = a0.lowHalf * p0.loadUnaligned(fromByteOffset: b, as: SIMD8<Float>.self)
                + a1.lowHalf * p1.loadUnaligned(fromByteOffset: b, as: SIMD8<Float>.self)
            let bottom: SIMD8<Float> = a2.lowHalf * p2.loadUnaligned(fromByteOffset: b, as: SIMD8<Float>.self)
                + a3.lowHalf * p3.loadUnaligned(fromByteOffset: b, as: SIMD8<Float>.self)
            var v = top + bottom
            if accumulate { v += o.loadUnaligned(fromByteOffset: b, as: SIMD8<Float>.self) }
            o.storeBytes(of: v, toByteOffset: b, as: SIMD8<Float>.self)
            c += 8
        }
        if c + 4 <= channels {
            let b = c * 4
            let top: SIMD4<Float> = a0.lowHalf.lowHalf * p0.loadUnaligned(fromByteOffset: b, as: SIMD4<Float>.self)
                + a1.lowHalf.lowHalf * p1.loadUnaligned(fromByteOffset: b, as: SIMD4<Float>.self)
            let bottom: SIMD4<Float> = a2.lowHalf.lowHalf * p2.loadUnaligned(fromByteOffset: b, as: SIMD4<Float>.self)
                + a3.lowHalf.lowHalf * p3.loadUnaligned(fromByteOffset: b, as: SIMD4<Float>.self)
            var v = top + bottom
            if accumulate { v += o.loadUnaligned(fromByteOffset: b, as: SIMD4<Float>.self) }
            o.storeBytes(of: v, toByteOffset: b, as: SIMD4<Float>.self)
            c += 4
        }
        while c < channels {
            let b = c * 4
            let top: Float = w0 * p0.load(fromByteOffset: b, as: Float.self) + w1 * p1.load(fromByteOffset: b, as: Float.self)
            let bottom: Float = w2 * p2.load(fromByteOffset: b, as: Float.self) + w3 * p3.load(fromByteOffset: b, as: Float.self)
            var v = top + bottom
            if accumulate { v += o.load(fromByteOffset: b, as: Float.self) }
            o.storeBytes(of: v, toByteOffset: b, as: Float.self)
            c += 1
        }
    }
}
