/// Filling the A panel (one row per output pixel, k = tap * cin + c contiguous) from channels-last
/// input rows, for deformable and plain convolution.
///
/// Deformable: a sampling plan per (offset group, tap, pixel) -- four corner rows and four
/// weights with the mask folded in -- is computed once, vectorised across 16 pixels, and reused
/// for every channel of the offset group, which is gathered 16 channels at a time.
/// Corners that must read 0 point at an all-zero row (`zeroRow`) with weight 0, so no lane ever
/// reads outside the input and no input value is multiplied by 0 (Inf * 0 would be NaN).
enum DeformableSampling {
    /// Per-tile sample origins, for pixels p0 ..< p0 + count (padded to 16 with copies of the last):
    /// baseY[r] = oy * strideH - padTop, baseX[r] = ox * strideW - padLeft.
    static func fillOrigins(
        _ g: ConvGeometry, p0: Int, count: Int, baseY: UnsafeMutablePointer<Float>, baseX: UnsafeMutablePointer<Float>
    ) {
        var oy = p0 / g.outWidth
        var ox = p0 - oy * g.outWidth
        let padded = (count + 15) & ~15
        for r in 0..<padded {
            baseY[r] = Float(oy * g.strideHeight - g.padTop)
            baseX[r] = Float(ox * g.strideWidth - g.padLeft)
            if r + 1 < count {
                ox += 1
                if ox == g.outWidth { ox = 0; oy += 1 }
            }
        }
    }

    /// Sampling plan of one (offset group, tap) for `count` pixels: corner rows in `index[q * stride + r]`
    /// (q = 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right) and weights in `weight[q * stride + r]`.
    /// `dy`, `dx`, `mask` point at this tap's offset / mask plane for the tile's first pixel.
    static func plan(
        border: DeformableBorder, height: Int, width: Int, tapY: Float, tapX: Float,
        dy: UnsafePointer<Float>, dx: UnsafePointer<Float>, mask: UnsafePointer<Float>?, count: Int,
        baseY: UnsafePointer<Float>, baseX: UnsafePointer<Float>, zeroRow: Int32,
        index: UnsafeMutablePointer<Int32>, weight: UnsafeMutablePointer<Float>, stride: Int
    ) {
        var r = 0
        while r < count {
            let n = min(16, count - r)
            var vdy = SIMD16<Float>(), vdx = SIMD16<Float>(), vm = SIMD16<Float>(repeating: 1)
            if n == 16 {
                vdy = UnsafeRawPointer(dy + r).loadUnaligned(as: SIMD16<Float>.self)
                vdx = UnsafeRawPointer(dx + r).loadUnaligned(as: SIMD16<Float>.self)
                if let mask { vm = UnsafeRawPointer(mask + r).loadUnaligned(as: SIMD16<Float>.self) }
            } else {
                // The tile's last pixels: never read past the offset / mask planes.
                for l in 0..<n {
                    vdy[l] = dy[r + l]
                    vdx[l] = dx[r + l]
                    if let mask { vm[l] = mask[r + l] }
                }
            }
            let y = UnsafeRawPointer(baseY + r).loadUnaligned(as: SIMD16<Float>.self) + tapY + vdy
            let x = UnsafeRawPointer(baseX + r).loadUnaligned(as: SIMD16<Float>.self) + tapX + vdx
            planVector(border: border, height: height, width: width, y: y, x: x, mask: vm, zeroRow: zeroRow,
                       index: index + r, weight: weight + r, stride: stride)
            r += 16
        }
    }

