/// Keeps activations channels-last ([N, H, W, C], the layout the convolution kernels compute in)
/// through chains of convolutions, pooling, elementwise ops and Concat, so no transpose runs per
/// convolution. A value the pass makes channels-last gets a new id holding [N, H, W, C]; its
/// original id keeps the NCHW value, produced by one Transpose only if some reader (an op without
/// a channels-last form, or a graph output) needs it. Rewrites:
///   Conv / DeformConv (2-D, constant weight; depthwise only as a Conv with one output channel per
///     input channel) -> FusedConv / FusedDeformConv with
///     channels_last_input / channels_last_output (the first convolution reads the NCHW input
///     directly; offsets and masks stay NCHW);
///   MaxPool / AveragePool (2-D) -> ai.deformrt ChannelsLastMaxPool / ChannelsLastAveragePool;
///   GlobalAveragePool -> ChannelsLastGlobalAveragePool, whose [N, C, 1, 1] output is NCHW again;
///   elementwise ops whose tensor operands are all channels-last, and Concat on the channel axis
///     (axis becomes 3), stay as they are on the channels-last values;
///   Resize (opset 11 on: X, roi, scales[, sizes]) -> ai.deformrt ChannelsLastResize, and Shape of
///     a channels-last value -> ChannelsLastShape (the NCHW shape: an FPN's upsampling to another
///     map's size keeps both maps channels-last); their shape inputs keep the NCHW order.
/// A convolution whose output only NCHW readers want (a deformable convolution's offset branch)
/// keeps an NCHW output; one with a fused residual is channels-last only if the residual is.
struct ChannelsLastLayout: GraphPass {
    let name = "channels-last layout"
    let level = GraphOptimizationLevel.all

    static let unaryOps: Set<String> = [
        "Relu", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Elu", "Selu", "Celu", "Softplus",
        "Softsign", "Gelu", "Erf", "Abs", "Neg", "Exp", "Log", "Sqrt", "Reciprocal", "Floor", "Ceil", "Clip",
    ]
    static let binaryOps: Set<String> = ["Add", "Sub", "Mul", "Div", "Max", "Min"]

    /// How a node treats channels-last data.
    private enum Role {
        /// A convolution: reads X (slot 0 in every spelling) in either layout, writes either; `residual` slot if fused.
        case convolution(x: Int, residual: Int?)
        /// Pooling with a channels-last form (output channels-last).
        case pooling
        /// GlobalAveragePool: reads channels-last, writes NCHW.
        case globalPooling
        /// Output channels-last when every tensor operand in `slots` is (others must be broadcast scalars).
        case layoutFree(slots: [Int])
        /// Concat on the channel axis.
        case concat
        /// Resize: output channels-last when X is.
        case resize
        /// Shape: reads either form, writes the NCHW shape.
        case shape
        case other
    }

    func apply(to graph: inout Graph) throws -> Bool {
        let order = try GraphCheck.topologicalOrder(graph)
        let roles = graph.nodes.map { role(of: $0, graph) }
        let consumers = graph.consumers()
        let isGraphOutput = graph.graphOutputFlags()
        var channelsLast = [Bool](repeating: false, count: graph.valueNames.count)
        // Convolutions forced to write NCHW; grows until the marking is consistent.
        var forcedNCHW = [Bool](repeating: false, count: graph.nodes.count)
        while true {
            channelsLast = mark(graph, order: order, roles: roles, forcedNCHW: forcedNCHW)
            var changed = false
            for index in graph.nodes.indices {
                guard case .convolution(_, let residual) = roles[index], !forcedNCHW[index] else { continue }
                let output = graph.nodes[index].outputs[0]
                guard channelsLast[output] else { continue }
                let residualIsNCHW = residual.map { slot in
                    guard let id = graph.nodes[index].inputs[slot] else { return false }
                    return !channelsLast[id]
                } ?? false
                let wanted = consumers[output].contains { reader in
                    acceptsChannelsLast(graph.nodes[reader], roles[reader], reading: output, channelsLast)
                }
                if residualIsNCHW || !wanted {
                    forcedNCHW[index] = true
                    changed = true
                }
            }
            if !changed { break }
        }
        if !channelsLast.contains(true) { return false }
        rewrite(&graph, roles: roles, channelsLast: channelsLast, consumers: consumers, isGraphOutput: isGraphOutput)
        return true
    }

