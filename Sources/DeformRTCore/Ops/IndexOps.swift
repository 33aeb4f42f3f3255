import DeformRTKernels

/// Index-driven data movement: GatherElements, GatherND, ScatterElements, ScatterND, OneHot,
/// Trilu and CumSum. Index tensors are int32 or int64; negative indices count from the end; an
/// index out of range is a run-time error naming the node (checked before anything is written,
/// so nothing is read or written out of bounds).
enum IndexOps {
    static func isIndexType(_ type: ElementType) -> Bool { type == .int64 || type == .int32 }

    static func checkIndexType(_ indices: PlanValue) throws {
        if !isIndexType(indices.elementType) {
            throw DeformRTError.invalidModel("indices must be int32 or int64, got \(indices.elementType.onnxName)")
        }
    }

    /// GatherElements' and ScatterElements' shapes: indices of data's rank (at least 1), no larger
    /// than data off the axis. Returns the axis, made non-negative.
    static func elementsAxis(_ axis: Int, data: PlanValue, indices: PlanValue) throws -> Int {
        if data.shape.count != indices.shape.count || data.shape.isEmpty {
            throw DeformRTError.invalidModel("data \(data.shape) and indices \(indices.shape) must have the same rank (at least 1)")
        }
        let a = try PlanCheck.axis(axis, rank: data.shape.count)
        for d in data.shape.indices where d != a && indices.shape[d] > data.shape[d] {
            throw DeformRTError.invalidModel("indices \(indices.shape) exceed data \(data.shape) along axis \(d)")
        }
        return a
    }

    /// Throws, naming `label`, unless every index lies in [-dim, dim) (checked before anything is
    /// read or written).
    static func checkRange(_ indices: Tensor, dim: Int, axis: Int, label: String) throws {
        for i in 0..<indices.elementCount {
            let v = index(indices, i)
            if v < -dim || v >= dim {
                throw DeformRTError.invalidArgument("\(label): index \(v) is out of range for axis \(axis) of size \(dim)")
            }
        }
    }

    @inline(__always)
    static func index(_ t: Tensor, _ i: Int) -> Int {
        t.elementType == .int64 ? Int(t.pointer(Int64.self)[i]) : Int(t.pointer(Int32.self)[i])
    }

    /// Row-major element strides of `shape`.
    static func strides(_ shape: [Int]) -> [Int] {
        var strides = [Int](repeating: 1, count: shape.count)
        var running = 1
        for d in stride(from: shape.count - 1, through: 0, by: -1) {
            strides[d] = running
            running *= shape[d]
        }
        return strides
    }
}

/// The reduction of ScatterElements / ScatterND (opset 16: none, add, mul; 18: max, min too).
enum ScatterReduction: String {
    case none, add, mul, max, min

    init(_ spec: OperatorSpec) throws {
        let name = try spec.attributes.string("reduction") ?? "none"
        guard let value = ScatterReduction(rawValue: name) else {
            throw DeformRTError.unsupported("node \(spec.node.label) (\(spec.node.opType)): reduction '\(name)' is not supported (none, add, mul, max, min)")
        }
        self = value
    }

    func combine<T: Numeric & Comparable>(_ old: T, _ new: T) -> T {
        switch self {
        case .none: return new
        case .add: return old + new
        case .mul: return old * new
        case .max: return Swift.max(old, new)
        case .min: return Swift.min(old, new)
        }
    }

    /// Integers wrap instead of trapping (model data is untrusted).
    func combineWrapping<T: FixedWidthInteger>(_ old: T, _ new: T) -> T {
        switch self {
        case .none: return new
        case .add: return old &+ new
        case .mul: return old &* new
        case .max: return Swift.max(old, new)
        case .min: return Swift.min(old, new)
        }
    }

