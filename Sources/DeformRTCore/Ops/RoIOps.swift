import DeformRTKernels
import Glibc

/// The RoI pooling family (issue 4). Each operator reads its spelling's attributes once, checks
/// shapes when planning, and calls one kernel from DeformRTKernels/RoI*.swift; which reference
/// each kernel matches, and its defined results for bad RoIs (zeros), is written there.
///
///   ai.onnx RoiAlign-10/16/22               X, rois [R, 4], batch_indices [R] int64
///   ai.onnx MaxRoiPool-1/22                 X, rois [R, 5]
///   mmcv|mmdeploy MMCVDeformRoIPool         input, rois [R, 5], [offset [R, 2, ph, pw]]
///   mmcv|mmdeploy MMCVModulatedDeformRoIPool input, rois, offset, mask [R, 1, ph, pw]
///   ai.deformrt DeformRoIPool               input, rois, [offset], [mask]
///   ai.deformrt DeformablePSROIPooling      data, rois [R, 5], [trans [R, 2 * classes, part, part]]
///   org.openvinotoolkit DeformablePSROIPooling  data, rois, [offsets] (OpenVINO's attribute names)

private extension RunContext {
    /// The workspace as the buffer the RoI kernels take.
    var workspaceBuffer: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: workspace, count: workspaceByteCount)
    }
}

/// Shape checks shared by the RoI operators.
private enum RoICheck {
    /// A float NCHW feature map; returns its shape.
    static func featureMap(_ inputs: [PlanValue?], _ index: Int, _ name: String) throws -> [Int] {
        let value = try PlanCheck.input(inputs, index, name)
        try PlanCheck.float(value, name)
        try PlanCheck.rank(value, 4, name)
        return value.shape
    }

    /// A float [R, columns] RoI list; returns R.
    static func rois(_ inputs: [PlanValue?], _ index: Int, columns: Int, layout: String) throws -> Int {
        let value = try PlanCheck.input(inputs, index, "rois")
        try PlanCheck.float(value, "rois")
        if value.shape.count != 2 || value.shape[1] != columns {
            throw DeformRTError.invalidModel("rois must have shape [num_rois, \(columns)] (\(layout)), got \(value.shape)")
        }
        return value.shape[0]
    }

    /// A float per-RoI tensor that must have exactly `expected` shape.
    static func shape(_ value: PlanValue, _ name: String, _ expected: [Int], meaning: String) throws {
        try PlanCheck.float(value, name)
        if value.shape != expected {
            throw DeformRTError.invalidModel("\(name) shape \(value.shape) must be \(expected) (\(meaning))")
        }
    }

    /// The tensor at `index` unless it is absent or empty.
    static func present(_ inputs: [Tensor?], _ index: Int?) -> Tensor? {
        guard let index, index < inputs.count, let tensor = inputs[index], tensor.elementCount > 0 else { return nil }
        return tensor
    }

    /// An attribute that must be a positive int, at most `Limits.maxWindowValue` so that size
    /// arithmetic on it cannot overflow.
    static func positive(_ value: Int, _ name: String, _ spec: OperatorSpec) throws -> Int {
        if value < 1 || value > Limits.maxWindowValue {
            throw spec.fail("\(name) must be in 1...\(Limits.maxWindowValue), got \(value)")
        }
        return value
    }

    static func finite(_ value: Float, _ name: String, _ spec: OperatorSpec) throws -> Float {
        if !value.isFinite { throw spec.fail("\(name) must be finite, got \(value)") }
        return value
    }
}

// MARK: - ai.onnx RoiAlign

/// ONNX RoiAlign 10, 16 and 22. coordinate_transformation_mode defaults to half_pixel from opset
/// 16 on and to output_half_pixel (the only behaviour opset 10 has) before; an explicit attribute
/// wins in every opset, as in onnxruntime.
///
/// A batch index outside the batch is an error at run time naming the RoI (onnxruntime errors
/// too); the kernel would output zeros for it.
final class RoiAlignOperator: Operator {
    let label: String
    let mode: RoiAlignMode
    let coordinates: RoiAlignCoordinates
    let outputHeight: Int
    let outputWidth: Int
    let samplingRatio: Int
    let spatialScale: Float

