import DeformRTKernels

/// Sampling operators beyond DCNv2 (issue 10): ONNX GridSample, InternImage's DCNv3 and the
/// multi-scale deformable attention of Deformable DETR. Each reads its attributes once, checks
/// shapes when planning and calls one kernel in DeformRTKernels (GridSample.swift, DCNv3.swift,
/// MultiScaleDeformableAttention.swift), where the reference each kernel matches is written.
///
///   ai.onnx GridSample-16/20/22                   X [N, C, H, W], grid [N, Ho, Wo, 2]
///                                                 or X [N, C, D, H, W], grid [N, Do, Ho, Wo, 3]
///   mmdeploy TRTDCNv3, ai.deformrt DCNv3          input [N, H, W, G*Gc], offset [N, Ho, Wo, G*P*2],
///                                                 mask [N, Ho, Wo, G*P]
///   mmdeploy MMCVMultiScaleDeformableAttention,   value [bs, keys, heads, dim], spatial_shapes [L, 2],
///   ai.deformrt MultiScaleDeformableAttention     level_start_index [L], sampling_locations
///                                                 [bs, q, heads, L, P, 2], attention_weights [bs, q, heads, L, P]

// MARK: - ai.onnx GridSample

/// ONNX GridSample on 4-D inputs. mode: bilinear / linear, nearest, bicubic / cubic (both
/// spellings in every opset; the default is bilinear before opset 20 and linear from 20, the
/// same interpolation); padding_mode zeros, border, reflection; align_corners 0 or 1.
/// 5-D inputs (X [N, C, D, H, W], grid [N, Do, Ho, Wo, 3]; opset 20 made GridSample N-D) take
/// linear (trilinear) and nearest; cubic is 4-D only in the specification and is refused.
final class GridSampleOperator: Operator {
    let mode: GridSampleMode
    let padding: GridSamplePadding
    let alignCorners: Bool

    init(_ spec: OperatorSpec) throws {
        let a = spec.attributes
        let modeName = try a.string("mode") ?? (spec.opset >= 20 ? "linear" : "bilinear")
        switch modeName {
        case "bilinear", "linear": mode = .linear
        case "nearest": mode = .nearest
        case "bicubic", "cubic": mode = .cubic
        default:
            throw DeformRTError.unsupported(
                "node \(spec.node.label) (GridSample): mode '\(modeName)' is not supported (linear / bilinear, nearest, cubic / bicubic)")
        }
        let paddingName = try a.string("padding_mode") ?? "zeros"
        switch paddingName {
        case "zeros": padding = .zeros
        case "border": padding = .border
        case "reflection": padding = .reflection
        default:
            throw DeformRTError.unsupported(
                "node \(spec.node.label) (GridSample): padding_mode '\(paddingName)' is not supported (zeros, border, reflection)")
        }
        let align = try a.int("align_corners", default: 0)
        if align != 0 && align != 1 { throw spec.fail("align_corners must be 0 or 1, got \(align)") }
        alignCorners = align == 1
    }

