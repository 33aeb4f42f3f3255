@testable import DeformRTKernels
import TestSupport
import XCTest

/// Conv2DPlan.run and DeformConvPlan.run with channels-last input and/or output (every combination, both
/// GEMM engines, 1 and 2 threads, OIHW and prepacked weights, with and without a residual + Relu
/// epilogue) against the NCHW reference, transposed. Sizes are awkward on purpose: channel counts
/// that are and are not multiples of 16 (the in-place panel path needs Cin % 16 == 0), 1x1 with
/// and without stride, batch 2.
/// Tolerance: max |a - b| / (1 + |b|) <= 1e-4 (float32 sums vs the Double reference).
final class ConvLayoutTests: XCTestCase {
    static let tolerance: Float = 1e-4

    static let layouts: [ConvDataLayout] = [false, true].flatMap { input in
        [false, true].map { ConvDataLayout(inputChannelsLast: input, outputChannelsLast: $0) }
    }

    /// [N, C, H, W] -> [N, H, W, C].
    static func toChannelsLast(_ x: [Float], batch: Int, channels: Int, pixels: Int) -> [Float] {
        var y = x
        for n in 0..<batch {
            for c in 0..<channels {
                for p in 0..<pixels { y[(n * pixels + p) * channels + c] = x[(n * channels + c) * pixels + p] }
            }
        }
        return y
    }

    /// The reference output (NCHW) with the epilogue applied, in `channelsLast` order, and the
    /// residual in that order.
    static func expected(_ g: ConvGeometry, nchw: [Float], residual: [Float]?, relu: Bool, channelsLast: Bool)
        -> (output: [Float], residual: [Float]?) {
        var y = nchw
        if let residual { for i in y.indices { y[i] += residual[i] } }
        if relu { y = y.map { max($0, 0) } }
        let pixels = g.outHeight * g.outWidth
        guard channelsLast else { return (y, residual) }
        return (toChannelsLast(y, batch: g.batch, channels: g.outChannels, pixels: pixels),
                residual.map { toChannelsLast($0, batch: g.batch, channels: g.outChannels, pixels: pixels) })
    }

    func checkConv(_ g: ConvGeometry, seed: UInt64 = 3, file: StaticString = #filePath, line: UInt = #line) {
        var rng = SeededGenerator(seed: seed)
        let inputNCHW = rng.floats(g.batch * g.inChannels * g.inHeight * g.inWidth)
        let weight = rng.floats(g.outChannels * (g.inChannels / g.group) * g.kernelHeight * g.kernelWidth)
        let bias = rng.floats(g.outChannels)
        let outCount = g.batch * g.outChannels * g.outHeight * g.outWidth
        let residualNCHW = rng.floats(outCount)
        var reference = [Float](repeating: .nan, count: outCount)
        bias.withUnsafeBufferPointer { Conv2D.reference(g, input: inputNCHW, weight: weight, bias: $0.baseAddress, output: &reference) }
        let inputNHWC = Self.toChannelsLast(inputNCHW, batch: g.batch, channels: g.inChannels,
                                            pixels: g.inHeight * g.inWidth)
        for layout in Self.layouts where Conv2D.supports(g, layout: layout) {
            let input = layout.inputChannelsLast ? inputNHWC : inputNCHW
            for fused in [false, true] {
                let want = Self.expected(g, nchw: reference, residual: fused ? residualNCHW : nil, relu: fused,
                                         channelsLast: layout.outputChannelsLast)
                for engine in [ConvEngine.packedSIMD, .blas] {
                    for (threads, prepacked) in [(1, false), (2, true), (2, false)] {
                        let got = runConv(g, input: input, weight: weight, bias: bias, residual: want.residual,
                                          relu: fused, engine: engine, threads: threads, prepacked: prepacked,
                                          layout: layout)
                        XCTAssertLessThanOrEqual(maxMixedError(got, want.output), Self.tolerance,
                                                 "\(g) \(layout) \(engine) threads \(threads) prepacked \(prepacked) fused \(fused)",
                                                 file: file, line: line)
                    }
                }
            }
        }
    }

