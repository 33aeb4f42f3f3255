import DeformRTKernels
import TestSupport
import XCTest

/// Winograd F(2x2, 3x3) (WinogradConvPlan, through Conv2DPlan.run on the packed engine) against
/// Conv2D.reference (Double accumulation) on the same data in NCHW: odd and even output sizes
/// (tiles cut by the edges), every padding, asymmetric pads, 4x4 and 2x9 outputs, channel counts whose
/// last column block is narrower than 64 or that are not multiples of 16 (padded rows on either
/// side), several tile blocks, every mix of NCHW and channels-last input and output, batch 2, 1-3
/// threads, weights packed per call and once, with a fused residual Add and an activation the
/// store applies (Relu) or one it leaves to the epilogue's pass (Sigmoid).
/// Tolerance: max |a - b| / (1 + |b|) <= 1e-4, as Conv2DTests (the transforms add a few ulps).
final class WinogradConvTests: XCTestCase {
    static let layout = ConvDataLayout(inputChannelsLast: true, outputChannelsLast: true)
    static let layouts = [layout, .nchw, ConvDataLayout(inputChannelsLast: false, outputChannelsLast: true),
                          ConvDataLayout(inputChannelsLast: true, outputChannelsLast: false)]

    func check(_ g: ConvGeometry, activation: UnaryFunction?, residual hasResidual: Bool, bias hasBias: Bool = true,
               layouts: [ConvDataLayout] = [layout], file: StaticString = #filePath, line: UInt = #line) {
        for layout in layouts {
            check(g, activation: activation, residual: hasResidual, bias: hasBias, layout: layout, file: file, line: line)
        }
    }

    func check(_ g: ConvGeometry, activation: UnaryFunction?, residual hasResidual: Bool, bias hasBias: Bool,
               layout: ConvDataLayout, file: StaticString, line: UInt) {
        XCTAssertTrue(Conv2D.runsWinograd(g, engine: .packedSIMD, layout: layout), "\(g)", file: file, line: line)
        var rng = SeededGenerator(seed: UInt64(g.inChannels * 1000 + g.outChannels * 10 + g.inWidth))
        let inPixels = g.inHeight * g.inWidth, outPixels = g.outHeight * g.outWidth
        let input = rng.floats(g.batch * g.inChannels * inPixels)
        let weight = rng.floats(g.outChannels * g.inChannels * 9)
        let bias = rng.floats(g.outChannels)
        let residual = rng.floats(g.batch * g.outChannels * outPixels)
        var expected = [Float](repeating: .nan, count: g.batch * g.outChannels * outPixels)
        bias.withUnsafeBufferPointer { bp in
            Conv2D.reference(g, input: input, weight: weight, bias: hasBias ? bp.baseAddress : nil, output: &expected)
        }
        func channelsLast(_ x: [Float], channels: Int, pixels: Int) -> [Float] {
            var y = x
            for n in 0..<g.batch {
                for c in 0..<channels {
                    for p in 0..<pixels { y[(n * pixels + p) * channels + c] = x[(n * channels + c) * pixels + p] }
                }
            }
            return y
        }
        let x = layout.inputChannelsLast ? channelsLast(input, channels: g.inChannels, pixels: inPixels) : input
        let r = layout.outputChannelsLast ? channelsLast(residual, channels: g.outChannels, pixels: outPixels) : residual
        var want = layout.outputChannelsLast ? channelsLast(expected, channels: g.outChannels, pixels: outPixels) : expected
        for i in want.indices {
            var v = want[i] + (hasResidual ? r[i] : 0)
            switch activation {
            case .relu?: v = max(v, 0)
            case .sigmoid?: v = 1 / (1 + exp(-v))
            default: break
            }
            want[i] = v
        }
        for threads in [1, 2, 3] {
            for prepacked in [false, true] {
                let got = r.withUnsafeBufferPointer { rp in
                    bias.withUnsafeBufferPointer { bp in
                        Conv2DTests.run(g, input: x, weight: weight, bias: hasBias ? bp.baseAddress : nil,
                                        outputCount: want.count, threads: threads, prepacked: prepacked,
                                        engine: .packedSIMD,
                                        epilogue: ConvEpilogue(residual: hasResidual ? rp.baseAddress : nil,
                                                               activation: activation),
                                        layout: layout)
                    }
                }
                XCTAssertLessThanOrEqual(maxMixedError(got, want), Conv2DTests.tolerance,
                                         "\(g) \(layout) threads \(threads) prepacked \(prepacked)", file: file, line: line)
            }
        }
    }

