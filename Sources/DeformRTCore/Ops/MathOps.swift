import DeformRTKernels
#if canImport(Glibc)
import Glibc
#endif

/// Types and running of UnaryOperator's `.math` functions: float through the SIMD kernels, float16
/// through them too (converted to float in blocks, so each element is rounded once more, as
/// numpy's float16 math does), double with libm's double functions; Neg and Abs also on int32 and
/// int64 (integers wrap: -Int.min is Int.min, as in numpy); Sign on every integer type.
enum UnaryMath {
    /// The functions registered under their ONNX names with no attributes to read.
    static let withoutAttributes: [(String, UnaryFunction)] = [
        ("Tanh", .tanh), ("Exp", .exp), ("Log", .log), ("Sqrt", .sqrt), ("Neg", .neg), ("Abs", .abs), ("Erf", .erf),
        ("Floor", .floor), ("Ceil", .ceil), ("Reciprocal", .reciprocal), ("Softplus", .softplus),
    ]

    static func plan(_ function: UnaryFunction, _ x: PlanValue) throws -> PlanValue {
        switch (function, x.elementType) {
        case (_, .float), (_, .double), (_, .float16), (.neg, .int32), (.neg, .int64), (.abs, .int32), (.abs, .int64):
            return PlanValue(x.type)
        case (.sign, .int8), (.sign, .int16), (.sign, .int32), (.sign, .int64),
             (.sign, .uint8), (.sign, .uint16), (.sign, .uint32), (.sign, .uint64):
            return PlanValue(x.type)
        default:
            throw DeformRTError.unsupported("input X is \(x.elementType.onnxName); float, double and float16 are supported")
        }
    }

    static func run(_ function: UnaryFunction, _ x: Tensor, _ y: Tensor, _ context: RunContext) {
        let n = x.elementCount
        switch x.elementType {
        case .float:
            let px = x.floats, py = y.floats
            // Blocks of 8192 (a multiple of 16), so only the last block has a tail.
            let block = 8192
            context.parallel.forEachRange((n + block - 1) / block) { _, range in
                let start = range.lowerBound * block
                ElementwiseMath.apply(function, px + start, py + start, min(n, range.upperBound * block) - start)
            }
        case .double: map(Double.self, x, y) { UnaryMath.double(function, $0) }
        case .float16:
            let px = x.pointer(Float16.self), py = y.pointer(Float16.self)
            let block = 1024
            context.parallel.forEachRange((n + block - 1) / block) { _, range in
                withUnsafeTemporaryAllocation(of: Float.self, capacity: block) { buffer in
                    let b = buffer.baseAddress!
                    for index in range {
                        let start = index * block, count = min(n - start, block)
                        for i in 0..<count { b[i] = Float(px[start + i]) }
                        ElementwiseMath.apply(function, b, b, count)
                        for i in 0..<count { py[start + i] = Float16(b[i]) }
                    }
                }
            }
        case _ where function == .sign: sign(x, y)
        case .int64: map(Int64.self, x, y, function == .neg ? { 0 &- $0 } : { $0 < 0 ? 0 &- $0 : $0 })
        case .int32: map(Int32.self, x, y, function == .neg ? { 0 &- $0 } : { $0 < 0 ? 0 &- $0 : $0 })
        default: break  // refused by plan
        }
    }

