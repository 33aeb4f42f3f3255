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

/// Depthwise convolution with one output channel per input channel on channels-last data
/// ([N, H, W, C]), so that a MobileNet-style chain (1x1, depthwise, 1x1) stays channels-last:
/// per output pixel, 64 (then 16, 8, 1) channels at a time summed over the taps in registers,
/// weights packed [tap][channel] so each tap's weights are one contiguous load. A product and a
/// sum per tap, as the NCHW kernel does (and for the same reason).
extension DepthwiseConv {
    /// Channel multiplier 1: the form that runs channels-last.
    static func runsChannelsLast(_ g: ConvGeometry) -> Bool {
        applies(g) && g.outChannels == g.group
    }

    /// Floats between two taps' weights in the packed form: channels rounded up to 16.
    static func packedTapStride(_ g: ConvGeometry) -> Int { (g.outChannels + 15) & ~15 }

    static func packedFloats(_ g: ConvGeometry) -> Int {
        g.kernelHeight * g.kernelWidth * packedTapStride(g)
    }

    /// OIHW [C, 1, kH, kW] into [tap][channel] (channels zero-padded to the tap stride).
    static func pack(_ g: ConvGeometry, weight: UnsafePointer<Float>, into packed: UnsafeMutablePointer<Float>) {
        let taps = g.kernelHeight * g.kernelWidth, stride = packedTapStride(g)
        packed.update(repeating: 0, count: taps * stride)
        for c in 0..<g.outChannels {
            for tap in 0..<taps { packed[tap * stride + c] = weight[c * taps + tap] }
        }
    }

    /// Scratch floats of `runChannelsLast`: a batch item's input turned channels-last when it
    /// comes NCHW, its output computed channels-last when it leaves NCHW.
    static func channelsLastScratchFloats(_ g: ConvGeometry, layout: ConvDataLayout) -> Int {
        let c = g.outChannels
        let input = layout.inputChannelsLast ? 0 : (g.inHeight * g.inWidth * c + 15) & ~15
        let output = layout.outputChannelsLast ? 0 : max(g.outHeight, 0) * max(g.outWidth, 0) * c
        return input + output
    }

    /// output = epilogue(depthwise(input) + bias) in `layout`, with weights from `pack`.
    /// `scratch` holds channelsLastScratchFloats floats.
    static func runChannelsLast(
        _ g: ConvGeometry, input: UnsafePointer<Float>, packedWeight: UnsafePointer<Float>,
        bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>,
        parallel: Parallel, epilogue: ConvEpilogue, layout: ConvDataLayout
    ) {
        let c = g.outChannels
        let inPixels = g.inHeight * g.inWidth, outPixels = max(g.outHeight, 0) * max(g.outWidth, 0)
        if outPixels == 0 || c == 0 { return }
        let inputRows = scratch
        let outputRows = scratch + (layout.inputChannelsLast ? 0 : (inPixels * c + 15) & ~15)
        for n in 0..<g.batch {
            var source = input + n * c * inPixels
            if !layout.inputChannelsLast {
                let image = source
                parallel.forEachRange((inPixels + 255) / 256) { _, blocks in
                    ConvLayout.channelsLast(image, channels: c, planeSize: inPixels,
                                            pixels: blocks.lowerBound * 256 ..< min(inPixels, blocks.upperBound * 256),
                                            rows: inputRows, rowStride: c)
                }
                source = UnsafePointer(inputRows)
            }
            let imageOutput = output + n * c * outPixels
            let target = layout.outputChannelsLast ? imageOutput : outputRows
            let rowEpilogue = epilogue.shifted(by: n * c * outPixels)
            let rowFloats = g.outWidth * c
            parallel.forEachRange(g.outHeight) { _, rows in
                for oy in rows {
                    outputRow(g, oy: oy, source: source, weight: packedWeight, bias: bias, row: target + oy * rowFloats)
                    if layout.outputChannelsLast {
                        rowEpilogue.shifted(by: oy * rowFloats).apply(rows: 1, count: rowFloats, stride: 0,
                                                                      output: target + oy * rowFloats)
                    }
                }
            }
            if !layout.outputChannelsLast {
                parallel.forEachRange((outPixels + 255) / 256) { _, blocks in
                    let p0 = blocks.lowerBound * 256, p1 = min(outPixels, blocks.upperBound * 256)
                    ConvLayout.transpose(outputRows + p0 * c, srcStride: c, imageOutput + p0, dstStride: outPixels,
                                         rows: c, columns: p1 - p0, rowBias: nil)
                }
                rowEpilogue.apply(elements: c * outPixels, output: imageOutput, parallel: parallel)
            }
        }
    }

