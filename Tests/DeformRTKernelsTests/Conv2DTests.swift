import DeformRTKernels
import TestSupport
import XCTest

/// Conv2DPlan.run (both GEMM engines; the second thread count on weights from packWeight) against
/// Conv2D.reference (Double accumulation) at awkward shapes.
/// Tolerance: max |a - b| / (1 + |b|) <= 1e-4 (float32 sums of up to ~2300 products of U(-1, 1) terms).
final class Conv2DTests: XCTestCase {
    static let tolerance: Float = 1e-4

    func check(_ g: ConvGeometry, bias: Bool = true, threads: [Int] = [1, 2], seed: UInt64 = 1,
               file: StaticString = #filePath, line: UInt = #line) {
        var rng = SeededGenerator(seed: seed)
        let input = rng.floats(g.batch * g.inChannels * g.inHeight * g.inWidth)
        let weight = rng.floats(g.outChannels * (g.inChannels / g.group) * g.kernelHeight * g.kernelWidth)
        let b = bias ? rng.floats(g.outChannels) : []
        let outCount = g.batch * g.outChannels * g.outHeight * g.outWidth
        var expected = [Float](repeating: .nan, count: outCount)
        b.withUnsafeBufferPointer { bp in
            Conv2D.reference(g, input: input, weight: weight, bias: bias ? bp.baseAddress : nil, output: &expected)
        }
        for engine in [ConvEngine.packedSIMD, .blas] {
            for (i, t) in threads.enumerated() {
                // The second thread count runs on weights from packWeight.
                let prepacked = i == 1
                let got = b.withUnsafeBufferPointer { bp in
                    Self.run(g, input: input, weight: weight, bias: bias ? bp.baseAddress : nil, outputCount: outCount,
                             threads: t, prepacked: prepacked, engine: engine)
                }
                let err = maxMixedError(got, expected)
                XCTAssertLessThanOrEqual(err, Self.tolerance, "\(g) \(engine) threads \(t)", file: file, line: line)
            }
        }
    }

