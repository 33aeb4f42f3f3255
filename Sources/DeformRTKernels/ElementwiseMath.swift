#if canImport(Glibc)
import Glibc
#endif

/// A float function applied element by element (the ONNX activations and math operators).
public enum UnaryFunction: Sendable, Equatable {
    case relu, sigmoid, tanh, exp, log, sqrt, neg, abs, erf, floor, ceil, reciprocal
    case leakyRelu(alpha: Float)
    case hardSigmoid(alpha: Float, beta: Float)
    case hardSwish, softplus, mish
    /// x * sigmoid(x), as the two nodes Mul(x, Sigmoid(x)) compute it (a fused activation).
    case silu
    case elu(alpha: Float)
    case selu(alpha: Float, gamma: Float)
    /// 0.5 x (1 + erf(x / sqrt 2)).
    case gelu
    /// 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))).
    case geluTanh
    /// min(max(x, low), high), NaN kept (Clip).
    case clip(low: Float, high: Float)
    /// Round half to even; -0.4 gives -0 (numpy's round).
    case round
    /// -1, 0 or 1 (0 for -0, as numpy's sign); NaN stays NaN.
    case sign
    /// libm's sinf / cosf, one lane at a time (no vector polynomial: they carry little work in
    /// the models this runtime is for).
    case sin, cos
    /// x / (1 + |x|).
    case softsign
    /// max(0, x) + min(0, alpha (e^(x / alpha) - 1)).
    case celu(alpha: Float)
    /// x > alpha ? x : 0 (NaN gives 0, as the reference's where).
    case thresholdedRelu(alpha: Float)
    /// x < -lambd ? x + bias : x > lambd ? x - bias : 0.
    case shrink(lambd: Float, bias: Float)
    /// x * sigmoid(alpha x) (Swish, opset 24; silu is alpha = 1).
    case swish(alpha: Float)
}

/// Element-wise float math with SIMD16 bodies. The tail (fewer than 16 elements) runs the same
/// vector code on a zero-padded copy, so every element gets the same arithmetic.
public enum ElementwiseMath {
    typealias V = SIMD16<Float>

    public static func apply(_ function: UnaryFunction, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ count: Int) {
        typealias M = VectorMath
        let one = M.splat(1), zero = V()
        switch function {
        // NaN stays NaN (a NaN lane fails `<`), as np.maximum(x, 0) in onnx.reference.
        case .relu: map(x, y, count) { M.select(M.lanes($0 .< zero), zero, $0) }
        case .leakyRelu(let alpha):
            let a = M.splat(alpha)
            map(x, y, count) { M.select(M.lanes($0 .< zero), $0 * a, $0) }
        // 1 / (1 + e^-x): e^-x overflows to +Inf for very negative x, giving exactly 0.
        case .sigmoid: map(x, y, count) { one / (one + M.exp(-$0)) }
        case .silu: map(x, y, count) { $0 * (one / (one + M.exp(-$0))) }
        case .tanh: map(x, y, count) { M.tanh($0) }
        case .exp: map(x, y, count) { M.exp($0) }
        case .log: map(x, y, count) { M.log($0) }
        case .sqrt: map(x, y, count) { M.sqrt($0) }
        case .neg: map(x, y, count) { -$0 }
        case .abs: map(x, y, count) { M.abs($0) }
        case .erf: map(x, y, count) { M.erf($0) }
        case .floor: map(x, y, count) { M.floor($0) }
        case .ceil: map(x, y, count) { M.ceil($0) }
        case .reciprocal: map(x, y, count) { one / $0 }
        case .hardSigmoid(let alpha, let beta):
            let a = M.splat(alpha), b = M.splat(beta)
            map(x, y, count) { M.clamp($0 * a + b, zero, one) }
        case .hardSwish:
            // x * HardSigmoid(x) with ONNX's alpha = 1/6 (as a float) and beta = 0.5.
            let a = M.splat(1.0 / 6.0), b = M.splat(0.5)
            map(x, y, count) { $0 * M.clamp($0 * a + b, zero, one) }
        case .softplus:
            // log(1 + e^x) = max(x, 0) + log1p(e^-|x|): no overflow for large x.
            map(x, y, count) { v in
                M.select(M.lanes(v .> zero), v, zero) + M.log1p(M.exp(-M.abs(v)))
            }
        case .mish:
            // x tanh(log(1 + e^x)) = x n / (n + 2) with n = e^x (e^x + 2); from x = 15 on the
            // factor is 1 in float (and n would overflow further on).
            let two = M.splat(2), limit = M.splat(15)
            map(x, y, count) { v in
                let e = M.exp(v)
                let n = e * (e + two)
                return M.select(M.lanes(v .> limit), v, v * (n / (n + two)))
            }
        case .elu(let alpha):
            let a = M.splat(alpha)
            map(x, y, count) { v in M.select(M.lanes(v .> zero), v, a * M.expm1(v)) }
        case .selu(let alpha, let gamma):
            let a = M.splat(alpha), g = M.splat(gamma)
            map(x, y, count) { v in M.select(M.lanes(v .> zero), v, a * M.expm1(v)) * g }
        case .gelu:
            let half = M.splat(0.5), invSqrt2 = M.splat(0.70710678118654752)
            map(x, y, count) { v in half * v * (one + M.erf(v * invSqrt2)) }
        case .geluTanh:
            let half = M.splat(0.5), c = M.splat(0.79788456080286536), k = M.splat(0.044715)
            map(x, y, count) { v in half * v * (one + M.tanh(c * (v + k * v * v * v))) }
        case .clip(let low, let high):
            let l = M.splat(low), h = M.splat(high)
            map(x, y, count) { M.clamp($0, l, h) }
        case .round:
            // From 2^23 on every float is whole (NaN and Inf pass through too).
            let big = M.splat(8_388_608)
            map(x, y, count) { v in M.select(M.lanes(M.abs(v) .< big), M.nearestWhole(v), v) }
        case .sign:
            let minusOne = M.splat(-1)
            map(x, y, count) { v in
                M.select(M.lanes(v .> zero), one, M.select(M.lanes(v .< zero), minusOne, M.select(M.lanes(v .== v), zero, v)))
            }
        case .sin: for i in 0..<count { y[i] = sinf(x[i]) }
        case .cos: for i in 0..<count { y[i] = cosf(x[i]) }
        case .softsign: map(x, y, count) { v in v / (one + M.abs(v)) }
        case .celu(let alpha):
            let a = M.splat(alpha), inverse = M.splat(1 / alpha)
            map(x, y, count) { v in M.select(M.lanes(v .> zero), v, a * M.expm1(v * inverse)) }
        case .thresholdedRelu(let alpha):
            let a = M.splat(alpha)
            map(x, y, count) { v in M.select(M.lanes(v .> a), v, zero) }
        case .shrink(let lambd, let bias):
            let l = M.splat(lambd), b = M.splat(bias)
            map(x, y, count) { v in
                M.select(M.lanes(v .< -l), v + b, M.select(M.lanes(v .> l), v - b, zero))
            }
        case .swish(let alpha):
            let a = M.splat(alpha)
            map(x, y, count) { $0 * (one / (one + M.exp(-(a * $0)))) }
        }
    }

