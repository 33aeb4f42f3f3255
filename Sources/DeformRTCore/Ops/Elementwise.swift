import DeformRTKernels

/// Numpy-style broadcasting of two shapes.
enum Broadcast {
    static func shape(_ a: [Int], _ b: [Int]) throws -> [Int] {
        let rank = max(a.count, b.count)
        var out = [Int](repeating: 1, count: rank)
        for i in 0..<rank {
            let da = i < rank - a.count ? 1 : a[i - (rank - a.count)]
            let db = i < rank - b.count ? 1 : b[i - (rank - b.count)]
            if da == db || db == 1 { out[i] = da } else if da == 1 { out[i] = db } else {
                throw DeformRTError.invalidModel("shapes \(a) and \(b) cannot be broadcast together")
            }
        }
        return out
    }

    /// Element strides of `shape` seen through `outShape` (0 along broadcast dims).
    static func strides(_ shape: [Int], into outShape: [Int]) -> [Int] {
        let offset = outShape.count - shape.count
        var strides = [Int](repeating: 0, count: outShape.count)
        var running = 1
        for i in stride(from: shape.count - 1, through: 0, by: -1) {
            strides[i + offset] = shape[i] == 1 ? 0 : running
            running *= shape[i]
        }
        return strides
    }

    /// Merges adjacent dims that every operand walks contiguously, so inner loops get long.
    static func coalesce(_ shape: [Int], _ operandStrides: [[Int]]) -> (shape: [Int], strides: [[Int]]) {
        var outShape: [Int] = []
        var outStrides = operandStrides.map { _ in [Int]() }
        for i in shape.indices {
            if shape[i] == 1 { continue }
            if let last = outShape.indices.last,
               operandStrides.indices.allSatisfy({ outStrides[$0][last] == operandStrides[$0][i] * shape[i] }) {
                outShape[last] *= shape[i]
                for k in operandStrides.indices { outStrides[k][last] = operandStrides[k][i] }
            } else {
                outShape.append(shape[i])
                for k in operandStrides.indices { outStrides[k].append(operandStrides[k][i]) }
            }
        }
        if outShape.isEmpty { return ([1], operandStrides.map { _ in [0] }) }
        return (outShape, outStrides)
    }

    /// The one row walker behind both `forEachRow`s: calls body(offsets, innerStrides, outOffset,
    /// length) for each run of the innermost dim, one offset and inner stride per operand. With
    /// several threads in `parallel` the rows are split between them (body must then only write
    /// its own rows).
    @inline(__always)
    static func walkRows(
        out: [Int], operands: [[Int]], parallel: Parallel = .serial,
        _ body: (_ offsets: UnsafeMutablePointer<Int>, _ innerStrides: UnsafeMutablePointer<Int>,
                 _ outOffset: Int, _ length: Int) -> Void
    ) {
        BroadcastRows(out: out, operands: operands).walk(parallel: parallel, body)
    }

    /// The output of a variadic elementwise operator (Sum, Mean, Min, Max): the present inputs,
    /// all of one element type among `types` (else "not supported" and `supported`, when given),
    /// broadcast together.
    static func variadic(_ inputs: [PlanValue?], types: Set<ElementType>, supported: String? = nil) throws -> PlanValue {
        let parts = inputs.compactMap { $0 }
        guard let first = parts.first else { throw DeformRTError.invalidModel("needs at least one input") }
        if !types.contains(first.elementType) {
            throw DeformRTError.unsupported("element type \(first.elementType.onnxName) is not supported" + (supported.map { " (\($0))" } ?? ""))
        }
        var shape = first.shape
        for part in parts.dropFirst() {
            if part.elementType != first.elementType {
                throw DeformRTError.invalidModel("inputs have different element types (\(first.elementType.onnxName) and \(part.elementType.onnxName))")
            }
            shape = try Broadcast.shape(shape, part.shape)
        }
        return PlanValue(ValueType(first.elementType, shape))
    }

    /// Walks the output of a two-operand broadcast as rows: calls body(aOffset, aStride, bOffset,
    /// bStride, outOffset, length) for each run of the innermost dim.
    @inline(__always)
    static func forEachRow(out: [Int], a: [Int], b: [Int], parallel: Parallel = .serial,
                           _ body: (_ aOffset: Int, _ aStride: Int, _ bOffset: Int, _ bStride: Int, _ outOffset: Int, _ length: Int) -> Void) {
        walkRows(out: out, operands: [a, b], parallel: parallel) { offsets, strides, outOffset, length in
            body(offsets[0], strides[0], offsets[1], strides[1], outOffset, length)
        }
    }