    init(_ spec: OperatorSpec) throws {
        let a = spec.attributes
        label = "node \(spec.node.label) (\(spec.node.opType))"
        switch try a.string("mode") ?? "avg" {
        case "avg": mode = .average
        case "max": mode = .max
        case let other: throw spec.fail("mode must be 'avg' or 'max', got '\(other)'")
        }
        switch try a.string("coordinate_transformation_mode") ?? (spec.opset >= 16 ? "half_pixel" : "output_half_pixel") {
        case "half_pixel": coordinates = .halfPixel
        case "output_half_pixel": coordinates = .outputHalfPixel
        case let other: throw spec.fail("coordinate_transformation_mode must be 'half_pixel' or 'output_half_pixel', got '\(other)'")
        }
        outputHeight = try RoICheck.positive(a.int("output_height", default: 1), "output_height", spec)
        outputWidth = try RoICheck.positive(a.int("output_width", default: 1), "output_width", spec)
        samplingRatio = try a.int("sampling_ratio", default: 0)
        if samplingRatio < 0 || samplingRatio > RoILimits.samplingRatio {
            throw spec.fail("sampling_ratio must be in 0...\(RoILimits.samplingRatio) (0 = adaptive), got \(samplingRatio)")
        }
        spatialScale = try RoICheck.finite(a.float("spatial_scale", default: 1), "spatial_scale", spec)
    }

    private func params(_ x: [Int], roiCount: Int) -> RoiAlignParams {
        RoiAlignParams(batch: x[0], channels: x[1], height: x[2], width: x[3], roiCount: roiCount,
                       outputHeight: outputHeight, outputWidth: outputWidth, samplingRatio: samplingRatio,
                       spatialScale: spatialScale, mode: mode, coordinates: coordinates)
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let x = try RoICheck.featureMap(inputs, 0, "X")
        let roiCount = try RoICheck.rois(inputs, 1, columns: 4, layout: "x1, y1, x2, y2")
        let indices = try PlanCheck.input(inputs, 2, "batch_indices")
        if indices.elementType != .int64 {
            throw DeformRTError.invalidModel("batch_indices must be int64, got \(indices.elementType.onnxName)")
        }
        if indices.shape != [roiCount] {
            throw DeformRTError.invalidModel("batch_indices shape \(indices.shape) must be [\(roiCount)] (one per RoI)")
        }
        if let reason = params(x, roiCount: roiCount).invalidReason { throw DeformRTError.invalidModel(reason) }
        return [PlanValue(ValueType(.float, [roiCount, x[1], outputHeight, outputWidth]))]
    }

    func workspaceByteCount(_ inputs: [ValueType?], _ outputs: [ValueType], threads: Int) -> Int {
        RoiAlign.workspaceByteCount(params(inputs[0]!.shape, roiCount: outputs[0].shape[0]), threads: threads)
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let x = inputs[0]!, indices = inputs[2]!
        let batchIndices = indices.pointer(Int64.self)
        for r in 0..<indices.elementCount where batchIndices[r] < 0 || batchIndices[r] >= Int64(x.shape[0]) {
            throw DeformRTError.invalidArgument(
                "\(label): RoI \(r) has batch index \(batchIndices[r]), outside the batch of \(x.shape[0]) (batch_indices[\(r)])")
        }
        RoiAlign.run(params(x.shape, roiCount: indices.elementCount), input: x.floats, rois: inputs[1]!.floats,
                     batchIndices: batchIndices, output: outputs[0].floats, workspace: context.workspaceBuffer,
                     parallel: context.parallel)
    }
}

// MARK: - ai.onnx MaxRoiPool

/// ONNX MaxRoiPool (torchvision.ops.roi_pool / onnxruntime semantics). The batch index is a float
/// column of rois; one outside the batch gives zeros for that RoI (the kernel's defined result).
final class MaxRoiPoolOperator: Operator {
    let pooledHeight: Int
    let pooledWidth: Int
    let spatialScale: Float