    /// The plan for 16 sample positions. Every comparison is false for NaN, so non-finite positions
    /// land in `outside`; positions are clamped into range before any conversion to integer.
    @inline(__always)
    static func planVector(
        border: DeformableBorder, height: Int, width: Int, y: SIMD16<Float>, x: SIMD16<Float>,
        mask: SIMD16<Float>, zeroRow: Int32, index: UnsafeMutablePointer<Int32>,
        weight: UnsafeMutablePointer<Float>, stride: Int
    ) {
        let h = Float(height), w = Float(width)
        let zero = SIMD16<Float>(), one = SIMD16<Float>(repeating: 1)
        let zeroIndex = SIMD16<Int32>(repeating: zeroRow)
        let rowLength = SIMD16<Int32>(repeating: Int32(truncatingIfNeeded: width))
        var i00: SIMD16<Int32>, i01: SIMD16<Int32>, i10: SIMD16<Int32>, i11: SIMD16<Int32>
        var w00: SIMD16<Float>, w01: SIMD16<Float>, w10: SIMD16<Float>, w11: SIMD16<Float>
        switch border {
        case .zeroOutsideCorners:
            let inside = (y .> -1) .& (y .< h) .& (x .> -1) .& (x .< w)
            let ys = y.replacing(with: 0, where: .!inside)
            let xs = x.replacing(with: 0, where: .!inside)
            let y0 = ys.rounded(.down), x0 = xs.rounded(.down)
            let ly = ys - y0, lx = xs - x0
            let hy = one - ly, hx = one - lx
            let top = inside .& (y0 .>= 0), bottom = inside .& (y0 .< h - 1)
            let left = x0 .>= 0, right = x0 .< w - 1
            let i = integer(y0) &* rowLength &+ integer(x0)
            i00 = i.replacing(with: zeroIndex, where: .!(top .& left))
            i01 = (i &+ 1).replacing(with: zeroIndex, where: .!(top .& right))
            i10 = (i &+ rowLength).replacing(with: zeroIndex, where: .!(bottom .& left))
            i11 = (i &+ rowLength &+ 1).replacing(with: zeroIndex, where: .!(bottom .& right))
            w00 = (hy * hx).replacing(with: zero, where: .!(top .& left))
            w01 = (hy * lx).replacing(with: zero, where: .!(top .& right))
            w10 = (ly * hx).replacing(with: zero, where: .!(bottom .& left))
            w11 = (ly * lx).replacing(with: zero, where: .!(bottom .& right))
        case .openVINONoPad:
            let inside = (y .>= 0) .& (y .< h) .& (x .>= 0) .& (x .< w)
            let ys = y.replacing(with: 0, where: .!inside)
            let xs = x.replacing(with: 0, where: .!inside)
            let y0 = ys.rounded(.down), x0 = xs.rounded(.down)
            let y1 = ys.rounded(.up), x1 = xs.rounded(.up)
            let y1c = y1.replacing(with: h - 1, where: y1 .> h - 1), x1c = x1.replacing(with: w - 1, where: x1 .> w - 1)
            let ly = ys - y0, lx = xs - x0
            let hy = one - ly, hx = one - lx
            let r0 = integer(y0) &* rowLength, r1 = integer(y1c) &* rowLength
            let c0 = integer(x0), c1 = integer(x1c)
            i00 = (r0 &+ c0).replacing(with: zeroIndex, where: .!inside)
            i01 = (r0 &+ c1).replacing(with: zeroIndex, where: .!inside)
            i10 = (r1 &+ c0).replacing(with: zeroIndex, where: .!inside)
            i11 = (r1 &+ c1).replacing(with: zeroIndex, where: .!inside)
            w00 = (hy * hx).replacing(with: zero, where: .!inside)
            w01 = (hy * lx).replacing(with: zero, where: .!inside)
            w10 = (ly * hx).replacing(with: zero, where: .!inside)
            w11 = (ly * lx).replacing(with: zero, where: .!inside)
        }
        // Memory safety does not rest on the arithmetic above: every index is clamped into the rows.
        @inline(__always) func clamp(_ i: SIMD16<Int32>) -> SIMD16<Int32> {
            let low = i.replacing(with: 0, where: i .< 0)
            return low.replacing(with: zeroIndex, where: low .> zeroIndex)
        }
        i00 = clamp(i00)
        i01 = clamp(i01)
        i10 = clamp(i10)
        i11 = clamp(i11)
        // The mask multiplies the sample after the border rule, as in the reference (value * mask).
        let ip = UnsafeMutableRawPointer(index), wp = UnsafeMutableRawPointer(weight)
        let sb = stride * 4
        ip.storeBytes(of: i00, as: SIMD16<Int32>.self)
        ip.storeBytes(of: i01, toByteOffset: sb, as: SIMD16<Int32>.self)
        ip.storeBytes(of: i10, toByteOffset: 2 * sb, as: SIMD16<Int32>.self)
        ip.storeBytes(of: i11, toByteOffset: 3 * sb, as: SIMD16<Int32>.self)
        wp.storeBytes(of: w00 * mask, as: SIMD16<Float>.self)
        wp.storeBytes(of: w01 * mask, toByteOffset: sb, as: SIMD16<Float>.self)
        wp.storeBytes(of: w10 * mask, toByteOffset: 2 * sb, as: SIMD16<Float>.self)
        wp.storeBytes(of: w11 * mask, toByteOffset: 3 * sb, as: SIMD16<Float>.self)
    }

