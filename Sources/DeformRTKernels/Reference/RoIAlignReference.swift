extension RoiAlign {
    /// Scalar oracle: onnxruntime's RoiAlignForward read straight off NCHW, one output at a time,
    /// with the defined results of `RoiAlign` for bad RoIs. Shares only the RoI geometry
    /// (`RoIAlignBox`) and the range of on-map samples with the optimised path.
    public static func reference(
        _ params: RoiAlignParams, input: UnsafePointer<Float>, rois: UnsafePointer<Float>,
        batchIndices: UnsafePointer<Int64>, output: UnsafeMutablePointer<Float>
    ) {
        precondition(params.invalidReason == nil, params.invalidReason ?? "")
        let height = params.height, width = params.width
        var o = 0
        for r in 0..<params.roiCount {
            let n = roiBatch(batchIndices[r], batch: params.batch)
            let box = box(params, rois + 4 * r)
            for c in 0..<params.channels {
                for ph in 0..<params.outputHeight {
                    for pw in 0..<params.outputWidth {
                        if let n, let box, height > 0, width > 0 {
                            let plane = input + (n * params.channels + c) * height * width
                            output[o] = roiAlignBinReference(
                                box, ph: ph, pw: pw, shiftX: 0, shiftY: 0, maximum: params.mode == .max,
                                plane: plane, height: height, width: width)
                        } else {
                            output[o] = 0
                        }
                        o += 1
                    }
                }
            }
        }
    }
}

/// One RoIAlign bin of one channel plane, the scalar way: onnxruntime/torchvision/mmcv's
/// bilinear_interpolate per sample, summed (or maxed) in sample order. Samples off the map read
/// 0, so only the on-map range is visited.
func roiAlignBinReference(
    _ box: RoIAlignBox, ph: Int, pw: Int, shiftX: Float, shiftY: Float, maximum: Bool,
    plane: UnsafePointer<Float>, height: Int, width: Int
) -> Float {
    let originY = (box.startY + shiftY) + Float(ph) * box.binHeight
    let originX = (box.startX + shiftX) + Float(pw) * box.binWidth
    let rows = roiValidSamples(
        origin: originY, bin: box.binHeight, grid: box.gridHeight, lower: -1, upper: Float(height))
    let columns = roiValidSamples(
        origin: originX, bin: box.binWidth, grid: box.gridWidth, lower: -1, upper: Float(width))
    var sum: Float = 0
    var best: Float? = rows.count * columns.count < box.gridHeight * box.gridWidth ? 0 : nil
    for iy in rows {
        var y = roiSamplePosition(origin: originY, bin: box.binHeight, grid: box.gridHeight, iy)
        if y <= 0 { y = 0 }
        var yLow = Int(y)
        let yHigh: Int
        if yLow >= height - 1 {
            yLow = height - 1
            yHigh = yLow
            y = Float(yLow)
        } else {
            yHigh = yLow + 1
        }
        for ix in columns {
            var x = roiSamplePosition(origin: originX, bin: box.binWidth, grid: box.gridWidth, ix)
            if x <= 0 { x = 0 }
            var xLow = Int(x)
            let xHigh: Int
            if xLow >= width - 1 {
                xLow = width - 1
                xHigh = xLow
                x = Float(xLow)
            } else {
                xHigh = xLow + 1
            }
            let ly = y - Float(yLow), lx = x - Float(xLow)
            let hy = 1 - ly, hx = 1 - lx
            let w1 = hy * hx, w2 = hy * lx, w3 = ly * hx, w4 = ly * lx
            let v1 = plane[yLow * width + xLow], v2 = plane[yLow * width + xHigh]
            let v3 = plane[yHigh * width + xLow], v4 = plane[yHigh * width + xHigh]
            if maximum {
                let value = Swift.max(Swift.max(Swift.max(w1 * v1, w2 * v2), w3 * v3), w4 * v4)
                best = best.map { Swift.max($0, value) } ?? value
            } else {
                sum += w1 * v1 + w2 * v2 + w3 * v3 + w4 * v4
            }
        }
    }
    return maximum ? (best ?? 0) : sum / box.samples
}
