/// Depthwise convolution (one input channel per group, any channel multiplier) straight on NCHW:
/// per output row and tap, a SIMD multiply-add of the shifted input row. The GEMM paths would
/// spend 16 lanes on each single output channel and a whole tile setup on K = kH * kW.
enum DepthwiseConv {
    static func applies(_ g: ConvGeometry) -> Bool {
        g.group > 1 && g.inChannels == g.group && g.outChannels % g.group == 0
    }

    static func run(
        _ g: ConvGeometry, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>, parallel: Parallel
    ) {
        let outPixels = max(g.outHeight, 0) * max(g.outWidth, 0)
        if outPixels == 0 { return }
        let multiplier = g.outChannels / g.group
        let taps = g.kernelHeight * g.kernelWidth
        parallel.forEachRange(g.batch * g.outChannels) { _, planes in
            for plane in planes {
                let n = plane / g.outChannels, m = plane - n * g.outChannels
                let source = input + (n * g.inChannels + m / multiplier) * g.inHeight * g.inWidth
                outputPlane(g, source: source, weight: weight + m * taps, bias: bias?[m] ?? 0,
                            output: output + plane * outPixels)
            }
        }
    }

    private static func outputPlane(
        _ g: ConvGeometry, source: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: Float,
        output: UnsafeMutablePointer<Float>
    ) {
        let sw = g.strideWidth
        for oy in 0..<g.outHeight {
            let out = output + oy * g.outWidth
            out.update(repeating: bias, count: g.outWidth)
            for i in 0..<g.kernelHeight {
                let y = oy * g.strideHeight - g.padTop + i * g.dilationHeight
                if y < 0 || y >= g.inHeight { continue }
                let row = source + y * g.inWidth
                for j in 0..<g.kernelWidth {
                    let w = weight[i * g.kernelWidth + j]
                    let xShift = j * g.dilationWidth - g.padLeft
                    // Output columns whose input column is inside the row: ox in [first, end).
                    let first = xShift >= 0 ? 0 : (-xShift + sw - 1) / sw
                    let end = min(g.outWidth, g.inWidth - 1 - xShift < 0 ? 0 : (g.inWidth - 1 - xShift) / sw + 1)
                    if first >= end { continue }
                    if sw == 1 {
                        multiplyAdd(w, row + first + xShift, into: out + first, count: end - first)
                    } else {
                        for ox in first..<end { out[ox] += w * row[ox * sw + xShift] }
                    }
                }
            }
        }
    }

    /// out[t] += w * x[t] for t < count (a product and a sum: FMA lanes would be calls of fmaf in
    /// a build without FMA in its target).
    @inline(__always)
    private static func multiplyAdd(_ w: Float, _ x: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, count: Int) {
        let s = UnsafeRawPointer(x), d = UnsafeMutableRawPointer(out)
        let w16 = SIMD16<Float>(repeating: w)
        var t = 0
        while t + 16 <= count {
            let o = t * 4
            let sum = d.loadUnaligned(fromByteOffset: o, as: SIMD16<Float>.self)
                + w16 * s.loadUnaligned(fromByteOffset: o, as: SIMD16<Float>.self)
            d.storeBytes(of: sum, toByteOffset: o, as: SIMD16<Float>.self)
            t += 16
        }
        if t + 8 <= count {
            let o = t * 4
            let sum = d.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self)
                + w16.lowHalf * s.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self)
            d.storeBytes(of: sum, toByteOffset: o, as: SIMD8<Float>.self)
            t += 8
        }
        if t + 4 <= count {
            let o = t * 4
            let sum = d.loadUnaligned(fromByteOffset: o, as: SIMD4<Float>.self)
                + w16.lowHalf.lowHalf * s.loadUnaligned(fromByteOffset: o, as: SIMD4<Float>.self)
            d.storeBytes(of: sum, toByteOffset: o, as: SIMD4<Float>.self)
            t += 4
        }
        while t < count {
            out[t] += w * x[t]
            t += 1
        }
    }
}