    init(_ spec: OperatorSpec) throws {
        let a = spec.attributes
        guard let pooled = try a.ints("pooled_shape") else { throw spec.fail("missing attribute pooled_shape") }
        guard pooled.count == 2 else { throw spec.fail("pooled_shape must have 2 values (height, width), got \(pooled)") }
        pooledHeight = try RoICheck.positive(pooled[0], "pooled_shape[0]", spec)
        pooledWidth = try RoICheck.positive(pooled[1], "pooled_shape[1]", spec)
        spatialScale = try RoICheck.finite(a.float("spatial_scale", default: 1), "spatial_scale", spec)
    }

    private func params(_ x: [Int], roiCount: Int) -> MaxRoiPoolParams {
        MaxRoiPoolParams(batch: x[0], channels: x[1], height: x[2], width: x[3], roiCount: roiCount,
                         pooledHeight: pooledHeight, pooledWidth: pooledWidth, spatialScale: spatialScale)
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let x = try RoICheck.featureMap(inputs, 0, "X")
        let roiCount = try RoICheck.rois(inputs, 1, columns: 5, layout: "batch_index, x1, y1, x2, y2")
        if let reason = params(x, roiCount: roiCount).invalidReason { throw DeformRTError.invalidModel(reason) }
        return [PlanValue(ValueType(.float, [roiCount, x[1], pooledHeight, pooledWidth]))]
    }

    func workspaceByteCount(_ inputs: [ValueType?], _ outputs: [ValueType], threads: Int) -> Int {
        MaxRoiPool.workspaceByteCount(params(inputs[0]!.shape, roiCount: outputs[0].shape[0]), threads: threads)
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let x = inputs[0]!, rois = inputs[1]!
        MaxRoiPool.run(params(x.shape, roiCount: rois.shape[0]), input: x.floats, rois: rois.floats,
                       output: outputs[0].floats, workspace: context.workspaceBuffer, parallel: context.parallel)
    }
}

// MARK: - deformable RoI pooling (DCNv1, modulated DCNv2)

/// mmcv's deformable RoI pooling and its modulated form in three spellings sharing one kernel:
///   mmcv|mmdeploy MMCVDeformRoIPool:          input, rois, [offset]
///   mmcv|mmdeploy MMCVModulatedDeformRoIPool: input, rois, offset, mask
///   ai.deformrt DeformRoIPool:                input, rois, [offset], [mask]
/// Attributes (all spellings): output_size [ph, pw] (or one int) or pooled_height + pooled_width;
/// spatial_scale (default 1); sampling_ratio, int or float (mmcv's exporter writes a float),
/// truncated to an int as mmcv does, <= 0 meaning adaptive (default 0); gamma (default 0.1).
/// A missing offset, or one with no elements (mmcv's `new_zeros(0)`), means zero offsets.
final class DeformRoIPoolOperator: Operator {
    enum Spelling { case mmcv, mmcvModulated, deformRT }

    let spelling: Spelling
    let pooledHeight: Int
    let pooledWidth: Int
    let spatialScale: Float
    let samplingRatio: Int
    let gamma: Float

    init(_ spec: OperatorSpec, spelling: Spelling) throws {
        self.spelling = spelling
        let a = spec.attributes
        let outputSize = try a.ints("output_size")
        let height = try a.int("pooled_height"), width = try a.int("pooled_width")
        let size: [Int]
        if let outputSize {
            guard outputSize.count == 1 || outputSize.count == 2 else {
                throw spec.fail("output_size must have 1 or 2 values, got \(outputSize)")
            }
            size = outputSize.count == 1 ? [outputSize[0], outputSize[0]] : outputSize
            if (height != nil && height != size[0]) || (width != nil && width != size[1]) {
                throw spec.fail("output_size \(outputSize) disagrees with pooled_height/pooled_width")
            }
        } else if let height, let width {
            size = [height, width]
        } else {
            throw spec.fail("missing attribute output_size (or pooled_height and pooled_width)")
        }
        pooledHeight = try RoICheck.positive(size[0], "pooled height", spec)
        pooledWidth = try RoICheck.positive(size[1], "pooled width", spec)
        spatialScale = try RoICheck.finite(a.float("spatial_scale", default: 1), "spatial_scale", spec)
        gamma = try RoICheck.finite(a.float("gamma", default: 0.1), "gamma", spec)
        let ratio = try RoICheck.finite(a.float("sampling_ratio", default: 0), "sampling_ratio", spec)
        if ratio >= Float(RoILimits.samplingRatio + 1) {
            throw spec.fail("sampling_ratio must be at most \(RoILimits.samplingRatio), got \(ratio)")
        }
        // mmcv: int(sampling_ratio), then `> 0 ? sampling_ratio : adaptive`.
        samplingRatio = ratio < 1 ? 0 : Int(ratio)
    }