    /// Walks the output of a broadcast of any number of operands as rows, like forEachRow:
    /// calls body(offsets, strides, outOffset, length) with each operand's offset and inner stride.
    static func forEachRow(out: [Int], operands: [[Int]],
                           _ body: (_ offsets: [Int], _ strides: [Int], _ outOffset: Int, _ length: Int) -> Void) {
        let count = operands.count
        var rowOffsets = [Int](repeating: 0, count: count)
        var innerStrides: [Int] = []
        walkRows(out: out, operands: operands) { offsets, strides, outOffset, length in
            if innerStrides.isEmpty { innerStrides = Array(UnsafeBufferPointer(start: strides, count: count)) }
            for k in 0..<count { rowOffsets[k] = offsets[k] }
            body(rowOffsets, innerStrides, outOffset, length)
        }
    }
}

/// A broadcast's row walk, made once (an operator's plan keeps it, so runs build no arrays): the
/// output shape with the dims every operand walks contiguously merged, and each operand's
/// element strides through it.
struct BroadcastRows {
    let shape: [Int]
    let strides: [[Int]]
    let rows: Int
    let inner: Int

    init(out: [Int], operands: [[Int]]) {
        (shape, strides) = Broadcast.coalesce(out, operands.map { Broadcast.strides($0, into: out) })
        inner = shape[shape.count - 1]
        rows = shape.dropLast().reduce(1, *)
    }

    /// Calls body(offsets, innerStrides, outOffset, length) for each run of the innermost dim, one
    /// offset and inner stride per operand; the rows are split between the threads of `parallel`.
    @inline(__always)
    func walk(parallel: Parallel = .serial,
              _ body: (_ offsets: UnsafeMutablePointer<Int>, _ innerStrides: UnsafeMutablePointer<Int>,
                       _ outOffset: Int, _ length: Int) -> Void) {
        let shape = shape, strides = strides
        parallel.forEachRange(rows, totalWork: rows * inner) { _, range in
            StridedRows.walk(range, shape: shape, operands: strides.count, stride: { k, axis in strides[k][axis] }, body)
        }
    }
}

enum BinaryOperation { case add, sub, mul, div }

