/// Folds a per-output-channel affine map that follows a convolution into its weights and bias:
/// BatchNormalization (inference), and Mul / Add by a constant that is per channel or scalar.
///   BN:  y = (conv - mean) * gamma / sqrt(var + eps) + beta  ->  W' = W s, B' = (B - mean) s + beta
///   Mul: y = conv * c  ->  W' = W c, B' = B c;   Add: y = conv + c  ->  B' = B + c
/// ConvTranspose too: its weight is [C, M/group, k...], so output channel g * M/group + j scales
/// W[c, j] for the input channels c of group g.
/// Only when the convolution's weight (and bias) are constants and its output has no other reader.
struct ConvAffineFolding: GraphPass {
    let name = "convolution affine folding"
    let level = GraphOptimizationLevel.extended

    func apply(to graph: inout Graph) throws -> Bool {
        var changed = false
        // Folding changes the node list, so each fold restarts the search (few convolutions).
        while let (conv, follower, scale, shift) = findFold(graph) {
            fold(&graph, conv: conv, follower: follower, scale: scale, shift: shift)
            changed = true
        }
        return changed
    }

    /// A convolution, the node after it, and the per-channel scale (nil: 1) and shift.
    private func findFold(_ graph: Graph) -> (Int, Int, [Float]?, [Float])? {
        let consumers = graph.consumers()
        let isGraphOutput = graph.graphOutputFlags()
        for (index, node) in graph.nodes.enumerated() {
            guard node.domain != ConvNodeSlots.fusedDomain, let slots = ConvNodeSlots(node), node.outputs.count == 1,
                  slots.weight < node.inputs.count, let weight = graph.floatConstant(node.inputs[slots.weight]), weight.rank >= 3 else { continue }
            guard let channels = Self.outputChannels(node, slots: slots, weight: weight) else { continue }
            if slots.bias == nil { continue }
            if let biasSlot = slots.bias, biasSlot < node.inputs.count, let bias = node.inputs[biasSlot],
               graph.floatConstant(bias)?.shape != [channels] { continue }
            let output = node.outputs[0]
            guard !isGraphOutput[output], consumers[output].count == 1 else { continue }
            let follower = graph.nodes[consumers[output][0]]
            guard follower.domain.isEmpty, let affine = perChannel(follower, of: output, channels: channels,
                                                                   rank: weight.rank, graph) else { continue }
            return (index, consumers[output][0], affine.scale, affine.shift)
        }
        return nil
    }

    /// Output channels of a convolution node with this weight (nil: a group that cannot be right,
    /// left for planning to report).
    static func outputChannels(_ node: Node, slots: ConvNodeSlots, weight: Tensor) -> Int? {
        guard slots.isTransposed else { return weight.shape[0] }
        let group = (try? Attributes(node).int("group", default: 1)) ?? 0
        guard group >= 1, weight.shape[0] % group == 0 else { return nil }
        let (channels, overflow) = weight.shape[1].multipliedReportingOverflow(by: group)
        return overflow ? nil : channels
    }

    private func perChannel(_ node: Node, of value: Int, channels: Int, rank: Int, _ graph: Graph)
        -> (scale: [Float]?, shift: [Float])? {
        switch node.opType {
        case "BatchNormalization":
            return graph.batchNormalizationAffine(node, of: value, channels: channels)
        case "Mul", "Add":
            guard node.inputs.count == 2, node.outputs.count == 1,
                  let other = node.inputs[0] == value ? node.inputs[1] : node.inputs[0], other != value,
                  let constant = graph.floatConstant(other),
                  let values = perChannelValues(constant, channels: channels, rank: rank) else { return nil }
            return node.opType == "Mul" ? (values, [Float](repeating: 0, count: channels)) : (nil, values)
        default:
            return nil
        }
    }

    /// The constant's value per output channel, if it broadcasts as [1, C, 1, ...] or as a scalar
    /// against an output of `rank` dims without growing it.
    private func perChannelValues(_ constant: Tensor, channels: Int, rank: Int) -> [Float]? {
        let shape = constant.shape
        if shape.count > rank { return nil }
        let padded = [Int](repeating: 1, count: rank - shape.count) + shape
        guard padded[0] == 1, padded[1] == 1 || padded[1] == channels, padded[2...].allSatisfy({ $0 == 1 }) else { return nil }
        let p = constant.floats
        return (0..<channels).map { padded[1] == 1 ? p[0] : p[$0] }
    }

    private func fold(_ graph: inout Graph, conv: Int, follower: Int, scale: [Float]?, shift: [Float]) {
        let slots = ConvNodeSlots(graph.nodes[conv])!
        let node = graph.nodes[conv]
        let biasSlot = slots.bias!
        if let scale {
            let weight = graph.floatConstant(node.inputs[slots.weight])!
            let filters = weight.shape[0], perFilter = weight.elementCount / max(filters, 1)
            let scaled = Tensor(elementType: .float, shape: weight.shape,
                                storage: TensorStorage(uninitializedByteCount: weight.byteCount))
            let w = weight.floats, out = scaled.floats
            if slots.isTransposed {
                // W[c, j, taps] feeds output channel (c / (C / group)) * M/group + j, where
                // scale.count = M = M/group * group (findFold checked the group divides C).
                let perGroup = weight.shape[1], taps = perFilter / max(perGroup, 1)
                let group = scale.count / max(perGroup, 1), inPerGroup = filters / max(group, 1)
                for c in 0..<filters {
                    let first = c / max(inPerGroup, 1) * perGroup
                    for j in 0..<perGroup {
                        let factor = scale[first + j], base = (c * perGroup + j) * taps
                        for t in 0..<taps { out[base + t] = w[base + t] * factor }
                    }
                }
            } else {
                // Filter by filter: a vectorised inner loop, no division per element.
                for filter in 0..<filters {
                    let factor = scale[filter], base = filter * perFilter
                    for j in 0..<perFilter { out[base + j] = w[base + j] * factor }
                }
            }
            let id = graph.addInitializer(scaled, named: graph.valueNames[node.inputs[slots.weight]!] + "_folded")
            graph.nodes[conv].inputs[slots.weight] = id
        }
        let oldBias = biasSlot < node.inputs.count ? graph.floatConstant(node.inputs[biasSlot]) : nil
        var bias = [Float](repeating: 0, count: shift.count)
        for c in bias.indices {
            let b = oldBias?.floats[c] ?? 0
            bias[c] = (scale.map { b * $0[c] } ?? b) + shift[c]
        }
        while graph.nodes[conv].inputs.count <= biasSlot { graph.nodes[conv].inputs.append(nil) }
        graph.nodes[conv].inputs[biasSlot] = graph.addInitializer(Tensor(floats: bias, shape: [bias.count]),
                                                                  named: node.name + "_bias_folded")
        let fused = ConvNodeSlots.fusedNames(node) + [graph.nodes[follower].name]
        graph.nodes[conv].attributes["fused_nodes"] = .strings(fused)
        graph.nodes[conv].outputs = [graph.nodes[follower].outputs[0]]
        var remove = [Bool](repeating: false, count: graph.nodes.count)
        remove[follower] = true
        graph.removeNodes(remove)
    }
}