    /// Input positions of offset and mask (nil: the spelling has none).
    private var slots: (offset: Int?, mask: Int?) {
        switch spelling {
        case .mmcv: return (2, nil)
        case .mmcvModulated, .deformRT: return (2, 3)
        }
    }

    private func params(_ x: [Int], roiCount: Int) -> DeformRoIPoolParams {
        DeformRoIPoolParams(batch: x[0], channels: x[1], height: x[2], width: x[3], roiCount: roiCount,
                            pooledHeight: pooledHeight, pooledWidth: pooledWidth, spatialScale: spatialScale,
                            samplingRatio: samplingRatio, gamma: gamma)
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let x = try RoICheck.featureMap(inputs, 0, "input")
        let roiCount = try RoICheck.rois(inputs, 1, columns: 5, layout: "batch_index, x1, y1, x2, y2")
        let maxInputs = slots.mask == nil ? 3 : 4
        if inputs.count > maxInputs {
            let hint = spelling == .mmcv ? "; a mask needs MMCVModulatedDeformRoIPool" : ""
            throw DeformRTError.invalidModel("takes at most \(maxInputs) inputs, got \(inputs.count)\(hint)")
        }
        if spelling == .mmcvModulated {
            _ = try PlanCheck.input(inputs, 2, "offset")
            _ = try PlanCheck.input(inputs, 3, "mask")
        }
        // An offset with no elements stands for zero offsets (mmcv's `new_zeros(0)`); a mask
        // must always have its exact shape.
        if let offset = PlanCheck.optionalInput(inputs, 2), offset.shape.reduce(1, *) != 0 {
            try RoICheck.shape(offset, "offset", [roiCount, 2, pooledHeight, pooledWidth],
                               meaning: "num_rois, 2 (x, y), pooled height, pooled width")
        }
        if let maskSlot = slots.mask, let mask = PlanCheck.optionalInput(inputs, maskSlot) {
            try RoICheck.shape(mask, "mask", [roiCount, 1, pooledHeight, pooledWidth],
                               meaning: "num_rois, 1, pooled height, pooled width")
        }
        if let reason = params(x, roiCount: roiCount).invalidReason { throw DeformRTError.invalidModel(reason) }
        return [PlanValue(ValueType(.float, [roiCount, x[1], pooledHeight, pooledWidth]))]
    }

    func workspaceByteCount(_ inputs: [ValueType?], _ outputs: [ValueType], threads: Int) -> Int {
        DeformRoIPool.workspaceByteCount(params(inputs[0]!.shape, roiCount: outputs[0].shape[0]), threads: threads)
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let x = inputs[0]!, rois = inputs[1]!
        DeformRoIPool.run(params(x.shape, roiCount: rois.shape[0]), input: x.floats, rois: rois.floats,
                          offset: RoICheck.present(inputs, slots.offset)?.floats,
                          mask: RoICheck.present(inputs, slots.mask)?.floats,
                          output: outputs[0].floats, workspace: context.workspaceBuffer, parallel: context.parallel)
    }
}

// MARK: - deformable position-sensitive RoI pooling (R-FCN)

