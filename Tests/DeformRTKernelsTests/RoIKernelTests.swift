import DeformRTKernels
import TestSupport
import XCTest

/// The optimised RoI kernels (RoiAlign, MaxRoiPool, DeformRoIPool, DeformablePSROIPool) against
/// their scalar references at awkward channel counts, 1-3 threads, a misaligned workspace, and
/// hostile RoIs; plus the identities the issue asks for (zero offsets = RoiAlign half_pixel, zero
/// trans = no trans) and a brute-force RoiAlign written here without the kernels' helpers.
/// Tolerance: max |a - b| / (1 + |b|) <= 1e-6; the optimised paths add in the references' order
/// and without fused multiply-adds, so in practice they agree exactly.
final class RoIKernelTests: XCTestCase {
    static let tolerance: Float = 1e-6
    static let channelCounts = [1, 3, 7, 15, 16, 17, 127, 129]

    /// RoIs in image coordinates for a map of `height` x `width` at `scale`: ordinary ones, some
    /// spilling over, tiny, zero-size, inverted, and far larger than the map.
    static func rois(_ rng: inout SeededGenerator, count: Int, batch: Int, height: Int, width: Int, scale: Float,
                     withBatchColumn: Bool) -> (rois: [Float], batchIndices: [Int64]) {
        let h = Float(height) / scale, w = Float(width) / scale
        var rois: [Float] = []
        var indices: [Int64] = []
        for r in 0..<count {
            var box: [Float]
            switch r % 8 {
            case 5: box = [0.3 * w, 0.4 * h, 0.3 * w + 0.1, 0.4 * h + 0.05]  // tiny
            case 6: box = [0.7 * w, 0.6 * h, 0.2 * w, 0.1 * h]  // inverted
            case 7: box = [-3 * w, -2 * h, 4 * w, 3 * h]  // far larger than the map
            default:
                let x1 = Float.random(in: -0.2 * w...0.9 * w, using: &rng)
                let y1 = Float.random(in: -0.2 * h...0.9 * h, using: &rng)
                box = [x1, y1, x1 + Float.random(in: 0.5...0.7 * w, using: &rng),
                       y1 + Float.random(in: 0.5...0.7 * h, using: &rng)]
            }
            let n = Int.random(in: 0..<batch, using: &rng)
            if withBatchColumn { rois.append(Float(n)) }
            rois += box
            indices.append(Int64(n))
        }
        return (rois, indices)
    }

    func assertClose(_ a: [Float], _ b: [Float], _ label: String, file: StaticString = #filePath, line: UInt = #line) {
        let error = maxMixedError(a, b)
        XCTAssertLessThanOrEqual(error, Self.tolerance, label, file: file, line: line)
    }

    // MARK: optimised vs reference

    func testRoiAlignMatchesReference() {
        var rng = SeededGenerator(seed: 1)
        for (i, channels) in Self.channelCounts.enumerated() {
            let (batch, height, width, count) = (2, 7 + i % 3, 9 - i % 2, 10)
            let input = rng.floats(batch * channels * height * width)
            let (rois, indices) = Self.rois(&rng, count: count, batch: batch, height: height, width: width,
                                            scale: 0.5, withBatchColumn: false)
            for mode in [RoiAlignMode.average, .max] {
                for coordinates in [RoiAlignCoordinates.halfPixel, .outputHalfPixel] {
                    for samplingRatio in [0, 2] {
                        let p = RoiAlignParams(
                            batch: batch, channels: channels, height: height, width: width, roiCount: count,
                            outputHeight: 3, outputWidth: 2, samplingRatio: samplingRatio, spatialScale: 0.5,
                            mode: mode, coordinates: coordinates)
                        let expected = roiAlignReference(p, input, rois, indices)
                        let got = roiAlignRun(p, input, rois, indices, threads: 1 + i % 3)
                        assertClose(got, expected, "RoiAlign C=\(channels) \(mode) \(coordinates) sr=\(samplingRatio)")
                    }
                }
            }
        }
    }

