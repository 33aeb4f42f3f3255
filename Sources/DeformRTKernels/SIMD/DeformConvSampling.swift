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
    /// `dy`, `dx`, `mask` point at this tap's offset / mask plane for the tile's first pixel; `tail`
    /// (48 floats) takes the last partial vector so that nothing past `count` is read.
    static func plan(
        border: DeformableBorder, height: Int, width: Int, tapY: Float, tapX: Float,
        dy: UnsafePointer<Float>, dx: UnsafePointer<Float>, mask: UnsafePointer<Float>?, count: Int,
        baseY: UnsafePointer<Float>, baseX: UnsafePointer<Float>, zeroRow: Int32,
        index: UnsafeMutablePointer<Int32>, weight: UnsafeMutablePointer<Float>, stride: Int,
        tail: UnsafeMutablePointer<Float>
    ) {
        var r = 0
        while r < count {
            var pdy = dy + r, pdx = dx + r, pm = mask.map { $0 + r }
            let n = count - r
            if n < 16 {
                tail.update(repeating: 0, count: 32)
                (tail + 32).update(repeating: 1, count: 16)
                tail.update(from: pdy, count: n)
                (tail + 16).update(from: pdx, count: n)
                if let m = pm { (tail + 32).update(from: m, count: n) }
                pdy = UnsafePointer(tail)
                pdx = UnsafePointer(tail + 16)
                pm = pm == nil ? nil : UnsafePointer(tail + 32)
            }
            let vdy = UnsafeRawPointer(pdy).loadUnaligned(as: SIMD16<Float>.self)
            let vdx = UnsafeRawPointer(pdx).loadUnaligned(as: SIMD16<Float>.self)
            let vm = pm.map { UnsafeRawPointer($0).loadUnaligned(as: SIMD16<Float>.self) } ?? SIMD16<Float>(repeating: 1)
            let y = UnsafeRawPointer(baseY + r).loadUnaligned(as: SIMD16<Float>.self) + tapY + vdy
            let x = UnsafeRawPointer(baseX + r).loadUnaligned(as: SIMD16<Float>.self) + tapX + vdx
            planVector(border: border, height: height, width: width, y: y, x: x, mask: vm, zeroRow: zeroRow,
                       index: index + r, weight: weight + r, stride: stride)
            r += 16
        }
    }

    /// The plan for 16 sample positions. Every comparison is false for NaN, so non-finite positions
    /// land outside; positions are clamped into range before any conversion to integer. Lane masks
    /// are kept as Int32 bit patterns (all ones / zero) and combined with & : SIMDMask's own
    /// operators and SIMD's replacing(with:where:) are lane loops that LLVM only partly
    /// re-vectorises in a function this size.
    @inline(__always)
    static func planVector(
        border: DeformableBorder, height: Int, width: Int, y: SIMD16<Float>, x: SIMD16<Float>,
        mask: SIMD16<Float>, zeroRow: Int32, index: UnsafeMutablePointer<Int32>,
        weight: UnsafeMutablePointer<Float>, stride: Int
    ) {
        // Comparisons are vector against vector: the (vector, scalar) overloads are generic lane loops.
        let h = SIMD16<Float>(repeating: Float(height)), w = SIMD16<Float>(repeating: Float(width))
        let lastRow = h - 1, lastColumn = w - 1
        let zero = SIMD16<Float>(), one = SIMD16<Float>(repeating: 1), minusOne = SIMD16<Float>(repeating: -1)
        let zeroIndex = SIMD16<Int32>(repeating: zeroRow)
        let rowLength = SIMD16<Int32>(repeating: Int32(truncatingIfNeeded: width))
        var i00: SIMD16<Int32>, i01: SIMD16<Int32>, i10: SIMD16<Int32>, i11: SIMD16<Int32>
        var w00: SIMD16<Float>, w01: SIMD16<Float>, w10: SIMD16<Float>, w11: SIMD16<Float>
        switch border {
        case .zeroOutsideCorners:
            let inside = lanes(y .> minusOne) & lanes(y .< h) & lanes(x .> minusOne) & lanes(x .< w)
            let ys = select(inside, y, zero), xs = select(inside, x, zero)
            let y0 = floor(ys), x0 = floor(xs)
            let ly = ys - y0, lx = xs - x0
            let hy = one - ly, hx = one - lx
            let top = inside & lanes(y0 .>= zero), bottom = inside & lanes(y0 .< lastRow)
            let left = lanes(x0 .>= zero), right = lanes(x0 .< lastColumn)
            let i = integer(y0) &* rowLength &+ integer(x0)
            i00 = select(top & left, i, zeroIndex)
            i01 = select(top & right, i &+ 1, zeroIndex)
            i10 = select(bottom & left, i &+ rowLength, zeroIndex)
            i11 = select(bottom & right, i &+ rowLength &+ 1, zeroIndex)
            w00 = select(top & left, hy * hx, zero)
            w01 = select(top & right, hy * lx, zero)
            w10 = select(bottom & left, ly * hx, zero)
            w11 = select(bottom & right, ly * lx, zero)
        case .openVINONoPad:
            let inside = lanes(y .>= zero) & lanes(y .< h) & lanes(x .>= zero) & lanes(x .< w)
            let ys = select(inside, y, zero), xs = select(inside, x, zero)
            let y0 = floor(ys), x0 = floor(xs)
            // min(ceil(v), size - 1): v's floor, plus one when v has a fraction and that row exists.
            let y1 = y0 + select(lanes(y0 .< ys) & lanes(y0 .< lastRow), one, zero)
            let x1 = x0 + select(lanes(x0 .< xs) & lanes(x0 .< lastColumn), one, zero)
            let ly = ys - y0, lx = xs - x0
            let hy = one - ly, hx = one - lx
            let r0 = integer(y0) &* rowLength, r1 = integer(y1) &* rowLength
            let c0 = integer(x0), c1 = integer(x1)
            i00 = select(inside, r0 &+ c0, zeroIndex)
            i01 = select(inside, r0 &+ c1, zeroIndex)
            i10 = select(inside, r1 &+ c0, zeroIndex)
            i11 = select(inside, r1 &+ c1, zeroIndex)
            w00 = select(inside, hy * hx, zero)
            w01 = select(inside, hy * lx, zero)
            w10 = select(inside, ly * hx, zero)
            w11 = select(inside, ly * lx, zero)
        }
        // Memory safety does not rest on the arithmetic above: every index is clamped into the rows.
        @inline(__always) func clamp(_ i: SIMD16<Int32>) -> SIMD16<Int32> {
            let low = select(lanes(i .< SIMD16<Int32>()), SIMD16<Int32>(), i)
            return select(lanes(low .> zeroIndex), zeroIndex, low)
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

    /// A lane mask as Int32 lanes, all ones where true.
    @inline(__always)
    static func lanes(_ m: SIMDMask<SIMD16<Int32>>) -> SIMD16<Int32> {
        unsafeBitCast(m, to: SIMD16<Int32>.self)
    }

    /// floor(v) for |v| < 2^22, by adding and removing 1.5 * 2^23 (the sum lies in [2^23, 2^24),
    /// where floats are the integers, so this rounds to nearest) and stepping down where that
    /// rounded up; the stdlib's rounded(.down) is a lane loop too.
    @inline(__always)
    static func floor(_ v: SIMD16<Float>) -> SIMD16<Float> {
        let magic = SIMD16<Float>(repeating: 12_582_912)
        let nearest = (v + magic) - magic
        return nearest - select(lanes(nearest .> v), SIMD16<Float>(repeating: 1), SIMD16<Float>())
    }

    /// m ? a : b lane by lane, m all ones or zero per lane.
    @inline(__always)
    static func select(_ m: SIMD16<Int32>, _ a: SIMD16<Int32>, _ b: SIMD16<Int32>) -> SIMD16<Int32> {
        b ^ ((a ^ b) & m)
    }

    @inline(__always)
    static func select(_ m: SIMD16<Int32>, _ a: SIMD16<Float>, _ b: SIMD16<Float>) -> SIMD16<Float> {
        unsafeBitCast(select(m, unsafeBitCast(a, to: SIMD16<Int32>.self), unsafeBitCast(b, to: SIMD16<Int32>.self)),
                      to: SIMD16<Float>.self)
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
            gatherPixel(rows: rows, rowStride: rowStride, channels: channels, index: index + r, weight: weight + r,
                        stride: stride, panel: panel + r * panelStride)
        }
    }

    /// `gather` of one pixel: `index` and `weight` point at its plan entry, `panel` at its panel row.
    @inline(__always)
    static func gatherPixel(
        rows: UnsafePointer<Float>, rowStride: Int, channels: Int, index: UnsafePointer<Int32>,
        weight: UnsafePointer<Float>, stride: Int, panel: UnsafeMutablePointer<Float>
    ) {
        let p0 = UnsafeRawPointer(rows + Int(index[0]) * rowStride)
        let p1 = UnsafeRawPointer(rows + Int(index[stride]) * rowStride)
        let p2 = UnsafeRawPointer(rows + Int(index[2 * stride]) * rowStride)
        let p3 = UnsafeRawPointer(rows + Int(index[3 * stride]) * rowStride)
        let w0 = weight[0], w1 = weight[stride], w2 = weight[2 * stride], w3 = weight[3 * stride]
        let out = UnsafeMutableRawPointer(panel)
        var c = 0
        let a0 = SIMD16<Float>(repeating: w0), a1 = SIMD16<Float>(repeating: w1)
        let a2 = SIMD16<Float>(repeating: w2), a3 = SIMD16<Float>(repeating: w3)
        // Products and sums rather than FMAs: the gather is bound by its loads, and a build
        // without FMA in its target (plain SwiftPM) would turn each FMA lane into a call of fmaf.
        while c + 16 <= channels {
            let o = c * 4
            let top: SIMD16<Float> = a0 * p0.loadUnaligned(fromByteOffset: o, as: SIMD16<Float>.self)
                + a1 * p1.loadUnaligned(fromByteOffset: o, as: SIMD16<Float>.self)
            let bottom: SIMD16<Float> = a2 * p2.loadUnaligned(fromByteOffset: o, as: SIMD16<Float>.self)
                + a3 * p3.loadUnaligned(fromByteOffset: o, as: SIMD16<Float>.self)
            let v = top + bottom
            out.storeBytes(of: v, toByteOffset: o, as: SIMD16<Float>.self)
            c += 16
        }
        if c + 8 <= channels {
            let o = c * 4
            let top: SIMD8<Float> = a0.lowHalf * p0.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self)
                + a1.lowHalf * p1.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self)
            let bottom: SIMD8<Float> = a2.lowHalf * p2.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self)
                + a3.lowHalf * p3.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self)
            let v = top + bottom
            out.storeBytes(of: v, toByteOffset: o, as: SIMD8<Float>.self)
            c += 8
        }
        if c + 4 <= channels {
            let o = c * 4
            let top: SIMD4<Float> = a0.lowHalf.lowHalf * p0.loadUnaligned(fromByteOffset: o, as: SIMD4<Float>.self)
                + a1.lowHalf.lowHalf * p1.loadUnaligned(fromByteOffset: o, as: SIMD4<Float>.self)
            let bottom: SIMD4<Float> = a2.lowHalf.lowHalf * p2.loadUnaligned(fromByteOffset: o, as: SIMD4<Float>.self)
                + a3.lowHalf.lowHalf * p3.loadUnaligned(fromByteOffset: o, as: SIMD4<Float>.self)
            let v = top + bottom
            out.storeBytes(of: v, toByteOffset: o, as: SIMD4<Float>.self)
            c += 4
        }
        while c < channels {
            let o = c * 4
            let top: Float = w0 * p0.load(fromByteOffset: o, as: Float.self) + w1 * p1.load(fromByteOffset: o, as: Float.self)
            let bottom: Float = w2 * p2.load(fromByteOffset: o, as: Float.self) + w3 * p3.load(fromByteOffset: o, as: Float.self)
            let v = top + bottom
            out.storeBytes(of: v, toByteOffset: o, as: Float.self)
            c += 1
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

/// The deformable panel rows of a run of pixels as work for the micro-kernel: one item per
/// (pixel, run), a run being the channels of one tap that share an offset group, with the plans
/// of every run made beforehand (plan slot j * taps + tap for the conv group's j-th offset group).
struct PanelRowSampling: InterleavedWork {
    let rows: UnsafePointer<Float>       // channels-last rows at the conv group's first channel
    let rowStride: Int
    let index: UnsafePointer<Int32>      // plan slot 0 at the first pixel; slots 4 * planStride apart
    let weight: UnsafePointer<Float>
    let planStride: Int
    let taps: Int
    let cin: Int
    let channelBase: Int                 // the conv group's first input channel
    let perOffsetGroup: Int
    let firstOffsetGroup: Int
    let offsetGroups: Int
    let pixels: Int
    let panel: UnsafeMutablePointer<Float>?  // the first pixel's panel row; nil: not yet placed (group(at:))
    let panelStride: Int

    var count: Int { panel == nil ? 0 : pixels * taps * offsetGroups }

    /// The same work for pixels first ..< first + count, written to panel rows from `panel` on.
    func group(at first: Int, count: Int, into panel: UnsafeMutablePointer<Float>) -> PanelRowSampling {
        PanelRowSampling(
            rows: rows, rowStride: rowStride, index: index + first, weight: weight + first, planStride: planStride,
            taps: taps, cin: cin, channelBase: channelBase, perOffsetGroup: perOffsetGroup,
            firstOffsetGroup: firstOffsetGroup, offsetGroups: offsetGroups, pixels: count,
            panel: panel, panelStride: panelStride)
    }

    @inline(__always)
    func run(_ item: Int) {
        let run = item / pixels
        let r = item - run * pixels
        let tap = run / offsetGroups
        let j = run - tap * offsetGroups
        let og = firstOffsetGroup + j
        let c0 = max(og * perOffsetGroup - channelBase, 0)
        let c1 = min((og + 1) * perOffsetGroup - channelBase, cin)
        let slot = (j * taps + tap) * 4 * planStride + r
        DeformableSampling.gatherPixel(rows: rows + c0, rowStride: rowStride, channels: c1 - c0, index: index + slot,
                                       weight: weight + slot, stride: planStride,
                                       panel: panel.unsafelyUnwrapped + r * panelStride + tap * cin + c0)
    }
}
