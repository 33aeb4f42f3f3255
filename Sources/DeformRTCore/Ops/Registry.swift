/// Which (domain, op_type) pairs DeformRT runs, and from which opset on.
enum OperatorRegistry {
    private struct Entry {
        let sinceOpset: Int
        let make: OperatorFactory
    }

    private static let entries: [OperatorKey: Entry] = {
        var table: [OperatorKey: Entry] = [:]
        func add(_ domain: String, _ op: String, since: Int = 1, _ make: @escaping OperatorFactory) {
            table[OperatorKey(domain: domain, opType: op)] = Entry(sinceOpset: since, make: make)
        }
        add("", "Conv") { try ConvOperator($0) }
        add("", "Relu") { _ in UnaryOperator(.math(.relu)) }
        add("", "LeakyRelu") { UnaryOperator(.math(.leakyRelu(alpha: try $0.attributes.float("alpha", default: 0.01)))) }
        add("", "Sigmoid") { _ in UnaryOperator(.math(.sigmoid)) }
        add("", "Identity") { _ in UnaryOperator(.identity) }
        add("", "Add") { _ in BinaryOperator(.add) }
        add("", "Sub") { _ in BinaryOperator(.sub) }
        add("", "Mul") { _ in BinaryOperator(.mul) }
        add("", "Div") { _ in BinaryOperator(.div) }
        add("", "BatchNormalization") { try BatchNormOperator($0) }
        add("", "MaxPool") { try PoolOperator($0, kind: .max) }
        add("", "AveragePool") { try PoolOperator($0, kind: .average) }
        add("", "GlobalAveragePool") { _ in GlobalAveragePoolOperator() }
        // What the channels-last layout pass turns pooling into.
        add("ai.deformrt", "ChannelsLastMaxPool") { try PoolOperator($0, kind: .max, channelsLast: true) }
        add("ai.deformrt", "ChannelsLastAveragePool") { try PoolOperator($0, kind: .average, channelsLast: true) }
        add("ai.deformrt", "ChannelsLastGlobalAveragePool") { _ in GlobalAveragePoolOperator(channelsLast: true) }
        add("ai.deformrt", "ChannelsLastResize") { try ResizeOperator($0, upsample: false, channelsLast: true) }
        add("ai.deformrt", "ChannelsLastShape") { try ShapeOperator($0, channelsLast: true) }
        add("", "Flatten") { try FlattenOperator($0) }
        add("", "Gemm") { try GemmOperator($0) }
        add("", "MatMul") { _ in MatMulOperator() }
        add("", "Reshape", since: 5) { try ReshapeOperator($0) }
        add("", "Transpose") { try TransposeOperator($0) }
        add("", "Concat") { try ConcatOperator($0) }
        add("", "Split") { try SplitOperator($0) }
        add("", "Slice") { try SliceOperator($0) }
        add("", "Softmax") { try SoftmaxOperator($0) }
        add("", "ReduceMean") { try ReduceOperator($0, kind: .mean) }
        add("", "ReduceSum") { try ReduceOperator($0, kind: .sum) }
        add("", "ReduceMax") { try ReduceOperator($0, kind: .max) }
        add("", "ReduceMin") { try ReduceOperator($0, kind: .min) }
        add("", "Constant") { try ConstantOperator($0) }
        add("", "Shape") { try ShapeOperator($0) }
        add("", "Gather") { try GatherOperator($0) }
        add("", "Unsqueeze") { try SqueezeOperator($0, unsqueeze: true) }
        add("", "Squeeze") { try SqueezeOperator($0, unsqueeze: false) }
        add("", "Cast") { try CastOperator($0) }
        // Math, comparison, resize/pad and normalisation operators (MathOps, ComparisonOps,
        // ResizePadOps, DataOps, NormalizationOps).
        for (name, function) in UnaryMath.withoutAttributes { add("", name) { _ in UnaryOperator(.math(function)) } }
        add("", "HardSwish", since: 14) { _ in UnaryOperator(.math(.hardSwish)) }
        add("", "Mish", since: 18) { _ in UnaryOperator(.math(.mish)) }
        add("", "Gelu", since: 20) { UnaryOperator(.math(try UnaryMath.gelu($0))) }
        add("", "HardSigmoid") {
            UnaryOperator(.math(.hardSigmoid(alpha: try $0.attributes.float("alpha", default: 0.2),
                                             beta: try $0.attributes.float("beta", default: 0.5))))
        }
        add("", "Elu") { UnaryOperator(.math(.elu(alpha: try $0.attributes.float("alpha", default: 1)))) }
        add("", "Selu") {
            UnaryOperator(.math(.selu(alpha: try $0.attributes.float("alpha", default: 1.67326319217681884765625),
                                      gamma: try $0.attributes.float("gamma", default: 1.05070102214813232421875))))
        }
        add("", "Clip") { try ClipOperator($0) }
        add("", "PRelu") { _ in PReluOperator() }
        add("", "Pow") { _ in PowOperator() }
        add("", "Min") { _ in MinMaxOperator(isMax: false) }
        add("", "Max") { _ in MinMaxOperator(isMax: true) }
        add("", "Equal") { _ in ComparisonOperator(.equal) }
        add("", "Less") { _ in ComparisonOperator(.less) }
        add("", "Greater") { _ in ComparisonOperator(.greater) }
        add("", "LessOrEqual", since: 12) { _ in ComparisonOperator(.lessOrEqual) }
        add("", "GreaterOrEqual", since: 12) { _ in ComparisonOperator(.greaterOrEqual) }
        add("", "And") { _ in LogicalOperator(.and) }
        add("", "Or") { _ in LogicalOperator(.or) }
        add("", "Xor") { _ in LogicalOperator(.xor) }
        add("", "Not") { _ in NotOperator() }
        add("", "Where", since: 9) { _ in WhereOperator() }
        add("", "Pad") { try PadOperator($0) }
        add("", "Resize", since: 10) { try ResizeOperator($0, upsample: false) }
        add("", "Upsample", since: 7) { try ResizeOperator($0, upsample: true) }
        add("", "ConstantOfShape", since: 9) { try ConstantOfShapeOperator($0) }
        add("", "Expand", since: 8) { _ in ExpandOperator() }
        add("", "Range", since: 11) { _ in RangeOperator() }
        add("", "Tile", since: 6) { _ in TileOperator() }
        add("", "Size") { _ in SizeOperator() }
        add("", "Dropout") { DropoutOperator($0) }
        add("", "ArgMax") { try ArgExtremumOperator($0, isMax: true) }
        add("", "ArgMin") { try ArgExtremumOperator($0, isMax: false) }
        add("", "InstanceNormalization") { try InstanceNormOperator($0) }
        add("", "LayerNormalization", since: 17) { try LayerNormOperator($0) }
        add("", "DeformConv", since: 19) { try DeformConvOperator($0, spelling: .onnx) }
        for domain in ["mmcv", "mmdeploy"] {
            add(domain, "MMCVModulatedDeformConv2d") { try DeformConvOperator($0, spelling: .mmcvModulated) }
            add(domain, "MMCVDeformConv2d") { try DeformConvOperator($0, spelling: .mmcv) }
        }
        add("org.openvinotoolkit", "DeformableConv2D") { try DeformConvOperator($0, spelling: .openVINO) }
        // Convolutions with a fused epilogue, written by the graph passes (Passes/ConvEpilogueFusion).
        add(ConvNodeSlots.fusedDomain, ConvNodeSlots.fusedConv) { try ConvOperator($0) }
        add(ConvNodeSlots.fusedDomain, ConvNodeSlots.fusedDeformConv) {
            try DeformConvOperator($0, spelling: try DeformConvOperator.spelling(ofFused: $0))
        }
        // ConvTranspose family (Ops/ConvTransposeOps.swift): plain, and fused by the graph passes.
        add("", "ConvTranspose") { try ConvTransposeOperator($0) }
        add(ConvNodeSlots.fusedDomain, ConvNodeSlots.fusedConvTranspose) { try ConvTransposeOperator($0) }
        add(ConvNodeSlots.fusedDomain, MatMulBiasFusion.fusedMatMul) { _ in MatMulOperator(addsBias: true) }
        // Pixel and channel rearrangement (Ops/RearrangeOps.swift).
        add("", "DepthToSpace") { try SpaceDepthOperator($0, toSpace: true) }
        add("", "SpaceToDepth") { try SpaceDepthOperator($0, toSpace: false) }
        // Normalisation and pooling (Ops/ChannelNormalizationOps.swift; LpPool in PoolingOps).
        add("", "GroupNormalization", since: 18) { try GroupNormOperator($0) }
        add("", "LpNormalization") { try LpNormOperator($0) }
        add("", "LRN") { try LRNOperator($0) }
        add("", "MeanVarianceNormalization", since: 9) { try MeanVarianceNormOperator($0) }
        add("", "GlobalMaxPool") { _ in GlobalMaxPoolOperator() }
        add("", "LpPool", since: 2) { try PoolOperator($0, kind: .lp) }
        // Conformance family (issue 9): elementwise math, reductions, variadic Sum / Mean, index
        // gathers and scatters, CumSum, OneHot, Trilu, Einsum (ElementwiseExtraOps, ReduceOps, IndexOps,
        // EinsumOps).
        add("", "Round", since: 11) { _ in UnaryOperator(.math(.round)) }
        add("", "Sign", since: 9) { _ in UnaryOperator(.math(.sign)) }
        add("", "Sin", since: 7) { _ in UnaryOperator(.math(.sin)) }
        add("", "Cos", since: 7) { _ in UnaryOperator(.math(.cos)) }
        add("", "Softsign") { _ in UnaryOperator(.math(.softsign)) }
        add("", "Celu", since: 12) { UnaryOperator(.math(.celu(alpha: try $0.attributes.float("alpha", default: 1)))) }
        add("", "ThresholdedRelu", since: 10) { UnaryOperator(.math(.thresholdedRelu(alpha: try $0.attributes.float("alpha", default: 1)))) }
        add("", "Shrink", since: 9) {
            UnaryOperator(.math(.shrink(lambd: try $0.attributes.float("lambd", default: 0.5), bias: try $0.attributes.float("bias", default: 0))))
        }
        add("", "Swish", since: 24) { UnaryOperator(.math(.swish(alpha: try $0.attributes.float("alpha", default: 1)))) }
        add("", "IsNaN", since: 9) { _ in FloatClassOperator(.nan) }
        add("", "IsInf", since: 10) { try FloatClassOperator.isInf($0) }
        add("", "Mod", since: 10) { try ModOperator($0) }
        add("", "CastLike", since: 15) { _ in CastLikeOperator() }
        add("", "LogSoftmax") { try SoftmaxOperator($0, kind: .logSoftmax) }
        add("", "Hardmax") { try SoftmaxOperator($0, kind: .hardmax) }
        add("", "ReduceL1") { try ReduceOperator($0, kind: .l1) }
        add("", "ReduceL2") { try ReduceOperator($0, kind: .l2) }
        add("", "ReduceLogSum") { try ReduceOperator($0, kind: .logSum) }
        add("", "ReduceLogSumExp") { try ReduceOperator($0, kind: .logSumExp) }
        add("", "ReduceProd") { try ReduceOperator($0, kind: .prod) }
        add("", "ReduceSumSquare") { try ReduceOperator($0, kind: .sumSquare) }
        add("", "Sum") { _ in SumMeanOperator(isMean: false) }
        add("", "Mean") { _ in SumMeanOperator(isMean: true) }
        add("", "GatherElements", since: 11) { try GatherElementsOperator($0) }
        add("", "GatherND", since: 11) { try GatherNDOperator($0) }
        add("", "ScatterElements", since: 11) { try ScatterElementsOperator($0) }
        add("", "ScatterND", since: 11) { try ScatterNDOperator($0) }
        add("", "CumSum", since: 11) { try CumSumOperator($0) }
        add("", "OneHot", since: 9) { try OneHotOperator($0) }
        add("", "Trilu", since: 14) { try TriluOperator($0) }
        add("", "Einsum", since: 12) { try EinsumOperator($0) }
        add("", "RoiAlign", since: 10) { try RoiAlignOperator($0) }
        add("", "MaxRoiPool") { try MaxRoiPoolOperator($0) }
        for domain in ["mmcv", "mmdeploy"] {
            add(domain, "MMCVDeformRoIPool") { try DeformRoIPoolOperator($0, spelling: .mmcv) }
            add(domain, "MMCVModulatedDeformRoIPool") { try DeformRoIPoolOperator($0, spelling: .mmcvModulated) }
        }
        add("ai.deformrt", "DeformRoIPool") { try DeformRoIPoolOperator($0, spelling: .deformRT) }
        add("ai.deformrt", "DeformablePSROIPooling") { try DeformablePSROIPoolOperator($0, spelling: .deformRT) }
        add("org.openvinotoolkit", "DeformablePSROIPooling") { try DeformablePSROIPoolOperator($0, spelling: .openVINO) }
        // Deformable attention family (issue 10; Ops/DeformableAttentionOps.swift).
        add("", "GridSample", since: 16) { try GridSampleOperator($0) }
        add("mmdeploy", "TRTDCNv3") { try DCNv3Operator($0) }
        add("ai.deformrt", "DCNv3") { try DCNv3Operator($0) }
        add("mmdeploy", "MMCVMultiScaleDeformableAttention") { try MultiScaleDeformableAttentionOperator($0) }
        add("ai.deformrt", "MultiScaleDeformableAttention") { try MultiScaleDeformableAttentionOperator($0) }
        // Recurrent layers (RecurrentOps): RNN, GRU, LSTM from opset 7 (opset 1's output_sequence form is refused).
        add("", "RNN", since: 7) { try RecurrentOperator($0, kind: .rnn) }
        add("", "GRU", since: 7) { try RecurrentOperator($0, kind: .gru) }
        add("", "LSTM", since: 7) { try RecurrentOperator($0, kind: .lstm) }
        // Quantized operators (QuantizationOps), as onnxruntime.quantization writes them.
        add("", "QuantizeLinear", since: 10) { try LinearQuantizeOperator($0, dequantize: false) }
        add("", "DequantizeLinear", since: 10) { try LinearQuantizeOperator($0, dequantize: true) }
        add("", "DynamicQuantizeLinear", since: 11) { _ in DynamicQuantizeLinearOperator() }
        add("", "MatMulInteger", since: 10) { _ in QuantizedMatMulOperator(requantize: false) }
        add("", "QLinearMatMul", since: 10) { _ in QuantizedMatMulOperator(requantize: true) }
        add("", "ConvInteger", since: 10) { try QuantizedConvOperator($0, requantize: false) }
        add("", "QLinearConv", since: 10) { try QuantizedConvOperator($0, requantize: true) }
        // Detection post-processing and data-dependent shapes (SelectionOps; NonZero, Compress
        // and NonMaxSuppression run with runDynamic, ExecutionPlan plans what follows them).
        add("", "TopK") { try TopKOperator($0) }
        add("", "NonZero", since: 9) { _ in NonZeroOperator() }
        add("", "Compress", since: 9) { try CompressOperator($0) }
        add("", "NonMaxSuppression", since: 10) { try NonMaxSuppressionOperator($0) }
        // Control flow (ControlFlowOps): subgraphs run as sessions of their own.
        add("", "If") { try IfOperator($0) }
        add("", "Loop") { try LoopOperator($0) }
        return table
    }()