    /// Eight pixels at a time on the tiers with FMA and wide registers; the baseline tier (16
    /// SSE registers, no FMA) keeps four.
    #if DEFORMRT_WIDE_SIMD
    private static let takesEightPixels = true
    #else
    private static let takesEightPixels = false
    #endif

    /// Output row `oy`, channels-last, into `row` (outWidth x C floats).
    private static func outputRow(
        _ g: ConvGeometry, oy: Int, source: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        bias: UnsafePointer<Float>?, row: UnsafeMutablePointer<Float>
    ) {
        let c = g.outChannels, tapStride = packedTapStride(g)
        // Kernel rows whose input row is inside the image.
        let y0 = oy * g.strideHeight - g.padTop
        let firstRow = y0 >= 0 ? 0 : (-y0 + g.dilationHeight - 1) / g.dilationHeight
        let lastRow = min(g.kernelHeight, y0 >= g.inHeight ? 0 : (g.inHeight - 1 - y0) / g.dilationHeight + 1)
        func window(_ ox: Int) -> TapWindow {
            // Kernel columns whose input column is inside the row.
            let x0 = ox * g.strideWidth - g.padLeft
            let firstColumn = x0 >= 0 ? 0 : (-x0 + g.dilationWidth - 1) / g.dilationWidth
            let lastColumn = min(g.kernelWidth, x0 >= g.inWidth ? 0 : (g.inWidth - 1 - x0) / g.dilationWidth + 1)
            return TapWindow(rows: firstRow..<max(firstRow, lastRow), columns: firstColumn..<max(firstColumn, lastColumn),
                             pixel: source + (y0 * g.inWidth + x0) * c,
                             rowStep: g.dilationHeight * g.inWidth * c, columnStep: g.dilationWidth * c,
                             weight: weight, kernelWidth: g.kernelWidth, tapStride: tapStride)
        }
        // Output columns whose kernel columns all fall inside the image: there eight (or four)
        // pixels share each tap's weight load (the kernel is bound by loads: one per product
        // otherwise).
        let interiorStart = (g.padLeft + g.strideWidth - 1) / g.strideWidth
        let reach = g.inWidth - 1 - (g.kernelWidth - 1) * g.dilationWidth + g.padLeft
        let interiorEnd = reach < 0 ? 0 : min(g.outWidth, reach / g.strideWidth + 1)
        let pixelStep = g.strideWidth * c
        var ox = 0
        while ox < g.outWidth {
            let out = row + ox * c
            if Self.takesEightPixels && ox >= interiorStart && ox + 8 <= interiorEnd {
                // Eight pixels: eight independent sums per tap keep both FMA pipes busy (four
                // left them waiting on each sum's latency); with stride = dilation their windows
                // overlap along each kernel row and slide (slide3x8, slide5x8).
                let taps = window(ox)
                var ch = 0
                #if DEFORMRT_TIER_AVX512
                while ch + 16 <= c {
                    taps.sum8(SIMD16<Float>.self, at: ch, pixelStep: pixelStep, bias: bias, into: out, outStep: c)
                    ch += 16
                }
                #endif
                // AVX2's 16 registers hold eight sums of 8 channels, not of 16.
                while ch + 8 <= c {
                    taps.sum8(SIMD8<Float>.self, at: ch, pixelStep: pixelStep, bias: bias, into: out, outStep: c)
                    ch += 8
                }
                if ch < c {
                    for q in 0..<8 { window(ox + q).sum(from: ch, to: c, bias: bias, into: out + q * c) }
                }
                ox += 8
            } else if ox >= interiorStart && ox + 4 <= interiorEnd {
                let taps = window(ox)
                var ch = 0
                while ch + 16 <= c {
                    taps.sum16x4(at: ch, pixelStep: pixelStep, bias: bias, into: out, outStep: c)
                    ch += 16
                }
                if ch < c {
                    for q in 0..<4 { window(ox + q).sum(from: ch, to: c, bias: bias, into: out + q * c) }
                }
                ox += 4
            } else {
                window(ox).sum(from: 0, to: c, bias: bias, into: out)
                ox += 1
            }
        }
    }