/// Add, Sub, Mul, Div with numpy broadcasting, for float, double, float16 and every integer type.
final class BinaryOperator: Operator {
    let operation: BinaryOperation
    init(_ operation: BinaryOperation) { self.operation = operation }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let a = try PlanCheck.input(inputs, 0, "A")
        let b = try PlanCheck.input(inputs, 1, "B")
        if a.elementType != b.elementType {
            throw DeformRTError.invalidModel("inputs have different element types (\(a.elementType.onnxName) and \(b.elementType.onnxName))")
        }
        switch a.elementType {
        case .float, .double, .float16, .int8, .int16, .int32, .int64, .uint8, .uint16, .uint32, .uint64: break
        default: throw DeformRTError.unsupported("element type \(a.elementType.onnxName) is not supported")
        }
        return [PlanValue(ValueType(a.elementType, try Broadcast.shape(a.shape, b.shape)))]
    }

    /// The broadcast walk, when the two shapes differ.
    func runState(_ inputs: [PlanValue?], _ outputs: [ValueType], threads: Int) throws -> AnyObject? {
        let a = try PlanCheck.input(inputs, 0, "A"), b = try PlanCheck.input(inputs, 1, "B")
        if a.shape == b.shape { return nil }
        return Planned(BroadcastRows(out: try Broadcast.shape(a.shape, b.shape), operands: [a.shape, b.shape]))
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let a = inputs[0]!, b = inputs[1]!, out = outputs[0]
        let rows = a.shape == b.shape ? nil : try state(context, inputs, as: Planned<BroadcastRows>.self)!.value
        switch a.elementType {
        case .float: runFloat(a, b, out, rows, context)
        case .double: apply(Double.self, a, b, out, rows, BinaryOperator.real(operation))
        case .int64: apply(Int64.self, a, b, out, rows, BinaryOperator.wrapping(operation))
        case .int32: apply(Int32.self, a, b, out, rows, BinaryOperator.wrapping(operation))
        case .int16: apply(Int16.self, a, b, out, rows, BinaryOperator.wrapping(operation))
        case .int8: apply(Int8.self, a, b, out, rows, BinaryOperator.wrapping(operation))
        case .uint64: apply(UInt64.self, a, b, out, rows, BinaryOperator.wrapping(operation))
        case .uint32: apply(UInt32.self, a, b, out, rows, BinaryOperator.wrapping(operation))
        case .uint16: apply(UInt16.self, a, b, out, rows, BinaryOperator.wrapping(operation))
        case .uint8: apply(UInt8.self, a, b, out, rows, BinaryOperator.wrapping(operation))
        case .float16: apply(Float16.self, a, b, out, rows, BinaryOperator.real(operation))
        default: throw DeformRTError.unsupported("element type \(a.elementType.onnxName) is not supported")
        }
    }

    static func real<T: FloatingPoint>(_ operation: BinaryOperation) -> (T, T) -> T {
        switch operation {
        case .add: return { $0 + $1 }
        case .sub: return { $0 - $1 }
        case .mul: return { $0 * $1 }
        case .div: return { $0 / $1 }
        }
    }

    /// Integer arithmetic wraps on overflow (as C and numpy do) instead of trapping: model
    /// constants are untrusted.
    static func wrapping<T: FixedWidthInteger>(_ operation: BinaryOperation) -> (T, T) -> T {
        switch operation {
        case .add: return { $0 &+ $1 }
        case .sub: return { $0 &- $1 }
        case .mul: return { $0 &* $1 }
        case .div: return truncatingDivide
        }
    }

    /// C-style integer division; x / 0 is defined as 0 (numpy's result) instead of trapping.
    static func truncatingDivide<T: FixedWidthInteger>(_ x: T, _ y: T) -> T {
        if y == 0 { return 0 }
        if T.isSigned && y == -1 { return 0 &- x }
        return x / y
    }

    private func runFloat(_ a: Tensor, _ b: Tensor, _ out: Tensor, _ rows: BroadcastRows?, _ context: RunContext) {
        let pa = a.floats, pb = b.floats, po = out.floats
        let operation = operation
        guard let rows else {
            let count = out.elementCount, chunk = 1 << 14
            context.parallel.forEachRange((count + chunk - 1) / chunk, totalWork: count) { _, chunks in
                let start = chunks.lowerBound * chunk, end = min(count, chunks.upperBound * chunk)
                ElementwiseKernels.binary(operation.kernelOperation, pa + start, 1, pb + start, 1, po + start, end - start)
            }
            return
        }
        rows.walk(parallel: context.parallel) { offsets, strides, oo, n in
            ElementwiseKernels.binary(operation.kernelOperation, pa + offsets[0], strides[0], pb + offsets[1], strides[1],
                                      po + oo, n)
        }
    }

    private func apply<T>(_: T.Type, _ a: Tensor, _ b: Tensor, _ out: Tensor, _ rows: BroadcastRows?,
                          _ combine: (T, T) -> T) {
        let pa = a.pointer(T.self), pb = b.pointer(T.self), po = out.pointer(T.self)
        guard let rows else {
            for i in 0..<out.elementCount { po[i] = combine(pa[i], pb[i]) }
            return
        }
        rows.walk { offsets, strides, oo, n in
            let ao = offsets[0], astr = strides[0], bo = offsets[1], bstr = strides[1]
            for i in 0..<n { po[oo + i] = combine(pa[ao + i * astr], pb[bo + i * bstr]) }
        }
    }
}

extension BinaryOperation {
    var kernelOperation: ElementwiseKernels.Binary {
        switch self {
        case .add: return .add
        case .sub: return .sub
        case .mul: return .mul
        case .div: return .div
        }
    }
}

enum UnaryOperation { case identity, math(UnaryFunction) }

/// Identity (any type) and the element-wise functions of ElementwiseMath (Relu, Sigmoid, Tanh...).
final class UnaryOperator: Operator {
    let operation: UnaryOperation
    init(_ operation: UnaryOperation) { self.operation = operation }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let x = try PlanCheck.input(inputs, 0, "X")
        switch operation {
        case .identity: return [PlanValue(x.type)]
        case .math(let function): return [try UnaryMath.plan(function, x)]
        }
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let x = inputs[0]!, y = outputs[0]
        switch operation {
        case .identity: y.rawPointer.copyMemory(from: x.rawPointer, byteCount: x.byteCount)
        case .math(let function): UnaryMath.run(function, x, y, context)
        }
    }
}