    /// The (domain, op_type) pairs supported, for documentation and `deformrt info`.
    static var supported: [(domain: String, opType: String, sinceOpset: Int)] {
        entries.map { ($0.key.domain, $0.key.opType, $0.value.sinceOpset) }.sorted { ($0.domain, $0.opType) < ($1.domain, $1.opType) }
    }

    /// One operator per node in `order`; every unsupported node is listed in a single error.
    static func makeOperators(_ graph: Graph, order: [Int], custom: [CustomOperatorDefinition] = []) throws -> [Operator] {
        try checkSupported(graph, custom: custom)
        return try order.map { index in
            let node = graph.nodes[index]
            if let definition = customDefinition(for: node, in: graph, custom) {
                return CustomOperator(definition, node: node)
            }
            return try makeOperator(for: node, in: graph)
        }
    }

    /// Whether DeformRT runs (domain, op_type) itself (at some opset).
    static func isBuiltIn(domain: String, opType: String) -> Bool {
        entries[OperatorKey(domain: Importer.normalizedDomain(domain), opType: opType)] != nil
    }

    /// The caller's definition matching a node (domain, op_type, opset in range), if any.
    static func customDefinition(for node: Node, in graph: Graph, _ custom: [CustomOperatorDefinition]) -> CustomOperatorDefinition? {
        if custom.isEmpty || node.domain.isEmpty { return nil }
        let opset = graph.opset(for: node.domain) ?? 1
        return custom.first { $0.domain == node.domain && $0.opType == node.opType && $0.opsets.contains(opset) }
    }