    /// One element of `function` in double precision (libm), for double tensors.
    static func double(_ function: UnaryFunction, _ x: Double) -> Double {
        switch function {
        case .relu: return x < 0 ? 0 : x
        case .leakyRelu(let alpha): return x < 0 ? x * Double(alpha) : x
        case .sigmoid: return 1 / (1 + Glibc.exp(-x))
        case .silu: return x / (1 + Glibc.exp(-x))
        case .swish(let alpha): return x / (1 + Glibc.exp(-Double(alpha) * x))
        case .tanh: return Glibc.tanh(x)
        case .exp: return Glibc.exp(x)
        case .log: return Glibc.log(x)
        case .sqrt: return x.squareRoot()
        case .neg: return -x
        case .abs: return Swift.abs(x)
        case .erf: return Glibc.erf(x)
        case .floor: return x.rounded(.down)
        case .ceil: return x.rounded(.up)
        case .reciprocal: return 1 / x
        case .hardSigmoid(let alpha, let beta): return Swift.min(Swift.max(Double(alpha) * x + Double(beta), 0), 1)
        case .hardSwish: return x * Swift.min(Swift.max(x / 6 + 0.5, 0), 1)
        case .softplus: return (x > 0 ? x : 0) + Glibc.log1p(Glibc.exp(-Swift.abs(x)))
        case .mish: return x * Glibc.tanh((x > 0 ? x : 0) + Glibc.log1p(Glibc.exp(-Swift.abs(x))))
        case .elu(let alpha): return x > 0 ? x : Double(alpha) * Glibc.expm1(x)
        case .selu(let alpha, let gamma): return Double(gamma) * (x > 0 ? x : Double(alpha) * Glibc.expm1(x))
        case .gelu: return 0.5 * x * (1 + Glibc.erf(x * 0.70710678118654752))
        case .geluTanh: return 0.5 * x * (1 + Glibc.tanh(0.79788456080286536 * (x + 0.044715 * x * x * x)))
        case .clip(let low, let high):
            let raised = x < Double(low) ? Double(low) : x
            return raised > Double(high) ? Double(high) : raised
        case .round: return x.rounded(.toNearestOrEven)
        case .sign: return x > 0 ? 1 : x < 0 ? -1 : x.isNaN ? x : 0
        case .sin: return Glibc.sin(x)
        case .cos: return Glibc.cos(x)
        case .softsign: return x / (1 + Swift.abs(x))
        case .celu(let alpha): return x > 0 ? x : Double(alpha) * Glibc.expm1(x / Double(alpha))
        case .thresholdedRelu(let alpha): return x > Double(alpha) ? x : 0
        case .shrink(let lambd, let bias): return x < -Double(lambd) ? x + Double(bias) : x > Double(lambd) ? x - Double(bias) : 0
        }
    }

    /// Sign of the integer types (the float types run with the other functions).
    private static func sign(_ x: Tensor, _ y: Tensor) {
        func signed<T: SignedInteger & FixedWidthInteger>(_: T.Type) { map(T.self, x, y) { $0 > 0 ? 1 : $0 < 0 ? -1 : 0 } }
        func unsigned<T: UnsignedInteger & FixedWidthInteger>(_: T.Type) { map(T.self, x, y) { $0 > 0 ? 1 : 0 } }
        switch x.elementType {
        case .int8: signed(Int8.self)
        case .int16: signed(Int16.self)
        case .int32: signed(Int32.self)
        case .int64: signed(Int64.self)
        case .uint8: unsigned(UInt8.self)
        case .uint16: unsigned(UInt16.self)
        case .uint32: unsigned(UInt32.self)
        case .uint64: unsigned(UInt64.self)
        default: break  // refused by plan
        }
    }

    private static func map<T>(_: T.Type, _ x: Tensor, _ y: Tensor, _ f: (T) -> T) {
        let px = x.pointer(T.self), py = y.pointer(T.self)
        for i in 0..<x.elementCount { py[i] = f(px[i]) }
    }

    /// Gelu's `approximate` attribute (opset 20): "none" or "tanh".
    static func gelu(_ spec: OperatorSpec) throws -> UnaryFunction {
        switch try spec.attributes.string("approximate") ?? "none" {
        case "none": return .gelu
        case "tanh": return .geluTanh
        case let other: throw DeformRTError.unsupported("node \(spec.node.label) (Gelu): approximate '\(other)' is not supported (none, tanh)")
        }
    }
}

/// Clip: bounds from the min/max attributes (opset < 11) or optional scalar inputs (opset >= 11,
/// read when running, so they may be computed). Float, and from opset 11 double and the integer
/// types (the spec adds them at 12; accepting them at 11 costs nothing). A missing
/// bound is the type's lowest / largest finite value (the spec's numeric_limits, so +-Inf become
/// +-FLT_MAX as in onnxruntime); NaN stays NaN, and min > max gives max.
final class ClipOperator: Operator {
    let attributeMin: Float?, attributeMax: Float?
    let boundsAreInputs: Bool

