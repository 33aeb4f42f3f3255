/// Lets a modulated deformable convolution read its offsets and mask straight from the sibling
/// convolution that makes them, as torch.onnx.export and mmcv write DCNv2:
///   P = Conv(...)  (2K + K channels, K = offset_group x kH x kW)
///   offset = Slice(P, 0:2K, axis 1)          or   offset, logits = Split(P, [2K, K], axis 1)
///   mask = Sigmoid(Slice(P, 2K:3K, axis 1))       mask = Sigmoid(logits)
///   DeformConv(X, W, offset, B, mask)
/// becomes FusedDeformConv(X, W, P, B) with `offset_mask` = 1: the operator applies the sigmoid to
/// P's last K channels in place and samples with offsets and mask read from P, so neither slice
/// is copied and no mask tensor is made. P must have no other reader (it is overwritten), and the
/// slices and the Sigmoid none but these.
struct DeformableOffsetFusion: GraphPass {
    let name = "deformable offset and mask fusion"
    let level = GraphOptimizationLevel.extended

    func apply(to graph: inout Graph) throws -> Bool {
        let consumers = graph.consumers()
        let producers = graph.producers()
        let isGraphOutput = graph.graphOutputFlags()
        var removed = [Bool](repeating: false, count: graph.nodes.count)
        var changed = false
        for index in graph.nodes.indices {
            var node = graph.nodes[index]
            let base = ConvNodeSlots.base(node)
            guard base.domain.isEmpty, base.opType == "DeformConv", node.inputs.count >= 5,
                  let offset = node.inputs[2], let mask = node.inputs[4],
                  let weight = graph.floatConstant(node.inputs[1]), weight.shape.count == 4 else { continue }
            if case .int(let flag)? = node.attributes["offset_mask"], flag != 0 { continue }
            let offsetGroups: Int
            if case .int(let groups)? = node.attributes["offset_group"] { offsetGroups = groups } else { offsetGroups = 1 }
            // Attributes are not checked yet (planning does): stay clear of overflow.
            let (taps, tapsOverflow) = weight.shape[2].multipliedReportingOverflow(by: weight.shape[3])
            let (k, kOverflow) = offsetGroups.multipliedReportingOverflow(by: taps)
            guard !tapsOverflow, !kOverflow, offsetGroups > 0, taps > 0, k < 1 << 40 else { continue }
            // The mask is Sigmoid(logits), read only here.
            func onlyReader(_ id: Int, _ reader: Int) -> Bool { !isGraphOutput[id] && consumers[id] == [reader] }
            guard onlyReader(offset, index), onlyReader(mask, index), let sigmoid = producers[mask],
                  graph.nodes[sigmoid].domain.isEmpty, graph.nodes[sigmoid].opType == "Sigmoid",
                  let logits = graph.nodes[sigmoid].inputs.first ?? nil, onlyReader(logits, sigmoid),
                  let offsetMaker = producers[offset], let logitsMaker = producers[logits] else { continue }
            // offset = P[0:2K] and logits = P[2K:3K], by two Slices or one Split.
            var source: Int?
            var cut: [Int] = []
            if offsetMaker == logitsMaker {
                let split = graph.nodes[offsetMaker]
                guard split.domain.isEmpty, split.opType == "Split", split.outputs == [offset, logits],
                      splitSizes(split, graph) == [2 * k, k], channelAxis(split, graph) else { continue }
                source = split.inputs.first ?? nil
                cut = [offsetMaker]
            } else {
                guard let p = sliceSource(graph.nodes[offsetMaker], graph, from: 0, to: 2 * k),
                      sliceSource(graph.nodes[logitsMaker], graph, from: 2 * k, to: 3 * k) == p else { continue }
                source = p
                cut = [offsetMaker, logitsMaker]
            }
            // P: made by a convolution with exactly 3K output channels, read by nothing else.
            guard let p = source, !isGraphOutput[p], Set(consumers[p]) == Set(cut), consumers[p].count == cut.count,
                  let maker = producers[p], let makerSlots = ConvNodeSlots(graph.nodes[maker]), !makerSlots.isTransposed,
                  makerSlots.weight < graph.nodes[maker].inputs.count,
                  let makerWeight = graph.floatConstant(graph.nodes[maker].inputs[makerSlots.weight]),
                  makerWeight.shape.first == 3 * k else { continue }

            var names = ConvNodeSlots.fusedNames(node)
            names += (cut + [sigmoid]).map { graph.nodes[$0].name }
            for removedNode in cut + [sigmoid] { removed[removedNode] = true }
            node.inputs[2] = p
            node.inputs[4] = nil
            node.attributes["offset_mask"] = .int(1)
            node.attributes["base_domain"] = .string(base.domain)
            node.attributes["base_op"] = .string(base.opType)
            node.domain = ConvNodeSlots.fusedDomain
            node.opType = ConvNodeSlots.fusedDeformConv
            node.attributes["fused_nodes"] = .strings(names)
            graph.nodes[index] = node
            changed = true
        }
        graph.removeNodes(removed)
        return changed
    }

    /// The input of a Slice that takes channels from ..< to (axis 1, step 1), or nil.
    private func sliceSource(_ node: Node, _ graph: Graph, from: Int, to: Int) -> Int? {
        guard node.domain.isEmpty, node.opType == "Slice", node.outputs.count == 1, let data = node.inputs.first ?? nil
        else { return nil }
        let starts = ints(node, slot: 1, attribute: "starts", graph)
        let ends = ints(node, slot: 2, attribute: "ends", graph)
        let hasAxes = (node.inputs.count > 3 && node.inputs[3] != nil) || node.attributes["axes"] != nil
        let axes = hasAxes ? ints(node, slot: 3, attribute: "axes", graph) : [0]
        let steps = node.inputs.count > 4 && node.inputs[4] != nil ? ints(node, slot: 4, attribute: "", graph) : [1]
        guard starts?.count == 1, ends?.count == 1, axes == [1] || axes == [-3], steps == [1],
              starts![0] == from, ends![0] == to || (ends![0] > to && from > 0) else { return nil }
        // An end past the channel count (INT64_MAX) also means "to the last channel": P has 3K.
        return data
    }

    private func splitSizes(_ node: Node, _ graph: Graph) -> [Int]? {
        if node.inputs.count > 1, node.inputs[1] != nil { return ints(node, slot: 1, attribute: "", graph) }
        if case .ints(let sizes)? = node.attributes["split"] { return sizes }
        return nil
    }

    private func channelAxis(_ node: Node, _ graph: Graph) -> Bool {
        if case .int(let axis)? = node.attributes["axis"] { return axis == 1 || axis == -3 }
        return false  // Split's default axis is 0
    }

    /// An int list from a constant input (opset >= 10) or an attribute (older opsets).
    private func ints(_ node: Node, slot: Int, attribute: String, _ graph: Graph) -> [Int]? {
        if slot < node.inputs.count, let id = node.inputs[slot] {
            guard let tensor = graph.initializers[id], tensor.shape.count == 1,
                  let values = try? tensor.integerValues() else { return nil }
            return values.map { Int(clamping: $0) }
        }
        if case .ints(let values)? = node.attributes[attribute] { return values }
        return nil
    }
}
