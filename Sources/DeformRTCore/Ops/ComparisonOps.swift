import DeformRTKernels

/// Equal, Less, Greater, LessOrEqual, GreaterOrEqual with numpy broadcasting; bool output.
/// Float, double, float16 and the integer types (and bool for Equal); NaN compares false.
final class ComparisonOperator: Operator {
    enum Kind { case equal, less, greater, lessOrEqual, greaterOrEqual }
    let kind: Kind
    init(_ kind: Kind) { self.kind = kind }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let a = try PlanCheck.input(inputs, 0, "A"), b = try PlanCheck.input(inputs, 1, "B")
        if a.elementType != b.elementType {
            throw DeformRTError.invalidModel("inputs have different element types (\(a.elementType.onnxName) and \(b.elementType.onnxName))")
        }
        if a.elementType == .string || (a.elementType == .bool && kind != .equal) {
            throw DeformRTError.unsupported("element type \(a.elementType.onnxName) is not supported")
        }
        return [PlanValue(ValueType(.bool, try Broadcast.shape(a.shape, b.shape)))]
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let a = inputs[0]!, b = inputs[1]!, out = outputs[0]
        switch a.elementType {
        case .float: compare(Float.self, a, b, out)
        case .double: compare(Double.self, a, b, out)
        case .float16: compare(Float16.self, a, b, out)
        case .int64: compare(Int64.self, a, b, out)
        case .int32: compare(Int32.self, a, b, out)
        case .int16: compare(Int16.self, a, b, out)
        case .int8: compare(Int8.self, a, b, out)
        case .uint64: compare(UInt64.self, a, b, out)
        case .uint32: compare(UInt32.self, a, b, out)
        case .uint16: compare(UInt16.self, a, b, out)
        case .uint8, .bool: compare(UInt8.self, a, b, out)
        case .string: throw DeformRTError.unsupported("strings are not supported")
        }
    }

    private func compare<T: Comparable>(_: T.Type, _ a: Tensor, _ b: Tensor, _ out: Tensor) {
        switch kind {
        case .equal: Logical.apply(T.self, a, b, out) { $0 == $1 }
        case .less: Logical.apply(T.self, a, b, out) { $0 < $1 }
        case .greater: Logical.apply(T.self, a, b, out) { $0 > $1 }
        case .lessOrEqual: Logical.apply(T.self, a, b, out) { $0 <= $1 }
        case .greaterOrEqual: Logical.apply(T.self, a, b, out) { $0 >= $1 }
        }
    }
}

/// And, Or, Xor on bool tensors with numpy broadcasting.
final class LogicalOperator: Operator {
    enum Kind { case and, or, xor }
    let kind: Kind
    init(_ kind: Kind) { self.kind = kind }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let a = try PlanCheck.input(inputs, 0, "A"), b = try PlanCheck.input(inputs, 1, "B")
        try Logical.requireBool(a, "A")
        try Logical.requireBool(b, "B")
        return [PlanValue(ValueType(.bool, try Broadcast.shape(a.shape, b.shape)))]
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let a = inputs[0]!, b = inputs[1]!, out = outputs[0]
        switch kind {
        case .and: Logical.apply(UInt8.self, a, b, out) { $0 != 0 && $1 != 0 }
        case .or: Logical.apply(UInt8.self, a, b, out) { $0 != 0 || $1 != 0 }
        case .xor: Logical.apply(UInt8.self, a, b, out) { ($0 != 0) != ($1 != 0) }
        }
    }
}

/// Not on a bool tensor.
final class NotOperator: Operator {
    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let x = try PlanCheck.input(inputs, 0, "X")
        try Logical.requireBool(x, "X")
        return [PlanValue(x.type)]
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let px = inputs[0]!.pointer(UInt8.self), py = outputs[0].pointer(UInt8.self)
        for i in 0..<outputs[0].elementCount { py[i] = px[i] == 0 ? 1 : 0 }
    }
}

/// Where(condition, X, Y): X where condition holds, else Y, all three broadcast together.
/// Any element type (elements are moved as bit patterns).
final class WhereOperator: Operator {
    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let condition = try PlanCheck.input(inputs, 0, "condition")
        let x = try PlanCheck.input(inputs, 1, "X"), y = try PlanCheck.input(inputs, 2, "Y")
        try Logical.requireBool(condition, "condition")
        if x.elementType != y.elementType {
            throw DeformRTError.invalidModel("X is \(x.elementType.onnxName) and Y \(y.elementType.onnxName); they must match")
        }
        if x.elementType == .string { throw DeformRTError.unsupported("strings are not supported") }
        let shape = try Broadcast.shape(try Broadcast.shape(condition.shape, x.shape), y.shape)
        return [PlanValue(ValueType(x.elementType, shape))]
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let out = outputs[0]
        switch out.elementType.byteSize {
        case 1: select(UInt8.self, inputs, out)
        case 2: select(UInt16.self, inputs, out)
        case 4: select(UInt32.self, inputs, out)
        default: select(UInt64.self, inputs, out)
        }
    }

    private func select<T>(_: T.Type, _ inputs: [Tensor?], _ out: Tensor) {
        let condition = inputs[0]!, x = inputs[1]!, y = inputs[2]!
        let pc = condition.pointer(UInt8.self), px = x.pointer(T.self), py = y.pointer(T.self), po = out.pointer(T.self)
        Broadcast.forEachRow(out: out.shape, operands: [condition.shape, x.shape, y.shape]) { offsets, strides, oo, n in
            let c = pc + offsets[0], xs = px + offsets[1], ys = py + offsets[2]
            let cs = strides[0], xst = strides[1], yst = strides[2]
            for i in 0..<n { po[oo + i] = c[i * cs] != 0 ? xs[i * xst] : ys[i * yst] }
        }
    }
}

/// Shared by the comparison and logical operators.
enum Logical {
    static func requireBool(_ value: PlanValue, _ name: String) throws {
        if value.elementType != .bool {
            throw DeformRTError.invalidModel("input \(name) must be bool, got \(value.elementType.onnxName)")
        }
    }

    /// out[i] = predicate(a, b) as a bool byte, a and b broadcast.
    static func apply<T>(_: T.Type, _ a: Tensor, _ b: Tensor, _ out: Tensor, _ predicate: (T, T) -> Bool) {
        let pa = a.pointer(T.self), pb = b.pointer(T.self), po = out.pointer(UInt8.self)
        Broadcast.forEachRow(out: out.shape, a: a.shape, b: b.shape) { ao, astr, bo, bstr, oo, n in
            for i in 0..<n { po[oo + i] = predicate(pa[ao + i * astr], pb[bo + i * bstr]) ? 1 : 0 }
        }
    }
}