    init(_ spec: OperatorSpec) throws {
        boundsAreInputs = spec.opset >= 11
        attributeMin = boundsAreInputs ? nil : try spec.attributes.float("min")
        attributeMax = boundsAreInputs ? nil : try spec.attributes.float("max")
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let x = try PlanCheck.input(inputs, 0, "input")
        switch x.elementType {
        case .float: break
        case .double, .int8, .int16, .int32, .int64, .uint8, .uint16, .uint32, .uint64:
            if !boundsAreInputs { fallthrough }
        default: throw DeformRTError.unsupported("input is \(x.elementType.onnxName); Clip-\(boundsAreInputs ? "11" : "6") supports float\(boundsAreInputs ? ", double and the integer types" : "")")
        }
        for (index, name) in [(1, "min"), (2, "max")] {
            guard let bound = PlanCheck.optionalInput(inputs, index) else { continue }
            if bound.elementType != x.elementType {
                throw DeformRTError.invalidModel("\(name) is \(bound.elementType.onnxName), the input \(x.elementType.onnxName)")
            }
            if bound.shape.reduce(1, *) != 1 {
                throw DeformRTError.invalidModel("\(name) must be a scalar, got shape \(bound.shape)")
            }
        }
        return [PlanValue(x.type)]
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let x = inputs[0]!, y = outputs[0]
        let low = inputs.count > 1 ? inputs[1] : nil, high = inputs.count > 2 ? inputs[2] : nil
        switch x.elementType {
        case .float:
            let function = UnaryFunction.clip(low: low?.floats[0] ?? attributeMin ?? -.greatestFiniteMagnitude,
                                              high: high?.floats[0] ?? attributeMax ?? .greatestFiniteMagnitude)
            UnaryMath.run(function, x, y, context)
        case .double: clamp(x, y, low?.pointer(Double.self)[0] ?? -.greatestFiniteMagnitude, high?.pointer(Double.self)[0] ?? .greatestFiniteMagnitude)
        case .int64: clamp(Int64.self, x, y, low, high)
        case .int32: clamp(Int32.self, x, y, low, high)
        case .int16: clamp(Int16.self, x, y, low, high)
        case .int8: clamp(Int8.self, x, y, low, high)
        case .uint64: clamp(UInt64.self, x, y, low, high)
        case .uint32: clamp(UInt32.self, x, y, low, high)
        case .uint16: clamp(UInt16.self, x, y, low, high)
        case .uint8: clamp(UInt8.self, x, y, low, high)
        default: throw DeformRTError.unsupported("element type \(x.elementType.onnxName) is not supported")
        }
    }

    private func clamp<T: FixedWidthInteger>(_: T.Type, _ x: Tensor, _ y: Tensor, _ low: Tensor?, _ high: Tensor?) {
        clamp(x, y, low?.pointer(T.self)[0] ?? T.min, high?.pointer(T.self)[0] ?? T.max)
    }

    /// np.clip's order: raise to lo, then cap at hi; NaN compares false and stays.
    private func clamp<T: Comparable>(_ x: Tensor, _ y: Tensor, _ lo: T, _ hi: T) {
        let px = x.pointer(T.self), py = y.pointer(T.self)
        for i in 0..<x.elementCount {
            let raised = px[i] < lo ? lo : px[i]
            py[i] = raised > hi ? hi : raised
        }
    }
}

/// PRelu: x > 0 ? x : x * slope, with slope broadcast to x's shape (numpy rules, one way).
final class PReluOperator: Operator {
    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let x = try PlanCheck.input(inputs, 0, "X"), slope = try PlanCheck.input(inputs, 1, "slope")
        try PlanCheck.float(x, "X")
        try PlanCheck.float(slope, "slope")
        if try Broadcast.shape(x.shape, slope.shape) != x.shape {
            throw DeformRTError.invalidModel("slope of shape \(slope.shape) does not broadcast to X of shape \(x.shape)")
        }
        return [PlanValue(x.type)]
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let x = inputs[0]!, slope = inputs[1]!, y = outputs[0]
        let px = x.floats, ps = slope.floats, py = y.floats
        Broadcast.forEachRow(out: x.shape, a: x.shape, b: slope.shape) { xo, xs, so, ss, yo, n in
            ElementwiseMath.binary(.prelu, px + xo, xs, ps + so, ss, py + yo, n)
        }
    }
}

