extension DeformConv {
    /// Scalar oracle: for every output, tap and input channel, sample the input bilinearly at
    /// (oy * sH - padTop + i * dH + dy, ox * sW - padLeft + j * dW + dx), scale by the mask, multiply
    /// by the weight and sum in Double. Sample positions are formed in Float, as torchvision,
    /// onnxruntime and OpenVINO form them.
    public static func reference(
        _ g: ConvGeometry, _ d: DeformableOptions, input: UnsafePointer<Float>,
        weight: UnsafePointer<Float>, offset: UnsafePointer<Float>, mask: UnsafePointer<Float>?,
        bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>
    ) {
        let cinPerGroup = g.inChannels / g.group
        let coutPerGroup = g.outChannels / g.group
        let cinPerOffsetGroup = g.inChannels / d.offsetGroup
        let taps = g.kernelHeight * g.kernelWidth
        let outPixels = g.outHeight * g.outWidth
        for n in 0..<g.batch {
            let offsetN = offset + n * d.offsetGroup * 2 * taps * outPixels
            let maskN = mask.map { $0 + n * d.offsetGroup * taps * outPixels }
            for m in 0..<g.outChannels {
                let grp = m / coutPerGroup
                for oy in 0..<g.outHeight {
                    for ox in 0..<g.outWidth {
                        let pixel = oy * g.outWidth + ox
                        var sum = Double(bias?[m] ?? 0)
                        for c in 0..<cinPerGroup {
                            let inChannel = grp * cinPerGroup + c
                            let og = inChannel / cinPerOffsetGroup
                            let plane = input + (n * g.inChannels + inChannel) * g.inHeight * g.inWidth
                            for i in 0..<g.kernelHeight {
                                for j in 0..<g.kernelWidth {
                                    let tap = i * g.kernelWidth + j
                                    let dy = offsetN[((og * taps + tap) * 2) * outPixels + pixel]
                                    let dx = offsetN[((og * taps + tap) * 2 + 1) * outPixels + pixel]
                                    let y = Float(oy * g.strideHeight - g.padTop + i * g.dilationHeight) + dy
                                    let x = Float(ox * g.strideWidth - g.padLeft + j * g.dilationWidth) + dx
                                    var value = bilinearSample(plane, height: g.inHeight, width: g.inWidth,
                                                               y: y, x: x, border: d.border)
                                    if let maskN {
                                        value *= Double(maskN[(og * taps + tap) * outPixels + pixel])
                                    }
                                    let w = weight[((m * cinPerGroup + c) * g.kernelHeight + i) * g.kernelWidth + j]
                                    sum += Double(w) * value
                                }
                            }
                        }
                        output[((n * g.outChannels + m) * g.outHeight + oy) * g.outWidth + ox] = Float(sum)
                    }
                }
            }
        }
    }

    /// The input plane read at a fractional position under `border`; non-finite positions read 0.
    ///
    /// zeroOutsideCorners (torchvision, onnxruntime, ONNX): nothing unless -1 < y < H and -1 < x < W;
    /// then the four corners floor/floor+1 with the usual bilinear weights, each corner outside the
    /// plane reading 0.
    /// openVINONoPad (OpenVINO DeformableConvolution-8, bilinear_interpolation_pad = false): nothing
    /// unless 0 <= y < H and 0 <= x < W; then corners floor(y) and min(ceil(y), H - 1) (same for x)
    /// with weights 1 - fract and fract, so a sample past the last row or column reads that row or
    /// column.
    static func bilinearSample(
        _ plane: UnsafePointer<Float>, height: Int, width: Int, y: Float, x: Float, border: DeformableBorder
    ) -> Double {
        // The range checks come first: they reject NaN and every value too large for Int.
        switch border {
        case .zeroOutsideCorners:
            guard y > -1, y < Float(height), x > -1, x < Float(width) else { return 0 }
            let y0 = Int(y.rounded(.down))
            let x0 = Int(x.rounded(.down))
            let ly = Double(y) - Double(y0)
            let lx = Double(x) - Double(x0)
            func at(_ r: Int, _ c: Int) -> Double {
                r >= 0 && r < height && c >= 0 && c < width ? Double(plane[r * width + c]) : 0
            }
            return (1 - ly) * (1 - lx) * at(y0, x0) + (1 - ly) * lx * at(y0, x0 + 1)
                + ly * (1 - lx) * at(y0 + 1, x0) + ly * lx * at(y0 + 1, x0 + 1)
        case .openVINONoPad:
            guard y >= 0, y < Float(height), x >= 0, x < Float(width) else { return 0 }
            let y0 = Int(y.rounded(.down))
            let x0 = Int(x.rounded(.down))
            let y1 = min(Int(y.rounded(.up)), height - 1)
            let x1 = min(Int(x.rounded(.up)), width - 1)
            let ly = Double(y) - Double(y0)
            let lx = Double(x) - Double(x0)
            func at(_ r: Int, _ c: Int) -> Double { Double(plane[r * width + c]) }
            return (1 - ly) * (1 - lx) * at(y0, x0) + (1 - ly) * lx * at(y0, x1)
                + ly * (1 - lx) * at(y1, x0) + ly * lx * at(y1, x1)
        }
    }
}