    func testMaxRoiPoolMatchesReference() {
        var rng = SeededGenerator(seed: 2)
        for (i, channels) in Self.channelCounts.enumerated() {
            let (batch, height, width, count) = (2, 8, 6 + i % 4, 10)
            let input = rng.floats(batch * channels * height * width)
            let rois = Self.rois(&rng, count: count, batch: batch, height: height, width: width, scale: 0.5,
                                 withBatchColumn: true).rois
            let p = MaxRoiPoolParams(batch: batch, channels: channels, height: height, width: width,
                                     roiCount: count, pooledHeight: 3, pooledWidth: 4, spatialScale: 0.5)
            assertClose(maxRoiPoolRun(p, input, rois, threads: 1 + i % 3), maxRoiPoolReference(p, input, rois),
                        "MaxRoiPool C=\(channels)")
        }
    }

    func testDeformRoIPoolMatchesReference() {
        var rng = SeededGenerator(seed: 3)
        for (i, channels) in Self.channelCounts.enumerated() {
            let (batch, height, width, count) = (2, 9, 8, 9)
            let input = rng.floats(batch * channels * height * width)
            let rois = Self.rois(&rng, count: count, batch: batch, height: height, width: width, scale: 0.5,
                                 withBatchColumn: true).rois
            let p = DeformRoIPoolParams(batch: batch, channels: channels, height: height, width: width,
                                        roiCount: count, pooledHeight: 3, pooledWidth: 3, spatialScale: 0.5,
                                        samplingRatio: i % 2 == 0 ? 0 : 2, gamma: 0.1)
            let offset = rng.floats(count * 2 * 9, in: -2...2)
            let mask = rng.floats(count * 9, in: 0...1)
            for (o, m) in [(offset, mask), (offset, nil), (nil, mask), (nil, nil)] as [([Float]?, [Float]?)] {
                assertClose(deformRoIPoolRun(p, input, rois, offset: o, mask: m, threads: 1 + i % 3),
                            deformRoIPoolReference(p, input, rois, offset: o, mask: m),
                            "DeformRoIPool C=\(channels) offset=\(o != nil) mask=\(m != nil)")
            }
        }
    }

    func testDeformablePSROIPoolMatchesReference() {
        var rng = SeededGenerator(seed: 4)
        for (i, outputDim) in Self.channelCounts.enumerated() {
            // (group, pooled, part, samples, classes) cycling through the layouts R-FCN uses.
            let layouts = [(3, 3, 3, 2, 1), (2, 4, 2, 3, 1), (3, 3, 0, 4, 1), (2, 2, 2, 1, 1)]
            var (group, pooled, part, samples, classes) = layouts[i % layouts.count]
            if outputDim % 2 == 0 && i % 2 == 1 { classes = 2 }
            let (batch, height, width, count) = (2, 10, 7, 8)
            let channels = outputDim * group * group + (i == 3 ? 5 : 0)  // spare channels are allowed
            let input = rng.floats(batch * channels * height * width)
            let rois = Self.rois(&rng, count: count, batch: batch, height: height, width: width, scale: 0.5,
                                 withBatchColumn: true).rois
            let p = DeformablePSROIPoolParams(
                batch: batch, channels: channels, height: height, width: width, roiCount: count,
                outputDim: outputDim, groupSize: group, pooledSize: pooled, partSize: part,
                samplePerPart: samples, spatialScale: 0.5, transStd: 0.2, transClasses: classes)
            XCTAssertNil(p.invalidReason)
            let trans = rng.floats(count * 2 * classes * p.partSize * p.partSize, in: -1...1)
            for t in [trans, nil] as [[Float]?] {
                assertClose(psroiRun(p, input, rois, trans: t, threads: 1 + i % 3),
                            psroiReference(p, input, rois, trans: t),
                            "DeformablePSROIPool outputDim=\(outputDim) group=\(group) trans=\(t != nil)")
            }
        }
    }

    func testThreadCountsGiveIdenticalResults() {
        var rng = SeededGenerator(seed: 5)
        let (batch, channels, height, width, count) = (2, 33, 12, 10, 37)
        let input = rng.floats(batch * channels * height * width)
        let (rois, indices) = Self.rois(&rng, count: count, batch: batch, height: height, width: width,
                                        scale: 1, withBatchColumn: false)
        let p = RoiAlignParams(batch: batch, channels: channels, height: height, width: width, roiCount: count,
                               outputHeight: 4, outputWidth: 4)
        let one = roiAlignRun(p, input, rois, indices, threads: 1)
        for threads in [2, 3, 8] { XCTAssertEqual(roiAlignRun(p, input, rois, indices, threads: threads), one) }
    }

    // MARK: identities

