import DeformRTKernels

/// Copies the input unchanged into an output of another shape (Reshape, Flatten, Squeeze, Unsqueeze).
private func copyThrough(_ inputs: [Tensor?], _ outputs: [Tensor]) {
    let x = inputs[0]!
    outputs[0].rawPointer.copyMemory(from: x.rawPointer, byteCount: x.byteCount)
}

final class ReshapeOperator: Operator {
    let allowZero: Bool
    var shapeInputs: [Int] { [1] }
    init(_ spec: OperatorSpec) throws {
        allowZero = try spec.attributes.int("allowzero", default: 0) != 0
        if spec.opset < 5 { throw DeformRTError.unsupported("node \(spec.node.label): Reshape-\(spec.opset) (shape attribute) is not supported") }
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let x = try PlanCheck.input(inputs, 0, "data")
        let requested = try PlanCheck.constantInts(try PlanCheck.input(inputs, 1, "shape"), "shape")
        var shape: [Int] = []
        var inferAt: Int?
        for (i, d) in requested.enumerated() {
            if d == -1 {
                if inferAt != nil { throw DeformRTError.invalidModel("shape \(requested) has more than one -1") }
                inferAt = i
                shape.append(1)
            } else if d == 0 && !allowZero {
                guard i < x.shape.count else { throw DeformRTError.invalidModel("shape \(requested) copies dim \(i), which input \(x.shape) lacks") }
                shape.append(x.shape[i])
            } else if d < 0 {
                throw DeformRTError.invalidModel("invalid dim \(d) in shape \(requested)")
            } else {
                shape.append(d)
            }
        }
        let total = try Limits.elementCount(x.shape, what: "input")
        if let inferAt {
            let known = try Limits.elementCount(shape, what: "shape")
            if known == 0 || total % known != 0 {
                throw DeformRTError.invalidModel("cannot reshape \(x.shape) into \(requested)")
            }
            shape[inferAt] = total / known
        }
        if try Limits.elementCount(shape, what: "shape") != total {
            throw DeformRTError.invalidModel("cannot reshape \(x.shape) (\(total) elements) into \(shape)")
        }
        return [PlanValue(ValueType(x.elementType, shape))]
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws { copyThrough(inputs, outputs) }
}

final class FlattenOperator: Operator {
    let axis: Int
    init(_ spec: OperatorSpec) throws { axis = try spec.attributes.int("axis", default: 1) }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let x = try PlanCheck.input(inputs, 0, "input")
        let r = x.shape.count
        let a = axis < 0 ? axis + r : axis
        if a < 0 || a > r { throw DeformRTError.invalidModel("axis \(axis) is out of range for rank \(r)") }
        return [PlanValue(ValueType(x.elementType, [x.shape[..<a].reduce(1, *), x.shape[a...].reduce(1, *)]))]
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws { copyThrough(inputs, outputs) }
}

/// Squeeze and Unsqueeze: axes from the attribute (opset < 13) or the second input.
final class SqueezeOperator: Operator {
    let unsqueeze: Bool
    let attributeAxes: [Int]?
    var shapeInputs: [Int] { [1] }

