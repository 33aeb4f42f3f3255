/// 2-D max and average pooling over NCHW planes (planes spread over threads).
public struct PoolGeometry: Sendable {
    public var planes: Int          // batch * channels
    public var inHeight: Int, inWidth: Int
    public var outHeight: Int, outWidth: Int
    public var kernelHeight: Int, kernelWidth: Int
    public var strideHeight: Int, strideWidth: Int
    public var dilationHeight: Int, dilationWidth: Int
    public var padTop: Int, padLeft: Int, padBottom: Int, padRight: Int

    public init(planes: Int, inHeight: Int, inWidth: Int, outHeight: Int, outWidth: Int, kernelHeight: Int, kernelWidth: Int,
                strideHeight: Int, strideWidth: Int, dilationHeight: Int, dilationWidth: Int,
                padTop: Int, padLeft: Int, padBottom: Int, padRight: Int) {
        self.planes = planes
        self.inHeight = inHeight; self.inWidth = inWidth
        self.outHeight = outHeight; self.outWidth = outWidth
        self.kernelHeight = kernelHeight; self.kernelWidth = kernelWidth
        self.strideHeight = strideHeight; self.strideWidth = strideWidth
        self.dilationHeight = dilationHeight; self.dilationWidth = dilationWidth
        self.padTop = padTop; self.padLeft = padLeft; self.padBottom = padBottom; self.padRight = padRight
    }
}

public enum Pooling {
    /// Max over each window's taps inside the input; NaN propagates. A window with no tap inside
    /// the input (only possible when pads exceed the kernel) gives the lowest finite float.
    public static func max(_ g: PoolGeometry, input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, parallel: Parallel) {
        parallel.forEach(g.planes) { plane in
            let x = input + plane * g.inHeight * g.inWidth
            let y = output + plane * g.outHeight * g.outWidth
            for oy in 0..<g.outHeight {
                for ox in 0..<g.outWidth {
                    var best = -Float.greatestFiniteMagnitude
                    var sawNaN = false
                    for ky in 0..<g.kernelHeight {
                        let iy = oy * g.strideHeight - g.padTop + ky * g.dilationHeight
                        if iy < 0 || iy >= g.inHeight { continue }
                        for kx in 0..<g.kernelWidth {
                            let ix = ox * g.strideWidth - g.padLeft + kx * g.dilationWidth
                            if ix < 0 || ix >= g.inWidth { continue }
                            let v = x[iy * g.inWidth + ix]
                            if v.isNaN { sawNaN = true }
                            if v > best { best = v }
                        }
                    }
                    y[oy * g.outWidth + ox] = sawNaN ? .nan : best
                }
            }
        }
    }

    /// Mean over each window. With `countIncludePad` the divisor counts taps inside the padded
    /// input (input plus explicit pads), otherwise only taps inside the input.
    public static func average(_ g: PoolGeometry, countIncludePad: Bool, input: UnsafePointer<Float>,
                               output: UnsafeMutablePointer<Float>, parallel: Parallel) {
        parallel.forEach(g.planes) { plane in
            let x = input + plane * g.inHeight * g.inWidth
            let y = output + plane * g.outHeight * g.outWidth
            for oy in 0..<g.outHeight {
                for ox in 0..<g.outWidth {
                    var sum: Float = 0
                    var inside = 0, padded = 0
                    for ky in 0..<g.kernelHeight {
                        let iy = oy * g.strideHeight - g.padTop + ky * g.dilationHeight
                        let rowPadded = iy >= -g.padTop && iy < g.inHeight + g.padBottom
                        for kx in 0..<g.kernelWidth {
                            let ix = ox * g.strideWidth - g.padLeft + kx * g.dilationWidth
                            if rowPadded && ix >= -g.padLeft && ix < g.inWidth + g.padRight { padded += 1 }
                            if iy < 0 || iy >= g.inHeight || ix < 0 || ix >= g.inWidth { continue }
                            sum += x[iy * g.inWidth + ix]
                            inside += 1
                        }
                    }
                    let divisor = countIncludePad ? padded : inside
                    y[oy * g.outWidth + ox] = divisor > 0 ? sum / Float(divisor) : 0
                }
            }
        }
    }

    /// Mean of each plane of `size` elements (NaN for an empty plane, as 0 / 0 and numpy give).
    public static func globalAverage(planes: Int, size: Int, input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                                     parallel: Parallel) {
        parallel.forEach(planes) { plane in
            let x = input + plane * size
            var acc = SIMD16<Float>(repeating: 0)
            var i = 0
            while i + 16 <= size {
                acc += ElementwiseKernels.load16(x + i)
                i += 16
            }
            var sum = acc.sum()
            while i < size { sum += x[i]; i += 1 }
            output[plane] = sum / Float(size)
        }
    }
}