/// MXNet's DeformablePSROIPooling (the DCN authors' operator) in two spellings:
///   ai.deformrt DeformablePSROIPooling: data, rois, [trans]; MXNet's attributes output_dim,
///       group_size, spatial_scale (required), pooled_size (default group_size), part_size (default
///       0 = pooled_size), sample_per_part (default 1), trans_std (default 0), no_trans (default:
///       1 when trans is absent, else 0; no_trans = 1 ignores trans, as MXNet).
///   org.openvinotoolkit DeformablePSROIPooling: data, rois, [offsets]; OpenVINO's
///       DeformablePSROIPooling-1 attributes output_dim, spatial_scale (required), group_size
///       (default 1, also the pooled size), mode (only "bilinear_deformable"), spatial_bins_x and
///       spatial_bins_y (default 1, must be equal: sample_per_part), trans_std (default 1),
///       part_size (default 1). Deformable iff the offsets input is present.
/// trans has shape [R, 2 * classes, part_size, part_size]; output channel c uses class
/// c / (output_dim / classes).
final class DeformablePSROIPoolOperator: Operator {
    enum Spelling { case deformRT, openVINO }

    let outputDim: Int
    let groupSize: Int
    let pooledSize: Int
    let partSize: Int
    let samplePerPart: Int
    let spatialScale: Float
    let transStd: Float
    /// nil: decided by whether trans is present.
    let noTrans: Bool?
    /// The third input's name in this spelling, for messages.
    let transName: String

    init(_ spec: OperatorSpec, spelling: Spelling) throws {
        let a = spec.attributes
        func required<T>(_ value: T?, _ name: String) throws -> T {
            guard let value else { throw spec.fail("missing attribute \(name)") }
            return value
        }
        outputDim = try RoICheck.positive(required(a.int("output_dim"), "output_dim"), "output_dim", spec)
        spatialScale = try RoICheck.finite(required(a.float("spatial_scale"), "spatial_scale"), "spatial_scale", spec)
        switch spelling {
        case .deformRT:
            groupSize = try RoICheck.positive(required(a.int("group_size"), "group_size"), "group_size", spec)
            pooledSize = try RoICheck.positive(a.int("pooled_size", default: groupSize), "pooled_size", spec)
            let part = try a.int("part_size", default: 0)
            partSize = try part == 0 ? pooledSize : RoICheck.positive(part, "part_size", spec)
            samplePerPart = try a.int("sample_per_part", default: 1)
            transStd = try RoICheck.finite(a.float("trans_std", default: 0), "trans_std", spec)
            noTrans = try a.int("no_trans").map { $0 != 0 }
            transName = "trans"
        case .openVINO:
            let mode = try a.string("mode") ?? "bilinear_deformable"
            if mode != "bilinear_deformable" { throw spec.fail("mode must be 'bilinear_deformable', got '\(mode)'") }
            groupSize = try RoICheck.positive(a.int("group_size", default: 1), "group_size", spec)
            pooledSize = groupSize
            partSize = try RoICheck.positive(a.int("part_size", default: 1), "part_size", spec)
            let binsX = try a.int("spatial_bins_x", default: 1), binsY = try a.int("spatial_bins_y", default: 1)
            if binsX != binsY {
                throw DeformRTError.unsupported("node \(spec.node.label) (\(spec.node.opType)): spatial_bins_x (\(binsX)) "
                                                + "must equal spatial_bins_y (\(binsY)); DeformRT samples a square grid per bin")
            }
            samplePerPart = binsX
            transStd = try RoICheck.finite(a.float("trans_std", default: 1), "trans_std", spec)
            noTrans = nil
            transName = "offsets"
        }
        if samplePerPart < 1 || samplePerPart > RoILimits.samplingRatio {
            throw spec.fail("sample_per_part must be in 1...\(RoILimits.samplingRatio), got \(samplePerPart)")
        }
    }

    private func params(_ x: [Int], roiCount: Int, transClasses: Int) -> DeformablePSROIPoolParams {
        DeformablePSROIPoolParams(batch: x[0], channels: x[1], height: x[2], width: x[3], roiCount: roiCount,
                                  outputDim: outputDim, groupSize: groupSize, pooledSize: pooledSize,
                                  partSize: partSize, samplePerPart: samplePerPart, spatialScale: spatialScale,
                                  transStd: transStd, transClasses: transClasses)
    }