    private func params(_ x: [Int], _ grid: [Int]) -> GridSampleParams {
        if x.count == 5 {
            return GridSampleParams(batch: x[0], channels: x[1], inDepth: x[2], inHeight: x[3], inWidth: x[4],
                                    outDepth: grid[1], outHeight: grid[2], outWidth: grid[3], mode: mode,
                                    padding: padding, alignCorners: alignCorners)
        }
        return GridSampleParams(batch: x[0], channels: x[1], inHeight: x[2], inWidth: x[3], outHeight: grid[1],
                                outWidth: grid[2], mode: mode, padding: padding, alignCorners: alignCorners)
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let x = try PlanCheck.input(inputs, 0, "X")
        let grid = try PlanCheck.input(inputs, 1, "grid")
        try PlanCheck.float(x, "X")
        try PlanCheck.float(grid, "grid")
        let rank = x.shape.count
        if rank != 4 && rank != 5 {
            if rank >= 3 && grid.shape.count == rank {
                throw DeformRTError.unsupported("\(rank - 2)-D GridSample (X shape \(x.shape)) is not supported; only 4-D X [N, C, H, W] and 5-D X [N, C, D, H, W]")
            }
            throw DeformRTError.invalidModel("X must have rank 4 [N, C, H, W] or 5 [N, C, D, H, W], got shape \(x.shape)")
        }
        if grid.shape.count != rank || grid.shape[rank - 1] != rank - 2 || grid.shape[0] != x.shape[0] {
            let expected = rank == 4 ? "H_out, W_out, 2" : "D_out, H_out, W_out, 3"
            throw DeformRTError.invalidModel("grid shape \(grid.shape) must be [\(x.shape[0]), \(expected)] for X shape \(x.shape)")
        }
        if rank == 5 && mode == .cubic {
            throw DeformRTError.unsupported("mode cubic on 5-D X \(x.shape) is not supported: the ONNX specification defines cubic for 4-D X only (5-D takes linear or nearest)")
        }
        let p = params(x.shape, grid.shape)
        if let reason = p.invalidReason { throw DeformRTError.invalidModel(reason) }
        _ = try Limits.elementCount([x.shape[0], p.inPixels + 1, x.shape[1]], what: "GridSample channels-last copy of X")
        return [PlanValue(ValueType(.float, [x.shape[0], x.shape[1]] + grid.shape[1..<(rank - 1)]))]
    }

    func workspaceByteCount(_ inputs: [ValueType?], _ outputs: [ValueType], threads: Int) -> Int {
        GridSample.workspaceByteCount(params(inputs[0]!.shape, inputs[1]!.shape), threads: threads)
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let x = inputs[0]!, grid = inputs[1]!
        GridSample.run(params(x.shape, grid.shape), input: x.floats, grid: grid.floats, output: outputs[0].floats,
                       workspace: context.workspace, parallel: context.parallel)
    }
}

// MARK: - DCNv3

/// InternImage's DCNv3 in two spellings sharing the kernel in DeformRTKernels/DCNv3.swift:
///   mmdeploy TRTDCNv3 (as InternImage's DCNv3Function.symbolic writes it), ai.deformrt DCNv3.
/// Inputs input [N, H, W, group * group_channels] (channels-last), offset [N, Ho, Wo, group * P * 2],
/// mask [N, Ho, Wo, group * P] (P = kernel_h * kernel_w - remove_center; already normalised).
/// Attributes: kernel_h, kernel_w, group, group_channels (required); stride_h, stride_w,
/// dilation_h, dilation_w (default 1); pad_h, pad_w (default 0); offset_scale (default 1.0);
/// remove_center (0 or 1, default 0); im2col_step ignored.
final class DCNv3Operator: Operator {
    let label: String
    let kernelHeight, kernelWidth, strideHeight, strideWidth, padHeight, padWidth: Int
    let dilationHeight, dilationWidth, group, groupChannels: Int
    let offsetScale: Float
    let removeCenter: Bool

    init(_ spec: OperatorSpec) throws {
        let a = spec.attributes
        label = "node \(spec.node.label) (\(spec.node.opType))"
        func window(_ name: String, default fallback: Int?, minimum: Int) throws -> Int {
            guard let value = try a.int(name) ?? fallback else { throw spec.fail("missing attribute \(name)") }
            if value < minimum || value > Limits.maxWindowValue {
                throw spec.fail("\(name) must be in \(minimum)...\(Limits.maxWindowValue), got \(value)")
            }
            return value
        }
        kernelHeight = try window("kernel_h", default: nil, minimum: 1)
        kernelWidth = try window("kernel_w", default: nil, minimum: 1)
        strideHeight = try window("stride_h", default: 1, minimum: 1)
        strideWidth = try window("stride_w", default: 1, minimum: 1)
        padHeight = try window("pad_h", default: 0, minimum: 0)
        padWidth = try window("pad_w", default: 0, minimum: 0)
        dilationHeight = try window("dilation_h", default: 1, minimum: 1)
        dilationWidth = try window("dilation_w", default: 1, minimum: 1)
        group = try window("group", default: nil, minimum: 1)
        groupChannels = try window("group_channels", default: nil, minimum: 1)
        offsetScale = try a.float("offset_scale", default: 1)
        if !offsetScale.isFinite { throw spec.fail("offset_scale must be finite, got \(offsetScale)") }
        let remove = try a.int("remove_center", default: 0)
        if remove != 0 && remove != 1 { throw spec.fail("remove_center must be 0 or 1, got \(remove)") }
        removeCenter = remove == 1
        if removeCenter && kernelHeight * kernelWidth == 1 {
            throw spec.fail("remove_center = 1 leaves no sampling point in a 1 x 1 kernel")
        }
    }

