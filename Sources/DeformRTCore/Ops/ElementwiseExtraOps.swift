import DeformRTKernels
#if canImport(Glibc)
import Glibc
#endif

/// IsNaN and IsInf (detect_negative, detect_positive): float, double, float16 in, bool out.
final class FloatClassOperator: Operator {
    enum Kind { case nan, infinity(negative: Bool, positive: Bool) }
    let kind: Kind
    init(_ kind: Kind) { self.kind = kind }

    static func isInf(_ spec: OperatorSpec) throws -> FloatClassOperator {
        FloatClassOperator(.infinity(negative: try spec.attributes.int("detect_negative", default: 1) != 0,
                                     positive: try spec.attributes.int("detect_positive", default: 1) != 0))
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let x = try PlanCheck.input(inputs, 0, "X")
        switch x.elementType {
        case .float, .double, .float16: return [PlanValue(ValueType(.bool, x.shape))]
        default: throw DeformRTError.unsupported("input X is \(x.elementType.onnxName); float, double and float16 are supported")
        }
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let x = inputs[0]!
        switch x.elementType {
        case .float: classify(Float.self, x, outputs[0], context)
        case .double: classify(Double.self, x, outputs[0], context)
        case .float16: classify(Float16.self, x, outputs[0], context)
        default: break  // refused by plan
        }
    }

    private func classify<T: BinaryFloatingPoint>(_: T.Type, _ x: Tensor, _ y: Tensor, _ context: RunContext) {
        let px = x.pointer(T.self), py = y.pointer(UInt8.self), n = x.elementCount
        let (nan, negative, positive): (Bool, Bool, Bool)
        switch kind {
        case .nan: (nan, negative, positive) = (true, false, false)
        case .infinity(let n, let p): (nan, negative, positive) = (false, n, p)
        }
        let block = 1 << 15
        context.parallel.forEachRange((n + block - 1) / block, totalWork: n) { _, range in
            for i in (range.lowerBound * block)..<min(n, range.upperBound * block) {
                let v = px[i]
                let hit = nan ? v.isNaN : v.isInfinite && (v < 0 ? negative : positive)
                py[i] = hit ? 1 : 0
            }
        }
    }
}

/// Mod with numpy broadcasting. fmod 0: the remainder takes the divisor's sign (Python's %,
/// numpy's mod; for floats as Mod-28 defines it, accepted at every opset); fmod 1: the
/// dividend's (C's fmod, numpy's fmod). Integer x mod 0 is defined as 0 (numpy's result) instead
/// of trapping; a float x mod 0 is NaN.
final class ModOperator: Operator {
    let fmod: Bool
    let label: String

    init(_ spec: OperatorSpec) throws {
        fmod = try spec.attributes.int("fmod", default: 0) != 0
        label = "node \(spec.node.label) (Mod)"
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let a = try PlanCheck.input(inputs, 0, "A"), b = try PlanCheck.input(inputs, 1, "B")
        if a.elementType != b.elementType {
            throw DeformRTError.invalidModel("inputs have different element types (\(a.elementType.onnxName) and \(b.elementType.onnxName))")
        }
        switch a.elementType {
        case .float, .double, .float16: break
        case .int8, .int16, .int32, .int64, .uint8, .uint16, .uint32, .uint64: break
        default: throw DeformRTError.unsupported("element type \(a.elementType.onnxName) is not supported")
        }
        return [PlanValue(ValueType(a.elementType, try Broadcast.shape(a.shape, b.shape)))]
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let a = inputs[0]!, b = inputs[1]!, out = outputs[0]
        switch a.elementType {
        case .float: apply(Float.self, a, b, out, context, fmod ? { Glibc.fmodf($0, $1) } : { ModOperator.floored(Glibc.fmodf($0, $1), $1) })
        case .double: apply(Double.self, a, b, out, context, fmod ? { Glibc.fmod($0, $1) } : { ModOperator.floored(Glibc.fmod($0, $1), $1) })
        case .float16:
            apply(Float16.self, a, b, out, context, fmod ? { Float16(Glibc.fmodf(Float($0), Float($1))) }
                                                         : { Float16(ModOperator.floored(Glibc.fmodf(Float($0), Float($1)), Float($1))) })
        case .int8: integer(Int8.self, a, b, out, context)
        case .int16: integer(Int16.self, a, b, out, context)
        case .int32: integer(Int32.self, a, b, out, context)
        case .int64: integer(Int64.self, a, b, out, context)
        case .uint8: integer(UInt8.self, a, b, out, context)
        case .uint16: integer(UInt16.self, a, b, out, context)
        case .uint32: integer(UInt32.self, a, b, out, context)
        case .uint64: integer(UInt64.self, a, b, out, context)
        default: throw DeformRTError.unsupported("\(label): element type \(a.elementType.onnxName) is not supported")
        }
    }