    init(_ spec: OperatorSpec, unsqueeze: Bool) throws {
        self.unsqueeze = unsqueeze
        attributeAxes = try spec.attributes.ints("axes")
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let x = try PlanCheck.input(inputs, 0, "data")
        var axes = attributeAxes
        if let given = PlanCheck.optionalInput(inputs, 1) { axes = try PlanCheck.constantInts(given, "axes") }
        if unsqueeze {
            guard let axes else { throw DeformRTError.invalidModel("Unsqueeze needs axes") }
            let rank = x.shape.count + axes.count
            if rank > Limits.maxRank { throw DeformRTError.invalidModel("Unsqueeze to rank \(rank) exceeds the limit of \(Limits.maxRank)") }
            let normalized = try axes.map { try PlanCheck.axis($0, rank: rank) }
            if Set(normalized).count != normalized.count { throw DeformRTError.invalidModel("repeated axes \(axes)") }
            var shape: [Int] = []
            var source = x.shape.makeIterator()
            for i in 0..<rank { shape.append(normalized.contains(i) ? 1 : source.next()!) }
            return [PlanValue(ValueType(x.elementType, shape), constant: nil)]
        }
        let rank = x.shape.count
        let drop: Set<Int>
        if let axes {
            drop = Set(try axes.map { try PlanCheck.axis($0, rank: rank) })
            for a in drop where x.shape[a] != 1 {
                throw DeformRTError.invalidModel("cannot squeeze axis \(a) of size \(x.shape[a]) (shape \(x.shape))")
            }
        } else {
            drop = Set(x.shape.indices.filter { x.shape[$0] == 1 })
        }
        return [PlanValue(ValueType(x.elementType, x.shape.indices.filter { !drop.contains($0) }.map { x.shape[$0] }))]
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws { copyThrough(inputs, outputs) }
}

final class TransposeOperator: Operator {
    let perm: [Int]?
    init(_ spec: OperatorSpec) throws { perm = try spec.attributes.ints("perm") }

    private func permutation(rank: Int) throws -> [Int] {
        let p = perm ?? Array((0..<rank).reversed())
        if p.count != rank || Set(p) != Set(0..<rank) {
            throw DeformRTError.invalidModel("perm \(p) is not a permutation of \(rank) axes")
        }
        return p
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let x = try PlanCheck.input(inputs, 0, "data")
        let p = try permutation(rank: x.shape.count)
        return [PlanValue(ValueType(x.elementType, p.map { x.shape[$0] }))]
    }

    func runState(_ inputs: [PlanValue?], _ outputs: [ValueType], threads: Int) throws -> AnyObject? {
        let x = try PlanCheck.input(inputs, 0, "data")
        let p = try permutation(rank: x.shape.count)
        let inStrides = Broadcast.strides(x.shape, into: x.shape)
        return StridedView(shape: p.map { x.shape[$0] }, strides: p.map { inStrides[$0] }, startOffset: 0)
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let view = try state(context, inputs, as: StridedView.self)!
        view.copy(inputs[0]!, into: outputs[0], parallel: context.parallel)
    }
}

final class ConcatOperator: Operator {
    let axis: Int
    init(_ spec: OperatorSpec) throws {
        guard let axis = try spec.attributes.int("axis") else { throw spec.fail("missing attribute axis") }
        self.axis = axis
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let parts = inputs.compactMap { $0 }
        guard let first = parts.first else { throw DeformRTError.invalidModel("Concat needs at least one input") }
        let a = try PlanCheck.axis(axis, rank: first.shape.count)
        var shape = first.shape
        shape[a] = 0
        for part in parts {
            if part.elementType != first.elementType || part.shape.count != first.shape.count {
                throw DeformRTError.invalidModel("inputs differ in type or rank: \(first.shape) and \(part.shape)")
            }
            for d in part.shape.indices where d != a && part.shape[d] != first.shape[d] {
                throw DeformRTError.invalidModel("inputs \(first.shape) and \(part.shape) differ outside axis \(axis)")
            }
            let (sum, overflow) = shape[a].addingReportingOverflow(part.shape[a])
            if overflow { throw DeformRTError.invalidModel("the concatenated axis overflows") }
            shape[a] = sum
        }
        return [PlanValue(ValueType(first.elementType, shape))]
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let out = outputs[0]
        let a = try PlanCheck.axis(axis, rank: out.rank)
        let outer = out.shape[..<a].reduce(1, *)
        let rowBytes = out.shape[a...].reduce(1, *) * out.elementType.byteSize
        // Output rows split over the threads (a channels-last Concat has one short row per pixel).
        context.parallel.forEachRange(outer, totalWork: out.byteCount / 4) { _, rows in
            var offset = 0
            for case let part? in inputs {
                let partRow = part.shape[a...].reduce(1, *) * part.elementType.byteSize
                if partRow > 0 {
                    for o in rows {
                        (out.rawPointer + o * rowBytes + offset).copyMemory(from: part.rawPointer + o * partRow,
                                                                           byteCount: partRow)
                    }
                }
                offset += partRow
            }
        }
    }
}

/// Split into equal parts, or by the `split` attribute (opset < 13) / input (opset >= 13).
final class SplitOperator: Operator {
    let axis: Int
    let attributeSplit: [Int]?
    let outputCount: Int
    let numOutputs: Int?
    var shapeInputs: [Int] { [1] }

