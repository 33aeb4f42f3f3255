@testable import DeformRTKernels
import TestSupport
import XCTest

/// DeformConvPlan.run (both GEMM engines, 1 and 2 threads; the second thread count on weights from
/// packWeight) against DeformConv.reference, plus the reference against Conv2D.reference and
/// against vectors produced by OpenVINO.
/// Tolerance: max |a - b| / (1 + |b|) <= 1e-4 (float32 sampling and sums vs Double).
final class DeformConvTests: XCTestCase {
    static let tolerance: Float = 1e-4

    struct Case {
        var g: ConvGeometry
        var d: DeformableOptions
        var input: [Float]
        var weight: [Float]
        var offset: [Float]
        var mask: [Float]
        var bias: [Float]

        init(_ g: ConvGeometry, _ d: DeformableOptions, offsets: ClosedRange<Float> = -3...3, bias: Bool = true,
             seed: UInt64 = 7) {
            var rng = SeededGenerator(seed: seed)
            self.g = g
            self.d = d
            let pixels = g.outHeight * g.outWidth
            let taps = g.kernelHeight * g.kernelWidth
            input = rng.floats(g.batch * g.inChannels * g.inHeight * g.inWidth)
            weight = rng.floats(g.outChannels * (g.inChannels / g.group) * taps)
            offset = rng.floats(g.batch * d.offsetGroup * 2 * taps * pixels, in: offsets)
            mask = d.hasMask ? rng.floats(g.batch * d.offsetGroup * taps * pixels, in: 0...1) : []
            self.bias = bias ? rng.floats(g.outChannels) : []
        }

        var outCount: Int { g.batch * g.outChannels * g.outHeight * g.outWidth }

        func reference() -> [Float] {
            var out = [Float](repeating: .nan, count: outCount)
            mask.withUnsafeBufferPointer { m in
                bias.withUnsafeBufferPointer { b in
                    DeformConv.reference(g, d, input: input, weight: weight, offset: offset,
                                         mask: d.hasMask ? m.baseAddress : nil, bias: bias.isEmpty ? nil : b.baseAddress,
                                         output: &out)
                }
            }
            return out
        }