    /// The taps of one output pixel that fall inside the image: kernel rows `rows`, columns
    /// `columns`; tap (i, j) reads `pixel + i * rowStep + j * columnStep` (pixel: where tap (0, 0)
    /// would read, possibly outside the image) and its weights at (i * kernelWidth + j) * tapStride.
    private struct TapWindow {
        /// acc + x * w: fused on the tiers with FMA (one instruction, and the sums of each tap
        /// are not a chain of a product and an add); a product and a sum on the baseline tier,
        /// where an FMA would be a call of fmaf per lane.
        @_transparent
        static func madd<V: SIMD>(_ acc: V, _ x: V, _ w: V) -> V where V.Scalar == Float {
            #if DEFORMRT_WIDE_SIMD
            return acc.addingProduct(x, w)
            #else
            return acc + x * w
            #endif
        }

        @_transparent
        static func madd(_ acc: Float, _ x: Float, _ w: Float) -> Float {
            #if DEFORMRT_WIDE_SIMD
            return acc.addingProduct(x, w)
            #else
            return acc + x * w
            #endif
        }

        let rows: Range<Int>, columns: Range<Int>
        let pixel: UnsafePointer<Float>
        let rowStep: Int, columnStep: Int
        let weight: UnsafePointer<Float>
        let kernelWidth: Int, tapStride: Int

        @inline(__always)
        func sum<V: SIMD>(at channel: Int, bias: UnsafePointer<Float>?) -> V where V.Scalar == Float {
            var acc = bias.map { UnsafeRawPointer($0 + channel).loadUnaligned(as: V.self) } ?? V()
            for i in rows {
                for j in columns {
                    let x = UnsafeRawPointer(pixel + i * rowStep + j * columnStep + channel).loadUnaligned(as: V.self)
                    let w = UnsafeRawPointer(weight + (i * kernelWidth + j) * tapStride + channel).loadUnaligned(as: V.self)
                    acc = Self.madd(acc, x, w)
                }
            }
            return acc
        }

        @inline(__always)
        func sum(at channel: Int, bias: UnsafePointer<Float>?) -> Float {
            var acc = bias?[channel] ?? 0
            for i in rows {
                for j in columns {
                    acc = Self.madd(acc, pixel[i * rowStep + j * columnStep + channel],
                                    weight[(i * kernelWidth + j) * tapStride + channel])
                }
            }
            return acc
        }

        /// Channels first ..< end of the pixel into `out`: 64, then 16, 8 and 1 at a time.
        @inline(__always)
        func sum(from first: Int, to end: Int, bias: UnsafePointer<Float>?, into out: UnsafeMutablePointer<Float>) {
            var ch = first
            while ch + 64 <= end {
                sum64(at: ch, bias: bias, into: out)
                ch += 64
            }
            while ch + 16 <= end {
                let sum: SIMD16<Float> = sum(at: ch, bias: bias)
                UnsafeMutableRawPointer(out + ch).storeBytes(of: sum, as: SIMD16<Float>.self)
                ch += 16
            }
            if ch + 8 <= end {
                let sum: SIMD8<Float> = sum(at: ch, bias: bias)
                UnsafeMutableRawPointer(out + ch).storeBytes(of: sum, as: SIMD8<Float>.self)
                ch += 8
            }
            while ch < end {
                out[ch] = sum(at: ch, bias: bias)
                ch += 1
            }
        }