    /// mmcv with zero (or absent) offsets is RoiAlign half_pixel average, element for element.
    func testDeformRoIPoolWithZeroOffsetsIsRoiAlignHalfPixel() {
        var rng = SeededGenerator(seed: 6)
        for channels in [1, 17] {
            for samplingRatio in [0, 2] {
                let (batch, height, width, count) = (2, 11, 13, 16)
                let input = rng.floats(batch * channels * height * width)
                let (boxes, indices) = Self.rois(&rng, count: count, batch: batch, height: height, width: width,
                                                 scale: 0.25, withBatchColumn: false)
                var rois5: [Float] = []
                for r in 0..<count { rois5 += [Float(indices[r])] + boxes[4 * r..<4 * r + 4] }
                let align = RoiAlignParams(batch: batch, channels: channels, height: height, width: width,
                                           roiCount: count, outputHeight: 7, outputWidth: 5,
                                           samplingRatio: samplingRatio, spatialScale: 0.25)
                let deform = DeformRoIPoolParams(batch: batch, channels: channels, height: height, width: width,
                                                 roiCount: count, pooledHeight: 7, pooledWidth: 5, spatialScale: 0.25,
                                                 samplingRatio: samplingRatio)
                let expected = roiAlignRun(align, input, boxes, indices, threads: 1)
                let zeros = [Float](repeating: 0, count: count * 2 * 35)
                XCTAssertEqual(deformRoIPoolRun(deform, input, rois5, offset: zeros, mask: nil, threads: 2), expected)
                XCTAssertEqual(deformRoIPoolRun(deform, input, rois5, offset: nil, mask: nil, threads: 1), expected)
                XCTAssertEqual(deformRoIPoolReference(deform, input, rois5, offset: zeros, mask: nil),
                               roiAlignReference(align, input, boxes, indices))
            }
        }
    }

    func testDeformablePSROIPoolWithZeroTransIsNoTrans() {
        var rng = SeededGenerator(seed: 7)
        let p = DeformablePSROIPoolParams(batch: 1, channels: 5 * 9, height: 9, width: 9, roiCount: 8,
                                          outputDim: 5, groupSize: 3, samplePerPart: 2, spatialScale: 1,
                                          transStd: 0.1)
        let input = rng.floats(p.channels * 81)
        let rois = Self.rois(&rng, count: 8, batch: 1, height: 9, width: 9, scale: 1, withBatchColumn: true).rois
        XCTAssertEqual(psroiRun(p, input, rois, trans: [Float](repeating: 0, count: 8 * 2 * 9), threads: 2),
                       psroiRun(p, input, rois, trans: nil, threads: 1))
    }

    /// The mask multiplies each pooled bin (DCNv2 eq. 2).
    func testModulationMultipliesEachBin() {
        var rng = SeededGenerator(seed: 8)
        let p = DeformRoIPoolParams(batch: 1, channels: 4, height: 8, width: 8, roiCount: 3, pooledHeight: 2,
                                    pooledWidth: 2, spatialScale: 1)
        let input = rng.floats(4 * 64)
        let rois: [Float] = [0, 1, 1, 6, 6, 0, 0, 2, 7, 5, 0, 3, 3, 4, 4]
        let offset = rng.floats(3 * 2 * 4)
        let mask = rng.floats(3 * 4, in: 0...1)
        let plain = deformRoIPoolRun(p, input, rois, offset: offset, mask: nil, threads: 1)
        let modulated = deformRoIPoolRun(p, input, rois, offset: offset, mask: mask, threads: 1)
        for r in 0..<3 {
            for c in 0..<4 {
                for bin in 0..<4 {
                    let i = (r * 4 + c) * 4 + bin
                    XCTAssertEqual(modulated[i], plain[i] * mask[r * 4 + bin])
                }
            }
        }
    }

