import DeformRTKernels

/// Sampling operators beyond DCNv2 (issue 10): ONNX GridSample, InternImage's DCNv3 and the
/// multi-scale deformable attention of Deformable DETR. Each reads its attributes once, checks
/// shapes when planning and calls one kernel in DeformRTKernels (GridSample.swift, DCNv3.swift,
/// MultiScaleDeformableAttention.swift), where the reference each kernel matches is written.
///
///   ai.onnx GridSample-16/20/22                   X [N, C, H, W], grid [N, Ho, Wo, 2]
///   mmdeploy TRTDCNv3, ai.deformrt DCNv3          input [N, H, W, G*Gc], offset [N, Ho, Wo, G*P*2],
///                                                 mask [N, Ho, Wo, G*P]
///   mmdeploy MMCVMultiScaleDeformableAttention,   value [bs, keys, heads, dim], spatial_shapes [L, 2],
///   ai.deformrt MultiScaleDeformableAttention     level_start_index [L], sampling_locations
///                                                 [bs, q, heads, L, P, 2], attention_weights [bs, q, heads, L, P]

// MARK: - ai.onnx GridSample

/// ONNX GridSample on 4-D inputs. mode: bilinear / linear, nearest, bicubic / cubic (both
/// spellings in every opset; the default is bilinear before opset 20 and linear from 20, the
/// same interpolation); padding_mode zeros, border, reflection; align_corners 0 or 1.
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
        GridSampleParams(batch: x[0], channels: x[1], inHeight: x[2], inWidth: x[3], outHeight: grid[1],
                         outWidth: grid[2], mode: mode, padding: padding, alignCorners: alignCorners)
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let x = try PlanCheck.input(inputs, 0, "X")
        let grid = try PlanCheck.input(inputs, 1, "grid")
        try PlanCheck.float(x, "X")
        try PlanCheck.float(grid, "grid")
        if x.shape.count != 4 {
            if x.shape.count >= 3 && grid.shape.count == x.shape.count {
                throw DeformRTError.unsupported("\(x.shape.count - 2)-D GridSample (X shape \(x.shape)) is not supported; only 4-D X [N, C, H, W]")
            }
            throw DeformRTError.invalidModel("X must have rank 4 [N, C, H, W], got shape \(x.shape)")
        }
        if grid.shape.count != 4 || grid.shape[3] != 2 || grid.shape[0] != x.shape[0] {
            throw DeformRTError.invalidModel("grid shape \(grid.shape) must be [\(x.shape[0]), H_out, W_out, 2] for X shape \(x.shape)")
        }
        let p = params(x.shape, grid.shape)
        if let reason = p.invalidReason { throw DeformRTError.invalidModel(reason) }
        _ = try Limits.elementCount([x.shape[0], x.shape[2] * x.shape[3] + 1, x.shape[1]], what: "GridSample channels-last copy of X")
        return [PlanValue(ValueType(.float, [x.shape[0], x.shape[1], grid.shape[1], grid.shape[2]]))]
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
