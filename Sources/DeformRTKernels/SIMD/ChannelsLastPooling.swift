/// Pooling over channels-last maps ([N, H, W, C]): the channels of one pixel are contiguous, so
/// every window tap is one vector load per 16 channels. Same results as `Pooling` on the
/// transposed map (max is exact; the sums may round differently).
/// `g.planes` counts images here, not images x channels.
public enum ChannelsLastPooling {
    /// Max over each window's taps inside the input; NaN propagates; a window with no tap inside
    /// gives the lowest finite float (as `Pooling.max`).
    public static func max(_ g: PoolGeometry, channels: Int, input: UnsafePointer<Float>,
                           output: UnsafeMutablePointer<Float>, parallel: Parallel) {
        forEachOutputRow(g, channels: channels, parallel: parallel) { n, oy in
            let x = input + n * g.inHeight * g.inWidth * channels
            let rows = taps(oy, kernel: g.kernelHeight, stride: g.strideHeight, pad: g.padTop,
                            dilation: g.dilationHeight, size: g.inHeight)
            // Window pixels a dilation step apart, rows a dilated input row apart (in floats).
            let rowStep = g.dilationHeight &* g.inWidth &* channels, columnStep = g.dilationWidth &* channels
            for ox in 0..<g.outWidth {
                let y = output + ((n * g.outHeight + oy) * g.outWidth + ox) * channels
                let columns = taps(ox, kernel: g.kernelWidth, stride: g.strideWidth, pad: g.padLeft,
                                   dilation: g.dilationWidth, size: g.inWidth)
                let corner = x + (rows.first &* g.inWidth &+ columns.first) &* channels
                let window = Window(corner: corner, rows: rows.count, columns: columns.count, rowStep: rowStep,
                                    columnStep: columnStep)
                var c = 0
                // 64 channels (4 vectors) per pass over the window: the window walk is paid once
                // for all four.
                while c + 64 <= channels {
                    window.max4(at: c, into: y + c)
                    c += 64
                }
                while c + 16 <= channels {
                    window.max1(at: c, into: y + c)
                    c += 16
                }
                while c < channels {
                    var best = -Float.greatestFiniteMagnitude
                    var nan = false
                    for r in 0..<rows.count {
                        for k in 0..<columns.count {
                            let v = corner[r &* rowStep &+ k &* columnStep &+ c]
                            if v.isNaN { nan = true }
                            if v > best { best = v }
                        }
                    }
                    y[c] = nan ? .nan : best
                    c += 1
                }
            }
        }
    }

    /// The inside taps of one max-pool window: `rows` x `columns` pixels from `corner`.
    /// An empty window gives -Float.greatestFiniteMagnitude, NaN anywhere gives NaN.
    private struct Window {
        typealias V = SIMD16<Float>
        typealias M = VectorMath
        let corner: UnsafePointer<Float>
        let rows: Int, columns: Int, rowStep: Int, columnStep: Int

        @inline(__always)
        func max4(at c: Int, into y: UnsafeMutablePointer<Float>) {
            let lowest = V(repeating: -.greatestFiniteMagnitude)
            var b0 = lowest, b1 = lowest, b2 = lowest, b3 = lowest
            var nan = M.I()
            var row = UnsafeRawPointer(corner + c)
            for _ in 0..<rows {
                var p = row
                for _ in 0..<columns {
                    let v0 = p.loadUnaligned(as: V.self), v1 = p.loadUnaligned(fromByteOffset: 64, as: V.self)
                    let v2 = p.loadUnaligned(fromByteOffset: 128, as: V.self)
                    let v3 = p.loadUnaligned(fromByteOffset: 192, as: V.self)
                    nan |= M.lanes(v0 .!= v0) | M.lanes(v1 .!= v1) | M.lanes(v2 .!= v2) | M.lanes(v3 .!= v3)
                    b0 = M.select(M.lanes(v0 .> b0), v0, b0)
                    b1 = M.select(M.lanes(v1 .> b1), v1, b1)
                    b2 = M.select(M.lanes(v2 .> b2), v2, b2)
                    b3 = M.select(M.lanes(v3 .> b3), v3, b3)
                    p += columnStep &* 4
                }
                row += rowStep &* 4
            }
            // Lanes where any of the four vectors saw NaN are checked per vector below.
            let out = UnsafeMutableRawPointer(y)
            if nan == M.I() {
                out.storeBytes(of: b0, as: V.self)
                out.storeBytes(of: b1, toByteOffset: 64, as: V.self)
                out.storeBytes(of: b2, toByteOffset: 128, as: V.self)
                out.storeBytes(of: b3, toByteOffset: 192, as: V.self)
                return
            }
            for j in 0..<4 { max1(at: c + 16 * j, into: y + 16 * j) }
        }

        @inline(__always)
        func max1(at c: Int, into y: UnsafeMutablePointer<Float>) {
            var best = V(repeating: -.greatestFiniteMagnitude)
            var nan = M.I()
            var row = UnsafeRawPointer(corner + c)
            for _ in 0..<rows {
                var p = row
                for _ in 0..<columns {
                    let v = p.loadUnaligned(as: V.self)
                    nan |= M.lanes(v .!= v)
                    best = M.select(M.lanes(v .> best), v, best)
                    p += columnStep &* 4
                }
                row += rowStep &* 4
            }
            UnsafeMutableRawPointer(y).storeBytes(of: M.select(nan, V(repeating: .nan), best), as: V.self)
        }
    }