        /// Channels channel ..< channel + 16 of this pixel and the three after it (their inputs
        /// `pixelStep` floats apart, outputs `outStep`), whose windows are this one.
        @inline(__always)
        func sum16x4(at channel: Int, pixelStep: Int, bias: UnsafePointer<Float>?, into out: UnsafeMutablePointer<Float>,
                     outStep: Int) {
            typealias V = SIMD16<Float>
            let start = bias.map { UnsafeRawPointer($0 + channel).loadUnaligned(as: V.self) } ?? V()
            var a0 = start, a1 = start, a2 = start, a3 = start
            let step = pixelStep * MemoryLayout<Float>.stride
            for i in rows {
                for j in columns {
                    let x = UnsafeRawPointer(pixel + i * rowStep + j * columnStep + channel)
                    let w = UnsafeRawPointer(weight + (i * kernelWidth + j) * tapStride + channel).loadUnaligned(as: V.self)
                    a0 = Self.madd(a0, x.loadUnaligned(as: V.self), w)
                    a1 = Self.madd(a1, x.loadUnaligned(fromByteOffset: step, as: V.self), w)
                    a2 = Self.madd(a2, x.loadUnaligned(fromByteOffset: 2 * step, as: V.self), w)
                    a3 = Self.madd(a3, x.loadUnaligned(fromByteOffset: 3 * step, as: V.self), w)
                }
            }
            let o = UnsafeMutableRawPointer(out + channel), outBytes = outStep * MemoryLayout<Float>.stride
            o.storeBytes(of: a0, as: V.self)
            o.storeBytes(of: a1, toByteOffset: outBytes, as: V.self)
            o.storeBytes(of: a2, toByteOffset: 2 * outBytes, as: V.self)
            o.storeBytes(of: a3, toByteOffset: 3 * outBytes, as: V.self)
        }

        /// The sums of eight pixels (sum8, slide3x8, slide5x8) into their outputs, `outStep` apart.
        @inline(__always)
        static func store8<V: SIMD>(_ sums: (V, V, V, V, V, V, V, V), into out: UnsafeMutablePointer<Float>,
                                    outStep: Int) where V.Scalar == Float {
            let o = UnsafeMutableRawPointer(out), outBytes = outStep * MemoryLayout<Float>.stride
            o.storeBytes(of: sums.0, as: V.self)
            o.storeBytes(of: sums.1, toByteOffset: outBytes, as: V.self)
            o.storeBytes(of: sums.2, toByteOffset: 2 * outBytes, as: V.self)
            o.storeBytes(of: sums.3, toByteOffset: 3 * outBytes, as: V.self)
            o.storeBytes(of: sums.4, toByteOffset: 4 * outBytes, as: V.self)
            o.storeBytes(of: sums.5, toByteOffset: 5 * outBytes, as: V.self)
            o.storeBytes(of: sums.6, toByteOffset: 6 * outBytes, as: V.self)
            o.storeBytes(of: sums.7, toByteOffset: 7 * outBytes, as: V.self)
        }