    /// Runs `body` with the element combiner of `type`; bool and "none" copy bytes.
    func dispatch(_ type: ElementType, label: String,
                  _ body: (_ combine: (UnsafeMutableRawPointer, UnsafeRawPointer) -> Void) throws -> Void) throws {
        func real<T: Numeric & Comparable>(_: T.Type) throws {
            try body { out, update in
                let o = out.assumingMemoryBound(to: T.self)
                o.pointee = self.combine(o.pointee, update.load(as: T.self))
            }
        }
        func integer<T: FixedWidthInteger>(_: T.Type) throws {
            try body { out, update in
                let o = out.assumingMemoryBound(to: T.self)
                o.pointee = self.combineWrapping(o.pointee, update.load(as: T.self))
            }
        }
        if self == .none {
            let size = type.byteSize
            try body { out, update in out.copyMemory(from: update, byteCount: size) }
            return
        }
        switch type {
        case .float: try real(Float.self)
        case .double: try real(Double.self)
        case .float16: try real(Float16.self)
        case .int64: try integer(Int64.self)
        case .int32: try integer(Int32.self)
        case .int16: try integer(Int16.self)
        case .int8: try integer(Int8.self)
        case .uint64: try integer(UInt64.self)
        case .uint32: try integer(UInt32.self)
        case .uint16: try integer(UInt16.self)
        case .uint8: try integer(UInt8.self)
        default: throw DeformRTError.unsupported("\(label): reduction '\(rawValue)' on \(type.onnxName) is not supported")
        }
    }
}

/// GatherElements: out[i][j][k] = data[index][j][k] (axis 0), with out shaped as indices. Each
/// dim of indices other than the axis must not exceed data's.
final class GatherElementsOperator: Operator {
    let axis: Int
    let label: String
    init(_ spec: OperatorSpec) throws {
        axis = try spec.attributes.int("axis", default: 0)
        label = "node \(spec.node.label) (GatherElements)"
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let data = try PlanCheck.input(inputs, 0, "data"), indices = try PlanCheck.input(inputs, 1, "indices")
        try IndexOps.checkIndexType(indices)
        _ = try IndexOps.elementsAxis(axis, data: data, indices: indices)
        return [PlanValue(ValueType(data.elementType, indices.shape))]
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let data = inputs[0]!, indices = inputs[1]!, out = outputs[0]
        let a = try PlanCheck.axis(axis, rank: data.rank)
        try IndexOps.checkRange(indices, dim: data.shape[a], axis: a, label: label)
        if indices.elementCount == 0 { return }
        func byIndex<T>(_: T.Type) {
            if indices.elementType == .int64 { gather(T.self, Int64.self, data, indices, out, a, context) }
            else { gather(T.self, Int32.self, data, indices, out, a, context) }
        }
        switch data.elementType.byteSize {
        case 1: byIndex(UInt8.self)
        case 2: byIndex(UInt16.self)
        case 4: byIndex(UInt32.self)
        default: byIndex(UInt64.self)
        }
    }

    /// Rows of the output (one per position before and along the axis) split over the threads;
    /// indices already checked.
    private func gather<T, I: FixedWidthInteger>(_: T.Type, _: I.Type, _ data: Tensor, _ indices: Tensor, _ out: Tensor,
                                                 _ a: Int, _ context: RunContext) {
        let shape = indices.shape, dataShape = data.shape
        let dataStrides = IndexOps.strides(dataShape)
        let length = shape[a], inner = shape[(a + 1)...].reduce(1, *), dim = dataShape[a], axisStride = dataStrides[a]
        let innerContiguous = shape[(a + 1)...] == dataShape[(a + 1)...]
        let pd = data.pointer(T.self), po = out.pointer(T.self), pi = indices.pointer(I.self)
        let rows = shape[...a].reduce(1, *)
        context.parallel.forEachRange(rows, totalWork: rows * inner * 4) { _, range in
            for row in range {
                var rest = row / length, base = 0
                for d in stride(from: a - 1, through: 0, by: -1) {
                    base += (rest % shape[d]) * dataStrides[d]
                    rest /= shape[d]
                }
                let first = row * inner
                for i in 0..<inner {
                    var v = Int(pi[first + i])
                    if v < 0 { v += dim }
                    var offset = base + v * axisStride
                    if innerContiguous {
                        offset += i
                    } else {
                        var r = i
                        for d in stride(from: shape.count - 1, to: a, by: -1) {
                            offset += (r % shape[d]) * dataStrides[d]
                            r /= shape[d]
                        }
                    }
                    po[first + i] = pd[offset]
                }
            }
        }
    }
}