        /// `packWeight` first and the packedWeight variant of run, or run on OIHW weights.
        func run(engine: ConvEngine, threads: Int, prepacked: Bool = false) -> [Float] {
            var out = [Float](repeating: .nan, count: outCount)
            let plan = DeformConvPlan(g, d, threads: threads, engine: engine, weightsPrepacked: prepacked)
            let bytes = plan.workspaceByteCount
            let ws = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 1), alignment: 64)
            let packedBytes = DeformConv.packedWeightByteCount(g, engine: engine)
            let packed = UnsafeMutableRawPointer.allocate(byteCount: max(packedBytes, 1), alignment: 64)
            defer { ws.deallocate(); packed.deallocate() }
            // Garbage in the workspace must not leak into the result.
            ws.initializeMemory(as: UInt8.self, repeating: 0xFF, count: max(bytes, 1))
            let parallel = Parallel(threads: threads)
            mask.withUnsafeBufferPointer { m in
                bias.withUnsafeBufferPointer { b in
                    let maskPointer = d.hasMask ? m.baseAddress : nil, biasPointer = bias.isEmpty ? nil : b.baseAddress
                    if prepacked {
                        DeformConv.packWeight(g, weight: weight, into: packed, engine: engine, parallel: parallel)
                        plan.run(input: input, weight: packed.assumingMemoryBound(to: Float.self), offset: offset,
                                 mask: maskPointer, bias: biasPointer, output: &out, workspace: ws, parallel: parallel)
                    } else {
                        plan.run(input: input, weight: weight, offset: offset, mask: maskPointer, bias: biasPointer,
                                 output: &out, workspace: ws, parallel: parallel)
                    }
                }
            }
            return out
        }
    }

    func check(_ c: Case, threads: [Int] = [1, 2], file: StaticString = #filePath, line: UInt = #line) {
        let expected = c.reference()
        for engine in [ConvEngine.packedSIMD, .blas] {
            for (i, t) in threads.enumerated() {
                let got = c.run(engine: engine, threads: t, prepacked: i == 1)
                XCTAssertTrue(got.allSatisfy { $0.isFinite }, "non-finite output \(c.g) \(c.d) \(engine) threads \(t)",
                              file: file, line: line)
                let err = maxMixedError(got, expected)
                XCTAssertLessThanOrEqual(err, Self.tolerance, "\(c.g) \(c.d) \(engine) threads \(t)",
                                         file: file, line: line)
            }
        }
    }

    static let borders: [DeformableBorder] = [.zeroOutsideCorners, .openVINONoPad]

    func geometry(_ c: Int, _ h: Int, _ w: Int, _ m: Int, k: Int = 3, pad: Int = 1, group: Int = 1,
                  batch: Int = 1) -> ConvGeometry {
        ConvGeometry(batch: batch, inChannels: c, inHeight: h, inWidth: w, outChannels: m, kernelHeight: k,
                     kernelWidth: k, padTop: pad, padLeft: pad, group: group)
    }

    func testAwkwardChannelCounts() {
        for (i, c) in [1, 3, 7, 15, 16, 17].enumerated() {
            for border in Self.borders {
                check(Case(geometry(c, 6, 7, 19 - c), DeformableOptions(hasMask: i % 2 == 0, border: border),
                           seed: UInt64(c)))
            }
        }
        check(Case(geometry(127, 4, 5, 129), DeformableOptions(hasMask: true)), threads: [2])
        check(Case(geometry(129, 3, 4, 127), DeformableOptions(hasMask: false, border: .openVINONoPad)), threads: [1])
    }

    func testAwkwardPixelCounts() {
        for (h, w) in [(1, 1), (1, 3), (7, 1), (3, 5), (15, 16), (17, 17), (1, 127), (129, 1)] {
            check(Case(geometry(5, h, w, 6), DeformableOptions(hasMask: true), seed: UInt64(h * 1000 + w)),
                  threads: [2])
        }
    }

    func testGroupsAndOffsetGroups() {
        for border in Self.borders {
            check(Case(geometry(8, 6, 5, 6, group: 2), DeformableOptions(offsetGroup: 4, hasMask: true, border: border)))
            // Offset groups that straddle conv groups: 6 channels, 2 conv groups of 3, 3 offset groups of 2.
            check(Case(geometry(6, 5, 6, 4, group: 2), DeformableOptions(offsetGroup: 3, hasMask: true, border: border)))
            check(Case(geometry(34, 5, 4, 17), DeformableOptions(offsetGroup: 2, hasMask: false, border: border)))
            // Depthwise.
            check(Case(geometry(17, 6, 6, 17, group: 17), DeformableOptions(offsetGroup: 17, hasMask: true, border: border)))
        }
    }

    func testStridesDilationAsymmetricPadsKernelShapes() {
        let shapes = [
            ConvGeometry(batch: 1, inChannels: 5, inHeight: 11, inWidth: 9, outChannels: 7, kernelHeight: 3,
                         kernelWidth: 3, strideHeight: 2, strideWidth: 3, padTop: 1, padLeft: 2, padBottom: 0,
                         padRight: 1),
            ConvGeometry(batch: 1, inChannels: 4, inHeight: 9, inWidth: 10, outChannels: 3, kernelHeight: 3,
                         kernelWidth: 3, padTop: 2, padLeft: 2, dilationHeight: 2, dilationWidth: 2),
            ConvGeometry(batch: 1, inChannels: 3, inHeight: 8, inWidth: 9, outChannels: 5, kernelHeight: 2,
                         kernelWidth: 5, strideHeight: 1, strideWidth: 2, padTop: 0, padLeft: 3, padBottom: 2,
                         padRight: 0, dilationHeight: 3, dilationWidth: 1),
            geometry(6, 7, 8, 5, k: 1, pad: 0),
            geometry(4, 8, 7, 6, k: 5, pad: 2),
        ]
        for (i, g) in shapes.enumerated() {
            for border in Self.borders {
                check(Case(g, DeformableOptions(hasMask: i % 2 == 1, border: border), seed: UInt64(100 + i)))
            }
        }
    }

    func testEmptyBatch() {
        check(Case(geometry(4, 5, 6, 3, batch: 0), DeformableOptions(offsetGroup: 2, hasMask: true)))
    }

    func testBatchAndNoBias() {
        check(Case(geometry(7, 5, 6, 9, batch: 3), DeformableOptions(offsetGroup: 7, hasMask: true), bias: false))
    }

    /// Several tiles per thread and several k blocks (k = 9 * 96 > 640).
    func testManyTilesAndKBlocks() {
        check(Case(geometry(96, 13, 17, 70), DeformableOptions(offsetGroup: 3, hasMask: true)), threads: [1, 3])
    }

    /// Small k (one k block) and >= 49 output channels per group: the gather of each 6-pixel group
    /// runs inside the micro-kernel of the group before (packed engine). Tiles of 1-5 pixels, channel
    /// tails, a second 16-column block, offset groups straddling conv groups, the 36-plan limit.
    func testInterleavedSampling() {
        let cases: [(ConvGeometry, DeformableOptions)] = [
            (geometry(64, 13, 11, 64), DeformableOptions(hasMask: true)),
            (geometry(64, 1, 5, 64), DeformableOptions(hasMask: true, border: .openVINONoPad)),
            (geometry(20, 9, 7, 65), DeformableOptions(offsetGroup: 4, hasMask: false)),
            (geometry(12, 7, 9, 100, group: 2), DeformableOptions(offsetGroup: 3, hasMask: true)),
            (ConvGeometry(batch: 2, inChannels: 24, inHeight: 15, inWidth: 14, outChannels: 64, kernelHeight: 5,
                          kernelWidth: 5, strideHeight: 2, strideWidth: 1, padTop: 3, padLeft: 2, padBottom: 1,
                          padRight: 2, dilationHeight: 2, dilationWidth: 1),
             DeformableOptions(hasMask: true, border: .openVINONoPad)),
        ]
        for (i, (g, d)) in cases.enumerated() {
            XCTAssertTrue(ChannelsLastConvPlan(g, engine: .packedSIMD, threads: 2, offsetGroup: d.offsetGroup)
                .interleavesSampling, "\(g) \(d)")
            check(Case(g, d, offsets: -6...6, seed: UInt64(300 + i)), threads: [1, 2])
        }
        // 10 offset groups x 9 taps = 90 plans: over the limit, one plan at a time.
        let many = geometry(40, 6, 7, 64)
        XCTAssertFalse(ChannelsLastConvPlan(many, engine: .packedSIMD, threads: 1, offsetGroup: 10).interleavesSampling)
        check(Case(many, DeformableOptions(offsetGroup: 10, hasMask: true), seed: 310))
    }

    /// Zero offsets and a unit mask: exactly a convolution, under both border rules.
    func testZeroOffsetsEqualConv() {
        for border in Self.borders {
            var c = Case(geometry(9, 7, 8, 12, group: 3), DeformableOptions(offsetGroup: 3, hasMask: true, border: border))
            c.offset = c.offset.map { _ in 0 }
            c.mask = c.mask.map { _ in 1 }
            var conv = [Float](repeating: .nan, count: c.outCount)
            Conv2D.reference(c.g, input: c.input, weight: c.weight, bias: c.bias, output: &conv)  // bias is non-empty here
            XCTAssertLessThanOrEqual(maxMixedError(c.reference(), conv), 1e-6)
            check(c)
        }
    }

    func testIntegerOffsets() {
        for border in Self.borders {
            var c = Case(geometry(5, 6, 7, 4), DeformableOptions(offsetGroup: 1, hasMask: false, border: border))
            c.offset = c.offset.map { $0.rounded() }
            check(c)
        }
    }

    /// Sample positions in the one-pixel band around the input, where the border rules differ.
    func testBorderBand() {
        for border in Self.borders {
            var c = Case(geometry(4, 5, 6, 3, k: 1, pad: 0), DeformableOptions(hasMask: true, border: border))
            var rng = SeededGenerator(seed: 99)
            let pixels = 30
            // Output pixel (oy, ox) samples at (oy + dy, ox + dx); push it into (-1, 0) or (H - 1, H).
            for p in 0..<pixels {
                let oy = Float(p / 6), ox = Float(p % 6)
                let bandY = Bool.random(using: &rng) ? Float.random(in: -1...0, using: &rng)
                    : Float.random(in: 4...5, using: &rng)
                let bandX = Bool.random(using: &rng) ? Float.random(in: -1...0, using: &rng)
                    : Float.random(in: 5...6, using: &rng)
                c.offset[p] = bandY - oy
                c.offset[pixels + p] = Bool.random(using: &rng) ? bandX - ox : Float.random(in: -0.5...0.5, using: &rng)
            }
            check(c)
        }
    }

    /// Sample positions exactly on and just beside the points where the border rules change.
    func testExactBorderPositions() {
        let h = 4, w = 5
        let critical: [Float] = [-1.5, -1, -0.999_999, -0.5, -1e-7, -1e-30, 0, 1e-7, 0.5, 2, 2.5, 3 - 1e-6, 3,
                                 3 + 1e-6, 3.5, 4 - 1e-6, 4, 4 + 1e-6, 4.5, 5 - 1e-6, 5, 5.5]
        for border in Self.borders {
            // 1x1 kernel, no padding: output pixel (oy, ox) samples at (oy + dy, ox + dx).
            var c = Case(geometry(3, h, w, 2, k: 1, pad: 0), DeformableOptions(hasMask: false, border: border))
            let pixels = h * w
            for p in 0..<pixels {
                let oy = Float(p / w), ox = Float(p % w)
                c.offset[p] = critical[(p * 7) % critical.count] - oy
                c.offset[pixels + p] = critical[(p * 3 + 5) % critical.count] - ox
            }
            check(c)
        }
    }

    /// The default engine (ConvEngine.preferred) with the default workspace size.
    func testPreferredEngine() {
        let c = Case(geometry(5, 6, 7, 4), DeformableOptions(offsetGroup: 5, hasMask: true))
        var out = [Float](repeating: .nan, count: c.outCount)
        let plan = DeformConvPlan(c.g, c.d, threads: 2)
        let ws = UnsafeMutableRawPointer.allocate(byteCount: max(plan.workspaceByteCount, 1), alignment: 64)
        defer { ws.deallocate() }
        plan.run(input: c.input, weight: c.weight, offset: c.offset, mask: c.mask, bias: c.bias, output: &out,
                 workspace: ws, parallel: Parallel(threads: 2))
        XCTAssertLessThanOrEqual(maxMixedError(out, c.reference()), Self.tolerance, "engine \(ConvEngine.preferred)")
    }

    /// Hostile offsets: far outside, huge, non-finite. Nothing is read out of bounds (the address
    /// sanitizer build checks that), the output is finite, and it matches the reference.
    func testHostileOffsets() {
        let hostile: [Float] = [.nan, .infinity, -.infinity, 1e30, -1e30, 3e9, -3e9, 1e7, -1e7, 200, -200,
                                Float.greatestFiniteMagnitude, -Float.greatestFiniteMagnitude, -1, 0.5]
        for border in Self.borders {
            // One plan at a time (17 -> 5) and the interleaved gather (64 -> 64).
            for (cin, cout) in [(17, 5), (64, 64)] {
                var c = Case(geometry(cin, 5, 6, cout), DeformableOptions(offsetGroup: 1, hasMask: true, border: border))
                for i in c.offset.indices where i % 3 != 2 { c.offset[i] = hostile[i % hostile.count] }
                check(c)
            }
        }
    }

    /// OpenVINO 2026.4.1 (CPU, f32) deformable_convolution opset 8 on a 1x2x3x4 input, 2x2 kernel,
    /// 2 output channels, pads 1, stride 1, offsets chosen to land in and around the border band,
    /// mask = 0.75; bilinear_interpolation_pad true (= zeroOutsideCorners) and false (openVINONoPad).
    func testMatchesOpenVINO() {
        let g = ConvGeometry(batch: 1, inChannels: 2, inHeight: 3, inWidth: 4, outChannels: 2,
                             kernelHeight: 2, kernelWidth: 2, padTop: 1, padLeft: 1)
        let input: [Float] = (0..<24).map { Float($0 % 7) - 2.5 + Float($0) * 0.125 }
        let weight: [Float] = (0..<16).map { Float(($0 * 5) % 11) * 0.25 - 1 }
        let pixels = g.outHeight * g.outWidth  // 4 x 5
        let pattern: [Float] = [-0.75, 0.25, 1.5, -1.25, 0.6, 2.3, -0.1, 0.0, 1.0, -0.5]
        let offset: [Float] = (0..<(8 * pixels)).map { pattern[($0 * 7 + $0 / pixels) % pattern.count] }
        let mask = [Float](repeating: 0.75, count: 4 * pixels)
        for (border, expected) in [(DeformableBorder.zeroOutsideCorners, OpenVINOVectors.withPad),
                                   (.openVINONoPad, OpenVINOVectors.noPad)] {
            var c = Case(g, DeformableOptions(hasMask: true, border: border), bias: false)
            c.input = input
            c.weight = weight
            c.offset = offset
            c.mask = mask
            XCTAssertLessThanOrEqual(maxMixedError(c.reference(), expected), 1e-5, "\(border)")
            check(c)
        }
    }
}

