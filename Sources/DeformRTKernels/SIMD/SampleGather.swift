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