/// ScatterElements (and the older Scatter): out = data, then out[index along axis] (reduction)=
/// updates, in the order of the updates (the last of duplicate indices wins with reduction none).
final class ScatterElementsOperator: Operator {
    let axis: Int
    let reduction: ScatterReduction
    let label: String
    init(_ spec: OperatorSpec) throws {
        axis = try spec.attributes.int("axis", default: 0)
        reduction = try ScatterReduction(spec)
        label = "node \(spec.node.label) (\(spec.node.opType))"
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let data = try PlanCheck.input(inputs, 0, "data"), indices = try PlanCheck.input(inputs, 1, "indices")
        let updates = try PlanCheck.input(inputs, 2, "updates")
        try IndexOps.checkIndexType(indices)
        if updates.elementType != data.elementType {
            throw DeformRTError.invalidModel("updates are \(updates.elementType.onnxName), data \(data.elementType.onnxName)")
        }
        if indices.shape != updates.shape {
            throw DeformRTError.invalidModel("indices \(indices.shape) and updates \(updates.shape) must have the same shape")
        }
        _ = try IndexOps.elementsAxis(axis, data: data, indices: indices)
        try reduction.dispatch(data.elementType, label: label) { _ in }
        return [PlanValue(data.type)]
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let data = inputs[0]!, indices = inputs[1]!, updates = inputs[2]!, out = outputs[0]
        let a = try PlanCheck.axis(axis, rank: data.rank)
        let dim = data.shape[a], count = indices.elementCount
        try IndexOps.checkRange(indices, dim: dim, axis: a, label: label)
        out.rawPointer.copyMemory(from: data.rawPointer, byteCount: data.byteCount)
        if count == 0 { return }
        let dataStrides = IndexOps.strides(data.shape)
        let shape = indices.shape, rank = shape.count
        let size = data.elementType.byteSize
        let dst = out.rawPointer, src = UnsafeRawPointer(updates.rawPointer)
        try reduction.dispatch(data.elementType, label: label) { combine in
            withUnsafeTemporaryAllocation(of: Int.self, capacity: rank) { coords in
                coords.initialize(repeating: 0)
                var offset = 0
                for i in 0..<count {
                    var v = IndexOps.index(indices, i)
                    if v < 0 { v += dim }
                    combine(dst + (offset + v * dataStrides[a]) * size, src + i * size)
                    var d = rank - 1
                    while d >= 0 {
                        coords[d] += 1
                        if d != a { offset += dataStrides[d] }
                        if coords[d] < shape[d] { break }
                        if d != a { offset -= coords[d] * dataStrides[d] }
                        coords[d] = 0
                        d -= 1
                    }
                }
            }
        }
    }
}

/// Where the index tuples of GatherND / ScatterND point: slices of `sliceSize` elements of data,
/// `tuples` of them per batch.
private struct NDIndexing {
    let k: Int            // length of one index tuple
    let batchCount: Int   // product of the batch dims
    let tuples: Int       // index tuples per batch
    let sliceSize: Int    // elements of one slice
    let dataStrides: [Int]
    let dataShape: [Int]
    let batchDims: Int

    init(data: [Int], indices: [Int], batchDims: Int) throws {
        guard let last = indices.last, indices.count >= 1 else { throw DeformRTError.invalidModel("indices must have rank at least 1") }
        if batchDims < 0 || batchDims >= min(data.count, indices.count) {
            throw DeformRTError.invalidModel("batch_dims \(batchDims) must be less than both ranks (data \(data), indices \(indices))")
        }
        if Array(data[..<batchDims]) != Array(indices[..<batchDims]) {
            throw DeformRTError.invalidModel("the first \(batchDims) dims of data \(data) and indices \(indices) must be equal")
        }
        if last < 1 || last > data.count - batchDims {
            throw DeformRTError.invalidModel("index tuples of length \(last) do not fit data of rank \(data.count) with batch_dims \(batchDims)")
        }
        k = last
        self.batchDims = batchDims
        batchCount = data[..<batchDims].reduce(1, *)
        tuples = indices[batchDims..<(indices.count - 1)].reduce(1, *)
        sliceSize = data[(batchDims + k)...].reduce(1, *)
        dataStrides = IndexOps.strides(data)
        dataShape = data
    }

