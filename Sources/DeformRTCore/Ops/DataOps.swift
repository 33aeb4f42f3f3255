import DeformRTKernels

/// Broadcasting copy, shared by Expand, Min/Max and LayerNormalization.
enum Expand {
    /// Copies `source` into `out`, whose shape `source` broadcasts to (numpy rules).
    static func copy(_ source: Tensor, into out: Tensor, parallel: Parallel = .serial) {
        if source.shape == out.shape {
            out.rawPointer.copyMemory(from: source.rawPointer, byteCount: source.byteCount)
            return
        }
        let (shape, strides) = Broadcast.coalesce(out.shape, [Broadcast.strides(source.shape, into: out.shape)])
        StridedCopy.copy(elementSize: source.elementType.byteSize, shape: shape, sourceStrides: strides[0],
                         source: source.rawPointer, destination: out.rawPointer, parallel: parallel)
    }
}

/// Expand: the input broadcast with a shape (both ways, as numpy broadcasts two shapes).
final class ExpandOperator: Operator {
    var shapeInputs: [Int] { [1] }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let x = try PlanCheck.input(inputs, 0, "input")
        let shape = try PlanCheck.constantInts(try PlanCheck.input(inputs, 1, "shape"), "shape")
        if let bad = shape.first(where: { $0 < 0 }) { throw DeformRTError.invalidModel("shape \(shape) has a negative dim \(bad)") }
        if shape.count > Limits.maxRank { throw DeformRTError.invalidModel("shape has rank \(shape.count), above the limit of \(Limits.maxRank)") }
        return [PlanValue(ValueType(x.elementType, try Broadcast.shape(x.shape, shape)))]
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        Expand.copy(inputs[0]!, into: outputs[0], parallel: context.parallel)
    }
}

/// Tile: the input repeated repeats[d] times along each axis.
final class TileOperator: Operator {
    var shapeInputs: [Int] { [1] }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let x = try PlanCheck.input(inputs, 0, "input")
        let repeats = try PlanCheck.constantInts(try PlanCheck.input(inputs, 1, "repeats"), "repeats")
        if repeats.count != x.shape.count {
            throw DeformRTError.invalidModel("repeats \(repeats) must have one entry per input axis (shape \(x.shape))")
        }
        let shape = try zip(x.shape, repeats).map { dim, count -> Int in
            if count < 0 { throw DeformRTError.invalidModel("negative repeat count in \(repeats)") }
            return try Limits.product(dim, count, what: "Tile output")
        }
        return [PlanValue(ValueType(x.elementType, shape))]
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let x = inputs[0]!, out = outputs[0]
        // The output as [r0, d0, r1, d1, ...]: the repeat axes read with stride 0.
        var inStrides = [Int](repeating: 1, count: x.rank)
        for d in stride(from: x.rank - 2, through: 0, by: -1) { inStrides[d] = inStrides[d + 1] * x.shape[d + 1] }
        var shape: [Int] = [], strides: [Int] = []
        for d in 0..<x.rank {
            shape += [out.shape[d] / max(x.shape[d], 1), x.shape[d]]
            strides += [0, inStrides[d]]
        }
        let (merged, mergedStrides) = Broadcast.coalesce(shape, [strides])
        StridedCopy.copy(elementSize: x.elementType.byteSize, shape: merged, sourceStrides: mergedStrides[0],
                         source: x.rawPointer, destination: out.rawPointer, parallel: context.parallel)
    }
}

/// ConstantOfShape: a tensor of the given shape filled with the one-element `value` attribute
/// (float 0 by default).
final class ConstantOfShapeOperator: Operator {
    let value: Tensor
    var shapeInputs: [Int] { [0] }
    init(_ spec: OperatorSpec) throws {
        value = try spec.attributes.tensor("value") ?? Tensor(floats: [0], shape: [1])
        if value.elementCount != 1 { throw spec.fail("value must hold one element, it holds \(value.elementCount)") }
        if value.elementType == .string { throw DeformRTError.unsupported("node \(spec.node.label) (ConstantOfShape): string values are not supported") }
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let shape = try PlanCheck.constantInts(try PlanCheck.input(inputs, 0, "input"), "input")
        if let bad = shape.first(where: { $0 < 0 }) { throw DeformRTError.invalidModel("shape \(shape) has a negative dim \(bad)") }
        _ = try Limits.elementCount(shape, what: "ConstantOfShape output")
        return [PlanValue(ValueType(value.elementType, shape))]
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        Expand.copy(value.reshaped([]), into: outputs[0])
    }
}