    func runConv(_ g: ConvGeometry, input: [Float], weight: [Float], bias: [Float], residual: [Float]?, relu: Bool,
                 engine: ConvEngine, threads: Int, prepacked: Bool, layout: ConvDataLayout) -> [Float] {
        let residualCopy = residual ?? []
        return residualCopy.withUnsafeBufferPointer { r in
            bias.withUnsafeBufferPointer { b in
                Conv2DTests.run(g, input: input, weight: weight, bias: b.baseAddress,
                                outputCount: g.batch * g.outChannels * g.outHeight * g.outWidth, threads: threads,
                                prepacked: prepacked, engine: engine,
                                epilogue: ConvEpilogue(residual: residual == nil ? nil : r.baseAddress,
                                                       activation: relu ? .relu : nil),
                                layout: layout)
            }
        }
    }

    func testChannelsLast3x3() {
        for (c, m) in [(16, 17), (17, 16), (32, 5), (3, 33)] {
            checkConv(ConvGeometry(batch: 2, inChannels: c, inHeight: 7, inWidth: 5, outChannels: m,
                                   kernelHeight: 3, kernelWidth: 3, padTop: 1, padLeft: 1), seed: UInt64(c * 100 + m))
        }
        // Strided with asymmetric padding, and dilated.
        checkConv(ConvGeometry(batch: 1, inChannels: 16, inHeight: 9, inWidth: 8, outChannels: 19, kernelHeight: 3,
                               kernelWidth: 3, strideHeight: 2, strideWidth: 2, padTop: 1, padLeft: 0, padBottom: 0, padRight: 1))
        checkConv(ConvGeometry(batch: 1, inChannels: 48, inHeight: 6, inWidth: 7, outChannels: 9, kernelHeight: 3,
                               kernelWidth: 3, padTop: 2, padLeft: 2, dilationHeight: 2, dilationWidth: 2))
    }

    func testChannelsLastPointwise() {
        for (c, m) in [(16, 7), (32, 33), (20, 16), (1, 3)] {
            checkConv(ConvGeometry(batch: 2, inChannels: c, inHeight: 5, inWidth: 3, outChannels: m,
                                   kernelHeight: 1, kernelWidth: 1), seed: UInt64(c + m))
        }
        // A 1x1 downsample (stride 2) is not a plain GEMM over the rows.
        checkConv(ConvGeometry(batch: 1, inChannels: 32, inHeight: 7, inWidth: 6, outChannels: 17,
                               kernelHeight: 1, kernelWidth: 1, strideHeight: 2, strideWidth: 2))
        // More rows than one tile.
        checkConv(ConvGeometry(batch: 1, inChannels: 64, inHeight: 23, inWidth: 21, outChannels: 40,
                               kernelHeight: 1, kernelWidth: 1))
    }

    func testChannelsLastGroupedAndStem() {
        checkConv(ConvGeometry(batch: 1, inChannels: 32, inHeight: 6, inWidth: 6, outChannels: 32, kernelHeight: 3,
                               kernelWidth: 3, padTop: 1, padLeft: 1, group: 2))
        checkConv(ConvGeometry(batch: 1, inChannels: 3, inHeight: 19, inWidth: 17, outChannels: 16, kernelHeight: 7,
                               kernelWidth: 7, strideHeight: 2, strideWidth: 2, padTop: 3, padLeft: 3))
    }

    /// Fewer than 16 input channels, no dilation across columns, one k block: the packed,
    /// zero-bordered rows (ChannelsLastConvPlan.narrowRows), including outputs past one tile,
    /// asymmetric and over-wide padding, a dilated kernel height, and a control with k > 640.
    func testNarrowInputRows() {
        let stem = ChannelsLastConvPlan(ConvGeometry(batch: 1, inChannels: 3, inHeight: 9, inWidth: 9, outChannels: 8,
                                                     kernelHeight: 7, kernelWidth: 7, padTop: 3, padLeft: 3),
                                        engine: .packedSIMD, threads: 1)
        XCTAssertTrue(stem.narrowRows)
        // The packed engine reads each kernel row's run of 7 x 3 floats through the row table.
        XCTAssertTrue(stem.readsRowsIndirectly)
        XCTAssertEqual(stem.tableTaps, 7)
        XCTAssertEqual(stem.segmentLength, 21)
        checkConv(ConvGeometry(batch: 2, inChannels: 3, inHeight: 40, inWidth: 37, outChannels: 20, kernelHeight: 7,
                               kernelWidth: 7, strideHeight: 2, strideWidth: 2, padTop: 3, padLeft: 3))
        checkConv(ConvGeometry(batch: 1, inChannels: 1, inHeight: 11, inWidth: 13, outChannels: 5, kernelHeight: 5,
                               kernelWidth: 3, strideHeight: 1, strideWidth: 3, padTop: 0, padLeft: 2, padBottom: 3,
                               padRight: 0, dilationHeight: 2))
        checkConv(ConvGeometry(batch: 1, inChannels: 15, inHeight: 6, inWidth: 5, outChannels: 17, kernelHeight: 3,
                               kernelWidth: 3, padTop: 4, padLeft: 5, padBottom: 3, padRight: 6))
        let wide = ConvGeometry(batch: 1, inChannels: 15, inHeight: 9, inWidth: 8, outChannels: 6, kernelHeight: 7,
                                kernelWidth: 7, padTop: 3, padLeft: 3)
        XCTAssertFalse(ChannelsLastConvPlan(wide, engine: .packedSIMD, threads: 1).narrowRows)
        checkConv(wide)
    }