    /// Element offset in data of tuple `t` of batch `b`; throws on an index out of range.
    @inline(__always)
    func offset(_ indices: Tensor, batch b: Int, tuple t: Int, label: String) throws -> Int {
        var offset = b * (batchDims > 0 ? dataStrides[batchDims - 1] : 0)
        let base = (b * tuples + t) * k
        for j in 0..<k {
            let dim = dataShape[batchDims + j]
            var v = IndexOps.index(indices, base + j)
            if v < -dim || v >= dim {
                throw DeformRTError.invalidArgument("\(label): index \(v) is out of range for axis \(batchDims + j) of size \(dim)")
            }
            if v < 0 { v += dim }
            offset += v * dataStrides[batchDims + j]
        }
        return offset
    }
}

/// GatherND (batch_dims from opset 12).
final class GatherNDOperator: Operator {
    let batchDims: Int
    let label: String
    init(_ spec: OperatorSpec) throws {
        batchDims = try spec.attributes.int("batch_dims", default: 0)
        label = "node \(spec.node.label) (GatherND)"
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let data = try PlanCheck.input(inputs, 0, "data"), indices = try PlanCheck.input(inputs, 1, "indices")
        if indices.elementType != .int64 {
            throw DeformRTError.invalidModel("indices must be int64, got \(indices.elementType.onnxName)")
        }
        let nd = try NDIndexing(data: data.shape, indices: indices.shape, batchDims: batchDims)
        return [PlanValue(ValueType(data.elementType, Array(indices.shape.dropLast()) + Array(data.shape[(batchDims + nd.k)...])))]
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let data = inputs[0]!, indices = inputs[1]!, out = outputs[0]
        let nd = try NDIndexing(data: data.shape, indices: indices.shape, batchDims: batchDims)
        for b in 0..<nd.batchCount { for t in 0..<nd.tuples { _ = try nd.offset(indices, batch: b, tuple: t, label: label) } }
        let bytes = nd.sliceSize * data.elementType.byteSize
        if bytes == 0 { return }
        for b in 0..<nd.batchCount {
            for t in 0..<nd.tuples {
                let offset = try nd.offset(indices, batch: b, tuple: t, label: label)
                (out.rawPointer + (b * nd.tuples + t) * bytes)
                    .copyMemory(from: data.rawPointer + offset * data.elementType.byteSize, byteCount: bytes)
            }
        }
    }
}

/// ScatterND: out = data, then the slice at each index tuple (reduction)= its updates, in order.
final class ScatterNDOperator: Operator {
    let reduction: ScatterReduction
    let label: String
    init(_ spec: OperatorSpec) throws {
        reduction = try ScatterReduction(spec)
        label = "node \(spec.node.label) (ScatterND)"
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let data = try PlanCheck.input(inputs, 0, "data"), indices = try PlanCheck.input(inputs, 1, "indices")
        let updates = try PlanCheck.input(inputs, 2, "updates")
        if indices.elementType != .int64 {
            throw DeformRTError.invalidModel("indices must be int64, got \(indices.elementType.onnxName)")
        }
        if updates.elementType != data.elementType {
            throw DeformRTError.invalidModel("updates are \(updates.elementType.onnxName), data \(data.elementType.onnxName)")
        }
        let nd = try NDIndexing(data: data.shape, indices: indices.shape, batchDims: 0)
        let expected = Array(indices.shape.dropLast()) + Array(data.shape[nd.k...])
        if updates.shape != expected {
            throw DeformRTError.invalidModel("updates must have shape \(expected) (indices \(indices.shape), data \(data.shape)), got \(updates.shape)")
        }
        try reduction.dispatch(data.elementType, label: label) { _ in }
        return [PlanValue(data.type)]
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let data = inputs[0]!, indices = inputs[1]!, updates = inputs[2]!, out = outputs[0]
        let nd = try NDIndexing(data: data.shape, indices: indices.shape, batchDims: 0)
        for t in 0..<nd.tuples { _ = try nd.offset(indices, batch: 0, tuple: t, label: label) }
        out.rawPointer.copyMemory(from: data.rawPointer, byteCount: data.byteCount)
        let size = data.elementType.byteSize
        let dst = out.rawPointer, src = UnsafeRawPointer(updates.rawPointer)
        try reduction.dispatch(data.elementType, label: label) { combine in
            for t in 0..<nd.tuples {
                let offset = try nd.offset(indices, batch: 0, tuple: t, label: label)
                for e in 0..<nd.sliceSize {
                    combine(dst + (offset + e) * size, src + (t * nd.sliceSize + e) * size)
                }
            }
        }
    }
}

