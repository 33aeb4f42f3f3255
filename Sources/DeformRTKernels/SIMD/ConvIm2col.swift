/// im2col for the BLAS path of `Conv2D`: one conv group's input channels into a K x count panel,
/// row k = (c, i, j) in weight order (OIHW), column = output pixel n0 + column, padding as zeros.
enum ConvIm2col {
    /// `plane0` is the first input channel of the group for this batch item; `rows` = channels * kH * kW.
    static func fill(
        _ g: ConvGeometry, plane0: UnsafePointer<Float>, channels: Int,
        panel: UnsafeMutablePointer<Float>, ld: Int, n0: Int, count: Int
    ) {
        let planeSize = g.inHeight * g.inWidth
        var row = panel
        for c in 0..<channels {
            let plane = plane0 + c * planeSize
            for i in 0..<g.kernelHeight {
                for j in 0..<g.kernelWidth {
                    fillRow(g, plane: plane, i: i, j: j, dst: row, n0: n0, count: count)
                    row += ld
                }
            }
        }
    }

    /// One panel row: tap (i, j) of one channel for `count` output pixels from n0, walking output rows.
    @inline(__always)
    static func fillRow(
        _ g: ConvGeometry, plane: UnsafePointer<Float>, i: Int, j: Int,
        dst: UnsafeMutablePointer<Float>, n0: Int, count: Int
    ) {
        let sw = g.strideWidth
        let xShift = j * g.dilationWidth - g.padLeft
        // Output columns whose input column lies inside [0, inWidth): ox in [firstX, endX).
        let firstX = xShift >= 0 ? 0 : (-xShift + sw - 1) / sw
        let endX = g.inWidth - 1 - xShift < 0 ? 0 : (g.inWidth - 1 - xShift) / sw + 1
        var oy = n0 / g.outWidth
        var ox = n0 - oy * g.outWidth
        var done = 0
        while done < count {
            let len = min(g.outWidth - ox, count - done)
            let out = dst + done
            let y = oy * g.strideHeight - g.padTop + i * g.dilationHeight
            if y < 0 || y >= g.inHeight {
                out.update(repeating: 0, count: len)
            } else {
                let src = plane + y * g.inWidth
                let lo = min(max(ox, firstX), ox + len)
                let hi = max(min(ox + len, endX), lo)
                if lo > ox { out.update(repeating: 0, count: lo - ox) }
                if hi > lo {
                    let s = src + (lo * sw + xShift)
                    let d = out + (lo - ox)
                    if sw == 1 {
                        d.update(from: s, count: hi - lo)
                    } else {
                        for t in 0..<(hi - lo) { d[t] = s[t * sw] }
                    }
                }
                if ox + len > hi { (out + (hi - ox)).update(repeating: 0, count: ox + len - hi) }
            }
            done += len
            ox = 0
            oy += 1
        }
    }
}

/// Adds one value per output channel to `rows` rows of `count` floats (row stride `ld`).
enum ConvBias {
    /// The whole output of a convolution without input channels (or taps): its bias, or zeros.
    static func fill(_ g: ConvGeometry, bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>,
                     channelsLast: Bool = false) {
        let pixels = max(g.outHeight, 0) * max(g.outWidth, 0)
        if channelsLast {
            for p in 0..<g.batch * pixels {
                let row = output + p * g.outChannels
                for m in 0..<g.outChannels { row[m] = bias?[m] ?? 0 }
            }
            return
        }
        for n in 0..<g.batch {
            for m in 0..<g.outChannels {
                (output + (n * g.outChannels + m) * pixels).update(repeating: bias?[m] ?? 0, count: pixels)
            }
        }
    }

    /// to[m] = from[m] + bias[m] (from[m] without a bias) for m in 0..<columns: a tile row moved
    /// into the output and biased in one pass.
    static func copyRow(_ from: UnsafePointer<Float>, adding bias: UnsafePointer<Float>?, to: UnsafeMutablePointer<Float>,
                        columns: Int) {
        guard let bias else {
            to.update(from: from, count: columns)
            return
        }
        var m = 0
        while m + 16 <= columns {
            ElementwiseKernels.store16(ElementwiseKernels.load16(from + m) + ElementwiseKernels.load16(bias + m), to + m)
            m += 16
        }
        while m < columns {
            to[m] = from[m] + bias[m]
            m += 1
        }
    }

    /// c[r][m] += bias[m] for r < rows, m < columns: a channels-last tile.
    static func addToRows(_ bias: UnsafePointer<Float>, columns: Int, to c: UnsafeMutablePointer<Float>, ld: Int, rows: Int) {
        for r in 0..<rows {
            let row = c + r * ld
            var m = 0
            while m + 16 <= columns {
                ElementwiseKernels.store16(ElementwiseKernels.load16(row + m) + ElementwiseKernels.load16(bias + m), row + m)
                m += 16
            }
            while m < columns {
                row[m] += bias[m]
                m += 1
            }
        }
    }

    static func add(_ bias: UnsafePointer<Float>, rows: Int, to c: UnsafeMutablePointer<Float>, ld: Int, count: Int) {
        for r in 0..<rows {
            let b = bias[r]
            let p = c + r * ld
            var t = 0
            let b16 = SIMD16<Float>(repeating: b)
            while t + 16 <= count {
                let q = UnsafeMutableRawPointer(p + t)
                q.storeBytes(of: q.loadUnaligned(as: SIMD16<Float>.self) + b16, as: SIMD16<Float>.self)
                t += 16
            }
            let b8 = SIMD8<Float>(repeating: b)
            if t + 8 <= count {
                let q = UnsafeMutableRawPointer(p + t)
                q.storeBytes(of: q.loadUnaligned(as: SIMD8<Float>.self) + b8, as: SIMD8<Float>.self)
                t += 8
            }
            let b4 = SIMD4<Float>(repeating: b)
            if t + 4 <= count {
                let q = UnsafeMutableRawPointer(p + t)
                q.storeBytes(of: q.loadUnaligned(as: SIMD4<Float>.self) + b4, as: SIMD4<Float>.self)
                t += 4
            }
            while t < count {
                p[t] += b
                t += 1
            }
        }
    }
}