    func testOddAndEvenSizesEveryPadding() {
        for (h, w, pad) in [(5, 7, 1), (6, 6, 0), (4, 9, 2), (4, 4, 1), (2, 9, 1), (8, 8, 1)] {
            check(ConvGeometry(batch: 2, inChannels: 16, inHeight: h, inWidth: w, outChannels: 16, kernelHeight: 3,
                               kernelWidth: 3, padTop: pad, padLeft: pad), activation: nil, residual: false)
        }
        check(ConvGeometry(batch: 1, inChannels: 32, inHeight: 9, inWidth: 6, outChannels: 48, kernelHeight: 3,
                           kernelWidth: 3, padTop: 2, padLeft: 0, padBottom: 1, padRight: 2),
              activation: .relu, residual: true, layouts: Self.layouts)
    }

    /// Channel counts that are not multiples of 16 (padded rows on both sides), as DCNv2's offset
    /// convolutions have (27 outputs), in every layout.
    func testChannelCountsNotMultiplesOf16() {
        check(ConvGeometry(batch: 2, inChannels: 20, inHeight: 7, inWidth: 10, outChannels: 27, kernelHeight: 3,
                           kernelWidth: 3, padTop: 1, padLeft: 1), activation: .relu, residual: true, layouts: Self.layouts)
        check(ConvGeometry(batch: 1, inChannels: 64, inHeight: 9, inWidth: 9, outChannels: 70, kernelHeight: 3,
                           kernelWidth: 3, padTop: 1, padLeft: 1), activation: .sigmoid, residual: true, bias: false,
              layouts: Self.layouts)
    }

    func testColumnBlocksNarrowerThan64AndManyTileBlocks() {
        check(ConvGeometry(batch: 1, inChannels: 48, inHeight: 11, inWidth: 13, outChannels: 80, kernelHeight: 3,
                           kernelWidth: 3, padTop: 1, padLeft: 1), activation: .relu, residual: true, bias: false)
        // 256 input channels: at most 36 tiles per block, so 100 tiles take three blocks.
        check(ConvGeometry(batch: 1, inChannels: 256, inHeight: 20, inWidth: 20, outChannels: 16, kernelHeight: 3,
                           kernelWidth: 3, padTop: 1, padLeft: 1), activation: .sigmoid, residual: true)
        check(ConvGeometry(batch: 2, inChannels: 64, inHeight: 7, inWidth: 7, outChannels: 144, kernelHeight: 3,
                           kernelWidth: 3, padTop: 1, padLeft: 1), activation: .sigmoid, residual: false)
    }

    /// Only what the plan computes takes it: other shapes keep the direct paths.
    func testAppliesOnlyTo3x3Stride1() {
        let g = ConvGeometry(batch: 1, inChannels: 32, inHeight: 8, inWidth: 8, outChannels: 32, kernelHeight: 3,
                             kernelWidth: 3, padTop: 1, padLeft: 1)
        XCTAssertTrue(Conv2D.runsWinograd(g, engine: .packedSIMD, layout: Self.layout))
        XCTAssertFalse(Conv2D.runsWinograd(g, engine: .blas, layout: Self.layout))
        var other = g
        other.strideHeight = 2
        XCTAssertFalse(Conv2D.runsWinograd(other, engine: .packedSIMD, layout: Self.layout))
        other = g
        other.dilationWidth = 2
        XCTAssertFalse(Conv2D.runsWinograd(other, engine: .packedSIMD, layout: Self.layout))
        other = g
        other.inChannels = 15
        XCTAssertFalse(Conv2D.runsWinograd(other, engine: .packedSIMD, layout: Self.layout))
        other = g
        other.group = 2
        XCTAssertFalse(Conv2D.runsWinograd(other, engine: .packedSIMD, layout: Self.layout))
        // Maps too small for the tiles to save work: 1x1, 2x2, 3x3, single rows and columns.
        for (h, w) in [(1, 1), (2, 2), (3, 3), (1, 40), (40, 1)] {
            let small = ConvGeometry(batch: 1, inChannels: 32, inHeight: h, inWidth: w, outChannels: 32, kernelHeight: 3,
                                     kernelWidth: 3, padTop: 1, padLeft: 1)
            XCTAssertFalse(Conv2D.runsWinograd(small, engine: .packedSIMD, layout: Self.layout), "\(h)x\(w)")
        }
    }
}