    /// Mean over each window; the divisor as in `Pooling.average`.
    public static func average(_ g: PoolGeometry, channels: Int, countIncludePad: Bool, input: UnsafePointer<Float>,
                               output: UnsafeMutablePointer<Float>, parallel: Parallel) {
        forEachOutputRow(g, channels: channels, parallel: parallel) { n, oy in
            let x = input + n * g.inHeight * g.inWidth * channels
            let rows = taps(oy, kernel: g.kernelHeight, stride: g.strideHeight, pad: g.padTop,
                            dilation: g.dilationHeight, size: g.inHeight)
            let paddedRows = paddedTaps(oy, kernel: g.kernelHeight, stride: g.strideHeight, pad: g.padTop,
                                        dilation: g.dilationHeight, paddedSize: g.inHeight + g.padBottom)
            for ox in 0..<g.outWidth {
                let y = output + ((n * g.outHeight + oy) * g.outWidth + ox) * channels
                let columns = taps(ox, kernel: g.kernelWidth, stride: g.strideWidth, pad: g.padLeft,
                                   dilation: g.dilationWidth, size: g.inWidth)
                let inside = rows.count * columns.count
                let padded = paddedRows * paddedTaps(ox, kernel: g.kernelWidth, stride: g.strideWidth, pad: g.padLeft,
                                                     dilation: g.dilationWidth, paddedSize: g.inWidth + g.padRight)
                let divisor = countIncludePad ? padded : inside
                let scale: Float = divisor > 0 ? 1 / Float(divisor) : 0
                var c = 0
                while c + 16 <= channels {
                    var sum = SIMD16<Float>(repeating: 0)
                    for iy in stride(from: rows.first, to: rows.end, by: g.dilationHeight) {
                        for ix in stride(from: columns.first, to: columns.end, by: g.dilationWidth) {
                            sum += ElementwiseKernels.load16(x + (iy * g.inWidth + ix) * channels + c)
                        }
                    }
                    ElementwiseKernels.store16(divisor > 0 ? sum / Float(divisor) : SIMD16(repeating: 0), y + c)
                    c += 16
                }
                while c < channels {
                    var sum: Float = 0
                    for iy in stride(from: rows.first, to: rows.end, by: g.dilationHeight) {
                        for ix in stride(from: columns.first, to: columns.end, by: g.dilationWidth) {
                            sum += x[(iy * g.inWidth + ix) * channels + c]
                        }
                    }
                    y[c] = sum * scale
                    c += 1
                }
            }
        }
    }

    /// Mean over the `pixels` of each image, per channel: [N, pixels, C] -> [N, C] (which is also
    /// the NCHW [N, C, 1, 1] a GlobalAveragePool returns). NaN for an empty map.
    public static func globalAverage(batch: Int, pixels: Int, channels: Int, input: UnsafePointer<Float>,
                                     output: UnsafeMutablePointer<Float>, parallel: Parallel) {
        let blocks = (channels + 15) / 16
        // One task per 16-channel block of one image; small maps run inline.
        parallel.forEachRange(batch * blocks, totalWork: batch * pixels * channels) { _, range in
            for task in range {
                let n = task / blocks, c = (task % blocks) * 16
                let x = input + n * pixels * channels
                let y = output + n * channels
                if c + 16 <= channels {
                    var sum = SIMD16<Float>(repeating: 0)
                    for p in 0..<pixels { sum += ElementwiseKernels.load16(x + p * channels + c) }
                    ElementwiseKernels.store16(sum / Float(pixels), y + c)
                } else {
                    for channel in c..<channels {
                        var sum: Float = 0
                        for p in 0..<pixels { sum += x[p * channels + channel] }
                        y[channel] = sum / Float(pixels)
                    }
                }
            }
        }
    }

    /// Runs `body(image, outputRow)` for every output row, split over the threads.
    private static func forEachOutputRow(_ g: PoolGeometry, channels: Int, parallel: Parallel,
                                         _ body: (Int, Int) -> Void) {
        let rows = g.planes * g.outHeight
        let workPerRow = g.outWidth * channels * g.kernelHeight * g.kernelWidth
        parallel.forEachRange(rows, totalWork: rows * workPerRow) { _, range in
            for row in range { body(row / g.outHeight, row % g.outHeight) }
        }
    }

    /// The input positions a window at output `o` covers inside [0, size): first, end (exclusive,
    /// on the dilation grid) and how many.
    private static func taps(_ o: Int, kernel: Int, stride: Int, pad: Int, dilation: Int, size: Int)
        -> (first: Int, end: Int, count: Int) {
        let start = o * stride - pad
        // Smallest k with start + k * dilation >= 0, largest with < size.
        let kFirst = start >= 0 ? 0 : (-start + dilation - 1) / dilation
        let kLast = Swift.min(kernel - 1, size - 1 - start < 0 ? -1 : (size - 1 - start) / dilation)
        if kFirst > kLast { return (0, 0, 0) }
        return (start + kFirst * dilation, start + kLast * dilation + 1, kLast - kFirst + 1)
    }

    /// How many taps of the window at `o` fall inside the padded input [-pad, paddedSize).
    private static func paddedTaps(_ o: Int, kernel: Int, stride: Int, pad: Int, dilation: Int, paddedSize: Int) -> Int {
        (0..<kernel).reduce(0) { count, k in
            let i = o * stride - pad + k * dilation
            return count + (i >= -pad && i < paddedSize ? 1 : 0)
        }
    }
}