    private func params(_ x: [Int]) -> DCNv3Params {
        DCNv3Params(batch: x[0], height: x[1], width: x[2], kernelHeight: kernelHeight, kernelWidth: kernelWidth,
                    strideHeight: strideHeight, strideWidth: strideWidth, padHeight: padHeight, padWidth: padWidth,
                    dilationHeight: dilationHeight, dilationWidth: dilationWidth, group: group,
                    groupChannels: groupChannels, offsetScale: offsetScale, removeCenter: removeCenter)
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let x = try PlanCheck.input(inputs, 0, "input")
        let offset = try PlanCheck.input(inputs, 1, "offset")
        let mask = try PlanCheck.input(inputs, 2, "mask")
        for (value, name) in [(x, "input"), (offset, "offset"), (mask, "mask")] {
            try PlanCheck.float(value, name)
            try PlanCheck.rank(value, 4, name)
        }
        let channels = try Limits.product(group, groupChannels, what: "group * group_channels")
        if x.shape[3] != channels {
            throw DeformRTError.invalidModel("input has \(x.shape[3]) channels (shape \(x.shape), channels-last); group \(group) * group_channels \(groupChannels) = \(channels)")
        }
        let p = params(x.shape)
        if let reason = p.invalidReason { throw DeformRTError.invalidModel(reason) }
        let points = p.points
        let offsetShape = [x.shape[0], p.outHeight, p.outWidth, try Limits.product(group, points * 2, what: "offset channels")]
        if offset.shape != offsetShape {
            throw DeformRTError.invalidModel("offset shape \(offset.shape) must be \(offsetShape) (N, H_out, W_out, group * \(points) points * 2)")
        }
        let maskShape = [x.shape[0], p.outHeight, p.outWidth, group * points]
        if mask.shape != maskShape {
            throw DeformRTError.invalidModel("mask shape \(mask.shape) must be \(maskShape) (N, H_out, W_out, group * \(points) points)")
        }
        return [PlanValue(ValueType(.float, [x.shape[0], p.outHeight, p.outWidth, channels]))]
    }

    func workspaceByteCount(_ inputs: [ValueType?], _ outputs: [ValueType], threads: Int) -> Int {
        DCNv3.workspaceByteCount(params(inputs[0]!.shape), threads: threads)
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        DCNv3.run(params(inputs[0]!.shape), input: inputs[0]!.floats, offset: inputs[1]!.floats, mask: inputs[2]!.floats,
                  output: outputs[0].floats, workspace: context.workspace, parallel: context.parallel)
    }
}

// MARK: - multi-scale deformable attention

/// mmcv's multi-scale deformable attention in two spellings sharing the kernel in
/// DeformRTKernels/MultiScaleDeformableAttention.swift: mmdeploy MMCVMultiScaleDeformableAttention
/// and ai.deformrt MultiScaleDeformableAttention. Inputs value [bs, keys, heads, dim],
/// spatial_shapes [L, 2] (H, W) and level_start_index [L] (int64 or int32), sampling_locations
/// [bs, q, heads, L, P, 2] ((x, y) in [0, 1]), attention_weights [bs, q, heads, L, P]; output
/// [bs, q, heads * dim]. Attribute im2col_step is ignored. Level l is read from key
/// level_start_index[l], as mmcv's CUDA kernel does; the levels must tile value's keys in order
/// (level_start_index[l] = sum of H * W before l, and the sum of all H * W = keys), checked when
/// the plan is made if the two inputs are constants and on every run otherwise.
///
/// Written by the decomposition pass (Passes/MultiScaleDeformableAttentionDecomposition.swift),
/// the node also carries `expected_value_shape` [bs, keys, heads, dim] and
/// `expected_sampling_locations_shape`: the shapes the replaced decomposition's reshapes were
/// checked for. sampling_locations must have exactly that shape; value may have any trailing dims
/// holding heads * dim (the decomposition flattens them and splits heads by its reshape), read as
/// [bs, keys, heads, dim]. Other shapes are refused by name.
final class MultiScaleDeformableAttentionOperator: Operator {
    let label: String
    let expectedValueShape: [Int]?
    let expectedLocationsShape: [Int]?
    let fusedNodes: Int

