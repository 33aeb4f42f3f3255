import DeformRTKernels

/// The activations a convolution's epilogue can apply, and how a fused node stores one: attribute
/// `activation` (a name) and `activation_params` (its floats).
enum FusedActivation {
    /// The function a node computes, if it is a float activation the epilogue can take over.
    static func of(_ node: Node, in graph: Graph) -> UnaryFunction? {
        guard node.domain.isEmpty, node.outputs.count == 1, let x = node.inputs.first ?? nil else { return nil }
        if node.opType == "Clip" { return clip(node, graph) }
        guard node.inputs.count == 1, x >= 0,
              let op = try? OperatorRegistry.makeOperator(for: node, in: graph) as? UnaryOperator,
              case .math(let function) = op.operation, encode(function) != nil else { return nil }
        return function
    }

    /// Clip with constant (or absent) bounds; bounds computed at run time are not fused.
    private static func clip(_ node: Node, _ graph: Graph) -> UnaryFunction? {
        let attributes = Attributes(node)
        var low = -Float.greatestFiniteMagnitude, high = Float.greatestFiniteMagnitude
        if (graph.opset(for: "") ?? 1) < 11 {
            guard let l = try? attributes.float("min", default: low), let h = try? attributes.float("max", default: high) else { return nil }
            (low, high) = (l, h)
        } else {
            for (slot, bound) in [(1, 0), (2, 1)] where slot < node.inputs.count {
                guard let id = node.inputs[slot] else { continue }
                guard let tensor = graph.floatConstant(id), tensor.elementCount == 1 else { return nil }
                if bound == 0 { low = tensor.floats[0] } else { high = tensor.floats[0] }
            }
        }
        return .clip(low: low, high: high)
    }

    static func encode(_ function: UnaryFunction) -> (name: String, parameters: [Float])? {
        switch function {
        case .relu: return ("Relu", [])
        case .leakyRelu(let alpha): return ("LeakyRelu", [alpha])
        case .clip(let low, let high): return ("Clip", [low, high])
        case .sigmoid: return ("Sigmoid", [])
        case .hardSigmoid(let alpha, let beta): return ("HardSigmoid", [alpha, beta])
        case .hardSwish: return ("HardSwish", [])
        case .silu: return ("Silu", [])
        case .gelu: return ("Gelu", [])
        case .geluTanh: return ("GeluTanh", [])
        case .tanh: return ("Tanh", [])
        case .elu(let alpha): return ("Elu", [alpha])
        case .mish: return ("Mish", [])
        case .softplus: return ("Softplus", [])
        default: return nil
        }
    }

    static func decode(_ name: String, _ p: [Float]) -> UnaryFunction? {
        switch (name, p.count) {
        case ("Relu", 0): return .relu
        case ("LeakyRelu", 1): return .leakyRelu(alpha: p[0])
        case ("Clip", 2): return .clip(low: p[0], high: p[1])
        case ("Sigmoid", 0): return .sigmoid
        case ("HardSigmoid", 2): return .hardSigmoid(alpha: p[0], beta: p[1])
        case ("HardSwish", 0): return .hardSwish
        case ("Silu", 0): return .silu
        case ("Gelu", 0): return .gelu
        case ("GeluTanh", 0): return .geluTanh
        case ("Tanh", 0): return .tanh
        case ("Elu", 1): return .elu(alpha: p[0])
        case ("Mish", 0): return .mish
        case ("Softplus", 0): return .softplus
        default: return nil
        }
    }

    /// The epilogue a fused node's attributes describe: its activation and the input slot of its
    /// residual (nil when none was fused).
    static func epilogue(_ spec: OperatorSpec, residualSlot: Int) throws -> (activation: UnaryFunction?, residual: Int?) {
        let attributes = spec.attributes
        var activation: UnaryFunction?
        if let name = try attributes.string("activation") {
            guard let function = decode(name, try attributes.floats("activation_params") ?? []) else {
                throw spec.fail("unknown fused activation '\(name)' (or wrong activation_params)")
            }
            activation = function
        }
        let hasResidual = residualSlot < spec.node.inputs.count && spec.node.inputs[residualSlot] != nil
        return (activation, hasResidual ? residualSlot : nil)
    }
}