    /// One Conv2DPlan.run on buffers of its own: the workspace is filled with 0xFF first (garbage
    /// in it must not leak into the result); with `prepacked`, the plan takes the weights its
    /// packWeight wrote.
    static func run(_ g: ConvGeometry, input: [Float], weight: [Float], bias: UnsafePointer<Float>?, outputCount: Int,
                    threads: Int, prepacked: Bool, engine: ConvEngine, epilogue: ConvEpilogue = .none,
                    layout: ConvDataLayout = .nchw) -> [Float] {
        let plan = Conv2DPlan(g, threads: threads, engine: engine, layout: layout, weightsPrepacked: prepacked)
        let bytes = plan.workspaceByteCount
        let ws = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 1), alignment: 64)
        let packedBytes = plan.packedWeightByteCount
        let packed = UnsafeMutableRawPointer.allocate(byteCount: max(packedBytes, 1), alignment: 64)
        defer { ws.deallocate(); packed.deallocate() }
        ws.initializeMemory(as: UInt8.self, repeating: 0xFF, count: max(bytes, 1))
        var got = [Float](repeating: .nan, count: outputCount)
        let parallel = Parallel(threads: threads)
        if prepacked {
            plan.packWeight(weight, into: packed, parallel: parallel)
            plan.run(input: input, weight: packed.assumingMemoryBound(to: Float.self), bias: bias, output: &got,
                     workspace: ws, parallel: parallel, epilogue: epilogue)
        } else {
            plan.run(input: input, weight: weight, bias: bias, output: &got, workspace: ws, parallel: parallel,
                     epilogue: epilogue)
        }
        return got
    }

    func testAwkwardChannelCounts3x3() {
        for c in [1, 3, 7, 15, 16, 17] {
            check(ConvGeometry(batch: 1, inChannels: c, inHeight: 7, inWidth: 9, outChannels: 17 - c + 1,
                               kernelHeight: 3, kernelWidth: 3, padTop: 1, padLeft: 1), seed: UInt64(c))
        }
        check(ConvGeometry(batch: 1, inChannels: 127, inHeight: 5, inWidth: 6, outChannels: 129,
                           kernelHeight: 3, kernelWidth: 3, padTop: 1, padLeft: 1))
        check(ConvGeometry(batch: 1, inChannels: 129, inHeight: 4, inWidth: 3, outChannels: 127,
                           kernelHeight: 3, kernelWidth: 3, padTop: 1, padLeft: 1))
    }

    func testAwkwardPixelCounts() {
        for (h, w) in [(1, 1), (1, 3), (7, 1), (3, 5), (15, 16), (17, 17), (1, 127), (129, 1)] {
            check(ConvGeometry(batch: 1, inChannels: 4, inHeight: h, inWidth: w, outChannels: 5,
                               kernelHeight: 3, kernelWidth: 3, padTop: 1, padLeft: 1), seed: UInt64(h * 1000 + w))
        }
    }

    func testStridesDilationAsymmetricPads() {
        check(ConvGeometry(batch: 2, inChannels: 5, inHeight: 13, inWidth: 11, outChannels: 6,
                           kernelHeight: 3, kernelWidth: 3, strideHeight: 2, strideWidth: 3,
                           padTop: 1, padLeft: 2, padBottom: 0, padRight: 1))
        check(ConvGeometry(batch: 1, inChannels: 3, inHeight: 12, inWidth: 14, outChannels: 4,
                           kernelHeight: 3, kernelWidth: 3, padTop: 2, padLeft: 2, dilationHeight: 2,
                           dilationWidth: 3))
        check(ConvGeometry(batch: 1, inChannels: 3, inHeight: 9, inWidth: 10, outChannels: 7,
                           kernelHeight: 2, kernelWidth: 5, strideHeight: 1, strideWidth: 2,
                           padTop: 0, padLeft: 3, padBottom: 2, padRight: 0, dilationHeight: 3, dilationWidth: 1))
        // Padding wider than the kernel reach: whole output rows and columns see only zeros.
        check(ConvGeometry(batch: 1, inChannels: 2, inHeight: 3, inWidth: 3, outChannels: 3,
                           kernelHeight: 3, kernelWidth: 3, padTop: 4, padLeft: 5, padBottom: 3, padRight: 4))
    }

    func testKernelShapes() {
        for (kh, kw) in [(1, 1), (5, 5), (1, 3), (3, 1), (7, 2)] {
            check(ConvGeometry(batch: 1, inChannels: 6, inHeight: 11, inWidth: 10, outChannels: 5,
                               kernelHeight: kh, kernelWidth: kw, padTop: kh / 2, padLeft: kw / 2),
                  seed: UInt64(kh * 10 + kw))
        }
    }

    func testPointwiseFastPath() {
        check(ConvGeometry(batch: 2, inChannels: 17, inHeight: 9, inWidth: 15, outChannels: 16,
                           kernelHeight: 1, kernelWidth: 1))
        check(ConvGeometry(batch: 1, inChannels: 3, inHeight: 37, inWidth: 41, outChannels: 5,
                           kernelHeight: 1, kernelWidth: 1), bias: false)
        // 1x1 with stride or padding is not the fast path.
        check(ConvGeometry(batch: 1, inChannels: 3, inHeight: 8, inWidth: 7, outChannels: 4,
                           kernelHeight: 1, kernelWidth: 1, strideHeight: 2, strideWidth: 2))
        check(ConvGeometry(batch: 1, inChannels: 3, inHeight: 8, inWidth: 7, outChannels: 4,
                           kernelHeight: 1, kernelWidth: 1, padTop: 1, padLeft: 0, padBottom: 0, padRight: 2))
    }

    func testGroupsAndDepthwise() {
        check(ConvGeometry(batch: 2, inChannels: 6, inHeight: 9, inWidth: 8, outChannels: 9,
                           kernelHeight: 3, kernelWidth: 3, padTop: 1, padLeft: 1, group: 3))
        check(ConvGeometry(batch: 1, inChannels: 17, inHeight: 10, inWidth: 19, outChannels: 17,
                           kernelHeight: 3, kernelWidth: 3, padTop: 1, padLeft: 1, group: 17))
        check(ConvGeometry(batch: 1, inChannels: 16, inHeight: 7, inWidth: 7, outChannels: 32,
                           kernelHeight: 5, kernelWidth: 5, strideHeight: 2, strideWidth: 2,
                           padTop: 2, padLeft: 2, group: 16))
        check(ConvGeometry(batch: 1, inChannels: 8, inHeight: 6, inWidth: 6, outChannels: 8,
                           kernelHeight: 1, kernelWidth: 1, group: 4))
        // Depthwise with dilation, asymmetric pads, rows of 1, 7, 17, 33 and 129 outputs.
        for w in [1, 7, 17, 33, 129] {
            check(ConvGeometry(batch: 2, inChannels: 3, inHeight: 5, inWidth: w, outChannels: 6,
                               kernelHeight: 3, kernelWidth: 3, padTop: 2, padLeft: 1, padBottom: 0, padRight: 3,
                               dilationHeight: 2, dilationWidth: 2, group: 3), seed: UInt64(w))
        }
    }

    /// Depthwise convolution (multiplier 1) on channels-last data, with the input, the output or
    /// both channels-last, on packed and unpacked weights, one and two threads, with a fused
    /// residual Add and Relu: against the reference on NCHW data, the layouts converted here.
    func checkChannelsLastDepthwise(_ g: ConvGeometry, file: StaticString = #filePath, line: UInt = #line) {
        var rng = SeededGenerator(seed: UInt64(g.inChannels * 100 + g.inWidth))
        let c = g.outChannels, inPixels = g.inHeight * g.inWidth, outPixels = g.outHeight * g.outWidth
        let input = rng.floats(g.batch * c * inPixels)
        let weight = rng.floats(c * g.kernelHeight * g.kernelWidth)
        let bias = rng.floats(c)
        let residual = rng.floats(g.batch * c * outPixels)
        var expected = [Float](repeating: .nan, count: g.batch * c * outPixels)
        bias.withUnsafeBufferPointer { Conv2D.reference(g, input: input, weight: weight, bias: $0.baseAddress, output: &expected) }
        for i in expected.indices { expected[i] = max(expected[i] + residual[i], 0) }
        // NCHW <-> NHWC of one tensor of `pixels` per channel.
        func channelsLast(_ x: [Float], pixels: Int) -> [Float] {
            var y = x
            for n in 0..<g.batch { for ch in 0..<c { for p in 0..<pixels { y[(n * pixels + p) * c + ch] = x[(n * c + ch) * pixels + p] } } }
            return y
        }
        for layout in [ConvDataLayout(inputChannelsLast: true, outputChannelsLast: true),
                       ConvDataLayout(inputChannelsLast: false, outputChannelsLast: true),
                       ConvDataLayout(inputChannelsLast: true, outputChannelsLast: false)] {
            let x = layout.inputChannelsLast ? channelsLast(input, pixels: inPixels) : input
            let r = layout.outputChannelsLast ? channelsLast(residual, pixels: outPixels) : residual
            let want = layout.outputChannelsLast ? channelsLast(expected, pixels: outPixels) : expected
            for threads in [1, 2] {
                for prepacked in [false, true] {
                    let got = r.withUnsafeBufferPointer { rp in
                        bias.withUnsafeBufferPointer { bp in
                            Self.run(g, input: x, weight: weight, bias: bp.baseAddress, outputCount: want.count,
                                     threads: threads, prepacked: prepacked, engine: .preferred,
                                     epilogue: ConvEpilogue(residual: rp.baseAddress, activation: .relu), layout: layout)
                        }
                    }
                    XCTAssertLessThanOrEqual(maxMixedError(got, want), Self.tolerance,
                                             "\(g) \(layout) threads \(threads) prepacked \(prepacked)", file: file, line: line)
                }
            }
        }
    }

    func testChannelsLastDepthwise() {
        // Channel counts around the kernel's 64 / 16 / 8 / 1 blocks, MobileNet widths among them.
        for c in [1, 7, 8, 24, 72, 83] {
            checkChannelsLastDepthwise(ConvGeometry(batch: 2, inChannels: c, inHeight: 9, inWidth: 7, outChannels: c,
                                                    kernelHeight: 3, kernelWidth: 3, padTop: 1, padLeft: 1, group: c))
        }
        // Wide rows: runs of four interior pixels (stride 1 and 2) next to single edge pixels.
        for (c, w, stride) in [(40, 23, 1), (72, 29, 2), (19, 30, 1)] {
            checkChannelsLastDepthwise(ConvGeometry(batch: 1, inChannels: c, inHeight: 5, inWidth: w, outChannels: c,
                                                    kernelHeight: 3, kernelWidth: 3, strideHeight: stride,
                                                    strideWidth: stride, padTop: 1, padLeft: 1, group: c))
        }
        // 5x5 with stride 2 and asymmetric pads; dilation; a kernel wider than the padded image.
        checkChannelsLastDepthwise(ConvGeometry(batch: 1, inChannels: 40, inHeight: 11, inWidth: 12, outChannels: 40,
                                                kernelHeight: 5, kernelWidth: 5, strideHeight: 2, strideWidth: 2,
                                                padTop: 2, padLeft: 1, padBottom: 1, padRight: 2, group: 40))
        checkChannelsLastDepthwise(ConvGeometry(batch: 1, inChannels: 17, inHeight: 10, inWidth: 13, outChannels: 17,
                                                kernelHeight: 3, kernelWidth: 3, padTop: 2, padLeft: 2,
                                                dilationHeight: 2, dilationWidth: 2, group: 17))
        checkChannelsLastDepthwise(ConvGeometry(batch: 1, inChannels: 16, inHeight: 2, inWidth: 3, outChannels: 16,
                                                kernelHeight: 7, kernelWidth: 7, padTop: 3, padLeft: 3, group: 16))
    }

    /// No input channels: the output is the bias.
    func testNoInputChannels() {
        check(ConvGeometry(batch: 2, inChannels: 0, inHeight: 4, inWidth: 5, outChannels: 3,
                           kernelHeight: 3, kernelWidth: 3, padTop: 1, padLeft: 1))
    }

    /// An empty batch: nothing to compute, nothing to crash on (found by the fuzzer in BlasPlan).
    func testEmptyBatch() {
        check(ConvGeometry(batch: 0, inChannels: 4, inHeight: 5, inWidth: 6, outChannels: 3,
                           kernelHeight: 3, kernelWidth: 3, padTop: 1, padLeft: 1))
        check(ConvGeometry(batch: 0, inChannels: 4, inHeight: 5, inWidth: 6, outChannels: 3,
                           kernelHeight: 1, kernelWidth: 1))
    }

    func testBatchAndNoBias() {
        check(ConvGeometry(batch: 3, inChannels: 7, inHeight: 6, inWidth: 5, outChannels: 3,
                           kernelHeight: 3, kernelWidth: 3, padTop: 1, padLeft: 1), bias: false)
    }

    /// The default engine (ConvEngine.preferred) with the default workspace size.
    func testPreferredEngine() {
        let g = ConvGeometry(batch: 1, inChannels: 5, inHeight: 6, inWidth: 7, outChannels: 4,
                             kernelHeight: 3, kernelWidth: 3, padTop: 1, padLeft: 1)
        var rng = SeededGenerator(seed: 3)
        let input = rng.floats(5 * 6 * 7), weight = rng.floats(4 * 5 * 9)
        var expected = [Float](repeating: .nan, count: 4 * 6 * 7), got = expected
        Conv2D.reference(g, input: input, weight: weight, bias: nil, output: &expected)
        let plan = Conv2DPlan(g, threads: 2)
        let ws = UnsafeMutableRawPointer.allocate(byteCount: max(plan.workspaceByteCount, 1), alignment: 64)
        defer { ws.deallocate() }
        plan.run(input: input, weight: weight, bias: nil, output: &got, workspace: ws, parallel: Parallel(threads: 2))
        XCTAssertLessThanOrEqual(maxMixedError(got, expected), Self.tolerance, "engine \(ConvEngine.preferred)")
    }

    func testManyTilesManyThreads() {
        check(ConvGeometry(batch: 1, inChannels: 16, inHeight: 45, inWidth: 47, outChannels: 24,
                           kernelHeight: 3, kernelWidth: 3, padTop: 1, padLeft: 1), threads: [1, 2, 3, 5])
    }

    /// A re-plan for another input size keeps the packed weights when their packing is equal:
    /// so geometries with equal packing must pack identical bytes, and the packing must tell
    /// apart every change that alters the bytes.
    func testWeightPackingIgnoresInputSizeAndTellsLayersApart() {
        let base = ConvGeometry(batch: 1, inChannels: 37, inHeight: 9, inWidth: 11, outChannels: 70,
                                kernelHeight: 3, kernelWidth: 3, padTop: 1, padLeft: 1, group: 1)
        var rng = SeededGenerator(seed: 41)
        let weight = (0..<(70 * 37 * 9)).map { _ in Float.random(in: -1...1, using: &rng) }
        func packed(_ g: ConvGeometry, layout: ConvDataLayout) -> [Float] {
            let plan = Conv2DPlan(g, threads: 1, layout: layout)
            let bytes = plan.packedWeightByteCount
            let memory = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
            defer { memory.deallocate() }
            weight.withUnsafeBufferPointer { plan.packWeight($0.baseAddress!, into: memory) }
            return Array(UnsafeBufferPointer(start: memory.bindMemory(to: Float.self, capacity: bytes / 4), count: bytes / 4))
        }
        let resized = [
            ConvGeometry(batch: 3, inChannels: 37, inHeight: 40, inWidth: 5, outChannels: 70, kernelHeight: 3,
                         kernelWidth: 3, strideHeight: 2, strideWidth: 1, padTop: 0, padLeft: 2),
            ConvGeometry(batch: 1, inChannels: 37, inHeight: 2, inWidth: 2, outChannels: 70, kernelHeight: 3,
                         kernelWidth: 3, padTop: 1, padLeft: 1, dilationHeight: 2, dilationWidth: 1),
        ]
        for layout in [ConvDataLayout.nchw, ConvDataLayout(inputChannelsLast: true, outputChannelsLast: true)] {
            let expected = packed(base, layout: layout)
            for g in resized {
                XCTAssertEqual(Conv2D.weightPacking(g, layout: layout), Conv2D.weightPacking(base, layout: layout))
                XCTAssertEqual(packed(g, layout: layout), expected)
            }
        }
        XCTAssertEqual(DeformConv.weightPacking(resized[0]), DeformConv.weightPacking(base))
        let other = [
            ConvGeometry(batch: 1, inChannels: 37, inHeight: 9, inWidth: 11, outChannels: 71, kernelHeight: 3, kernelWidth: 3),
            ConvGeometry(batch: 1, inChannels: 38, inHeight: 9, inWidth: 11, outChannels: 70, kernelHeight: 3, kernelWidth: 3),
            ConvGeometry(batch: 1, inChannels: 37, inHeight: 9, inWidth: 11, outChannels: 70, kernelHeight: 1, kernelWidth: 9),
            ConvGeometry(batch: 1, inChannels: 74, inHeight: 9, inWidth: 11, outChannels: 70, kernelHeight: 3,
                         kernelWidth: 3, group: 2),
        ]
        for g in other { XCTAssertNotEqual(Conv2D.weightPacking(g), Conv2D.weightPacking(base)) }
    }
}