    init(_ spec: OperatorSpec) throws {
        label = "node \(spec.node.label) (\(spec.node.opType))"
        expectedValueShape = try spec.attributes.ints("expected_value_shape")
        expectedLocationsShape = try spec.attributes.ints("expected_sampling_locations_shape")
        if case .strings(let names)? = spec.node.attributes["fused_nodes"] { fusedNodes = names.count } else { fusedNodes = 0 }
    }

    private static func integers(_ value: PlanValue, _ name: String) throws {
        if value.elementType != .int64 && value.elementType != .int32 {
            throw DeformRTError.invalidModel("\(name) must be int64 or int32, got \(value.elementType.onnxName)")
        }
    }

    /// Why the levels do not fit value's keys (nil: they do).
    static func levelError(keys: Int, levels: Int, shape: (Int) -> (Int64, Int64), start: (Int) -> Int64) -> String? {
        var expected: Int64 = 0
        for l in 0..<levels {
            let (h, w) = shape(l)
            if h < 0 || w < 0 || h >= 1 << 22 || w >= 1 << 22 {
                return "spatial_shapes[\(l)] = (\(h), \(w)) is out of range (each side in 0..<2^22)"
            }
            let s = start(l)
            if s != expected {
                return "level_start_index[\(l)] = \(s) disagrees with spatial_shapes (level \(l) starts at key \(expected))"
            }
            expected += h * w
            if expected > Int64(keys) {
                return "spatial_shapes put level \(l) at keys \(s)..<\(expected), outside value's \(keys) keys"
            }
        }
        if expected != Int64(keys) {
            return "spatial_shapes cover \(expected) keys but value has \(keys) (sum of H * W must equal value's dim 1)"
        }
        return nil
    }

    private static func reader(_ t: Tensor) -> (Int) -> Int64 {
        if t.elementType == .int64 {
            let p = t.pointer(Int64.self)
            return { p[$0] }
        }
        let p = t.pointer(Int32.self)
        return { Int64(p[$0]) }
    }

    /// value's shape as the kernel reads it: [bs, keys, heads, dim] from the decomposition's
    /// reshapes when the pass wrote this node (checked by checkExpectedShapes), else its own.
    private func valueShape(_ shape: [Int]) -> [Int] { expectedValueShape ?? shape }

    private func checkExpectedShapes(_ value: [Int], _ locations: [Int]) throws {
        let replaced = "the grid_sample decomposition this node replaces (\(fusedNodes) nodes) was checked for; run the model with graph optimisation level basic to run the decomposition as written"
        if let expected = expectedValueShape {
            guard expected.count == 4, expected.allSatisfy({ $0 >= 0 }) else {
                throw DeformRTError.invalidModel("expected_value_shape \(expected) must be 4 dims >= 0 (bs, keys, heads, dim)")
            }
            let (headsDim, overflow) = expected[2].multipliedReportingOverflow(by: expected[3])
            guard !overflow, value.count >= 2, Array(value.prefix(2)) == Array(expected.prefix(2)),
                  let trailing = try? Limits.elementCount(Array(value.dropFirst(2)), what: "value"), trailing == headsDim else {
                throw DeformRTError.invalidModel("value shape \(value) is not \(Array(expected.prefix(2))) followed by dims holding \(expected[2]) x \(expected[3]) (heads x dim) as \(replaced)")
            }
        }
        if let expected = expectedLocationsShape, locations != expected {
            throw DeformRTError.invalidModel("sampling_locations shape \(locations) is not the \(expected) (bs, queries, heads, levels, points, 2) \(replaced)")
        }
    }

