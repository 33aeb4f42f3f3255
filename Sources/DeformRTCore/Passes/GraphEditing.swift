/// Small edits the graph passes share.
extension Graph {
    /// The node reading each value, once per read (a node reading a value twice is listed twice).
    func consumers() -> [[Int]] {
        var readers = [[Int]](repeating: [], count: valueNames.count)
        for (index, node) in nodes.enumerated() {
            for case let id? in node.inputs { readers[id].append(index) }
        }
        return readers
    }

    /// The node writing each value; nil for graph inputs, initializers and unused ids.
    func producers() -> [Int?] {
        var writer = [Int?](repeating: nil, count: valueNames.count)
        for (index, node) in nodes.enumerated() {
            for id in node.outputs { writer[id] = index }
        }
        return writer
    }

    func graphOutputFlags() -> [Bool] {
        var flags = [Bool](repeating: false, count: valueNames.count)
        for output in outputs { flags[output.id] = true }
        return flags
    }

    /// A new value id whose name no other value has.
    mutating func addValue(named base: String) -> Int {
        let taken = Set(valueNames)
        var name = base
        var suffix = 1
        while taken.contains(name) {
            name = "\(base)_\(suffix)"
            suffix += 1
        }
        valueNames.append(name)
        return valueNames.count - 1
    }

    /// Adds a constant under a new value id.
    mutating func addInitializer(_ tensor: Tensor, named base: String) -> Int {
        let id = addValue(named: base)
        initializers[id] = tensor
        return id
    }

    /// Every node input reading `old` reads `new` instead (graph outputs are not touched).
    mutating func replaceUses(of old: Int, with new: Int) {
        for index in nodes.indices {
            for slot in nodes[index].inputs.indices where nodes[index].inputs[slot] == old {
                nodes[index].inputs[slot] = new
            }
        }
    }

    mutating func removeNodes(_ remove: [Bool]) {
        nodes = nodes.enumerated().filter { !remove[$0.offset] }.map(\.element)
    }

    /// An inference BatchNormalization of `value` with constant [channels] parameters, as the
    /// per-channel affine map y = x s + shift it computes; nil for anything else (training mode,
    /// read statistics outputs, parameters of another shape).
    func batchNormalizationAffine(_ node: Node, of value: Int, channels: Int) -> (scale: [Float], shift: [Float])? {
        guard node.domain.isEmpty, node.opType == "BatchNormalization", node.inputs.count == 5, node.inputs[0] == value,
              node.outputs.count >= 1, (try? Attributes(node).int("training_mode", default: 0)) == 0,
              let epsilon = try? Attributes(node).float("epsilon", default: 1e-5) else { return nil }
        // Extra outputs (training statistics) must be unread.
        if node.outputs.count > 1 && node.outputs.dropFirst().contains(where: { id in
            graphOutputFlags()[id] || nodes.contains { $0.inputs.contains(id) } }) { return nil }
        let parameters = node.inputs[1...].map { floatConstant($0) }
        guard parameters.allSatisfy({ $0?.shape == [channels] }) else { return nil }
        let gamma = parameters[0]!.floats, beta = parameters[1]!.floats
        let mean = parameters[2]!.floats, variance = parameters[3]!.floats
        // Float arithmetic in the order the BatchNormalization kernel uses, so that a fold
        // changes results only by the reassociation of x * s.
        var scale = [Float](repeating: 0, count: channels), shift = scale
        for c in 0..<channels {
            scale[c] = gamma[c] / (variance[c] + epsilon).squareRoot()
            shift[c] = beta[c] - mean[c] * scale[c]
        }
        return (scale, shift)
    }

    /// The float initializer read by `id`, if it is one.
    func floatConstant(_ id: Int?) -> Tensor? {
        guard let id, let tensor = initializers[id], tensor.elementType == .float else { return nil }
        return tensor
    }
}