    /// Which values are channels-last, walking forward from the convolutions.
    private func mark(_ graph: Graph, order: [Int], roles: [Role], forcedNCHW: [Bool]) -> [Bool] {
        var channelsLast = [Bool](repeating: false, count: graph.valueNames.count)
        for index in order {
            let node = graph.nodes[index]
            let input = { (slot: Int) -> Bool in slot < node.inputs.count && node.inputs[slot].map { channelsLast[$0] } == true }
            switch roles[index] {
            case .convolution:
                channelsLast[node.outputs[0]] = !forcedNCHW[index]
            case .pooling:
                channelsLast[node.outputs[0]] = input(0)
            case .layoutFree(let slots):
                channelsLast[node.outputs[0]] = slots.allSatisfy {
                    input($0) || ($0 < node.inputs.count && isBroadcastScalar(node.inputs[$0], graph))
                }
                    && slots.contains { input($0) }
            case .concat:
                channelsLast[node.outputs[0]] = !node.inputs.isEmpty && node.inputs.indices.allSatisfy(input)
            case .resize:
                channelsLast[node.outputs[0]] = input(0)
            case .globalPooling, .shape, .other:
                break
            }
        }
        return channelsLast
    }

    /// Whether `node` reads `value` in its channels-last form (else it needs the NCHW one).
    private func acceptsChannelsLast(_ node: Node, _ role: Role, reading value: Int, _ channelsLast: [Bool]) -> Bool {
        switch role {
        case .convolution(let x, let residual):
            if node.inputs[x] == value { return true }
            if let residual, residual < node.inputs.count, node.inputs[residual] == value { return channelsLast[node.outputs[0]] }
            return false
        case .globalPooling, .shape: return true
        case .resize: return node.inputs[0] == value && channelsLast[node.outputs[0]]
        case .pooling, .layoutFree, .concat: return channelsLast[node.outputs[0]]
        case .other: return false
        }
    }

    private func rewrite(_ graph: inout Graph, roles: [Role], channelsLast: [Bool], consumers: [[Int]], isGraphOutput: [Bool]) {
        let valueCount = graph.valueNames.count
        // The channels-last id of each channels-last value.
        var nhwc = [Int?](repeating: nil, count: valueCount)
        for id in 0..<valueCount where channelsLast[id] {
            nhwc[id] = graph.addValue(named: graph.valueNames[id] + "_nhwc")
        }
        var needsNCHW = [Bool](repeating: false, count: valueCount)
        for index in graph.nodes.indices {
            let node = graph.nodes[index]
            for slot in node.inputs.indices {
                guard let id = node.inputs[slot], let other = nhwc[id] else { continue }
                if acceptsChannelsLast(node, roles[index], reading: id, channelsLast) {
                    graph.nodes[index].inputs[slot] = other
                } else {
                    needsNCHW[id] = true
                }
            }
        }
        for index in graph.nodes.indices {
            var node = graph.nodes[index]
            let readsChannelsLast = node.inputs.contains { id in id.map { $0 >= valueCount } == true }
            let writesChannelsLast = node.outputs.count == 1 && channelsLast[node.outputs[0]]
            switch roles[index] {
            case .convolution(let x, _):
                let inputChannelsLast = node.inputs[x].map { $0 >= valueCount } == true
                guard inputChannelsLast || writesChannelsLast else { continue }
                makeFused(&node)
                if inputChannelsLast { node.attributes["channels_last_input"] = .int(1) }
                if writesChannelsLast { node.attributes["channels_last_output"] = .int(1) }
            case .pooling where writesChannelsLast:
                node.attributes["fused_nodes"] = .strings([node.name])
                node.domain = ConvNodeSlots.fusedDomain
                node.opType = "ChannelsLast" + node.opType
            case .globalPooling where readsChannelsLast:
                node.attributes["fused_nodes"] = .strings([node.name])
                node.domain = ConvNodeSlots.fusedDomain
                node.opType = "ChannelsLastGlobalAveragePool"
            case .concat where writesChannelsLast:
                node.attributes["axis"] = .int(3)
            case .resize where writesChannelsLast, .shape where readsChannelsLast:
                node.attributes["fused_nodes"] = .strings([node.name])
                node.domain = ConvNodeSlots.fusedDomain
                node.opType = "ChannelsLast" + node.opType
            default:
                break
            }
            if writesChannelsLast { node.outputs = [nhwc[node.outputs[0]]!] }
            graph.nodes[index] = node
        }
        for id in 0..<valueCount where channelsLast[id] && (needsNCHW[id] || isGraphOutput[id]) {
            let name = graph.valueNames[id] + "_to_nchw"
            graph.nodes.append(Node(name: name, opType: "Transpose", domain: "", inputs: [nhwc[id]!], outputs: [id],
                                    attributes: ["perm": .ints([0, 3, 1, 2])], label: name))
        }
    }

