/// Rewrites mmcv / mmdeploy deformable convolutions as the standard ONNX DeformConv (opset 19), so
/// that a model exported by mmdeploy also runs in runtimes that only know standard operators
/// (`deformrt convert`). DeformConv needs ai.onnx opset 19, so a model of an older opset (11 and
/// up) is moved to 19, rewriting the nodes whose form changed on the way; a node whose change is not
/// known here is refused by name rather than guessed. OpenVINO's DeformableConv2D is refused: its
/// border rule differs from DeformConv's, so the rewrite would change the results.
public enum StandardONNXConversion {
    public struct Result {
        public var graph: Graph
        /// Labels of the deformable nodes rewritten.
        public var rewritten: [String]
        /// The ai.onnx opset before (the result's is max(before, 19)).
        public var opsetBefore: Int
    }

    static let targetOpset = 19

    public static func convert(_ source: Graph) throws -> Result {
        var graph = source
        let opset = graph.opsets[""] ?? 1
        if let node = graph.nodes.first(where: { $0.domain == "org.openvinotoolkit" && $0.opType == "DeformableConv2D" }) {
            throw DeformRTError.unsupported("node \(node.label): OpenVINO's DeformableConv2D reads 0 outside the map where ONNX DeformConv blends the border with zeros, so it cannot be rewritten without changing results")
        }
        if opset < targetOpset {
            if opset < 11 {
                throw DeformRTError.unsupported("the model's ai.onnx opset is \(opset); convert moves models of opset 11 and later to opset 19 (DeformConv's), upgrade older ones first (onnx.version_converter)")
            }
            try upgradeDefaultDomain(&graph, from: opset)
            graph.opsets[""] = targetOpset
        }
        var rewritten: [String] = []
        for index in graph.nodes.indices {
            let node = graph.nodes[index]
            guard ["mmcv", "mmdeploy"].contains(node.domain),
                  node.opType == "MMCVModulatedDeformConv2d" || node.opType == "MMCVDeformConv2d" else { continue }
            graph.nodes[index] = try node.naming { try standardDeformConv(node, modulated: node.opType == "MMCVModulatedDeformConv2d") }
            rewritten.append(node.label)
        }
        let used = Set(graph.nodes.map(\.domain))
        for domain in ["mmcv", "mmdeploy"] where !used.contains(domain) { graph.opsets[domain] = nil }
        return Result(graph: graph, rewritten: rewritten, opsetBefore: opset)
    }

    /// mmcv: input, offset, [mask,] weight[, bias]; stride, padding, dilation, groups, deform_groups.
    /// ONNX: X, W, offset, B, mask; strides, pads [top, left, bottom, right], dilations, group, offset_group.
    private static func standardDeformConv(_ node: Node, modulated: Bool) throws -> Node {
        let spec = OperatorSpec(node: node, opset: 1)
        let window = try Window2D(spec, kernelRequired: false, names: ("stride", "padding", "dilation"))
        guard window.strides.count == 2, window.dilations.count == 2 else {
            throw DeformRTError.unsupported("only 2-D deformable convolutions are rewritten (stride \(window.strides), dilation \(window.dilations))")
        }
        var pads = [0, 0, 0, 0]
        if let given = window.pads {
            guard given.count == 2 || given.count == 4 else { throw DeformRTError.invalidModel("padding must have 1, 2 or 4 values, got \(given)") }
            pads = given.count == 2 ? [given[0], given[1], given[0], given[1]] : given
        }
        let attributes = spec.attributes
        let group = try attributes.int("groups", default: 1)
        let offsetGroup = try attributes.int("deform_groups") ?? attributes.int("deformable_groups") ?? 1
        let inputs = node.inputs
        let (offset, mask, weight, bias): (Int?, Int?, Int?, Int?) = modulated
            ? (slot(inputs, 1), slot(inputs, 2), slot(inputs, 3), slot(inputs, 4))
            : (slot(inputs, 1), nil, slot(inputs, 2), slot(inputs, 3))
        guard let x = slot(inputs, 0), let offset, let weight, !modulated || mask != nil else {
            throw DeformRTError.invalidModel("missing required inputs")
        }
        var standard = node
        standard.domain = ""
        standard.opType = "DeformConv"
        standard.inputs = mask != nil ? [x, weight, offset, bias, mask] : (bias != nil ? [x, weight, offset, bias] : [x, weight, offset])
        standard.attributes = [
            "strides": .ints(window.strides), "pads": .ints(pads), "dilations": .ints(window.dilations),
            "group": .int(group), "offset_group": .int(offsetGroup),
        ]
        if !window.kernel.isEmpty { standard.attributes["kernel_shape"] = .ints(window.kernel) }
        return standard
    }