/// Range(start, limit, delta): max(ceil((limit - start) / delta), 0) values start + i * delta.
/// The three scalars must be known when planning (they fix the output's length). Floats are
/// computed in double and rounded once, as onnx.reference (numpy.arange) does.
final class RangeOperator: Operator {
    var shapeInputs: [Int] { [0, 1, 2] }

    private static func scalars(_ inputs: [PlanValue?]) throws -> [Tensor] {
        let values = try ["start", "limit", "delta"].enumerated().map { try PlanCheck.input(inputs, $0.offset, $0.element) }
        let type = values[0].elementType
        switch type {
        case .float, .double, .int16, .int32, .int64: break
        default: throw DeformRTError.unsupported("element type \(type.onnxName) is not supported")
        }
        return try zip(values, ["start", "limit", "delta"]).map { value, name in
            if value.elementType != type { throw DeformRTError.invalidModel("start, limit and delta differ in type") }
            if value.shape.reduce(1, *) != 1 { throw DeformRTError.invalidModel("\(name) must be a scalar, got shape \(value.shape)") }
            guard let constant = value.constant else {
                throw DeformRTError.unsupported("\(name) must be computable from shapes and constants when planning; it depends on run-time data")
            }
            return constant
        }
    }

    /// The scalars of float or double tensors, as doubles.
    private static func reals(_ t: [Tensor]) -> [Double] { t.map(real) }

    private static func real(_ t: Tensor) -> Double {
        t.elementType == .double ? t.pointer(Double.self)[0] : Double(t.floats[0])
    }

    /// An integer scalar input (int16, int32 or int64), read in place.
    private static func integer(_ t: Tensor) -> Int64 {
        if case .integer(let value) = Scalar.load(t, 0) { return value }
        return 0  // not an integer type: refused when planning
    }

    private static func count(_ t: [Tensor]) throws -> Int {
        let limit = UInt64(Limits.maxElements)
        if t[0].elementType == .float || t[0].elementType == .double {
            let v = reals(t)
            let (start, end, delta) = (v[0], v[1], v[2])
            if !start.isFinite || !end.isFinite || !delta.isFinite || delta == 0 {
                throw DeformRTError.invalidModel("Range(\(start), \(end), \(delta)) needs finite values and a non-zero delta")
            }
            // (end - start) can overflow to +-Inf for doubles: checked before converting.
            let n = ((end - start) / delta).rounded(.up)
            if n.isNaN || n >= Double(limit) { throw DeformRTError.invalidModel("Range(\(start), \(end), \(delta)) has too many elements") }
            return n > 0 ? Int(n) : 0
        }
        let v = try t.map { try $0.integerValues()[0] }
        let (start, end, delta) = (v[0], v[1], v[2])
        if delta == 0 { throw DeformRTError.invalidModel("Range has delta 0") }
        // The span as a magnitude: exact even when end - start overflows Int64.
        let span: UInt64
        if delta > 0 && end > start { span = UInt64(bitPattern: end &- start) }
        else if delta < 0 && end < start { span = UInt64(bitPattern: start &- end) }
        else { return 0 }
        let n = (span - 1) / delta.magnitude + 1
        if n > limit { throw DeformRTError.invalidModel("Range(\(start), \(end), \(delta)) has too many elements") }
        return Int(n)
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let t = try RangeOperator.scalars(inputs)
        return [PlanValue(ValueType(t[0].elementType, [try RangeOperator.count(t)]))]
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        // The scalars read in place (no array per run); the count is the planned output's.
        let start = inputs[0]!, delta = inputs[2]!, out = outputs[0]
        let n = out.elementCount
        switch out.elementType {
        case .float:
            let (s, d) = (RangeOperator.real(start), RangeOperator.real(delta))
            for i in 0..<n { out.floats[i] = Float(s + Double(i) * d) }
        case .double:
            let (s, d) = (RangeOperator.real(start), RangeOperator.real(delta))
            for i in 0..<n { out.pointer(Double.self)[i] = s + Double(i) * d }
        default:
            // Within [start, limit), so the wrapping operations never wrap.
            let (s, d) = (RangeOperator.integer(start), RangeOperator.integer(delta))
            for i in 0..<n { Scalar.store(.integer(s &+ Int64(i) &* d), out, i) }
        }
    }
}

