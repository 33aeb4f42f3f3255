extension Conv2D {
    /// Scalar oracle: direct loops over every output, tap and input channel, summed in Double.
    /// Taps that fall into the padding contribute nothing.
    public static func reference(
        _ g: ConvGeometry, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>
    ) {
        let cinPerGroup = g.inChannels / g.group
        let coutPerGroup = g.outChannels / g.group
        for n in 0..<g.batch {
            for m in 0..<g.outChannels {
                let grp = m / coutPerGroup
                for oy in 0..<g.outHeight {
                    for ox in 0..<g.outWidth {
                        var sum = Double(bias?[m] ?? 0)
                        for c in 0..<cinPerGroup {
                            let inChannel = grp * cinPerGroup + c
                            let plane = input + (n * g.inChannels + inChannel) * g.inHeight * g.inWidth
                            for i in 0..<g.kernelHeight {
                                let y = oy * g.strideHeight - g.padTop + i * g.dilationHeight
                                if y < 0 || y >= g.inHeight { continue }
                                for j in 0..<g.kernelWidth {
                                    let x = ox * g.strideWidth - g.padLeft + j * g.dilationWidth
                                    if x < 0 || x >= g.inWidth { continue }
                                    let w = weight[((m * cinPerGroup + c) * g.kernelHeight + i) * g.kernelWidth + j]
                                    sum += Double(w) * Double(plane[y * g.inWidth + x])
                                }
                            }
                        }
                        output[((n * g.outChannels + m) * g.outHeight + oy) * g.outWidth + ox] = Float(sum)
                    }
                }
            }
        }
    }
}