    /// Small maps with 2+ blocks of 64 output channels split over threads by channel blocks
    /// (ChannelsLastConvPlan.splitsColumns): 3x3 and 1x1, a trailing 16-wide block, partial row
    /// groups (49 and 13 pixels), batch 2, with the residual + Relu epilogue of checkConv.
    func testSmallMapsSplitOverOutputChannels() {
        let small = ConvGeometry(batch: 2, inChannels: 32, inHeight: 7, inWidth: 7, outChannels: 144, kernelHeight: 3,
                                 kernelWidth: 3, padTop: 1, padLeft: 1)
        XCTAssertTrue(ChannelsLastConvPlan(small, engine: .packedSIMD, threads: 2,
                                           layout: ConvDataLayout(outputChannelsLast: true)).splitsColumns)
        XCTAssertFalse(ChannelsLastConvPlan(small, engine: .packedSIMD, threads: 1,
                                            layout: ConvDataLayout(outputChannelsLast: true)).splitsColumns)
        checkConv(small)
        checkConv(ConvGeometry(batch: 1, inChannels: 48, inHeight: 13, inWidth: 1, outChannels: 128, kernelHeight: 1,
                               kernelWidth: 1))
        checkConv(ConvGeometry(batch: 1, inChannels: 16, inHeight: 5, inWidth: 9, outChannels: 256, kernelHeight: 1,
                               kernelWidth: 1, strideHeight: 2, strideWidth: 2))
    }