        /// `V.scalarCount` channels from `channel` of this pixel and the seven after it (inputs
        /// `pixelStep` floats apart, outputs `outStep`), whose windows are this one.
        @inline(__always)
        func sum8<V: SIMD>(_: V.Type, at channel: Int, pixelStep: Int, bias: UnsafePointer<Float>?,
                           into out: UnsafeMutablePointer<Float>, outStep: Int) where V.Scalar == Float {
            if pixelStep == columnStep && columns == 0..<kernelWidth {
                if kernelWidth == 3 { return slide3x8(V.self, at: channel, bias: bias, into: out, outStep: outStep) }
                if kernelWidth == 5 { return slide5x8(V.self, at: channel, bias: bias, into: out, outStep: outStep) }
            }
            let start = bias.map { UnsafeRawPointer($0 + channel).loadUnaligned(as: V.self) } ?? V()
            var a0 = start, a1 = start, a2 = start, a3 = start, a4 = start, a5 = start, a6 = start, a7 = start
            let step = pixelStep * MemoryLayout<Float>.stride
            for i in rows {
                for j in columns {
                    let x = UnsafeRawPointer(pixel + i * rowStep + j * columnStep + channel)
                    let w = UnsafeRawPointer(weight + (i * kernelWidth + j) * tapStride + channel).loadUnaligned(as: V.self)
                    a0 = Self.madd(a0, x.loadUnaligned(as: V.self), w)
                    a1 = Self.madd(a1, x.loadUnaligned(fromByteOffset: step, as: V.self), w)
                    a2 = Self.madd(a2, x.loadUnaligned(fromByteOffset: 2 * step, as: V.self), w)
                    a3 = Self.madd(a3, x.loadUnaligned(fromByteOffset: 3 * step, as: V.self), w)
                    a4 = Self.madd(a4, x.loadUnaligned(fromByteOffset: 4 * step, as: V.self), w)
                    a5 = Self.madd(a5, x.loadUnaligned(fromByteOffset: 5 * step, as: V.self), w)
                    a6 = Self.madd(a6, x.loadUnaligned(fromByteOffset: 6 * step, as: V.self), w)
                    a7 = Self.madd(a7, x.loadUnaligned(fromByteOffset: 7 * step, as: V.self), w)
                }
            }
            Self.store8((a0, a1, a2, a3, a4, a5, a6, a7), into: out + channel, outStep: outStep)
        }

        /// sum8 for a kernel 3 wide whose columns are a pixel step apart (stride = dilation),
        /// all inside the image: along a kernel row the eight windows overlap, so each of the
        /// 10 input vectors is loaded once for up to 3 pixels (24 loads otherwise).
        /// Every pixel's products are summed in tap order, as in sum8.
        @inline(__always)
        func slide3x8<V: SIMD>(_: V.Type, at channel: Int, bias: UnsafePointer<Float>?,
                                 into out: UnsafeMutablePointer<Float>, outStep: Int) where V.Scalar == Float {
            let start = bias.map { UnsafeRawPointer($0 + channel).loadUnaligned(as: V.self) } ?? V()
            var a0 = start, a1 = start, a2 = start, a3 = start, a4 = start, a5 = start, a6 = start, a7 = start
            let step = columnStep * MemoryLayout<Float>.stride, tapBytes = tapStride * MemoryLayout<Float>.stride
            for i in rows {
                let x = UnsafeRawPointer(pixel + i * rowStep + channel)
                let w = UnsafeRawPointer(weight + i * kernelWidth * tapStride + channel)
                let w0 = w.loadUnaligned(as: V.self)
                let w1 = w.loadUnaligned(fromByteOffset: tapBytes, as: V.self)
                let w2 = w.loadUnaligned(fromByteOffset: 2 * tapBytes, as: V.self)
                let x0 = x.loadUnaligned(as: V.self)
                a0 = Self.madd(a0, x0, w0)
                let x1 = x.loadUnaligned(fromByteOffset: step, as: V.self)
                a0 = Self.madd(a0, x1, w1)
                a1 = Self.madd(a1, x1, w0)
                let x2 = x.loadUnaligned(fromByteOffset: 2 * step, as: V.self)
                a0 = Self.madd(a0, x2, w2)
                a1 = Self.madd(a1, x2, w1)
                a2 = Self.madd(a2, x2, w0)
                let x3 = x.loadUnaligned(fromByteOffset: 3 * step, as: V.self)
                a1 = Self.madd(a1, x3, w2)
                a2 = Self.madd(a2, x3, w1)
                a3 = Self.madd(a3, x3, w0)
                let x4 = x.loadUnaligned(fromByteOffset: 4 * step, as: V.self)
                a2 = Self.madd(a2, x4, w2)
                a3 = Self.madd(a3, x4, w1)
                a4 = Self.madd(a4, x4, w0)
                let x5 = x.loadUnaligned(fromByteOffset: 5 * step, as: V.self)
                a3 = Self.madd(a3, x5, w2)
                a4 = Self.madd(a4, x5, w1)
                a5 = Self.madd(a5, x5, w0)
                let x6 = x.loadUnaligned(fromByteOffset: 6 * step, as: V.self)
                a4 = Self.madd(a4, x6, w2)
                a5 = Self.madd(a5, x6, w1)
                a6 = Self.madd(a6, x6, w0)
                let x7 = x.loadUnaligned(fromByteOffset: 7 * step, as: V.self)
                a5 = Self.madd(a5, x7, w2)
                a6 = Self.madd(a6, x7, w1)
                a7 = Self.madd(a7, x7, w0)
                let x8 = x.loadUnaligned(fromByteOffset: 8 * step, as: V.self)
                a6 = Self.madd(a6, x8, w2)
                a7 = Self.madd(a7, x8, w1)
                let x9 = x.loadUnaligned(fromByteOffset: 9 * step, as: V.self)
                a7 = Self.madd(a7, x9, w2)
            }
            Self.store8((a0, a1, a2, a3, a4, a5, a6, a7), into: out + channel, outStep: outStep)
        }