    @inline(__always)
    static func map(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ count: Int, _ f: (V) -> V) {
        var i = 0
        while i + 16 <= count {
            ElementwiseKernels.store16(f(ElementwiseKernels.load16(x + i)), y + i)
            i += 16
        }
        let rest = count - i
        if rest > 0 {
            var lane = V()
            withUnsafeMutableBytes(of: &lane) { $0.baseAddress!.copyMemory(from: x + i, byteCount: rest * 4) }
            let result = f(lane)
            withUnsafeBytes(of: result) { UnsafeMutableRawPointer(y + i).copyMemory(from: $0.baseAddress!, byteCount: rest * 4) }
        }
    }

    public enum Binary: Sendable { case min, max, prelu, pow }

    /// out[i] = a[i * aStride] (op) b[i * bStride], strides 0 or 1. Min and Max propagate NaN
    /// (numpy's minimum/maximum); PRelu is a > 0 ? a : a * b; Pow is powf (b == 2 is a * a).
    public static func binary(_ op: Binary, _ a: UnsafePointer<Float>, _ aStride: Int,
                              _ b: UnsafePointer<Float>, _ bStride: Int,
                              _ out: UnsafeMutablePointer<Float>, _ count: Int) {
        typealias M = VectorMath
        switch op {
        case .min:
            binaryLoop(a, aStride, b, bStride, out, count) { x, y in
                M.select(M.lanes(y .!= y), y, M.select(M.lanes(x .> y), y, x))
            }
        case .max:
            binaryLoop(a, aStride, b, bStride, out, count) { x, y in
                M.select(M.lanes(y .!= y), y, M.select(M.lanes(x .< y), y, x))
            }
        case .prelu:
            let zero = V()
            binaryLoop(a, aStride, b, bStride, out, count) { x, s in M.select(M.lanes(x .> zero), x, x * s) }
        case .pow:
            if bStride == 0 && b[0] == 2 {
                binaryLoop(a, aStride, b, bStride, out, count) { x, _ in x * x }
            } else {
                for i in 0..<count { out[i] = powf(a[i * aStride], b[i * bStride]) }
            }
        }
    }

    @inline(__always)
    private static func binaryLoop(_ a: UnsafePointer<Float>, _ aStride: Int, _ b: UnsafePointer<Float>, _ bStride: Int,
                                   _ out: UnsafeMutablePointer<Float>, _ count: Int, _ f: (V, V) -> V) {
        var i = 0
        let load = ElementwiseKernels.load16
        while i + 16 <= count {
            let va = aStride == 1 ? load(a + i) : V(repeating: a[0])
            let vb = bStride == 1 ? load(b + i) : V(repeating: b[0])
            ElementwiseKernels.store16(f(va, vb), out + i)
            i += 16
        }
        while i < count {
            // One lane of the same vector code, so the tail rounds and treats NaN like the body.
            let r = f(V(repeating: a[i * aStride]), V(repeating: b[i * bStride]))
            out[i] = r[0]
            i += 1
        }
    }
}

extension ElementwiseMath {
    /// What `sum` adds: the values, their magnitudes or their squares.
    public enum Accumulation: Sendable { case plain, absolute, square }

    /// The sum of `count` contiguous values (or of |x| or x^2) in 16 lanes of partial sums, added
    /// together at the end (another order than one running sum: the difference is a few ulp of
    /// the total, and the lanes make long sums more accurate, not less).
    public static func sum(_ x: UnsafePointer<Float>, _ count: Int, _ mode: Accumulation) -> Float {
        var lanes = SIMD16<Float>()
        var i = 0
        switch mode {
        case .plain:
            while i + 16 <= count { lanes += ElementwiseKernels.load16(x + i); i += 16 }
        case .absolute:
            while i + 16 <= count { lanes += VectorMath.abs(ElementwiseKernels.load16(x + i)); i += 16 }
        case .square:
            while i + 16 <= count { let v = ElementwiseKernels.load16(x + i); lanes += v * v; i += 16 }
        }
        var total = lanes.sum()
        while i < count {
            let v = x[i]
            total += mode == .plain ? v : mode == .absolute ? Swift.abs(v) : v * v
            i += 1
        }
        return total
    }
}