    /// Plain convolutions (neither pointwise nor on narrow rows) read the input rows
    /// through a table of row pointers (ChannelsLastConvPlan.readsRowsIndirectly): k blocks of
    /// several taps (130 channels: 3 blocks of 3 taps), taps split in two parts (650 channels),
    /// strides with asymmetric padding, dilation, groups, a strided 1x1, partial row groups and
    /// several tiles, with the bias + residual + Relu that the micro-kernels apply as they store.
    func testIndirectRows() {
        let cases = [
            ConvGeometry(batch: 2, inChannels: 17, inHeight: 7, inWidth: 5, outChannels: 64, kernelHeight: 3,
                         kernelWidth: 3, padTop: 1, padLeft: 1),
            ConvGeometry(batch: 1, inChannels: 130, inHeight: 9, inWidth: 8, outChannels: 128, kernelHeight: 3,
                         kernelWidth: 3, strideHeight: 2, strideWidth: 2, padTop: 1, padLeft: 0, padBottom: 0, padRight: 1),
            ConvGeometry(batch: 1, inChannels: 650, inHeight: 3, inWidth: 3, outChannels: 64, kernelHeight: 3,
                         kernelWidth: 3, padTop: 2, padLeft: 2, dilationHeight: 2, dilationWidth: 2),
            ConvGeometry(batch: 1, inChannels: 32, inHeight: 6, inWidth: 7, outChannels: 128, kernelHeight: 3,
                         kernelWidth: 3, padTop: 1, padLeft: 1, group: 2),
            ConvGeometry(batch: 1, inChannels: 24, inHeight: 13, inWidth: 17, outChannels: 64, kernelHeight: 3,
                         kernelWidth: 3, padTop: 1, padLeft: 1),
            ConvGeometry(batch: 1, inChannels: 48, inHeight: 11, inWidth: 9, outChannels: 192, kernelHeight: 1,
                         kernelWidth: 1, strideHeight: 2, strideWidth: 2),
            // 49 pixels: 8 groups and a single row (2 threads: split over output channels).
            ConvGeometry(batch: 2, inChannels: 20, inHeight: 7, inWidth: 7, outChannels: 128, kernelHeight: 3,
                         kernelWidth: 3, padTop: 1, padLeft: 1),
        ]
        let blocks = ChannelsLastConvPlan(cases[1], engine: .packedSIMD, threads: 1)
        XCTAssertEqual(blocks.segmentsPerBlock, 3)
        XCTAssertEqual(ChannelsLastConvPlan(cases[2], engine: .packedSIMD, threads: 1).segmentParts, 2)
        XCTAssertGreaterThan(cases[4].outHeight * cases[4].outWidth,
                             ChannelsLastConvPlan(cases[4], engine: .packedSIMD, threads: 1).tileRows)
        for g in cases {
            XCTAssertTrue(ChannelsLastConvPlan(g, engine: .packedSIMD, threads: 1).readsRowsIndirectly, "\(g)")
            checkConv(g)
        }
        // Output channels that are not a multiple of 64: the narrow indirect kernel (80 = 64 + 16
        // written directly, with its partial group through the buffer; 33: never direct), a
        // stride-2 7x7 output (49 pixels: one-row tail), and a two-row tail (8 pixels) after 6 k
        // blocks of 325-channel segments (650 = 2 x 325 per group: every tap's second part starts
        // at an odd channel), where only the last block's store finishes the tile.
        let narrow = [
            ConvGeometry(batch: 1, inChannels: 40, inHeight: 8, inWidth: 1, outChannels: 80, kernelHeight: 3,
                         kernelWidth: 3, padTop: 1, padLeft: 1),
            ConvGeometry(batch: 2, inChannels: 19, inHeight: 5, inWidth: 6, outChannels: 33, kernelHeight: 3,
                         kernelWidth: 3, padTop: 1, padLeft: 1),
            ConvGeometry(batch: 1, inChannels: 16, inHeight: 14, inWidth: 14, outChannels: 64, kernelHeight: 3,
                         kernelWidth: 3, strideHeight: 2, strideWidth: 2, padTop: 1, padLeft: 1),
            ConvGeometry(batch: 1, inChannels: 1300, inHeight: 4, inWidth: 2, outChannels: 128, kernelHeight: 3,
                         kernelWidth: 1, padTop: 1, padLeft: 0, group: 2),
        ]
        XCTAssertEqual(ChannelsLastConvPlan(narrow[3], engine: .packedSIMD, threads: 1).segmentLength, 325)
        for g in narrow {
            XCTAssertTrue(ChannelsLastConvPlan(g, engine: .packedSIMD, threads: 1).readsRowsIndirectly, "\(g)")
            checkConv(g)
        }
        // Channels that do not split into equal segments of at most 640 (641 = 2 x 320.5) take
        // the im2col panel.
        let uneven = ConvGeometry(batch: 1, inChannels: 641, inHeight: 3, inWidth: 3, outChannels: 64,
                                  kernelHeight: 3, kernelWidth: 3, padTop: 1, padLeft: 1)
        XCTAssertFalse(ChannelsLastConvPlan(uneven, engine: .packedSIMD, threads: 1).readsRowsIndirectly)
        checkConv(uneven)
        // So do kernels of more than 256 taps (the row table grows with them, the panel does not).
        let large = ConvGeometry(batch: 1, inChannels: 16, inHeight: 18, inWidth: 17, outChannels: 64,
                                 kernelHeight: 17, kernelWidth: 17, padTop: 1, padLeft: 0)
        XCTAssertFalse(ChannelsLastConvPlan(large, engine: .packedSIMD, threads: 1).readsRowsIndirectly)
        checkConv(large)
        // The single-row tail on panel rows: pointwise 7x7 and 8x1 (two rows), one and two k blocks.
        checkConv(ConvGeometry(batch: 1, inChannels: 32, inHeight: 7, inWidth: 7, outChannels: 64, kernelHeight: 1,
                               kernelWidth: 1))
        checkConv(ConvGeometry(batch: 1, inChannels: 650, inHeight: 8, inWidth: 1, outChannels: 128, kernelHeight: 1,
                               kernelWidth: 1))
    }