        /// sum8 for a kernel 5 wide whose columns are a pixel step apart (stride = dilation),
        /// all inside the image: along a kernel row the eight windows overlap, so each of the
        /// 12 input vectors is loaded once for up to 5 pixels (40 loads otherwise).
        /// Every pixel's products are summed in tap order, as in sum8.
        @inline(__always)
        func slide5x8<V: SIMD>(_: V.Type, at channel: Int, bias: UnsafePointer<Float>?,
                                 into out: UnsafeMutablePointer<Float>, outStep: Int) where V.Scalar == Float {
            let start = bias.map { UnsafeRawPointer($0 + channel).loadUnaligned(as: V.self) } ?? V()
            var a0 = start, a1 = start, a2 = start, a3 = start, a4 = start, a5 = start, a6 = start, a7 = start
            let step = columnStep * MemoryLayout<Float>.stride, tapBytes = tapStride * MemoryLayout<Float>.stride
            for i in rows {
                let x = UnsafeRawPointer(pixel + i * rowStep + channel)
                let w = UnsafeRawPointer(weight + i * kernelWidth * tapStride + channel)
                let w0 = w.loadUnaligned(as: V.self)
                let w1 = w.loadUnaligned(fromByteOffset: tapBytes, as: V.self)
                let w2 = w.loadUnaligned(fromByteOffset: 2 * tapBytes, as: V.self)
                let w3 = w.loadUnaligned(fromByteOffset: 3 * tapBytes, as: V.self)
                let w4 = w.loadUnaligned(fromByteOffset: 4 * tapBytes, as: V.self)
                let x0 = x.loadUnaligned(as: V.self)
                a0 = Self.madd(a0, x0, w0)
                let x1 = x.loadUnaligned(fromByteOffset: step, as: V.self)
                a0 = Self.madd(a0, x1, w1)
                a1 = Self.madd(a1, x1, w0)
                let x2 = x.loadUnaligned(fromByteOffset: 2 * step, as: V.self)
                a0 = Self.madd(a0, x2, w2)
                a1 = Self.madd(a1, x2, w1)
                a2 = Self.madd(a2, x2, w0)
                let x3 = x.loadUnaligned(fromByteOffset: 3 * step, as: V.self)
                a0 = Self.madd(a0, x3, w3)
                a1 = Self.madd(a1, x3, w2)
                a2 = Self.madd(a2, x3, w1)
                a3 = Self.madd(a3, x3, w0)
                let x4 = x.loadUnaligned(fromByteOffset: 4 * step, as: V.self)
                a0 = Self.madd(a0, x4, w4)
                a1 = Self.madd(a1, x4, w3)
                a2 = Self.madd(a2, x4, w2)
                a3 = Self.madd(a3, x4, w1)
                a4 = Self.madd(a4, x4, w0)
                let x5 = x.loadUnaligned(fromByteOffset: 5 * step, as: V.self)
                a1 = Self.madd(a1, x5, w4)
                a2 = Self.madd(a2, x5, w3)
                a3 = Self.madd(a3, x5, w2)
                a4 = Self.madd(a4, x5, w1)
                a5 = Self.madd(a5, x5, w0)
                let x6 = x.loadUnaligned(fromByteOffset: 6 * step, as: V.self)
                a2 = Self.madd(a2, x6, w4)
                a3 = Self.madd(a3, x6, w3)
                a4 = Self.madd(a4, x6, w2)
                a5 = Self.madd(a5, x6, w1)
                a6 = Self.madd(a6, x6, w0)
                let x7 = x.loadUnaligned(fromByteOffset: 7 * step, as: V.self)
                a3 = Self.madd(a3, x7, w4)
                a4 = Self.madd(a4, x7, w3)
                a5 = Self.madd(a5, x7, w2)
                a6 = Self.madd(a6, x7, w1)
                a7 = Self.madd(a7, x7, w0)
                let x8 = x.loadUnaligned(fromByteOffset: 8 * step, as: V.self)
                a4 = Self.madd(a4, x8, w4)
                a5 = Self.madd(a5, x8, w3)
                a6 = Self.madd(a6, x8, w2)
                a7 = Self.madd(a7, x8, w1)
                let x9 = x.loadUnaligned(fromByteOffset: 9 * step, as: V.self)
                a5 = Self.madd(a5, x9, w4)
                a6 = Self.madd(a6, x9, w3)
                a7 = Self.madd(a7, x9, w2)
                let x10 = x.loadUnaligned(fromByteOffset: 10 * step, as: V.self)
                a6 = Self.madd(a6, x10, w4)
                a7 = Self.madd(a7, x10, w3)
                let x11 = x.loadUnaligned(fromByteOffset: 11 * step, as: V.self)
                a7 = Self.madd(a7, x11, w4)
            }
            Self.store8((a0, a1, a2, a3, a4, a5, a6, a7), into: out + channel, outStep: outStep)
        }

