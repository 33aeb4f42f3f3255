/// Softmax and LogSoftmax of contiguous rows, 16 lanes at a time. e^x is VectorMath.exp (within
/// a few ulp of expf) and the sum is taken in 16 partial sums, so results differ from a scalar
/// loop by a few ulp. NaN in a row makes the whole row NaN, as in the scalar loop: the maximum
/// skips NaN, e^(NaN - max) is NaN and so is the sum.
public enum SoftmaxKernels {
    typealias V = SIMD16<Float>

    /// y[0..<length] = softmax (or, with `log`, log-softmax) of x[0..<length].
    public static func row(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ length: Int, log: Bool) {
        let load = ElementwiseKernels.load16, store = ElementwiseKernels.store16
        var best = V(repeating: -.infinity)
        var i = 0
        while i + 16 <= length {
            let v = load(x + i)
            best.replace(with: v, where: v .> best)
            i += 16
        }
        var maximum = best.max()
        for j in i..<length where x[j] > maximum { maximum = x[j] }
        let m = V(repeating: maximum)
        // The tail is a vector padded with -Inf, whose e^(-Inf - max) adds 0 (NaN when the row's
        // maximum is -Inf, as the row's own elements give then).
        let rest = length - i
        var tail = V(repeating: -.infinity)
        for j in 0..<rest { tail[j] = x[i + j] }
        var lanes = V()
        i = 0
        while i + 16 <= length {
            let e = VectorMath.exp(load(x + i) - m)
            if !log { store(e, y + i) }
            lanes += e
            i += 16
        }
        let tailExp = VectorMath.exp(tail - m)
        if rest > 0 {
            lanes += tailExp
            if !log { for j in 0..<rest { y[i + j] = tailExp[j] } }
        }
        let sum = lanes.sum()
        if log {
            let shift = V(repeating: maximum + logf(sum))
            i = 0
            while i + 16 <= length {
                store(load(x + i) - shift, y + i)
                i += 16
            }
            for j in i..<length { y[j] = x[j] - shift[0] }
            return
        }
        let scale = V(repeating: 1 / sum)
        i = 0
        while i + 16 <= length {
            store(load(y + i) * scale, y + i)
            i += 16
        }
        for j in i..<length { y[j] *= scale[0] }
    }
}

#if canImport(Glibc)
import Glibc
#endif