    /// A plain convolution becomes the fused node of its spelling (no epilogue yet).
    private func makeFused(_ node: inout Node) {
        if node.domain == ConvNodeSlots.fusedDomain { return }
        node.attributes["base_domain"] = .string(node.domain)
        node.attributes["base_op"] = .string(node.opType)
        node.attributes["fused_nodes"] = .strings([node.name])
        node.opType = node.opType == "Conv" ? ConvNodeSlots.fusedConv : ConvNodeSlots.fusedDeformConv
        node.domain = ConvNodeSlots.fusedDomain
    }

    private func role(of node: Node, _ graph: Graph) -> Role {
        guard node.outputs.count == 1 else { return .other }
        if let slots = ConvNodeSlots(node) {
            // ConvTranspose has no channels-last form: an op of role .other, so the values it
            // reads are NCHW (a Transpose back at the edge, or the producer writes NCHW).
            if slots.isTransposed { return .other }
            guard slots.weight < node.inputs.count, let weight = graph.floatConstant(node.inputs[slots.weight]),
                  weight.rank == 4 else { return .other }
            let base = ConvNodeSlots.base(node)
            let groupName = base.domain.hasPrefix("mm") ? "groups" : "group"
            let group = (try? Attributes(node).int(groupName, default: 1)) ?? 1
            // Depthwise convolutions run channels-last only when plain, with a channel multiplier of 1.
            if group > 1 && weight.shape[1] == 1 && (weight.shape[0] != group || base != ("", "Conv")) { return .other }
            let hasResidual = slots.residual < node.inputs.count && node.inputs[slots.residual] != nil
            return .convolution(x: 0, residual: hasResidual ? slots.residual : nil)
        }
        guard node.domain.isEmpty else { return .other }
        switch node.opType {
        case "MaxPool", "AveragePool":
            guard case .ints(let kernel)? = node.attributes["kernel_shape"], kernel.count == 2 else { return .other }
            return .pooling
        case "GlobalAveragePool":
            return .globalPooling
        case "Concat":
            guard case .int(let axis)? = node.attributes["axis"], axis == 1 || axis == -3 else { return .other }
            return .concat
        case "Resize":
            // Resize-10 (X, scales) reads its scales differently; 11 and later take roi, scales, sizes.
            return node.inputs.count >= 3 ? .resize : .other
        case "Shape":
            return node.inputs.count == 1 ? .shape : .other
        case let op where Self.unaryOps.contains(op):
            // Operand counts are checked when the plan is made, after the passes.
            return node.inputs.isEmpty ? .other : .layoutFree(slots: [0])
        case let op where Self.binaryOps.contains(op):
            return node.inputs.count == 2 ? .layoutFree(slots: [0, 1]) : .other
        default:
            return .other
        }
    }

    /// A constant with one element: it broadcasts the same against either layout.
    private func isBroadcastScalar(_ id: Int?, _ graph: Graph) -> Bool {
        guard let id, let tensor = graph.initializers[id] else { return false }
        return tensor.shape.allSatisfy { $0 == 1 } && tensor.shape.count <= 4
    }
}