/// Pow with broadcasting: float base; exponent float, double or any integer type.
final class PowOperator: Operator {
    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let x = try PlanCheck.input(inputs, 0, "X"), exponent = try PlanCheck.input(inputs, 1, "Y")
        try PlanCheck.float(x, "X")
        switch exponent.elementType {
        case .float, .double, .int8, .int16, .int32, .int64, .uint8, .uint16, .uint32, .uint64: break
        default: throw DeformRTError.unsupported("exponent Y is \(exponent.elementType.onnxName); float, double and the integer types are supported")
        }
        return [PlanValue(ValueType(.float, try Broadcast.shape(x.shape, exponent.shape)))]
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let x = inputs[0]!, exponent = inputs[1]!, y = outputs[0]
        switch exponent.elementType {
        case .float:
            let px = x.floats, pe = exponent.floats, py = y.floats
            Broadcast.forEachRow(out: y.shape, a: x.shape, b: exponent.shape) { xo, xs, eo, es, yo, n in
                ElementwiseMath.binary(.pow, px + xo, xs, pe + eo, es, py + yo, n)
            }
        default:
            // Double and integer exponents: computed in double and rounded once, as numpy
            // promotes float32 ** int64 (Scalar reads every width).
            let px = x.floats, py = y.floats
            Broadcast.forEachRow(out: y.shape, a: x.shape, b: exponent.shape) { xo, xs, eo, es, yo, n in
                for i in 0..<n {
                    let e: Double
                    switch Scalar.load(exponent, eo + i * es) {
                    case .integer(let v): e = Double(v)
                    case .unsigned(let v): e = Double(v)
                    case .real(let v): e = v
                    }
                    py[yo + i] = Float(pow(Double(px[xo + i * xs]), e))
                }
            }
        }
    }
}

/// Min and Max over any number of inputs with numpy broadcasting; NaN wins (numpy's
/// minimum/maximum). Float, double, float16 and every integer type.
final class MinMaxOperator: Operator {
    let isMax: Bool
    init(isMax: Bool) { self.isMax = isMax }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        [try Broadcast.variadic(inputs, types: [.float, .double, .float16, .int8, .int16, .int32, .int64,
                                                .uint8, .uint16, .uint32, .uint64])]
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let parts = inputs.compactMap { $0 }, out = outputs[0]
        Expand.copy(parts[0], into: out)
        for part in parts.dropFirst() {
            switch out.elementType {
            case .float:
                let po = out.floats, pp = part.floats
                let op: ElementwiseMath.Binary = isMax ? .max : .min
                Broadcast.forEachRow(out: out.shape, a: out.shape, b: part.shape) { oo, os, bo, bs, _, n in
                    ElementwiseMath.binary(op, po + oo, os, pp + bo, bs, po + oo, n)
                }
            case .double: combine(Double.self, out, part) { a, b in b.isNaN || (self.isMax ? b > a : b < a) ? b : a }
            case .float16: combine(Float16.self, out, part) { a, b in b.isNaN || (self.isMax ? b > a : b < a) ? b : a }
            case .int64: integer(Int64.self, out, part)
            case .int32: integer(Int32.self, out, part)
            case .int16: integer(Int16.self, out, part)
            case .int8: integer(Int8.self, out, part)
            case .uint64: integer(UInt64.self, out, part)
            case .uint32: integer(UInt32.self, out, part)
            case .uint16: integer(UInt16.self, out, part)
            case .uint8: integer(UInt8.self, out, part)
            default: throw DeformRTError.unsupported("element type \(out.elementType.onnxName) is not supported")
            }
        }
    }

    private func integer<T: FixedWidthInteger>(_: T.Type, _ out: Tensor, _ part: Tensor) {
        combine(T.self, out, part) { a, b in self.isMax ? Swift.max(a, b) : Swift.min(a, b) }
    }

    /// out = f(out, part) in place, part broadcast.
    private func combine<T>(_: T.Type, _ out: Tensor, _ part: Tensor, _ f: (T, T) -> T) {
        let po = out.pointer(T.self), pp = part.pointer(T.self)
        Broadcast.forEachRow(out: out.shape, a: out.shape, b: part.shape) { oo, _, bo, bs, _, n in
            for i in 0..<n { po[oo + i] = f(po[oo + i], pp[bo + i * bs]) }
        }
    }
}