    /// Whether trans is used, and its class count (1 without trans).
    private func transClasses(_ trans: [Int]?, roiCount: Int) throws -> (used: Bool, classes: Int) {
        if noTrans == true { return (false, 1) }
        guard let trans else {
            if noTrans == false { throw DeformRTError.invalidModel("no_trans = 0 needs the trans input") }
            return (false, 1)
        }
        guard trans.count == 4, trans[0] == roiCount, trans[1] >= 2, trans[1] % 2 == 0,
              trans[2] == partSize, trans[3] == partSize else {
            throw DeformRTError.invalidModel("\(transName) shape \(trans) must be [\(roiCount), 2 * classes, \(partSize), \(partSize)] "
                                             + "(num_rois, x and y per class, part_size, part_size)")
        }
        let classes = trans[1] / 2
        if outputDim % classes != 0 {
            throw DeformRTError.invalidModel("output_dim \(outputDim) is not a multiple of the \(classes) offset classes of \(transName) shape \(trans)")
        }
        return (true, classes)
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let x = try RoICheck.featureMap(inputs, 0, "data")
        let roiCount = try RoICheck.rois(inputs, 1, columns: 5, layout: "batch_index, x1, y1, x2, y2")
        if inputs.count > 3 { throw DeformRTError.invalidModel("takes at most 3 inputs, got \(inputs.count)") }
        let trans = PlanCheck.optionalInput(inputs, 2)
        if let trans { try PlanCheck.float(trans, transName) }
        let (_, classes) = try transClasses(trans?.shape, roiCount: roiCount)
        let needed = try Limits.product(try Limits.product(outputDim, groupSize, what: "output_dim * group_size"),
                                        groupSize, what: "output_dim * group_size^2")
        if x[1] < needed {
            throw DeformRTError.invalidModel("data has \(x[1]) channels; output_dim \(outputDim) * group_size \(groupSize)^2 needs \(needed)")
        }
        if let reason = params(x, roiCount: roiCount, transClasses: classes).invalidReason {
            throw DeformRTError.invalidModel(reason)
        }
        // Bilinear samples one run reads: a hostile model (many RoIs, sample_per_part near its
        // limit) would otherwise run for minutes. R-FCN's heads need ~2^24 (300 RoIs, 81 x 7 x 7
        // bins, 4 x 4 samples); the cap leaves 8x room.
        let samples = try Limits.product(Limits.product(Limits.product(roiCount, outputDim, what: "samples"),
                                                        pooledSize * pooledSize, what: "samples"),
                                         samplePerPart * samplePerPart, what: "samples")
        // DEFORMRT_PSROI_SAMPLE_LIMIT sets another cap, as DEFORMRT_LOOP_ITERATION_LIMIT does for
        // Loop: the fuzz smoke runs a debug build under ASan (~1 us a sample), where the default
        // is minutes.
        var limit = RoILimits.psroiSamples
        if let text = getenv("DEFORMRT_PSROI_SAMPLE_LIMIT"), let value = Int(String(cString: text)), value >= 0 {
            limit = value
        }
        if samples > limit {
            throw DeformRTError.unsupported("\(roiCount) RoIs x output_dim \(outputDim) x \(pooledSize)^2 bins x sample_per_part "
                                            + "\(samplePerPart)^2 = \(samples) samples per run exceeds the limit of \(limit) "
                                            + "(set DEFORMRT_PSROI_SAMPLE_LIMIT for another)")
        }
        return [PlanValue(ValueType(.float, [roiCount, outputDim, pooledSize, pooledSize]))]
    }

    func workspaceByteCount(_ inputs: [ValueType?], _ outputs: [ValueType], threads: Int) -> Int {
        DeformablePSROIPool.workspaceByteCount(params(inputs[0]!.shape, roiCount: outputs[0].shape[0], transClasses: 1),
                                               threads: threads)
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let x = inputs[0]!, rois = inputs[1]!
        let trans = inputs.count > 2 ? inputs[2] : nil
        let (used, classes) = try transClasses(trans?.shape, roiCount: rois.shape[0])
        DeformablePSROIPool.run(params(x.shape, roiCount: rois.shape[0], transClasses: classes), input: x.floats,
                                rois: rois.floats, trans: used ? trans!.floats : nil, output: outputs[0].floats,
                                workspace: context.workspaceBuffer, parallel: context.parallel)
    }
}
