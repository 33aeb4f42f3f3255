import DeformRTKernels

/// InstanceNormalization: each (n, c) plane standardised over its spatial dims, then scaled and
/// shifted per channel. Float; input rank >= 3.
final class InstanceNormOperator: Operator {
    let epsilon: Float
    init(_ spec: OperatorSpec) throws { epsilon = try spec.attributes.float("epsilon", default: 1e-5) }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let x = try PlanCheck.input(inputs, 0, "input")
        let scale = try PlanCheck.input(inputs, 1, "scale"), bias = try PlanCheck.input(inputs, 2, "B")
        try PlanCheck.float(x, "input")
        try PlanCheck.float(scale, "scale")
        try PlanCheck.float(bias, "B")
        if x.shape.count < 3 { throw DeformRTError.invalidModel("input must have rank >= 3 (N, C, D1, ...), got shape \(x.shape)") }
        for (value, name) in [(scale, "scale"), (bias, "B")] where value.shape != [x.shape[1]] {
            throw DeformRTError.invalidModel("\(name) must have shape [\(x.shape[1])], got \(value.shape)")
        }
        return [PlanValue(x.type)]
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let x = inputs[0]!, scale = inputs[1]!.floats, bias = inputs[2]!.floats
        let channels = x.shape[1], planeSize = x.shape[2...].reduce(1, *)
        let px = x.floats, py = outputs[0].floats, epsilon = epsilon
        context.parallel.forEach(x.shape[0] * channels) { plane in
            let c = plane % channels
            let source = px + plane * planeSize
            let (mean, variance) = NormalizationKernels.moments(source, planeSize)
            let factor = scale[c] / (variance + epsilon).squareRoot()
            NormalizationKernels.standardize(source, py + plane * planeSize, planeSize, mean: mean, factor: factor, shift: bias[c])
        }
    }
}

/// LayerNormalization (opset 17): rows of X.shape[axis...] standardised, times Scale, plus B;
/// Scale and B broadcast to the normalised shape. Optional outputs Mean and InvStdDev have shape
/// X.shape[..<axis] followed by ones. Float; stash_type 1 (float) only.
final class LayerNormOperator: Operator {
    let axis: Int
    let epsilon: Float
    let outputCount: Int

    init(_ spec: OperatorSpec) throws {
        axis = try spec.attributes.int("axis", default: -1)
        epsilon = try spec.attributes.float("epsilon", default: 1e-5)
        outputCount = spec.node.outputs.count
        let stash = try spec.attributes.int("stash_type", default: 1)
        if stash != 1 {
            throw DeformRTError.unsupported("node \(spec.node.label) (LayerNormalization): stash_type \(stash) is not supported (only 1, float)")
        }
    }

    /// The normalised axis, and whether Scale / B need expanding to the normalised shape.
    private func layout(_ x: [Int], _ parameters: [[Int]?]) throws -> (axis: Int, expand: [Bool]) {
        let a = try PlanCheck.axis(axis, rank: x.count)
        let normalized = Array(x[a...])
        let expand = try parameters.map { shape -> Bool in
            guard var shape else { return false }
            while shape.count > normalized.count && shape.first == 1 { shape.removeFirst() }
            if shape.count > normalized.count || (try? Broadcast.shape(normalized, shape)) != normalized {
                throw DeformRTError.invalidModel("Scale / B of shape \(shape) does not broadcast to the normalised shape \(normalized)")
            }
            return shape.reduce(1, *) != normalized.reduce(1, *)
        }
        return (a, expand)
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let x = try PlanCheck.input(inputs, 0, "X"), scale = try PlanCheck.input(inputs, 1, "Scale")
        let bias = PlanCheck.optionalInput(inputs, 2)
        try PlanCheck.float(x, "X")
        try PlanCheck.float(scale, "Scale")
        if let bias { try PlanCheck.float(bias, "B") }
        let a = try layout(x.shape, [scale.shape, bias?.shape]).axis
        if outputCount > 3 { throw DeformRTError.invalidModel("LayerNormalization has at most 3 outputs, the node has \(outputCount)") }
        let statistics = ValueType(.float, Array(x.shape[..<a]) + [Int](repeating: 1, count: x.shape.count - a))
        return [PlanValue(x.type)] + [PlanValue](repeating: PlanValue(statistics), count: max(0, outputCount - 1))
    }

    func workspaceByteCount(_ inputs: [ValueType?], _ outputs: [ValueType], threads: Int) -> Int {
        guard let x = inputs.first??.shape, let a = try? PlanCheck.axis(axis, rank: x.count) else { return 0 }
        return 2 * x[a...].reduce(1, *) * MemoryLayout<Float>.size
    }