/// Generated once with OpenVINO 2026.4.1 (Python: openvino.opset8.deformable_convolution, CPU, f32) from the
/// inputs built in testMatchesOpenVINO; output [1, 2, 4, 5] flattened.
enum OpenVINOVectors {
    static let withPad: [Float] = [
        2.8621878623962402, 2.1796875, 4.345664024353027, 1.848633050918579, 4.3125,
        -2.1796875, 1.422187328338623, 3.0310544967651367, 0.09257817268371582, -0.7317187786102295,
        -0.46054673194885254, -0.134765625, 0.4668753147125244, 2.2078123092651367, -0.03515625,
        0.09375, 0.4199996292591095, 5.455077648162842, 2.4814453125, 1.372266173362732,
        5.68593692779541, 0.1171875, 1.0814648866653442, 0.5001562833786011, 1.16015625,
        6.64453125, 6.073124885559082, 0.3539062738418579, 4.033007621765137, 2.1304686069488525,
        5.499843597412109, 6.665624618530273, 3.6892967224121094, 0.23671874403953552, 1.640625,
        -0.2109375, 0.2765626311302185, 2.289257764816284, 1.9775390625, 0.08261722326278687,
    ]
    static let noPad: [Float] = [
        4.212187767028809, 2.1796875, 4.4296875, 2.6953125, 4.3125,
        -2.1796875, 1.214062213897705, -0.234375, 0.375, -0.890625,
        -0.6515625715255737, 0.328125, 1.1742188930511475, 4.359375, -0.03515625,
        0.09375, 4.03125, 5.513671398162842, 3.33984375, 3.375,
        0.6234375238418579, 0.1171875, 0.9609375, 0.614062488079071, 1.16015625,
        6.64453125, 7.216406345367432, 1.546875, 4.189453125, 3.796875,
        5.751562118530273, 6.776952743530273, 4.060546875, 0.515625, 1.640625,
        -0.2109375, 0.8671875, 2.948437452316284, 2.16796875, 0.2109375,
    ]
}
