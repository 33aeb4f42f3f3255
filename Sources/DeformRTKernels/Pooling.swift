#if canImport(Glibc)
import Glibc
#endif
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
        // Output columns whose whole window lies inside the input's columns: no column checks there.
        let reach = (g.kernelWidth - 1) * g.dilationWidth
        let interiorStart = Swift.min(g.outWidth, (g.padLeft + g.strideWidth - 1) / g.strideWidth)
        let lastInside = g.inWidth - 1 - reach + g.padLeft
        let interiorEnd = lastInside < 0 ? interiorStart : Swift.max(interiorStart, Swift.min(g.outWidth, lastInside / g.strideWidth + 1))
        parallel.forEach(g.planes) { plane in
            let x = input + plane * g.inHeight * g.inWidth
            let y = output + plane * g.outHeight * g.outWidth
            for oy in 0..<g.outHeight {
                var kyStart = 0, kyEnd = g.kernelHeight
                while kyStart < kyEnd && oy * g.strideHeight - g.padTop + kyStart * g.dilationHeight < 0 { kyStart += 1 }
                while kyEnd > kyStart && oy * g.strideHeight - g.padTop + (kyEnd - 1) * g.dilationHeight >= g.inHeight { kyEnd -= 1 }
                if kyStart < kyEnd && g.inWidth <= columnLimit {
                    // The window rows' maximum per input column, 16 columns at a time, then the
                    // window's columns of that row: kh + kw instead of kh * kw loads per output.
                    withUnsafeTemporaryAllocation(of: Float.self, capacity: g.inWidth) { buffer in
                        let columns = buffer.baseAddress!
                        columnMax(x, g, oy: oy, rows: kyStart..<kyEnd, into: columns)
                        for ox in interiorStart..<interiorEnd {
                            let row = columns + (ox &* g.strideWidth &- g.padLeft)
                            var best = -Float.greatestFiniteMagnitude
                            var sawNaN: UInt8 = 0
                            for kx in 0..<g.kernelWidth {
                                let v = row[kx &* g.dilationWidth]
                                best = v > best ? v : best
                                sawNaN |= v.isNaN ? 1 : 0
                            }
                            y[oy * g.outWidth + ox] = sawNaN != 0 ? .nan : best
                        }
                    }
                } else if kyStart < kyEnd {
                    // Branch-free taps (maxss and a NaN flag: random data mispredicts a compare-and-branch).
                    for ox in interiorStart..<interiorEnd {
                        var best = -Float.greatestFiniteMagnitude
                        var sawNaN: UInt8 = 0
                        for ky in kyStart..<kyEnd {
                            let row = x + ((oy &* g.strideHeight &- g.padTop &+ ky &* g.dilationHeight) &* g.inWidth
                                           &+ ox &* g.strideWidth &- g.padLeft)
                            for kx in 0..<g.kernelWidth {
                                let v = row[kx &* g.dilationWidth]
                                best = v > best ? v : best
                                sawNaN |= v.isNaN ? 1 : 0
                            }
                        }
                        y[oy * g.outWidth + ox] = sawNaN != 0 ? .nan : best
                    }
                }
                for ox in 0..<g.outWidth where kyStart >= kyEnd || ox < interiorStart || ox >= interiorEnd {
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

    /// Rows up to this wide take `columnMax` (its row lives on the stack).
    static let columnLimit = 8192

    /// columns[ix] = the maximum of input rows oy * stride - padTop + ky * dilation (ky in `rows`,
    /// all inside the input) at column ix; NaN if any of them is NaN.
    @inline(__always)
    static func columnMax(_ x: UnsafePointer<Float>, _ g: PoolGeometry, oy: Int, rows: Range<Int>,
                          into columns: UnsafeMutablePointer<Float>) {
        let first = x + (oy * g.strideHeight - g.padTop + rows.lowerBound * g.dilationHeight) * g.inWidth
        columns.update(from: first, count: g.inWidth)
        for ky in rows.dropFirst() {
            let row = x + (oy * g.strideHeight - g.padTop + ky * g.dilationHeight) * g.inWidth
            var ix = 0
            while ix + 16 <= g.inWidth {
                let v = UnsafeRawPointer(row + ix).loadUnaligned(as: SIMD16<Float>.self)
                let best = UnsafeRawPointer(columns + ix).loadUnaligned(as: SIMD16<Float>.self)
                // v where it is larger or NaN (a NaN already kept stays: nothing compares above it).
                let take = (v .> best) .| (v .!= v)
                UnsafeMutableRawPointer(columns + ix).storeBytes(of: best.replacing(with: v, where: take),
                                                                 as: SIMD16<Float>.self)
                ix += 16
            }
            while ix < g.inWidth {
                let v = row[ix]
                if v > columns[ix] || v.isNaN { columns[ix] = v }
                ix += 1
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

    /// LpPool: (sum over each window's taps inside the input of |x|^p)^(1/p), the Lp norm of the
    /// window's values as the spec and onnxruntime define it; pads and a ceil_mode overhang add
    /// nothing (onnx.reference scales an overhanging window by taps / taps inside, PyTorch's
    /// avg-pool formulation). p = 1 and 2 take no pow per tap.
    public static func lp(_ g: PoolGeometry, p: Int, input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                          parallel: Parallel) {
        let pf = Float(p)
        parallel.forEach(g.planes) { plane in
            let x = input + plane * g.inHeight * g.inWidth
            let y = output + plane * g.outHeight * g.outWidth
            for oy in 0..<g.outHeight {
                for ox in 0..<g.outWidth {
                    var sum: Float = 0
                    for ky in 0..<g.kernelHeight {
                        let iy = oy * g.strideHeight - g.padTop + ky * g.dilationHeight
                        if iy < 0 || iy >= g.inHeight { continue }
                        for kx in 0..<g.kernelWidth {
                            let ix = ox * g.strideWidth - g.padLeft + kx * g.dilationWidth
                            if ix < 0 || ix >= g.inWidth { continue }
                            let v = abs(x[iy * g.inWidth + ix])
                            switch p {
                            case 1: sum += v
                            case 2: sum += v * v
                            default: sum += powf(v, pf)
                            }
                        }
                    }
                    y[oy * g.outWidth + ox] = p == 1 ? sum : p == 2 ? sum.squareRoot() : powf(sum, 1 / pf)
                }
            }
        }
    }

    /// Max of each plane of `size` (> 0) elements; NaN anywhere in the plane gives NaN.
    public static func globalMax(planes: Int, size: Int, input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                                 parallel: Parallel) {
        parallel.forEachRange(planes, totalWork: planes * size) { _, range in
            for plane in range {
                let x = input + plane * size
                var best = SIMD16<Float>(repeating: -.infinity)
                var nan = SIMDMask<SIMD16<Int32>>(repeating: false)
                var i = 0
                while i + 16 <= size {
                    let v = ElementwiseKernels.load16(x + i)
                    best = pointwiseMax(best, v)
                    nan .|= v .!= v
                    i += 16
                }
                var result = best.max()
                var sawNaN = any(nan)
                while i < size {
                    if x[i].isNaN { sawNaN = true }
                    result = Swift.max(result, x[i])
                    i += 1
                }
                output[plane] = sawNaN ? .nan : result
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