    /// The normalised axis and row width, made once per plan, and Scale / B broadcast to full rows
    /// once when they are constants that need it.
    struct RunState {
        let rows: Int
        let width: Int
        let normalized: [Int]
        let expand: [Bool]
        let expandedScale: Tensor?
        let expandedBias: Tensor?
    }

    func runState(_ inputs: [PlanValue?], _ outputs: [ValueType], threads: Int) throws -> AnyObject? {
        let x = try PlanCheck.input(inputs, 0, "X"), scale = try PlanCheck.input(inputs, 1, "Scale")
        let bias = PlanCheck.optionalInput(inputs, 2)
        let (a, expand) = try layout(x.shape, [scale.shape, bias?.shape])
        let normalized = Array(x.shape[a...])
        func expanded(_ parameter: PlanValue?, _ needed: Bool) throws -> Tensor? {
            guard needed, let constant = parameter?.constant else { return nil }
            let row = try Tensor(zeros: .float, shape: normalized)
            Expand.copy(constant, into: row)
            return row
        }
        return Planned(RunState(rows: x.shape[..<a].reduce(1, *), width: normalized.reduce(1, *), normalized: normalized,
                                expand: expand, expandedScale: try expanded(scale, expand[0]),
                                expandedBias: try expanded(bias, expand[1])))
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let x = inputs[0]!, scale = inputs[1]!, bias = inputs.count > 2 ? inputs[2] : nil
        let state = try state(context, inputs, as: Planned<RunState>.self)!.value
        let rows = state.rows, width = state.width
        // Scale and B as full rows: used in place, expanded once per plan (constants), or
        // broadcast into the workspace (run-time values).
        func row(_ t: Tensor, _ expanded: Bool, _ prepared: Tensor?, _ slot: Int) -> UnsafePointer<Float> {
            guard expanded else { return UnsafePointer(t.floats) }
            if let prepared { return UnsafePointer(prepared.floats) }
            let target = Tensor(elementType: .float, shape: state.normalized, storage: TensorStorage(
                borrowing: context.workspace + slot * width * 4, byteCount: width * 4))
            Expand.copy(t, into: target)
            return UnsafePointer(target.floats)
        }
        let ps = row(scale, state.expand[0], state.expandedScale, 0)
        let pb = bias.map { row($0, state.expand[1], state.expandedBias, 1) }
        let px = x.floats, py = outputs[0].floats, epsilon = epsilon
        let meanOut = outputs.count > 1 ? outputs[1].floats : nil
        let invStdOut = outputs.count > 2 ? outputs[2].floats : nil
        context.parallel.forEach(rows) { r in
            let (mean, variance) = NormalizationKernels.moments(px + r * width, width)
            let invStd = 1 / (variance + epsilon).squareRoot()
            NormalizationKernels.standardize(px + r * width, py + r * width, width, mean: mean, invStd: invStd, scale: ps, bias: pb)
            meanOut?[r] = mean
            invStdOut?[r] = invStd
        }
    }
}

/// BatchNormalization in inference mode: y = (x - mean) / sqrt(var + epsilon) * scale + B.
final class BatchNormOperator: Operator {
    let epsilon: Float

    init(_ spec: OperatorSpec) throws {
        epsilon = try spec.attributes.float("epsilon", default: 1e-5)
        if try spec.attributes.int("training_mode", default: 0) != 0 || spec.node.outputs.count > 1 {
            throw DeformRTError.unsupported("node \(spec.node.label) (BatchNormalization): training mode is not supported")
        }
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let x = try PlanCheck.input(inputs, 0, "X")
        try PlanCheck.float(x, "X")
        if x.shape.count < 2 { throw DeformRTError.invalidModel("input must have rank >= 2, got shape \(x.shape)") }
        for (index, name) in [(1, "scale"), (2, "B"), (3, "input_mean"), (4, "input_var")] {
            let p = try PlanCheck.input(inputs, index, name)
            try PlanCheck.float(p, name)
            if p.shape != [x.shape[1]] { throw DeformRTError.invalidModel("\(name) shape \(p.shape) must be [\(x.shape[1])]") }
        }
        return [PlanValue(x.type)]
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let x = inputs[0]!
        let channels = x.shape[1], batch = x.shape[0], size = x.shape.dropFirst(2).reduce(1, *)
        let scale = inputs[1]!.floats, bias = inputs[2]!.floats, mean = inputs[3]!.floats, variance = inputs[4]!.floats
        let px = x.floats, py = outputs[0].floats
        let epsilon = epsilon
        context.parallel.forEach(batch * channels) { plane in
            let c = plane % channels
            let a = scale[c] / (variance[c] + epsilon).squareRoot()
            let b = bias[c] - mean[c] * a
            ScaleShift.apply(px + plane * size, py + plane * size, size, scale: a, shift: b)
        }
    }
}
