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
        let a = inputs[0]!, b = inputs[1]!, out = outputs[0], parallel = context.parallel
        switch a.elementType {
        case .float: compare(Float.self, a, b, out, parallel)
        case .double: compare(Double.self, a, b, out, parallel)
        case .float16: compare(Float16.self, a, b, out, parallel)
        case .int64: compare(Int64.self, a, b, out, parallel)
        case .int32: compare(Int32.self, a, b, out, parallel)
        case .int16: compare(Int16.self, a, b, out, parallel)
        case .int8: compare(Int8.self, a, b, out, parallel)
        case .uint64: compare(UInt64.self, a, b, out, parallel)
        case .uint32: compare(UInt32.self, a, b, out, parallel)
        case .uint16: compare(UInt16.self, a, b, out, parallel)
        case .uint8, .bool: compare(UInt8.self, a, b, out, parallel)
        case .string: throw DeformRTError.unsupported("strings are not supported")
        }
    }

    private func compare<T: Comparable>(_: T.Type, _ a: Tensor, _ b: Tensor, _ out: Tensor, _ parallel: Parallel) {
        let predicate: Logical.Predicate
        switch kind {
        case .equal: predicate = .equal
        case .less: predicate = .less
        case .greater: predicate = .greater
        case .lessOrEqual: predicate = .lessOrEqual
        case .greaterOrEqual: predicate = .greaterOrEqual
        }
        Logical.apply(T.self, a, b, out, parallel, predicate)
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
        case .and: Logical.apply(UInt8.self, a, b, out, context.parallel, .and)
        case .or: Logical.apply(UInt8.self, a, b, out, context.parallel, .or)
        case .xor: Logical.apply(UInt8.self, a, b, out, context.parallel, .xor)
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

    enum Predicate { case equal, less, greater, lessOrEqual, greaterOrEqual, and, or, xor }

    /// out[i] = predicate(a, b) as a bool byte, a and b broadcast; rows over the threads, and
    /// operands of the output's shape in one flat loop (CenterNet's peak test compares two
    /// 80 x 128 x 128 maps). One loop per predicate: a closure would be called per element.
    static func apply<T: Comparable>(_: T.Type, _ a: Tensor, _ b: Tensor, _ out: Tensor, _ parallel: Parallel,
                                     _ predicate: Predicate) {
        let pa = a.pointer(T.self), pb = b.pointer(T.self), po = out.pointer(UInt8.self)
        if a.shape == out.shape && b.shape == out.shape {
            let n = out.elementCount
            parallel.forEachRange((n + 4095) / 4096, totalWork: n) { _, blocks in
                let start = blocks.lowerBound * 4096
                row(predicate, pa + start, 1, pb + start, 1, po + start, min(n, blocks.upperBound * 4096) - start)
            }
            return
        }
        Broadcast.forEachRow(out: out.shape, a: a.shape, b: b.shape, parallel: parallel) { ao, astr, bo, bstr, oo, n in
            row(predicate, pa + ao, astr, pb + bo, bstr, po + oo, n)
        }
    }

    @inline(__always)
    private static func row<T: Comparable>(_ predicate: Predicate, _ a: UnsafePointer<T>, _ sa: Int, _ b: UnsafePointer<T>,
                                           _ sb: Int, _ o: UnsafeMutablePointer<UInt8>, _ n: Int) {
        switch predicate {
        case .equal: for i in 0..<n { o[i] = a[i * sa] == b[i * sb] ? 1 : 0 }
        case .less: for i in 0..<n { o[i] = a[i * sa] < b[i * sb] ? 1 : 0 }
        case .greater: for i in 0..<n { o[i] = a[i * sa] > b[i * sb] ? 1 : 0 }
        case .lessOrEqual: for i in 0..<n { o[i] = a[i * sa] <= b[i * sb] ? 1 : 0 }
        case .greaterOrEqual: for i in 0..<n { o[i] = a[i * sa] >= b[i * sb] ? 1 : 0 }
        case .and, .or, .xor:
            // Bool bytes: any nonzero byte is true.
            let ua = UnsafeRawPointer(a).assumingMemoryBound(to: UInt8.self)
            let ub = UnsafeRawPointer(b).assumingMemoryBound(to: UInt8.self)
            switch predicate {
            case .and: for i in 0..<n { o[i] = ua[i * sa] != 0 && ub[i * sb] != 0 ? 1 : 0 }
            case .or: for i in 0..<n { o[i] = ua[i * sa] != 0 || ub[i * sb] != 0 ? 1 : 0 }
            default: for i in 0..<n { o[i] = (ua[i * sa] != 0) != (ub[i * sb] != 0) ? 1 : 0 }
            }
        }
    }
}