    private static func slot(_ inputs: [Int?], _ index: Int) -> Int? { index < inputs.count ? inputs[index] : nil }

    // MARK: ai.onnx opset 11...18 -> 19

    /// Operators whose opset-11 form means the same at opset 19 (later versions only added types,
    /// or optional attributes and inputs whose defaults keep the old behaviour).
    static let unchangedSince11: Set<String> = [
        "Abs", "Acos", "Acosh", "Add", "And", "ArgMax", "ArgMin", "Asin", "Asinh", "Atan", "Atanh", "AveragePool",
        "BatchNormalization", "BitShift", "Cast", "Ceil", "Celu", "Clip", "Compress", "Concat", "Constant",
        "ConstantOfShape", "Conv", "ConvInteger", "ConvTranspose", "Cos", "Cosh", "CumSum", "DepthToSpace",
        "DequantizeLinear", "Det", "Div", "DynamicQuantizeLinear", "Einsum", "Elu", "Equal", "Erf", "Exp", "Expand",
        "EyeLike", "Flatten", "Floor", "GRU", "Gather", "GatherElements", "GatherND", "Gemm", "GlobalAveragePool",
        "GlobalLpPool", "GlobalMaxPool", "Greater", "GreaterOrEqual", "HardSigmoid", "HardSwish", "Identity",
        "InstanceNormalization", "IsInf", "IsNaN", "LRN", "LSTM", "LeakyRelu", "Less", "LessOrEqual", "Log",
        "LpNormalization", "LpPool", "MatMul", "MatMulInteger", "Max", "MaxPool", "MaxRoiPool", "MaxUnpool", "Mean",
        "MeanVarianceNormalization", "Min", "Mod", "Mul", "Neg", "NonMaxSuppression", "NonZero", "Not", "OneHot",
        "Or", "PRelu", "Pad", "Pow", "QLinearConv", "QLinearMatMul", "QuantizeLinear", "RNN", "Range", "Reciprocal",
        "Relu", "Reshape", "ReverseSequence", "Round", "ScatterElements", "ScatterND", "Selu", "Shape", "Shrink",
        "Sigmoid", "Sign", "Sin", "Sinh", "Size", "Slice", "Softplus", "Softsign", "SpaceToDepth", "Sqrt", "Sub",
        "Sum", "Tan", "Tanh", "ThresholdedRelu", "Tile", "TopK", "Transpose", "Trilu", "Unique", "Where", "Xor",
        "GridSample", "Mish", "GroupNormalization", "LayerNormalization", "Gelu", "CastLike", "Bernoulli",
    ]

    /// The opset from which an operator takes `axes` as an input instead of an attribute.
    static let axesBecameInput: [String: Int] = [
        "Squeeze": 13, "Unsqueeze": 13, "ReduceSum": 13,
        "ReduceMean": 18, "ReduceMax": 18, "ReduceMin": 18, "ReduceProd": 18, "ReduceL1": 18, "ReduceL2": 18,
        "ReduceLogSum": 18, "ReduceLogSumExp": 18, "ReduceSumSquare": 18,
    ]