    private func params(_ value: [Int], _ locations: [Int]) -> MultiScaleDeformableAttentionParams {
        MultiScaleDeformableAttentionParams(batch: value[0], keys: value[1], heads: value[2], dim: value[3],
                                            queries: locations[1], levels: locations[3], points: locations[4])
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let value = try PlanCheck.input(inputs, 0, "value")
        let shapes = try PlanCheck.input(inputs, 1, "spatial_shapes")
        let starts = try PlanCheck.input(inputs, 2, "level_start_index")
        let locations = try PlanCheck.input(inputs, 3, "sampling_locations")
        let weights = try PlanCheck.input(inputs, 4, "attention_weights")
        try PlanCheck.float(value, "value")
        try checkExpectedShapes(value.shape, locations.shape)
        let v = valueShape(value.shape)
        if v.count != 4 { throw DeformRTError.invalidModel("value must have rank 4, got shape \(value.shape)") }
        try PlanCheck.float(locations, "sampling_locations")
        try PlanCheck.float(weights, "attention_weights")
        try Self.integers(shapes, "spatial_shapes")
        try Self.integers(starts, "level_start_index")
        if locations.shape.count != 6 || locations.shape[0] != v[0] || locations.shape[2] != v[2] || locations.shape[5] != 2 {
            throw DeformRTError.invalidModel("sampling_locations shape \(locations.shape) must be [\(v[0]), queries, \(v[2]), levels, points, 2] for value shape \(v) (bs, keys, heads, dim)")
        }
        let levels = locations.shape[3]
        if shapes.shape != [levels, 2] {
            throw DeformRTError.invalidModel("spatial_shapes shape \(shapes.shape) must be [\(levels), 2] (levels of sampling_locations, (H, W))")
        }
        if starts.shape != [levels] {
            throw DeformRTError.invalidModel("level_start_index shape \(starts.shape) must be [\(levels)]")
        }
        if weights.shape != Array(locations.shape.dropLast()) {
            throw DeformRTError.invalidModel("attention_weights shape \(weights.shape) must be \(Array(locations.shape.dropLast())) (sampling_locations without its last dim)")
        }
        if let reason = params(v, locations.shape).invalidReason { throw DeformRTError.invalidModel(reason) }
        if let s = shapes.constant, let i = starts.constant {
            let sr = Self.reader(s), ir = Self.reader(i)
            if let reason = Self.levelError(keys: v[1], levels: levels, shape: { (sr(2 * $0), sr(2 * $0 + 1)) }, start: ir) {
                throw DeformRTError.invalidModel(reason)
            }
        }
        let channels = try Limits.product(v[2], v[3], what: "heads * dim")
        return [PlanValue(ValueType(.float, [v[0], locations.shape[1], channels]))]
    }

    func workspaceByteCount(_ inputs: [ValueType?], _ outputs: [ValueType], threads: Int) -> Int {
        MultiScaleDeformableAttention.workspaceByteCount(params(valueShape(inputs[0]!.shape), inputs[3]!.shape), threads: threads)
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let value = inputs[0]!, locations = inputs[3]!
        let p = params(valueShape(value.shape), locations.shape)
        let sr = Self.reader(inputs[1]!), ir = Self.reader(inputs[2]!)
        if let reason = Self.levelError(keys: p.keys, levels: p.levels, shape: { (sr(2 * $0), sr(2 * $0 + 1)) }, start: ir) {
            throw DeformRTError.invalidArgument("\(label): \(reason)")
        }
        MultiScaleDeformableAttention.run(
            p, value: value.floats, shapes: { (Int(sr(2 * $0)), Int(sr(2 * $0 + 1))) }, starts: { Int(ir($0)) },
            locations: locations.floats, weights: inputs[4]!.floats, output: outputs[0].floats,
            workspace: context.workspace, parallel: context.parallel)
    }
}
