import DeformRTKernels

/// ReduceMean, ReduceSum, ReduceMax, ReduceMin over float tensors. Axes come from the attribute
/// (older opsets) or the second input (ReduceSum >= 13, the others >= 18).
final class ReduceOperator: Operator {
    enum Kind { case mean, sum, max, min }
    let kind: Kind
    let keepDims: Bool
    let noopWithEmptyAxes: Bool
    let attributeAxes: [Int]?

    init(_ spec: OperatorSpec, kind: Kind) throws {
        self.kind = kind
        keepDims = try spec.attributes.int("keepdims", default: 1) != 0
        noopWithEmptyAxes = try spec.attributes.int("noop_with_empty_axes", default: 0) != 0
        attributeAxes = try spec.attributes.ints("axes")
    }

    /// Reduced axes (sorted, normalised); empty means "copy through" (noop_with_empty_axes).
    private func axes(_ inputs: [PlanValue?], rank: Int) throws -> [Int] {
        var axes = attributeAxes
        if let given = PlanCheck.optionalInput(inputs, 1) { axes = try PlanCheck.constantInts(given, "axes") }
        guard let axes, !axes.isEmpty else { return noopWithEmptyAxes ? [] : Array(0..<rank) }
        let normalized = try axes.map { try PlanCheck.axis($0, rank: rank) }
        if Set(normalized).count != normalized.count { throw DeformRTError.invalidModel("repeated axes \(axes)") }
        return normalized.sorted()
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let x = try PlanCheck.input(inputs, 0, "data")
        try PlanCheck.float(x, "data")
        let reduced = Set(try axes(inputs, rank: x.shape.count))
        if kind == .max || kind == .min, reduced.contains(where: { x.shape[$0] == 0 }) {
            throw DeformRTError.invalidModel("cannot take the \(kind) of an empty axis (shape \(x.shape))")
        }
        var shape: [Int] = []
        for (axis, dim) in x.shape.enumerated() {
            if !reduced.contains(axis) { shape.append(dim) } else if keepDims { shape.append(1) }
        }
        return [PlanValue(ValueType(.float, shape))]
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let x = inputs[0]!
        let planInputs = PlanValue.constants(inputs)
        let reduced = Set(try axes(planInputs, rank: x.rank))
        let px = x.floats, py = outputs[0].floats
        // Move reduced axes last: out[o] reduces the contiguous-in-the-view block of `inner` values.
        let kept = x.shape.indices.filter { !reduced.contains($0) }
        let order = kept + x.shape.indices.filter { reduced.contains($0) }
        var strides = [Int](repeating: 1, count: x.rank)
        for i in stride(from: x.rank - 2, through: 0, by: -1) { strides[i] = strides[i + 1] * x.shape[i + 1] }
        let outerCount = kept.reduce(1) { $0 * x.shape[$1] }
        let innerAxes = order.dropFirst(kept.count)
        let innerCount = innerAxes.reduce(1) { $0 * x.shape[$1] }
        let kind = kind
        // Trailing reduced axes (global pooling written as ReduceMean) are one contiguous block.
        let trailing = reduced == Set((x.rank - reduced.count)..<x.rank)
        context.parallel.forEach(outerCount) { o in
            if trailing && kind != .max && kind != .min {
                var sum: Float = 0
                let block = px + o * innerCount
                for i in 0..<innerCount { sum += block[i] }
                py[o] = kind == .mean ? (innerCount > 0 ? sum / Float(innerCount) : .nan) : sum
                return
            }
            var rest = o, base = 0
            for axis in kept.reversed() {
                base += (rest % x.shape[axis]) * strides[axis]
                rest /= x.shape[axis]
            }
            var accumulator: Float = kind == .max ? -.infinity : kind == .min ? .infinity : 0
            for i in 0..<innerCount {
                var r = i, offset = base
                for axis in innerAxes.reversed() {
                    offset += (r % x.shape[axis]) * strides[axis]
                    r /= x.shape[axis]
                }
                let v = px[offset]
                switch kind {
                case .mean, .sum: accumulator += v
                case .max: accumulator = v.isNaN || v > accumulator ? v : accumulator
                case .min: accumulator = v.isNaN || v < accumulator ? v : accumulator
                }
            }
            py[o] = kind == .mean ? (innerCount > 0 ? accumulator / Float(innerCount) : .nan) : accumulator
        }
    }
}