        /// Channels channel ..< channel + 64 in four accumulators (the tap's addresses computed once).
        @inline(__always)
        func sum64(at channel: Int, bias: UnsafePointer<Float>?, into out: UnsafeMutablePointer<Float>) {
            typealias V = SIMD16<Float>
            var a0 = V(), a1 = V(), a2 = V(), a3 = V()
            if let bias {
                let b = UnsafeRawPointer(bias + channel)
                a0 = b.loadUnaligned(as: V.self); a1 = b.loadUnaligned(fromByteOffset: 64, as: V.self)
                a2 = b.loadUnaligned(fromByteOffset: 128, as: V.self); a3 = b.loadUnaligned(fromByteOffset: 192, as: V.self)
            }
            for i in rows {
                for j in columns {
                    let x = UnsafeRawPointer(pixel + i * rowStep + j * columnStep + channel)
                    let w = UnsafeRawPointer(weight + (i * kernelWidth + j) * tapStride + channel)
                    a0 = Self.madd(a0, x.loadUnaligned(as: V.self), w.loadUnaligned(as: V.self))
                    a1 = Self.madd(a1, x.loadUnaligned(fromByteOffset: 64, as: V.self), w.loadUnaligned(fromByteOffset: 64, as: V.self))
                    a2 = Self.madd(a2, x.loadUnaligned(fromByteOffset: 128, as: V.self), w.loadUnaligned(fromByteOffset: 128, as: V.self))
                    a3 = Self.madd(a3, x.loadUnaligned(fromByteOffset: 192, as: V.self), w.loadUnaligned(fromByteOffset: 192, as: V.self))
                }
            }
            let o = UnsafeMutableRawPointer(out + channel)
            o.storeBytes(of: a0, as: V.self); o.storeBytes(of: a1, toByteOffset: 64, as: V.self)
            o.storeBytes(of: a2, toByteOffset: 128, as: V.self); o.storeBytes(of: a3, toByteOffset: 192, as: V.self)
        }
    }
}