    init(_ spec: OperatorSpec) throws {
        axis = try spec.attributes.int("axis", default: 0)
        attributeSplit = try spec.attributes.ints("split")
        numOutputs = try spec.attributes.int("num_outputs")
        outputCount = spec.node.outputs.count
    }

    private func sizes(_ inputs: [PlanValue?], dim: Int) throws -> [Int] {
        var split = attributeSplit
        if let given = PlanCheck.optionalInput(inputs, 1) { split = try PlanCheck.constantInts(given, "split") }
        if let split {
            // The running sum stops at dim, so hostile sizes cannot overflow it.
            var total = 0
            for part in split where part >= 0 && total <= dim { total += Swift.min(part, dim + 1) }
            if split.count != outputCount || split.contains(where: { $0 < 0 }) || total != dim {
                throw DeformRTError.invalidModel("split \(split) does not divide a dim of \(dim) into \(outputCount) outputs")
            }
            return split
        }
        let parts = numOutputs ?? outputCount
        guard parts > 0 else { throw DeformRTError.invalidModel("Split has no outputs") }
        if parts != outputCount { throw DeformRTError.invalidModel("num_outputs \(parts) differs from the node's \(outputCount) outputs") }
        let chunk = (dim + parts - 1) / parts
        return (0..<parts).map { max(0, min(chunk, dim - $0 * chunk)) }
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let x = try PlanCheck.input(inputs, 0, "input")
        let a = try PlanCheck.axis(axis, rank: x.shape.count)
        return try sizes(inputs, dim: x.shape[a]).map { size in
            var shape = x.shape
            shape[a] = size
            return PlanValue(ValueType(x.elementType, shape))
        }
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let x = inputs[0]!
        let a = try PlanCheck.axis(axis, rank: x.rank)
        let outer = x.shape[..<a].reduce(1, *)
        let rowBytes = x.shape[a...].reduce(1, *) * x.elementType.byteSize
        var offset = 0
        for out in outputs {
            let partRow = out.shape[a...].reduce(1, *) * out.elementType.byteSize
            for o in 0..<outer where partRow > 0 {
                (out.rawPointer + o * partRow).copyMemory(from: x.rawPointer + o * rowBytes + offset, byteCount: partRow)
            }
            offset += partRow
        }
    }
}

/// Slice (opset >= 10: starts, ends, axes, steps as inputs; opset < 10: attributes).
final class SliceOperator: Operator {
    let attributeStarts: [Int]?, attributeEnds: [Int]?, attributeAxes: [Int]?
    var shapeInputs: [Int] { [1, 2, 3, 4] }
    init(_ spec: OperatorSpec) throws {
        attributeStarts = try spec.attributes.ints("starts")
        attributeEnds = try spec.attributes.ints("ends")
        attributeAxes = try spec.attributes.ints("axes")
    }

    private struct Region { var starts: [Int]; var steps: [Int]; var shape: [Int] }