/// OneHot: depth sets the output shape (computed at run time, it re-plans what follows: see
/// ExecutionPlan). Indices of any numeric type (reals truncated); those outside
/// [-depth, depth - 1] give an all-off row.
final class OneHotOperator: Operator {
    let axis: Int
    init(_ spec: OperatorSpec) throws { axis = try spec.attributes.int("axis", default: -1) }

    var shapeInputs: [Int] { [1] }

    private func depth(_ value: PlanValue) throws -> Int {
        guard let constant = value.constant else {
            throw DeformRTError.unsupported("input depth must be computable from shapes and constants when planning; it depends on run-time data")
        }
        if constant.elementCount != 1 { throw DeformRTError.invalidModel("depth must have one element, got shape \(constant.shape)") }
        let depth: Double
        switch Scalar.load(constant, 0) {
        case .real(let v): depth = v
        case .integer(let v): depth = Double(v)
        case .unsigned(let v): depth = Double(v)
        }
        if !(depth >= 1 && depth <= Double(Limits.maxElements)) {
            throw DeformRTError.invalidModel("depth \(depth) must be at least 1")
        }
        return Int(depth)
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let indices = try PlanCheck.input(inputs, 0, "indices"), depthValue = try PlanCheck.input(inputs, 1, "depth")
        let values = try PlanCheck.input(inputs, 2, "values")
        if indices.elementType == .string || indices.elementType == .bool {
            throw DeformRTError.unsupported("indices of type \(indices.elementType.onnxName) are not supported")
        }
        if values.shape.reduce(1, *) != 2 || values.shape.count != 1 {
            throw DeformRTError.invalidModel("values must have shape [2] (off, on), got \(values.shape)")
        }
        let depth = try depth(depthValue)
        let rank = indices.shape.count + 1
        let a = try PlanCheck.axis(axis, rank: rank)
        var shape = indices.shape
        shape.insert(depth, at: a)
        return [PlanValue(ValueType(values.elementType, shape))]
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let indices = inputs[0]!, values = inputs[2]!, out = outputs[0]
        let depth = try depth(PlanValue.constants([inputs[1]])[0]!)
        let a = try PlanCheck.axis(axis, rank: indices.rank + 1)
        let outer = indices.shape[..<a].reduce(1, *), inner = indices.shape[a...].reduce(1, *)
        let size = values.elementType.byteSize
        let off = values.rawPointer, on = values.rawPointer + size, dst = out.rawPointer
        for i in 0..<out.elementCount { (dst + i * size).copyMemory(from: off, byteCount: size) }
        for o in 0..<outer {
            for i in 0..<inner {
                let position = o * inner + i
                var v: Int
                switch Scalar.load(indices, position) {
                case .real(let r): v = r.isNaN || abs(r) > 1e15 ? Int.max : Int(r)
                case .integer(let r): v = Int(r)
                case .unsigned(let r): v = r > UInt64(Int.max) ? Int.max : Int(r)
                }
                if v < -depth || v >= depth { continue }
                if v < 0 { v += depth }
                (dst + ((o * depth + v) * inner + i) * size).copyMemory(from: on, byteCount: size)
            }
        }
    }
}

/// Trilu: the upper (upper = 1) or lower triangle of the last two dims, diagonal offset k (an
/// optional scalar input read at run time); the rest is zeroed.
final class TriluOperator: Operator {
    let upper: Bool
    let label: String
    init(_ spec: OperatorSpec) throws {
        upper = try spec.attributes.int("upper", default: 1) != 0
        label = "node \(spec.node.label) (Trilu)"
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let x = try PlanCheck.input(inputs, 0, "input")
        if x.shape.count < 2 { throw DeformRTError.invalidModel("input must have rank at least 2, got shape \(x.shape)") }
        if x.elementType == .string { throw DeformRTError.unsupported("string tensors are not supported") }
        if let k = PlanCheck.optionalInput(inputs, 1) {
            if k.elementType != .int64 || k.shape.reduce(1, *) != 1 {
                throw DeformRTError.invalidModel("k must be one int64, got \(k.elementType.onnxName) of shape \(k.shape)")
            }
        }
        return [PlanValue(x.type)]
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let x = inputs[0]!, out = outputs[0]
        let k64 = inputs.count > 1 && inputs[1] != nil ? inputs[1]!.pointer(Int64.self)[0] : 0
        let rows = x.shape[x.rank - 2], columns = x.shape[x.rank - 1]
        // Clamped so that j - i compares without overflow.
        let k = Int(max(min(k64, Int64(columns + 1)), Int64(-rows - 1)))
        let size = x.elementType.byteSize
        out.rawPointer.copyMemory(from: x.rawPointer, byteCount: x.byteCount)
        let matrices = rows * columns == 0 ? 0 : x.elementCount / (rows * columns)
        for m in 0..<matrices {
            for i in 0..<rows {
                let row = out.rawPointer + ((m * rows + i) * columns) * size
                // upper keeps j >= i + k; lower keeps j <= i + k.
                let (start, end) = upper ? (0, min(max(i + k, 0), columns)) : (min(max(i + k + 1, 0), columns), columns)
                if end > start { (row + start * size).initializeMemory(as: UInt8.self, repeating: 0, count: (end - start) * size) }
            }
        }
    }
}