    /// Whole floats in [-1, 2^22) to Int32, exactly: v + 1 + 2^23 has the integer v + 1 in its low
    /// mantissa bits. (The stdlib's SIMD float-to-integer conversion goes lane by lane through a
    /// generic path, ~50x slower.) Callers keep |v| small by clamping positions to the input first.
    @inline(__always)
    static func integer(_ v: SIMD16<Float>) -> SIMD16<Int32> {
        let biased = v + SIMD16<Float>(repeating: 8_388_609)  // 2^23 + 1
        return unsafeBitCast(biased, to: SIMD16<Int32>.self) &- SIMD16<Int32>(repeating: 0x4B00_0001)
    }

    /// panel[r * panelStride + c] = sum over corners q of weight[q][r] * rows[index[q][r] * rowStride + c]
    /// for c < channels, r < count. `rows` points at the first channel to gather.
    static func gather(
        rows: UnsafePointer<Float>, rowStride: Int, channels: Int, count: Int,
        index: UnsafePointer<Int32>, weight: UnsafePointer<Float>, stride: Int,
        panel: UnsafeMutablePointer<Float>, panelStride: Int
    ) {
        for r in 0..<count {
            let p0 = UnsafeRawPointer(rows + Int(index[r]) * rowStride)
            let p1 = UnsafeRawPointer(rows + Int(index[stride + r]) * rowStride)
            let p2 = UnsafeRawPointer(rows + Int(index[2 * stride + r]) * rowStride)
            let p3 = UnsafeRawPointer(rows + Int(index[3 * stride + r]) * rowStride)
            let w0 = weight[r], w1 = weight[stride + r], w2 = weight[2 * stride + r], w3 = weight[3 * stride + r]
            let out = UnsafeMutableRawPointer(panel + r * panelStride)
            var c = 0
            let a0 = SIMD16<Float>(repeating: w0), a1 = SIMD16<Float>(repeating: w1)
            let a2 = SIMD16<Float>(repeating: w2), a3 = SIMD16<Float>(repeating: w3)
            while c + 16 <= channels {
                let o = c * 4
                var v = a0 * p0.loadUnaligned(fromByteOffset: o, as: SIMD16<Float>.self)
                v = v.addingProduct(a1, p1.loadUnaligned(fromByteOffset: o, as: SIMD16<Float>.self))
                v = v.addingProduct(a2, p2.loadUnaligned(fromByteOffset: o, as: SIMD16<Float>.self))
                v = v.addingProduct(a3, p3.loadUnaligned(fromByteOffset: o, as: SIMD16<Float>.self))
                out.storeBytes(of: v, toByteOffset: o, as: SIMD16<Float>.self)
                c += 16
            }
            if c + 8 <= channels {
                let o = c * 4
                var v = a0.lowHalf * p0.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self)
                v = v.addingProduct(a1.lowHalf, p1.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self))
                v = v.addingProduct(a2.lowHalf, p2.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self))
                v = v.addingProduct(a3.lowHalf, p3.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self))
                out.storeBytes(of: v, toByteOffset: o, as: SIMD8<Float>.self)
                c += 8
            }
            if c + 4 <= channels {
                let o = c * 4
                var v = a0.lowHalf.lowHalf * p0.loadUnaligned(fromByteOffset: o, as: SIMD4<Float>.self)
                v = v.addingProduct(a1.lowHalf.lowHalf, p1.loadUnaligned(fromByteOffset: o, as: SIMD4<Float>.self))
                v = v.addingProduct(a2.lowHalf.lowHalf, p2.loadUnaligned(fromByteOffset: o, as: SIMD4<Float>.self))
                v = v.addingProduct(a3.lowHalf.lowHalf, p3.loadUnaligned(fromByteOffset: o, as: SIMD4<Float>.self))
                out.storeBytes(of: v, toByteOffset: o, as: SIMD4<Float>.self)
                c += 4
            }
            while c < channels {
                let o = c * 4
                var v = w0 * p0.load(fromByteOffset: o, as: Float.self)
                v = v.addingProduct(w1, p1.load(fromByteOffset: o, as: Float.self))
                v = v.addingProduct(w2, p2.load(fromByteOffset: o, as: Float.self))
                v = v.addingProduct(w3, p3.load(fromByteOffset: o, as: Float.self))
                out.storeBytes(of: v, toByteOffset: o, as: Float.self)
                c += 1
            }
        }
    }

    /// Plain-convolution panel rows for tap (i, j): panel[r * panelStride + c] = the input row under
    /// pixel p0 + r at that tap (or the zero row in the padding), channels c < channels.
    static func im2col(
        _ g: ConvGeometry, i: Int, j: Int, p0: Int, count: Int, rows: UnsafePointer<Float>, rowStride: Int,
        zeroRow: UnsafePointer<Float>, channels: Int, panel: UnsafeMutablePointer<Float>, panelStride: Int
    ) {
        var oy = p0 / g.outWidth
        var ox = p0 - oy * g.outWidth
        let dyTap = i * g.dilationHeight - g.padTop
        let dxTap = j * g.dilationWidth - g.padLeft
        for r in 0..<count {
            let y = oy * g.strideHeight + dyTap
            let x = ox * g.strideWidth + dxTap
            let src = y >= 0 && y < g.inHeight && x >= 0 && x < g.inWidth
                ? rows + (y * g.inWidth + x) * rowStride : zeroRow
            copy(src, to: panel + r * panelStride, count: channels)
            ox += 1
            if ox == g.outWidth { ox = 0; oy += 1 }
        }
    }

    @inline(__always)
    static func copy(_ src: UnsafePointer<Float>, to dst: UnsafeMutablePointer<Float>, count: Int) {
        let s = UnsafeRawPointer(src), d = UnsafeMutableRawPointer(dst)
        var c = 0
        while c + 16 <= count {
            d.storeBytes(of: s.loadUnaligned(fromByteOffset: c * 4, as: SIMD16<Float>.self), toByteOffset: c * 4,
                         as: SIMD16<Float>.self)
            c += 16
        }
        if c + 8 <= count {
            d.storeBytes(of: s.loadUnaligned(fromByteOffset: c * 4, as: SIMD8<Float>.self), toByteOffset: c * 4,
                         as: SIMD8<Float>.self)
            c += 8
        }
        if c + 4 <= count {
            d.storeBytes(of: s.loadUnaligned(fromByteOffset: c * 4, as: SIMD4<Float>.self), toByteOffset: c * 4,
                         as: SIMD4<Float>.self)
            c += 4
        }
        while c < count {
            dst[c] = src[c]
            c += 1
        }
    }
}