    private func region(_ inputs: [PlanValue?]) throws -> Region {
        let x = try PlanCheck.input(inputs, 0, "data")
        let rank = x.shape.count
        let starts = try PlanCheck.optionalInput(inputs, 1).map { try PlanCheck.constantInts($0, "starts") } ?? attributeStarts ?? []
        let ends = try PlanCheck.optionalInput(inputs, 2).map { try PlanCheck.constantInts($0, "ends") } ?? attributeEnds ?? []
        let axes = try PlanCheck.optionalInput(inputs, 3).map { try PlanCheck.constantInts($0, "axes") } ?? attributeAxes ?? Array(0..<starts.count)
        let steps = try PlanCheck.optionalInput(inputs, 4).map { try PlanCheck.constantInts($0, "steps") } ?? [Int](repeating: 1, count: starts.count)
        if starts.count != ends.count || axes.count != starts.count || steps.count != starts.count {
            throw DeformRTError.invalidModel("starts, ends, axes and steps differ in length")
        }
        var r = Region(starts: [Int](repeating: 0, count: rank), steps: [Int](repeating: 1, count: rank), shape: x.shape)
        var seen = Set<Int>()
        for i in starts.indices {
            let a = try PlanCheck.axis(axes[i], rank: rank)
            if !seen.insert(a).inserted { throw DeformRTError.invalidModel("axis \(axes[i]) repeated") }
            let dim = x.shape[a], step = steps[i]
            if step == 0 { throw DeformRTError.invalidModel("step 0 on axis \(a)") }
            func clampIndex(_ v: Int, _ low: Int, _ high: Int) -> Int {
                let v = v < 0 ? v &+ dim : v
                return Swift.min(Swift.max(v, low), high)
            }
            let start = step > 0 ? clampIndex(starts[i], 0, dim) : clampIndex(starts[i], 0, dim - 1)
            let end = step > 0 ? clampIndex(ends[i], 0, dim) : clampIndex(ends[i], -1, dim - 1)
            // Written so that no step (up to Int.min) overflows; start and end lie in -1...dim.
            let span = step > 0 ? end - start : start - end
            let count = span <= 0 ? 0 : Int((UInt(span) - 1) / step.magnitude) + 1
            r.starts[a] = start
            // A single element needs no step; others have |step| < dim, so stride * step fits.
            r.steps[a] = count > 1 ? step : 1
            r.shape[a] = count
        }
        return r
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let x = try PlanCheck.input(inputs, 0, "data")
        return [PlanValue(ValueType(x.elementType, try region(inputs).shape))]
    }

    func runState(_ inputs: [PlanValue?], _ outputs: [ValueType], threads: Int) throws -> AnyObject? {
        let x = try PlanCheck.input(inputs, 0, "data")
        let r = try region(inputs)
        let strides = Broadcast.strides(x.shape, into: x.shape)
        var start = 0
        for i in 0..<x.shape.count { start += r.starts[i] * strides[i] }
        return StridedView(shape: r.shape, strides: zip(strides, r.steps).map { $0 * $1 }, startOffset: start)
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let view = try state(context, inputs, as: StridedView.self)!
        view.copy(inputs[0]!, into: outputs[0], parallel: context.parallel)
    }
}

/// Shape: the input's dims (optionally a start/end slice, opset 15), known while planning.
final class ShapeOperator: Operator {
    let start: Int, end: Int?
    /// ai.deformrt ChannelsLastShape (the layout pass's Shape of a channels-last value): the
    /// NCHW shape of data stored as [N, H, W, C].
    let channelsLast: Bool
    init(_ spec: OperatorSpec, channelsLast: Bool = false) throws {
        start = try spec.attributes.int("start", default: 0)
        end = try spec.attributes.int("end")
        self.channelsLast = channelsLast
    }