/// CumSum along the axis given as a scalar input (read at run time); exclusive starts from 0,
/// reverse runs from the end. Sums in the element type, in order (numpy's cumsum).
final class CumSumOperator: Operator {
    let exclusive: Bool, reverse: Bool
    let label: String
    init(_ spec: OperatorSpec) throws {
        exclusive = try spec.attributes.int("exclusive", default: 0) != 0
        reverse = try spec.attributes.int("reverse", default: 0) != 0
        label = "node \(spec.node.label) (CumSum)"
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let x = try PlanCheck.input(inputs, 0, "x"), axis = try PlanCheck.input(inputs, 1, "axis")
        switch x.elementType {
        case .float, .double, .float16, .int32, .int64, .uint32, .uint64: break
        default: throw DeformRTError.unsupported("element type \(x.elementType.onnxName) is not supported")
        }
        if !IndexOps.isIndexType(axis.elementType) || axis.shape.reduce(1, *) != 1 || axis.shape.count > 1 {
            throw DeformRTError.invalidModel("axis must be one int32 or int64, got \(axis.elementType.onnxName) of shape \(axis.shape)")
        }
        if x.shape.isEmpty { throw DeformRTError.invalidModel("x must have rank at least 1") }
        if let constant = axis.constant { _ = try PlanCheck.axis(IndexOps.index(constant, 0), rank: x.shape.count) }
        return [PlanValue(x.type)]
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let x = inputs[0]!, out = outputs[0]
        let raw = IndexOps.index(inputs[1]!, 0)
        guard raw >= -x.rank && raw < x.rank else {
            throw DeformRTError.invalidArgument("\(label): axis \(raw) is out of range for rank \(x.rank)")
        }
        let a = raw < 0 ? raw + x.rank : raw
        switch x.elementType {
        case .float: scan(Float.self, x, out, a, context) { $0 + $1 }
        case .double: scan(Double.self, x, out, a, context) { $0 + $1 }
        case .float16: scan(Float16.self, x, out, a, context) { $0 + $1 }
        case .int32: scan(Int32.self, x, out, a, context) { $0 &+ $1 }
        case .int64: scan(Int64.self, x, out, a, context) { $0 &+ $1 }
        case .uint32: scan(UInt32.self, x, out, a, context) { $0 &+ $1 }
        case .uint64: scan(UInt64.self, x, out, a, context) { $0 &+ $1 }
        default: throw DeformRTError.unsupported("\(label): element type \(x.elementType.onnxName) is not supported")
        }
    }

    private func scan<T: Numeric>(_: T.Type, _ x: Tensor, _ out: Tensor, _ a: Int, _ context: RunContext, _ add: @escaping (T, T) -> T) {
        let outer = x.shape[..<a].reduce(1, *), length = x.shape[a], inner = x.shape[(a + 1)...].reduce(1, *)
        let px = x.pointer(T.self), py = out.pointer(T.self)
        let exclusive = exclusive, reverse = reverse
        context.parallel.forEachRange(outer * inner, totalWork: outer * inner * length) { _, range in
            for line in range {
                let base = (line / inner) * length * inner + line % inner
                var sum: T = 0
                for step in 0..<length {
                    let k = reverse ? length - 1 - step : step
                    let at = base + k * inner
                    if exclusive {
                        py[at] = sum
                        sum = add(sum, px[at])
                    } else {
                        sum = add(sum, px[at])
                        py[at] = sum
                    }
                }
            }
        }
    }
}