    /// RoiAlign average computed the slow, obvious way over the whole sampling grid (no range
    /// bisection, no shared helpers), for RoIs up to ~30x the map and inverted ones with a fixed
    /// sampling ratio.
    func testRoiAlignAgainstBruteForce() {
        var rng = SeededGenerator(seed: 9)
        let (channels, height, width, count) = (2, 6, 5, 40)
        let input = rng.floats(channels * height * width)
        var rois: [Float] = []
        for _ in 0..<count {
            let x1 = Float.random(in: -60...10, using: &rng), y1 = Float.random(in: -60...10, using: &rng)
            rois += [x1, y1, x1 + Float.random(in: -8...150, using: &rng), y1 + Float.random(in: -8...150, using: &rng)]
        }
        let indices = [Int64](repeating: 0, count: count)
        for samplingRatio in [0, 3] {
            for coordinates in [RoiAlignCoordinates.halfPixel, .outputHalfPixel] {
                let p = RoiAlignParams(batch: 1, channels: channels, height: height, width: width, roiCount: count,
                                       outputHeight: 3, outputWidth: 4, samplingRatio: samplingRatio,
                                       spatialScale: 1, coordinates: coordinates)
                let expected = bruteForceRoiAlign(p, input, rois)
                assertClose(roiAlignReference(p, input, rois, indices), expected, "reference sr=\(samplingRatio)")
                assertClose(roiAlignRun(p, input, rois, indices, threads: 2), expected, "run sr=\(samplingRatio)")
            }
        }
    }

    func bruteForceRoiAlign(_ p: RoiAlignParams, _ input: [Float], _ rois: [Float]) -> [Float] {
        var out: [Float] = []
        let shift: Float = p.coordinates == .halfPixel ? 0.5 : 0
        for r in 0..<p.roiCount {
            let sx = rois[4 * r] * p.spatialScale - shift, sy = rois[4 * r + 1] * p.spatialScale - shift
            var w = (rois[4 * r + 2] * p.spatialScale - shift) - sx, h = (rois[4 * r + 3] * p.spatialScale - shift) - sy
            if p.coordinates == .outputHalfPixel { w = max(w, 1); h = max(h, 1) }
            let bh = h / Float(p.outputHeight), bw = w / Float(p.outputWidth)
            let gh = p.samplingRatio > 0 ? p.samplingRatio : Int(bh.rounded(.up))
            let gw = p.samplingRatio > 0 ? p.samplingRatio : Int(bw.rounded(.up))
            let count = Float(max(gh * gw, 1))
            for c in 0..<p.channels {
                for ph in 0..<p.outputHeight {
                    for pw in 0..<p.outputWidth {
                        var sum: Float = 0
                        for iy in 0..<max(gh, 0) {
                            let y0 = sy + Float(ph) * bh + ((Float(iy) + 0.5) * bh) / Float(gh)
                            for ix in 0..<max(gw, 0) {
                                let x0 = sx + Float(pw) * bw + ((Float(ix) + 0.5) * bw) / Float(gw)
                                sum += bilinear(input, plane: c, y: y0, x: x0, height: p.height, width: p.width)
                            }
                        }
                        out.append(sum / count)
                    }
                }
            }
        }
        return out
    }

    func bilinear(_ input: [Float], plane: Int, y: Float, x: Float, height: Int, width: Int) -> Float {
        if y < -1 || y > Float(height) || x < -1 || x > Float(width) { return 0 }
        let y = max(y, 0), x = max(x, 0)
        let y0 = min(Int(y), height - 1), x0 = min(Int(x), width - 1)
        let y1 = min(y0 + 1, height - 1), x1 = min(x0 + 1, width - 1)
        let ly = y0 == height - 1 ? 0 : y - Float(y0), lx = x0 == width - 1 ? 0 : x - Float(x0)
        let v = { (yy: Int, xx: Int) in input[(plane * height + yy) * width + xx] }
        return (1 - ly) * (1 - lx) * v(y0, x0) + (1 - ly) * lx * v(y0, x1) + ly * (1 - lx) * v(y1, x0) + ly * lx * v(y1, x1)
    }

    // MARK: bad input: defined results, never a crash