/// Size: the input's element count as an int64 scalar, known when planning.
final class SizeOperator: Operator {
    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let x = try PlanCheck.input(inputs, 0, "data")
        let count = Int64(try Limits.elementCount(x.shape, what: "input"))
        return [PlanValue(ValueType(.int64, []), constant: Tensor(int64s: [count], shape: []))]
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        outputs[0].pointer(Int64.self)[0] = Int64(inputs[0]!.elementCount)
    }
}

/// Dropout at inference: the input unchanged, and the optional mask all true. A training_mode
/// input must be a constant false.
final class DropoutOperator: Operator {
    let outputCount: Int
    init(_ spec: OperatorSpec) { outputCount = spec.node.outputs.count }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let x = try PlanCheck.input(inputs, 0, "data")
        if let training = PlanCheck.optionalInput(inputs, 2) {
            guard let constant = training.constant, let flags = try? constant.integerValues() else {
                throw DeformRTError.unsupported("training_mode must be a constant when planning")
            }
            if flags.contains(where: { $0 != 0 }) { throw DeformRTError.unsupported("training_mode true is not supported (inference only)") }
        }
        if outputCount > 2 { throw DeformRTError.invalidModel("Dropout has at most 2 outputs, the node has \(outputCount)") }
        let mask = PlanValue(ValueType(.bool, x.shape))
        return [PlanValue(x.type)] + (outputCount == 2 ? [mask] : [])
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let x = inputs[0]!
        outputs[0].rawPointer.copyMemory(from: x.rawPointer, byteCount: x.byteCount)
        if outputs.count > 1 { outputs[1].rawPointer.initializeMemory(as: UInt8.self, repeating: 1, count: outputs[1].elementCount) }
    }
}

/// ArgMax / ArgMin along one axis (int64 output). Ties give the first index, or the last with
/// select_last_index; NaN counts as the extreme (numpy's argmax/argmin), so the first NaN wins
/// (the last with select_last_index).
final class ArgExtremumOperator: Operator {
    let isMax: Bool
    let axis: Int
    let keepDims: Bool
    let selectLast: Bool

    init(_ spec: OperatorSpec, isMax: Bool) throws {
        self.isMax = isMax
        axis = try spec.attributes.int("axis", default: 0)
        keepDims = try spec.attributes.int("keepdims", default: 1) != 0
        selectLast = try spec.attributes.int("select_last_index", default: 0) != 0
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let x = try PlanCheck.input(inputs, 0, "data")
        switch x.elementType {
        case .float, .double, .int32, .int64, .uint8, .int8: break
        default: throw DeformRTError.unsupported("element type \(x.elementType.onnxName) is not supported")
        }
        let a = try PlanCheck.axis(axis, rank: x.shape.count)
        if x.shape[a] == 0 { throw DeformRTError.invalidModel("cannot take the arg\(isMax ? "max" : "min") of an empty axis (shape \(x.shape))") }
        var shape = x.shape
        if keepDims { shape[a] = 1 } else { shape.remove(at: a) }
        return [PlanValue(ValueType(.int64, shape))]
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let x = inputs[0]!
        switch x.elementType {
        case .float: search(Float.self, x, outputs[0]) { $0.isNaN }
        case .double: search(Double.self, x, outputs[0]) { $0.isNaN }
        case .int32: search(Int32.self, x, outputs[0]) { _ in false }
        case .int64: search(Int64.self, x, outputs[0]) { _ in false }
        case .uint8: search(UInt8.self, x, outputs[0]) { _ in false }
        case .int8: search(Int8.self, x, outputs[0]) { _ in false }
        default: throw DeformRTError.unsupported("element type \(x.elementType.onnxName) is not supported")
        }
    }

    private func search<T: Comparable>(_: T.Type, _ x: Tensor, _ out: Tensor, _ isNaN: (T) -> Bool) {
        let a = (axis < 0 ? axis + x.rank : axis)
        let outer = x.shape[..<a].reduce(1, *), dim = x.shape[a], inner = x.shape[(a + 1)...].reduce(1, *)
        let px = x.pointer(T.self), po = out.pointer(Int64.self)
        let isMax = isMax
        let order = selectLast ? Array((0..<dim).reversed()) : Array(0..<dim)
        for o in 0..<outer {
            for i in 0..<inner {
                let base = px + o * dim * inner + i
                var best = order[0], bestValue = base[best * inner]
                if !isNaN(bestValue) {
                    for k in order.dropFirst() {
                        let v = base[k * inner]
                        if isNaN(v) { best = k; break }
                        if isMax ? v > bestValue : v < bestValue { best = k; bestValue = v }
                    }
                }
                po[o * inner + i] = Int64(best)
            }
        }
    }
}