    /// The truncated remainder r of x / y turned into the floored one (Mod-28's special cases:
    /// a zero result takes y's sign; x finite, y infinite of the other sign gives y).
    static func floored<T: BinaryFloatingPoint>(_ r: T, _ y: T) -> T {
        if r == 0 { return y.sign == .minus ? -0.0 : 0.0 }
        return (r < 0) != (y < 0) ? r + y : r
    }

    private func integer<T: FixedWidthInteger>(_: T.Type, _ a: Tensor, _ b: Tensor, _ out: Tensor, _ context: RunContext) {
        if fmod {
            apply(T.self, a, b, out, context) { x, y in y == 0 ? 0 : x.remainderReportingOverflow(dividingBy: y).partialValue }
        } else {
            apply(T.self, a, b, out, context) { x, y in
                if y == 0 { return 0 }
                let r = x.remainderReportingOverflow(dividingBy: y).partialValue
                return r != 0 && (r < 0) != (y < 0) ? r &+ y : r
            }
        }
    }

    private func apply<T>(_: T.Type, _ a: Tensor, _ b: Tensor, _ out: Tensor, _ context: RunContext, _ f: @escaping (T, T) -> T) {
        let pa = a.pointer(T.self), pb = b.pointer(T.self), po = out.pointer(T.self)
        Broadcast.forEachRow(out: out.shape, a: a.shape, b: b.shape, parallel: context.parallel) { ao, astr, bo, bstr, oo, n in
            for i in 0..<n { po[oo + i] = f(pa[ao + i * astr], pb[bo + i * bstr]) }
        }
    }
}

/// CastLike: Cast to the element type of the second input (its values are not read). The
/// `saturate` attribute only concerns float8 targets, which DeformRT has no tensors for.
final class CastLikeOperator: Operator {
    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let x = try PlanCheck.input(inputs, 0, "input"), like = try PlanCheck.input(inputs, 1, "target_type")
        if x.elementType == .string || like.elementType == .string {
            throw DeformRTError.unsupported("casting strings is not supported")
        }
        return [PlanValue(ValueType(like.elementType, x.shape))]
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let x = inputs[0]!, y = outputs[0]
        for i in 0..<x.elementCount { Scalar.store(Scalar.load(x, i), y, i) }
    }
}

/// Sum and Mean over any number of inputs with numpy broadcasting; float (SIMD) and double.
/// Mean divides the sum by the input count once at the end (onnx.reference's order).
final class SumMeanOperator: Operator {
    let isMean: Bool
    init(isMean: Bool) { self.isMean = isMean }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        [try Broadcast.variadic(inputs, types: [.float, .double], supported: "float, double")]
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let parts = inputs.compactMap { $0 }, out = outputs[0]
        Expand.copy(parts[0], into: out)
        let count = parts.count
        switch out.elementType {
        case .float:
            let po = out.floats
            for part in parts.dropFirst() {
                let pp = part.floats
                Broadcast.forEachRow(out: out.shape, a: out.shape, b: part.shape, parallel: context.parallel) { oo, os, bo, bs, _, n in
                    ElementwiseKernels.binary(.add, po + oo, os, pp + bo, bs, po + oo, n)
                }
            }
            if isMean {
                var divisor = Float(count)
                let n = out.elementCount
                withUnsafePointer(to: &divisor) { d in
                    ElementwiseKernels.binary(.div, po, 1, d, 0, po, n)
                }
            }
        case .double:
            let po = out.pointer(Double.self)
            for part in parts.dropFirst() {
                let pp = part.pointer(Double.self)
                Broadcast.forEachRow(out: out.shape, a: out.shape, b: part.shape) { oo, _, bo, bs, _, n in
                    for i in 0..<n { po[oo + i] += pp[bo + i * bs] }
                }
            }
            if isMean { for i in 0..<out.elementCount { po[i] /= Double(count) } }
        default: throw DeformRTError.unsupported("element type \(out.elementType.onnxName) is not supported")
        }
    }
}