    private func dims(_ shape: [Int]) throws -> [Int64] {
        var shape = shape
        if channelsLast {
            guard shape.count == 4 else { throw DeformRTError.invalidModel("a channels-last value must have rank 4, got shape \(shape)") }
            shape = [shape[0], shape[3], shape[1], shape[2]]
        }
        let r = shape.count
        func clampIndex(_ v: Int) -> Int { Swift.min(Swift.max(v < 0 ? v + r : v, 0), r) }
        let s = clampIndex(start), e = clampIndex(end ?? r)
        return s < e ? shape[s..<e].map { Int64($0) } : []
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let dims = try dims(try PlanCheck.input(inputs, 0, "data").shape)
        return [PlanValue(ValueType(.int64, [dims.count]), constant: Tensor(int64s: dims, shape: [dims.count]))]
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let dims = try dims(inputs[0]!.shape)
        for (i, d) in dims.enumerated() { outputs[0].pointer(Int64.self)[i] = d }
    }
}

/// Gather along an axis with int32/int64 indices; negative indices count from the end.
final class GatherOperator: Operator {
    let axis: Int
    init(_ spec: OperatorSpec) throws { axis = try spec.attributes.int("axis", default: 0) }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let x = try PlanCheck.input(inputs, 0, "data"), indices = try PlanCheck.input(inputs, 1, "indices")
        if indices.elementType != .int64 && indices.elementType != .int32 {
            throw DeformRTError.invalidModel("indices must be int32 or int64, got \(indices.elementType.onnxName)")
        }
        let a = try PlanCheck.axis(axis, rank: x.shape.count)
        return [PlanValue(ValueType(x.elementType, Array(x.shape[..<a]) + indices.shape + Array(x.shape[(a + 1)...])))]
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let x = inputs[0]!, indices = inputs[1]!
        let a = try PlanCheck.axis(axis, rank: x.rank)
        let outer = x.shape[..<a].reduce(1, *), dim = x.shape[a]
        let innerBytes = x.shape[(a + 1)...].reduce(1, *) * x.elementType.byteSize
        // The indices read in place (int64 or int32, as planned): no array per run.
        let wide = indices.elementType == .int64
        let count = indices.elementCount
        for j in 0..<count {
            let raw = wide ? indices.pointer(Int64.self)[j] : Int64(indices.pointer(Int32.self)[j])
            let index = raw < 0 ? raw + Int64(dim) : raw
            if index < 0 || index >= Int64(dim) {
                throw DeformRTError.invalidArgument("index \(raw) is out of range for axis \(axis) of size \(dim)")
            }
            for o in 0..<outer where innerBytes > 0 {
                (outputs[0].rawPointer + (o * count + j) * innerBytes)
                    .copyMemory(from: x.rawPointer + (o * dim + Int(index)) * innerBytes, byteCount: innerBytes)
            }
        }
    }
}

/// Constant: the value attribute in any of its spellings.
final class ConstantOperator: Operator {
    let value: Tensor
    init(_ spec: OperatorSpec) throws {
        let a = spec.attributes
        if let t = try a.tensor("value") { value = t }
        else if let f = try a.float("value_float"), a.has("value_float") { value = Tensor(floats: [f], shape: []) }
        else if let fs = try a.floats("value_floats") { value = Tensor(floats: fs, shape: [fs.count]) }
        else if let i = try a.int("value_int") { value = Tensor(int64s: [Int64(i)], shape: []) }
        else if let iss = try a.ints("value_ints") { value = Tensor(int64s: iss.map { Int64($0) }, shape: [iss.count]) }
        else if a.has("value_string") || a.has("value_strings") {
            throw DeformRTError.unsupported("node \(spec.node.label) (Constant): string constants are not supported")
        } else if a.has("sparse_value") {
            throw DeformRTError.unsupported("node \(spec.node.label) (Constant): sparse constants are not supported")
        } else {
            throw spec.fail("Constant has no value attribute")
        }
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        [PlanValue(ValueType(value.elementType, value.shape), constant: value)]
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        outputs[0].rawPointer.copyMemory(from: value.rawPointer, byteCount: value.byteCount)
    }
}

/// A strided view of a tensor fixed when the plan is made (Transpose, Slice): the view's shape,
/// its strides and first element in the source, in elements.
final class StridedView {
    let shape: [Int]
    let strides: [Int]
    let startOffset: Int

    init(shape: [Int], strides: [Int], startOffset: Int) {
        self.shape = shape
        self.strides = strides
        self.startOffset = startOffset
    }

    func copy(_ source: Tensor, into destination: Tensor, parallel: Parallel) {
        let size = source.elementType.byteSize
        StridedCopy.copy(elementSize: size, shape: shape, sourceStrides: strides, source: source.rawPointer + startOffset * size,
                         destination: destination.rawPointer, parallel: parallel)
    }
}