    /// Depthwise convolutions run channels-last with a channel multiplier of 1 (Conv2DTests.
    /// testChannelsLastDepthwise checks them); with a larger multiplier they stay NCHW.
    func testDepthwiseLayouts() {
        let g = ConvGeometry(batch: 1, inChannels: 16, inHeight: 6, inWidth: 6, outChannels: 16, kernelHeight: 3,
                             kernelWidth: 3, padTop: 1, padLeft: 1, group: 16)
        XCTAssertTrue(Conv2D.supports(g, layout: .nchw))
        XCTAssertTrue(Conv2D.supports(g, layout: ConvDataLayout(inputChannelsLast: true)))
        var doubled = g
        doubled.outChannels = 32
        XCTAssertTrue(Conv2D.supports(doubled, layout: .nchw))
        XCTAssertFalse(Conv2D.supports(doubled, layout: ConvDataLayout(inputChannelsLast: true)))
    }

    func testDeformableChannelsLast() {
        for (c, m, hasMask) in [(16, 17, true), (17, 16, false), (32, 8, true)] {
            let g = ConvGeometry(batch: 2, inChannels: c, inHeight: 6, inWidth: 5, outChannels: m, kernelHeight: 3,
                                 kernelWidth: 3, padTop: 1, padLeft: 1)
            let d = DeformableOptions(hasMask: hasMask)
            let base = DeformConvTests.Case(g, d, seed: UInt64(c * 10 + m))
            let reference = base.reference()
            var rng = SeededGenerator(seed: 99)
            let residualNCHW = rng.floats(base.outCount)
            let inputNHWC = Self.toChannelsLast(base.input, batch: g.batch, channels: c, pixels: g.inHeight * g.inWidth)
            for layout in Self.layouts {
                for fused in [false, true] {
                    let want = Self.expected(g, nchw: reference, residual: fused ? residualNCHW : nil, relu: fused,
                                             channelsLast: layout.outputChannelsLast)
                    for engine in [ConvEngine.packedSIMD, .blas] {
                        for threads in [1, 2] {
                            var out = [Float](repeating: .nan, count: base.outCount)
                            let plan = DeformConvPlan(g, d, threads: threads, engine: engine, layout: layout)
                            let bytes = plan.workspaceByteCount
                            let ws = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 1), alignment: 64)
                            defer { ws.deallocate() }
                            ws.initializeMemory(as: UInt8.self, repeating: 0xFF, count: max(bytes, 1))
                            let residual = want.residual ?? []
                            residual.withUnsafeBufferPointer { r in
                                base.mask.withUnsafeBufferPointer { mask in
                                    plan.run(input: layout.inputChannelsLast ? inputNHWC : base.input,
                                             weight: base.weight, offset: base.offset,
                                             mask: hasMask ? mask.baseAddress : nil, bias: base.bias, output: &out,
                                             workspace: ws, parallel: Parallel(threads: threads),
                                             epilogue: ConvEpilogue(residual: fused ? r.baseAddress : nil,
                                                                    activation: fused ? .relu : nil))
                                }
                            }
                            XCTAssertLessThanOrEqual(maxMixedError(out, want.output), Self.tolerance,
                                                     "\(g) \(layout) \(engine) threads \(threads) fused \(fused)")
                        }
                    }
                }
            }
        }
    }

    /// The prefetch streams of a block's calls reach over what they are meant to fetch whenever a
    /// line per k step can, and never ask for more than a line per step.
    func testPrefetchStepCoversTheBytes() {
        for (bytes, calls, kc) in [(128 * 1024, 32, 512), (128 * 1024, 8, 512), (6 * 1024, 4, 64), (147_456, 1, 576),
                                   (0, 5, 64), (1 << 20, 1, 1), (100, 0, 0)] {
            let step = ChannelsLastConvPlan.prefetchStep(bytes: bytes, calls: calls, kc: kc)
            XCTAssert([16, 32, 48, 64].contains(step), "step \(step)")
            if bytes <= 64 * calls * kc { XCTAssertGreaterThanOrEqual(step * calls * kc, bytes) }
        }
        XCTAssertEqual(ChannelsLastConvPlan.prefetchStep(bytes: 128 * 1024, calls: 32, kc: 512), 16)
        XCTAssertEqual(ChannelsLastConvPlan.prefetchStep(bytes: 128 * 1024, calls: 8, kc: 512), 32)
    }

    /// The transpose under every layout change moves each element once, exactly (the bias added
    /// when given, the bits unchanged without one: -0.0 stays -0.0), for blocks of 16 and the
    /// columns and rows around them; 3 columns is an RGB image turned into pixels.
    func testTransposeMovesEveryElement() {
        var rng = SeededGenerator(seed: 41)
        for (rows, columns) in [(1, 1), (224, 3), (17, 3), (35, 19), (16, 16), (40, 33), (5, 48)] {
            let srcStride = rows + 3, dstStride = columns + 2
            var src = (0..<(columns * srcStride)).map { _ in Float.random(in: -1...1, using: &rng) }
            src[0] = -0.0
            let bias = (0..<rows).map { _ in Float.random(in: -1...1, using: &rng) }
            for withBias in [false, true] {
                var dst = [Float](repeating: .nan, count: rows * dstStride)
                bias.withUnsafeBufferPointer { b in
                    ConvLayout.transpose(src, srcStride: srcStride, &dst, dstStride: dstStride, rows: rows,
                                         columns: columns, rowBias: withBias ? b.baseAddress : nil)
                }
                for r in 0..<rows {
                    for c in 0..<columns {
                        let expected = withBias ? src[c * srcStride + r] + bias[r] : src[c * srcStride + r]
                        XCTAssertEqual(dst[r * dstStride + c].bitPattern, expected.bitPattern, "\(rows)x\(columns) [\(r)][\(c)]")
                    }
                    for c in columns..<dstStride { XCTAssert(dst[r * dstStride + c].isNaN, "wrote past row \(r)") }
                }
            }
        }
    }

    /// The activations a tile's store applies in registers give what the epilogue's pass over
    /// the stored tile gives, bit for bit (a tile's last partial group takes that pass), NaN and
    /// the ends of each range included; the others are left to the pass.
    func testStoreActivationsMatchTheEpiloguePass() {
        var rng = SeededGenerator(seed: 7)
        let values = rng.floats(12, in: -8...8) + [-0.0, .nan, -3, 3]
        let bias = rng.floats(16)
        for function in [UnaryFunction.relu, .hardSwish, .clip(low: 0, high: 6), .clip(low: -1.5, high: 2)] {
            guard let activation = TileActivation(function) else { return XCTFail("\(function) not applied in the store") }
            var expected = zip(values, bias).map { $0 + $1 }
            expected.withUnsafeMutableBufferPointer { ElementwiseMath.apply(function, $0.baseAddress!, $0.baseAddress!, 16) }
            let stored = bias.withUnsafeBufferPointer { b in
                TileFinish(bias: b.baseAddress, residual: nil, residualStride: 0, activation: activation)
                    .applied(to: SIMD16(values), row: 0, vector: 0)
            }
            for lane in 0..<16 {
                XCTAssertEqual(stored[lane].bitPattern, expected[lane].bitPattern, "\(function) lane \(lane)")
            }
        }
        XCTAssertNil(TileActivation(.sigmoid))
        XCTAssertEqual(TileActivation(nil), TileActivation.none)
    }

    /// A stream over two regions (a group's input rows, then its output rows), shared out between
    /// several calls, hints at every line of both in order, each once, and at nothing else.
    func testTwoRegionPrefetchSharesCoverBothRegions() {
        let first = UnsafeRawPointer(bitPattern: 0x10_0000)!, second = UnsafeRawPointer(bitPattern: 0x90_0000)!
        for (firstBytes, secondBytes, calls, kc) in [(6 * 256 * 4, 6 * 64 * 4, 1, 256), (6 * 64 * 4, 6 * 256 * 4, 4, 64),
                                                     (0, 6 * 1024, 4, 64), (1000, 3000, 3, 50)] {
            let step = ChannelsLastConvPlan.prefetchStep(bytes: firstBytes + secondBytes, calls: calls, kc: kc)
            var hinted: [Int] = []
            for call in 0..<calls {
                guard let stream = PrefetchStream.share(from: call * kc * step, step: step, first: first,
                                                        firstBytes: firstBytes, second: second,
                                                        secondBytes: secondBytes) else { continue }
                var cursor = PrefetchCursor(stream, own: first)
                hinted += (0..<kc).map { _ in cursor.advance() - first }
            }
            let gap = second - first
            let expected = stride(from: 0, to: firstBytes, by: step).map { $0 }
                + stride(from: 0, to: secondBytes, by: step).map { gap + $0 }
            // Every address of both regions, in order; what the last call hints past them is harmless.
            XCTAssertEqual(Array(hinted.prefix(expected.count)), expected, "\(firstBytes) \(secondBytes) \(calls)")
            XCTAssertGreaterThanOrEqual(hinted.count, expected.count)
        }
        XCTAssertNil(PrefetchStream.share(from: 112, step: 16, first: first, firstBytes: 40, second: second,
                                          secondBytes: 60))
    }
}
