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
        typealias L = LaneFunctions
        switch function {
        case .relu: map(x, y, count, L.Relu())
        case .leakyRelu(let alpha): map(x, y, count, L.LeakyRelu(alpha: alpha))
        case .sigmoid: map(x, y, count, L.Sigmoid())
        case .silu: map(x, y, count, L.Swish(alpha: 1))
        case .tanh: map(x, y, count, L.Tanh())
        case .exp: map(x, y, count, L.Exp())
        case .log: map(x, y, count, L.Log())
        case .sqrt: map(x, y, count, L.Sqrt())
        case .neg: map(x, y, count, L.Neg())
        case .abs: map(x, y, count, L.Abs())
        case .erf: map(x, y, count, L.Erf())
        case .floor: map(x, y, count, L.Floor())
        case .ceil: map(x, y, count, L.Ceil())
        case .reciprocal: map(x, y, count, L.Reciprocal())
        case .hardSigmoid(let alpha, let beta): map(x, y, count, L.HardSigmoid(alpha: alpha, beta: beta))
        // x * HardSigmoid(x) with ONNX's alpha = 1/6 (as a float) and beta = 0.5.
        case .hardSwish: map(x, y, count, L.HardSwish())
        case .softplus: map(x, y, count, L.Softplus())
        case .mish: map(x, y, count, L.Mish())
        case .elu(let alpha): map(x, y, count, L.Selu(alpha: alpha, gamma: 1))
        case .selu(let alpha, let gamma): map(x, y, count, L.Selu(alpha: alpha, gamma: gamma))
        case .gelu: map(x, y, count, L.Gelu())
        case .geluTanh: map(x, y, count, L.GeluTanh())
        case .clip(let low, let high): map(x, y, count, L.Clip(low: low, high: high))
        case .round: map(x, y, count, L.Round())
        case .sign: map(x, y, count, L.Sign())
        case .sin: for i in 0..<count { y[i] = sinf(x[i]) }
        case .cos: for i in 0..<count { y[i] = cosf(x[i]) }
        case .softsign: map(x, y, count, L.Softsign())
        case .celu(let alpha): map(x, y, count, L.Celu(alpha: alpha))
        case .thresholdedRelu(let alpha): map(x, y, count, L.ThresholdedRelu(alpha: alpha))
        case .shrink(let lambd, let bias): map(x, y, count, L.Shrink(lambd: lambd, bias: bias))
        case .swish(let alpha): map(x, y, count, L.Swish(alpha: alpha))
        }
    }

    /// y = f(x) over `count` floats, 16 at a time. Generic over the function's type so that each
    /// specialisation has its body inlined: closures passed here stayed out-of-line calls that took
    /// their SIMD16 argument in four xmm registers and computed on them (sigmoid ran ~4x slower).
    static func map<F: LaneFunction>(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ count: Int,
                                     _ f: F) {
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

/// A float function on 16 lanes, for ElementwiseMath.map.
protocol LaneFunction {
    func callAsFunction(_ v: SIMD16<Float>) -> SIMD16<Float>
}

/// The lane functions of ElementwiseMath.apply.
enum LaneFunctions {
    typealias V = SIMD16<Float>
    typealias M = VectorMath

    // NaN stays NaN (a NaN lane fails `<`), as np.maximum(x, 0) in onnx.reference.
    struct Relu: LaneFunction {
        @inline(__always) func callAsFunction(_ v: V) -> V { M.select(M.lanes(v .< V()), V(), v) }
    }
    struct LeakyRelu: LaneFunction {
        let alpha: Float
        @inline(__always) func callAsFunction(_ v: V) -> V { M.select(M.lanes(v .< V()), v * M.splat(alpha), v) }
    }
    // 1 / (1 + e^-x): e^-x overflows to +Inf for very negative x, giving exactly 0.
    struct Sigmoid: LaneFunction {
        @inline(__always) func callAsFunction(_ v: V) -> V { M.splat(1) / (M.splat(1) + M.exp(-v)) }
    }
    /// x * sigmoid(alpha x) as x * (1 / (1 + e^-(alpha x))); SiLU is alpha = 1 (1 * x is x exactly).
    struct Swish: LaneFunction {
        let alpha: Float
        @inline(__always) func callAsFunction(_ v: V) -> V {
            v * (M.splat(1) / (M.splat(1) + M.exp(-(M.splat(alpha) * v))))
        }
    }
    struct Tanh: LaneFunction { @inline(__always) func callAsFunction(_ v: V) -> V { M.tanh(v) } }
    struct Exp: LaneFunction { @inline(__always) func callAsFunction(_ v: V) -> V { M.exp(v) } }
    struct Log: LaneFunction { @inline(__always) func callAsFunction(_ v: V) -> V { M.log(v) } }
    struct Sqrt: LaneFunction { @inline(__always) func callAsFunction(_ v: V) -> V { M.sqrt(v) } }
    struct Neg: LaneFunction { @inline(__always) func callAsFunction(_ v: V) -> V { -v } }
    struct Abs: LaneFunction { @inline(__always) func callAsFunction(_ v: V) -> V { M.abs(v) } }
    struct Erf: LaneFunction { @inline(__always) func callAsFunction(_ v: V) -> V { M.erf(v) } }
    struct Floor: LaneFunction { @inline(__always) func callAsFunction(_ v: V) -> V { M.floor(v) } }
    struct Ceil: LaneFunction { @inline(__always) func callAsFunction(_ v: V) -> V { M.ceil(v) } }
    struct Reciprocal: LaneFunction { @inline(__always) func callAsFunction(_ v: V) -> V { M.splat(1) / v } }
    struct HardSigmoid: LaneFunction {
        let alpha: Float, beta: Float
        @inline(__always) func callAsFunction(_ v: V) -> V {
            M.clamp(v * M.splat(alpha) + M.splat(beta), V(), M.splat(1))
        }
    }
    struct HardSwish: LaneFunction {
        @inline(__always) func callAsFunction(_ v: V) -> V { v * HardSigmoid(alpha: 1.0 / 6.0, beta: 0.5)(v) }
    }
    // log(1 + e^x) = max(x, 0) + log1p(e^-|x|): no overflow for large x.
    struct Softplus: LaneFunction {
        @inline(__always) func callAsFunction(_ v: V) -> V {
            M.select(M.lanes(v .> V()), v, V()) + M.log1p(M.exp(-M.abs(v)))
        }
    }
    // x tanh(log(1 + e^x)) = x n / (n + 2) with n = e^x (e^x + 2); from x = 15 on the factor is
    // 1 in float (and n would overflow further on).
    struct Mish: LaneFunction {
        @inline(__always) func callAsFunction(_ v: V) -> V {
            let two = M.splat(2)
            let e = M.exp(v)
            let n = e * (e + two)
            return M.select(M.lanes(v .> M.splat(15)), v, v * (n / (n + two)))
        }
    }
    /// gamma * (x > 0 ? x : alpha (e^x - 1)); Elu is gamma = 1 (a product by 1 is exact).
    struct Selu: LaneFunction {
        let alpha: Float, gamma: Float
        @inline(__always) func callAsFunction(_ v: V) -> V {
            M.select(M.lanes(v .> V()), v, M.splat(alpha) * M.expm1(v)) * M.splat(gamma)
        }
    }
    struct Gelu: LaneFunction {
        @inline(__always) func callAsFunction(_ v: V) -> V {
            M.splat(0.5) * v * (M.splat(1) + M.erf(v * M.splat(0.70710678118654752)))
        }
    }
    struct GeluTanh: LaneFunction {
        @inline(__always) func callAsFunction(_ v: V) -> V {
            let inner = M.splat(0.79788456080286536) * (v + M.splat(0.044715) * v * v * v)
            return M.splat(0.5) * v * (M.splat(1) + M.tanh(inner))
        }
    }
    struct Clip: LaneFunction {
        let low: Float, high: Float
        @inline(__always) func callAsFunction(_ v: V) -> V { M.clamp(v, M.splat(low), M.splat(high)) }
    }
    // From 2^23 on every float is whole (NaN and Inf pass through too).
    struct Round: LaneFunction {
        @inline(__always) func callAsFunction(_ v: V) -> V {
            M.select(M.lanes(M.abs(v) .< M.splat(8_388_608)), M.nearestWhole(v), v)
        }
    }
    struct Sign: LaneFunction {
        @inline(__always) func callAsFunction(_ v: V) -> V {
            M.select(M.lanes(v .> V()), M.splat(1),
                     M.select(M.lanes(v .< V()), M.splat(-1), M.select(M.lanes(v .== v), V(), v)))
        }
    }
    struct Softsign: LaneFunction {
        @inline(__always) func callAsFunction(_ v: V) -> V { v / (M.splat(1) + M.abs(v)) }
    }
    struct Celu: LaneFunction {
        let alpha: Float
        @inline(__always) func callAsFunction(_ v: V) -> V {
            M.select(M.lanes(v .> V()), v, M.splat(alpha) * M.expm1(v * M.splat(1 / alpha)))
        }
    }
    struct ThresholdedRelu: LaneFunction {
        let alpha: Float
        @inline(__always) func callAsFunction(_ v: V) -> V { M.select(M.lanes(v .> M.splat(alpha)), v, V()) }
    }
    struct Shrink: LaneFunction {
        let lambd: Float, bias: Float
        @inline(__always) func callAsFunction(_ v: V) -> V {
            let l = M.splat(lambd), b = M.splat(bias)
            return M.select(M.lanes(v .< -l), v + b, M.select(M.lanes(v .> l), v - b, V()))
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