    func testBadRoIsGiveZeros() {
        var rng = SeededGenerator(seed: 10)
        let (batch, channels, height, width) = (2, 5, 6, 7)
        let input = rng.floats(batch * channels * height * width)
        let badBatch: [Float] = [-1, 2, 7, .nan, .infinity, -.infinity, 1e30, -1.5]
        let badBoxes: [[Float]] = [[.nan, 1, 4, 4], [1, .infinity, 4, 4], [1, 1, -.infinity, 4], [1, 1, 4, .nan],
                                   [-3e38, -3e38, 3e38, 3e38]]
        var rois5: [Float] = []
        for b in badBatch { rois5 += [b, 1, 1, 5, 5] }
        for box in badBoxes { rois5 += [0] + box }
        let count = badBatch.count + badBoxes.count

        let deform = DeformRoIPoolParams(batch: batch, channels: channels, height: height, width: width,
                                         roiCount: count, pooledHeight: 2, pooledWidth: 3)
        XCTAssertEqual(deformRoIPoolRun(deform, input, rois5, offset: nil, mask: nil, threads: 2),
                       [Float](repeating: 0, count: count * channels * 6))
        XCTAssertEqual(deformRoIPoolReference(deform, input, rois5, offset: nil, mask: nil),
                       [Float](repeating: 0, count: count * channels * 6))

        let maxPool = MaxRoiPoolParams(batch: batch, channels: channels, height: height, width: width,
                                       roiCount: count, pooledHeight: 2, pooledWidth: 3)
        XCTAssertEqual(maxRoiPoolRun(maxPool, input, rois5, threads: 2), [Float](repeating: 0, count: count * channels * 6))
        XCTAssertEqual(maxRoiPoolReference(maxPool, input, rois5), [Float](repeating: 0, count: count * channels * 6))

        let psroi = DeformablePSROIPoolParams(batch: batch, channels: channels * 4, height: height, width: width,
                                              roiCount: count, outputDim: channels, groupSize: 2,
                                              samplePerPart: 2, spatialScale: 1)
        let psInput = rng.floats(batch * channels * 4 * height * width)
        XCTAssertEqual(psroiRun(psroi, psInput, rois5, trans: nil, threads: 2),
                       [Float](repeating: 0, count: count * channels * 4))
        XCTAssertEqual(psroiReference(psroi, psInput, rois5, trans: nil), [Float](repeating: 0, count: count * channels * 4))

        // RoiAlign: int64 batch indices out of range, and the same bad boxes.
        var boxes: [Float] = []
        var indices: [Int64] = []
        for b in [Int64(-1), 2, .max, .min] { boxes += [1, 1, 5, 5]; indices.append(b) }
        for box in badBoxes { boxes += box; indices.append(0) }
        for mode in [RoiAlignMode.average, .max] {
            let align = RoiAlignParams(batch: batch, channels: channels, height: height, width: width,
                                       roiCount: indices.count, outputHeight: 2, outputWidth: 3, mode: mode)
            let zeros = [Float](repeating: 0, count: indices.count * channels * 6)
            XCTAssertEqual(roiAlignRun(align, input, boxes, indices, threads: 2), zeros)
            XCTAssertEqual(roiAlignReference(align, input, boxes, indices), zeros)
        }
    }

    /// Enormous, infinite and NaN offsets, RoIs of +-1e30: bounded work, finite results, and
    /// the optimised path equal to the reference.
    func testHostileValuesAreBoundedAndAgree() {
        var rng = SeededGenerator(seed: 11)
        let (batch, channels, height, width) = (1, 3, 5, 6)
        let input = rng.floats(batch * channels * height * width)
        let boxes: [[Float]] = [[-1e30, -1e30, 1e30, 1e30], [0, 0, 1e30, 3], [1e30, 1e30, 1e30 + 1, 1e30 + 1],
                                [-1e7, 2, 1e7, 4], [2, 2, 3, 3], [4, 1, 1, 3], [0, 0, 6, 5]]
        var rois5: [Float] = []
        for box in boxes { rois5 += [0] + box }
        let offsets: [Float] = [1e30, -1e30, .infinity, -.infinity, .nan, 3e38, 0, 1e5]
        let bins = 4
        var offset: [Float] = []
        for i in 0..<boxes.count * 2 * bins { offset.append(offsets[i % offsets.count]) }
        let mask = rng.floats(boxes.count * bins, in: 0...1)
        for samplingRatio in [0, 2] {
            let p = DeformRoIPoolParams(batch: batch, channels: channels, height: height, width: width,
                                        roiCount: boxes.count, pooledHeight: 2, pooledWidth: 2,
                                        samplingRatio: samplingRatio)
            let got = deformRoIPoolRun(p, input, rois5, offset: offset, mask: mask, threads: 2)
            XCTAssertEqual(got, deformRoIPoolReference(p, input, rois5, offset: offset, mask: mask))
            XCTAssertTrue(got.allSatisfy(\.isFinite))

            var boxes4: [Float] = []
            for box in boxes { boxes4 += box }
            let indices = [Int64](repeating: 0, count: boxes.count)
            for mode in [RoiAlignMode.average, .max] {
                let a = RoiAlignParams(batch: batch, channels: channels, height: height, width: width,
                                       roiCount: boxes.count, outputHeight: 2, outputWidth: 2,
                                       samplingRatio: samplingRatio, mode: mode)
                let aligned = roiAlignRun(a, input, boxes4, indices, threads: 1)
                XCTAssertEqual(aligned, roiAlignReference(a, input, boxes4, indices))
                XCTAssertTrue(aligned.allSatisfy(\.isFinite))
            }
        }
        let m = MaxRoiPoolParams(batch: batch, channels: channels, height: height, width: width,
                                 roiCount: boxes.count, pooledHeight: 2, pooledWidth: 2)
        let pooled = maxRoiPoolRun(m, input, rois5, threads: 2)
        XCTAssertEqual(pooled, maxRoiPoolReference(m, input, rois5))
        XCTAssertTrue(pooled.allSatisfy(\.isFinite))

        let ps = DeformablePSROIPoolParams(batch: batch, channels: channels * 4, height: height, width: width,
                                           roiCount: boxes.count, outputDim: channels, groupSize: 2,
                                           samplePerPart: 3, spatialScale: 1, transStd: 1)
        let psInput = rng.floats(batch * channels * 4 * height * width)
        let psTrans = (0..<boxes.count * 2 * 4).map { offsets[$0 % offsets.count] }
        let psOut = psroiRun(ps, psInput, rois5, trans: psTrans, threads: 2)
        XCTAssertEqual(psOut, psroiReference(ps, psInput, rois5, trans: psTrans))
        XCTAssertTrue(psOut.allSatisfy(\.isFinite))
    }