    /// Throws one error listing every (domain, op_type, opset) of the graph DeformRT does not run.
    static func checkSupported(_ graph: Graph, custom: [CustomOperatorDefinition] = []) throws {
        var unsupported: [String] = []
        var seen = Set<String>()
        for node in graph.nodes {
            if customDefinition(for: node, in: graph, custom) != nil { continue }
            // Custom domains are often not declared in opset_import by exporters; version 1 then.
            let opset = graph.opset(for: node.domain) ?? (node.domain.isEmpty ? 0 : 1)
            let entry = entries[OperatorKey(domain: node.domain, opType: node.opType)]
            if entry == nil || opset < entry!.sinceOpset || (node.domain.isEmpty && graph.opset(for: "") == nil) {
                let text = "(\(node.domain.isEmpty ? "ai.onnx" : node.domain), \(node.opType), opset \(opset))"
                if seen.insert(text).inserted { unsupported.append(text) }
            }
        }
        if !unsupported.isEmpty {
            throw DeformRTError.unsupported("unsupported operators: " + unsupported.joined(separator: ", "))
        }
    }

    /// The operator of one node (the node's support is checked by makeOperators first).
    static func makeOperator(for node: Node, in graph: Graph) throws -> Operator {
        guard let entry = entries[OperatorKey(domain: node.domain, opType: node.opType)] else {
            throw DeformRTError.unsupported("unsupported operator (\(node.domain.isEmpty ? "ai.onnx" : node.domain), \(node.opType))")
        }
        return try entry.make(OperatorSpec(node: node, opset: graph.opset(for: node.domain) ?? 1))
    }
}