    static func upgradeDefaultDomain(_ graph: inout Graph, from opset: Int) throws {
        var result: [Node] = []
        var unknown: [String] = []
        for node in graph.nodes {
            guard node.domain.isEmpty else { result.append(node); continue }
            var node = node
            let base = node.name.isEmpty ? node.opType.lowercased() : node.name
            switch node.opType {
            case let op where axesBecameInput[op].map({ opset < $0 }) == true:
                if case .ints(let axes)? = node.attributes.removeValue(forKey: "axes") {
                    let axesInput = graph.addInitializer(Tensor(int64s: axes.map(Int64.init), shape: [axes.count]), named: "\(base).axes")
                    node.inputs = [node.inputs.first ?? nil, axesInput]
                }
                result.append(node)
            case "Split":
                if opset < 13, case .ints(let sizes)? = node.attributes.removeValue(forKey: "split") {
                    let split = graph.addInitializer(Tensor(int64s: sizes.map(Int64.init), shape: [sizes.count]), named: "\(base).split")
                    node.inputs = [node.inputs.first ?? nil, split]
                } else if node.inputs.count < 2 || node.inputs[1] == nil {
                    // From opset 18 an equal split names its output count.
                    node.attributes["num_outputs"] = .int(node.outputs.count)
                }
                result.append(node)
            case let op where ["Softmax", "LogSoftmax", "Hardmax"].contains(op) && opset < 13:
                // Before 13 these flattened the input to 2-D at `axis` (default 1); from 13 they act on
                // one axis: Flatten, the operator on the last axis, and Reshape back say the same.
                let axis = try Attributes(node).int("axis", default: 1)
                guard let x = node.inputs.first ?? nil else { throw DeformRTError.invalidModel("node \(node.label): missing input") }
                let flat = graph.addValue(named: "\(base).flat")
                let shape = graph.addValue(named: "\(base).shape")
                let normalized = graph.addValue(named: "\(base).normalized")
                result.append(Node(name: "\(base).flatten", opType: "Flatten", domain: "", inputs: [x], outputs: [flat],
                                   attributes: ["axis": .int(axis)], label: "\(base).flatten"))
                result.append(Node(name: "\(base).shape", opType: "Shape", domain: "", inputs: [x], outputs: [shape],
                                   attributes: [:], label: "\(base).shape"))
                var softmax = node
                softmax.inputs = [flat]
                softmax.outputs = [normalized]
                softmax.attributes = ["axis": .int(-1)]
                result.append(softmax)
                result.append(Node(name: "\(base).reshape", opType: "Reshape", domain: "", inputs: [normalized, shape],
                                   outputs: node.outputs, attributes: [:], label: "\(base).reshape"))
            case "Softmax", "LogSoftmax", "Hardmax":
                result.append(node)
            case "Dropout":
                // From 12 the ratio is an optional input; it does not matter for inference.
                node.attributes["ratio"] = nil
                result.append(node)
            case "RoiAlign":
                // The default coordinate transformation became half_pixel at 16.
                if opset < 16 && node.attributes["coordinate_transformation_mode"] == nil {
                    node.attributes["coordinate_transformation_mode"] = .string("output_half_pixel")
                }
                result.append(node)
            case "Resize":
                if case .string("tf_half_pixel_for_nn")? = node.attributes["coordinate_transformation_mode"] {
                    unknown.append("\(node.label) (Resize with tf_half_pixel_for_nn, removed in opset 13)")
                }
                result.append(node)
            case let op where unchangedSince11.contains(op) || axesBecameInput[op] != nil:
                result.append(node)
            default:
                unknown.append("\(node.label) (\(node.opType))")
            }
        }
        if !unknown.isEmpty {
            throw DeformRTError.unsupported("moving the model from opset \(opset) to 19 (DeformConv's) would need rewriting nodes convert does not know how to: " + unknown.prefix(10).joined(separator: ", ") + (unknown.count > 10 ? ", ..." : ""))
        }
        graph.nodes = result
    }
}