    func testEmptyMapGivesZeros() {
        let p = RoiAlignParams(batch: 1, channels: 3, height: 0, width: 4, roiCount: 2, outputHeight: 2, outputWidth: 2)
        XCTAssertEqual(roiAlignRun(p, [], [0, 0, 1, 1, 0, 0, 2, 2], [0, 0], threads: 2), [Float](repeating: 0, count: 24))
        XCTAssertEqual(roiAlignReference(p, [], [0, 0, 1, 1, 0, 0, 2, 2], [0, 0]), [Float](repeating: 0, count: 24))
        let m = MaxRoiPoolParams(batch: 1, channels: 3, height: 4, width: 0, roiCount: 1, pooledHeight: 2, pooledWidth: 2)
        XCTAssertEqual(maxRoiPoolRun(m, [], [0, 0, 0, 1, 1], threads: 1), [Float](repeating: 0, count: 12))
    }

    func testInvalidParametersAreReported() {
        XCTAssertNotNil(RoiAlignParams(batch: 1, channels: 1, height: 1, width: 1, roiCount: 1, outputHeight: 0).invalidReason)
        XCTAssertNotNil(RoiAlignParams(batch: 1, channels: 1, height: 1, width: 1, roiCount: 1, samplingRatio: -1).invalidReason)
        XCTAssertNotNil(DeformRoIPoolParams(batch: 1, channels: 1, height: 1, width: 1, roiCount: 1, pooledHeight: 1,
                                            pooledWidth: 1, gamma: .nan).invalidReason)
        XCTAssertNotNil(DeformablePSROIPoolParams(batch: 1, channels: 8, height: 4, width: 4, roiCount: 1, outputDim: 3,
                                                  groupSize: 2, spatialScale: 1).invalidReason)  // 3 * 4 > 8
        XCTAssertNotNil(DeformablePSROIPoolParams(batch: 1, channels: 12, height: 4, width: 4, roiCount: 1, outputDim: 3,
                                                  groupSize: 2, spatialScale: 1, transClasses: 2).invalidReason)
        XCTAssertNil(DeformablePSROIPoolParams(batch: 1, channels: 12, height: 4, width: 4, roiCount: 1, outputDim: 3,
                                               groupSize: 2, spatialScale: 1, transClasses: 3).invalidReason)
    }
}

// Shared by the RoI kernel tests: array-level wrappers around the four RoI ops (optimised path
// with a deliberately misaligned workspace, and the scalar reference).

/// Runs `body` with a workspace of `bytes` that starts 3 bytes past an allocation, so the
/// kernels' own alignment is exercised.
func roiWithWorkspace(_ bytes: Int, _ body: (UnsafeMutableRawBufferPointer) -> Void) {
    let raw = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes + 3, alignment: 16)
    defer { raw.deallocate() }
    body(UnsafeMutableRawBufferPointer(rebasing: raw[3...]))
}

func roiAlignRun(
    _ p: RoiAlignParams, _ input: [Float], _ rois: [Float], _ batchIndices: [Int64], threads: Int
) -> [Float] {
    var out = [Float](repeating: .nan, count: p.roiCount * p.channels * p.outputHeight * p.outputWidth)
    roiWithWorkspace(RoiAlign.workspaceByteCount(p, threads: threads)) { ws in
        RoiAlign.run(
            p, input: input, rois: rois, batchIndices: batchIndices, output: &out, workspace: ws,
            parallel: Parallel(threads: threads))
    }
    return out
}

func roiAlignReference(_ p: RoiAlignParams, _ input: [Float], _ rois: [Float], _ batchIndices: [Int64]) -> [Float] {
    var out = [Float](repeating: .nan, count: p.roiCount * p.channels * p.outputHeight * p.outputWidth)
    RoiAlign.reference(p, input: input, rois: rois, batchIndices: batchIndices, output: &out)
    return out
}

func maxRoiPoolRun(_ p: MaxRoiPoolParams, _ input: [Float], _ rois: [Float], threads: Int) -> [Float] {
    var out = [Float](repeating: .nan, count: p.roiCount * p.channels * p.pooledHeight * p.pooledWidth)
    roiWithWorkspace(MaxRoiPool.workspaceByteCount(p, threads: threads)) { ws in
        MaxRoiPool.run(p, input: input, rois: rois, output: &out, workspace: ws, parallel: Parallel(threads: threads))
    }
    return out
}

func maxRoiPoolReference(_ p: MaxRoiPoolParams, _ input: [Float], _ rois: [Float]) -> [Float] {
    var out = [Float](repeating: .nan, count: p.roiCount * p.channels * p.pooledHeight * p.pooledWidth)
    MaxRoiPool.reference(p, input: input, rois: rois, output: &out)
    return out
}

func deformRoIPoolRun(
    _ p: DeformRoIPoolParams, _ input: [Float], _ rois: [Float], offset: [Float]?, mask: [Float]?, threads: Int
) -> [Float] {
    var out = [Float](repeating: .nan, count: p.roiCount * p.channels * p.pooledHeight * p.pooledWidth)
    roiWithWorkspace(DeformRoIPool.workspaceByteCount(p, threads: threads)) { ws in
        roiOptional(offset) { o in
            roiOptional(mask) { m in
                DeformRoIPool.run(
                    p, input: input, rois: rois, offset: o, mask: m, output: &out, workspace: ws,
                    parallel: Parallel(threads: threads))
            }
        }
    }
    return out
}

func deformRoIPoolReference(
    _ p: DeformRoIPoolParams, _ input: [Float], _ rois: [Float], offset: [Float]?, mask: [Float]?
) -> [Float] {
    var out = [Float](repeating: .nan, count: p.roiCount * p.channels * p.pooledHeight * p.pooledWidth)
    roiOptional(offset) { o in
        roiOptional(mask) { m in
            DeformRoIPool.reference(p, input: input, rois: rois, offset: o, mask: m, output: &out)
        }
    }
    return out
}

func psroiRun(
    _ p: DeformablePSROIPoolParams, _ input: [Float], _ rois: [Float], trans: [Float]?, threads: Int
) -> [Float] {
    var out = [Float](repeating: .nan, count: p.roiCount * p.outputDim * p.pooledSize * p.pooledSize)
    roiWithWorkspace(DeformablePSROIPool.workspaceByteCount(p, threads: threads)) { ws in
        roiOptional(trans) { t in
            DeformablePSROIPool.run(
                p, input: input, rois: rois, trans: t, output: &out, workspace: ws, parallel: Parallel(threads: threads))
        }
    }
    return out
}

func psroiReference(_ p: DeformablePSROIPoolParams, _ input: [Float], _ rois: [Float], trans: [Float]?) -> [Float] {
    var out = [Float](repeating: .nan, count: p.roiCount * p.outputDim * p.pooledSize * p.pooledSize)
    roiOptional(trans) { t in DeformablePSROIPool.reference(p, input: input, rois: rois, trans: t, output: &out) }
    return out
}

/// Calls `body` with a pointer to `array`'s elements, or nil.
func roiOptional(_ array: [Float]?, _ body: (UnsafePointer<Float>?) -> Void) {
    if let array { array.withUnsafeBufferPointer { body($0.baseAddress!) } } else { body(nil) }
}
