import DeformRTKernels

/// Spatial attributes shared by Conv, DeformConv and the pooling operators, resolved for 2-D.
struct Window2D {
    var kernel: [Int]       // [kH, kW]
    var strides: [Int]
    var dilations: [Int]
    var pads: [Int]?        // [top, left, bottom, right] when explicit
    var autoPad: String

    /// Reads kernel_shape (optional when the weight gives it), strides, dilations, pads, auto_pad.
    init(_ spec: OperatorSpec, kernelRequired: Bool, spatialRank: Int = 2,
         names: (strides: String, pads: String, dilations: String) = ("strides", "pads", "dilations")) throws {
        let attributes = spec.attributes
        let kernel = try attributes.ints("kernel_shape")
        if kernelRequired && kernel == nil { throw spec.fail("missing attribute kernel_shape") }
        self.kernel = kernel ?? []
        strides = try attributes.ints(names.strides) ?? [Int](repeating: 1, count: spatialRank)
        dilations = try attributes.ints(names.dilations) ?? [Int](repeating: 1, count: spatialRank)
        pads = try attributes.ints(names.pads)
        autoPad = try attributes.string("auto_pad") ?? "NOTSET"
        if strides.count == 1 && spatialRank == 2 { strides = [strides[0], strides[0]] }
        if dilations.count == 1 && spatialRank == 2 { dilations = [dilations[0], dilations[0]] }
        // Two pads are [begin, end] of a 1-D window (liftTo2D) or mmcv's [pH, pW] (resolvedPads):
        // which one is only known once the input's rank is.
        if let p = pads, p.count == 1 { pads = [p[0], p[0], p[0], p[0]] }
        for v in strides where v < 1 { throw spec.fail("strides must be >= 1, got \(strides)") }
        for v in dilations where v < 1 { throw spec.fail("dilations must be >= 1, got \(dilations)") }
        if let pads, pads.contains(where: { $0 < 0 }) { throw spec.fail("pads must be >= 0, got \(pads)") }
        if self.kernel.contains(where: { $0 < 1 }) { throw spec.fail("kernel_shape must be >= 1, got \(self.kernel)") }
        for values in [self.kernel, strides, dilations, pads ?? []] where values.contains(where: { $0 > Limits.maxWindowValue }) {
            throw spec.fail("window attribute \(values) exceeds the limit of \(Limits.maxWindowValue)")
        }
        if !["NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"].contains(autoPad) {
            throw spec.fail("unknown auto_pad '\(autoPad)'")
        }
    }

    /// Converts a 1-D window to the 2-D one over a height-1 map.
    mutating func liftTo2D() {
        if kernel.count == 1 { kernel = [1, kernel[0]] }
        if strides.count == 1 { strides = [1, strides[0]] }
        if dilations.count == 1 { dilations = [1, dilations[0]] }
        if let p = pads, p.count == 2 { pads = [0, p[0], 0, p[1]] }
    }

    /// Pads [top, left, bottom, right] for an input of `size` [H, W].
    func resolvedPads(size: [Int], ceilMode: Bool = false) throws -> [Int] {
        guard kernel.count == 2, strides.count == 2, dilations.count == 2 else {
            throw DeformRTError.unsupported("only 2-D windows are supported (kernel_shape \(kernel), strides \(strides), dilations \(dilations))")
        }
        switch autoPad {
        case "VALID": return [0, 0, 0, 0]
        case "SAME_UPPER", "SAME_LOWER":
            var begin = [0, 0], end = [0, 0]
            for axis in 0..<2 {
                let out = (size[axis] + strides[axis] - 1) / strides[axis]
                let total = max(0, (out - 1) * strides[axis] + (kernel[axis] - 1) * dilations[axis] + 1 - size[axis])
                begin[axis] = autoPad == "SAME_UPPER" ? total / 2 : total - total / 2
                end[axis] = total - begin[axis]
            }
            return [begin[0], begin[1], end[0], end[1]]
        default:
            guard let pads else { return [0, 0, 0, 0] }
            if pads.count == 2 { return [pads[0], pads[1], pads[0], pads[1]] }
            guard pads.count == 4 else { throw DeformRTError.invalidModel("pads must have 4 values for a 2-D window, got \(pads)") }
            return pads
        }
    }

    /// The convolution geometry for NCHW input `x` and OIHW weight `w` (both 4-D; `shapes` are the
    /// caller's original shapes, for messages), with every consistency check Conv and DeformConv share.
    func convGeometry(input x: [Int], weight w: [Int], group: Int, shapes: (x: [Int], w: [Int])) throws -> ConvGeometry {
        var window = self
        if !window.kernel.isEmpty && window.kernel != [w[2], w[3]] {
            throw DeformRTError.invalidModel("kernel_shape \(window.kernel) disagrees with weight shape \(shapes.w)")
        }
        window.kernel = [w[2], w[3]]
        let pads = try window.resolvedPads(size: [x[2], x[3]])
        if w[2] < 1 || w[3] < 1 { throw DeformRTError.invalidModel("weight shape \(shapes.w) has an empty kernel") }
        if x[1] % group != 0 || w[0] % group != 0 || w[1] != x[1] / group {
            throw DeformRTError.invalidModel("group \(group) does not fit input channels \(x[1]) and weight shape \(shapes.w)")
        }
        let g = ConvGeometry(batch: x[0], inChannels: x[1], inHeight: x[2], inWidth: x[3], outChannels: w[0],
                             kernelHeight: w[2], kernelWidth: w[3], strideHeight: window.strides[0], strideWidth: window.strides[1],
                             padTop: pads[0], padLeft: pads[1], padBottom: pads[2], padRight: pads[3],
                             dilationHeight: window.dilations[0], dilationWidth: window.dilations[1], group: group)
        // Truncating division rounds a slightly negative room up to one output; refuse it here.
        if g.inHeight + pads[0] + pads[2] < g.dilationHeight * (g.kernelHeight - 1) + 1
            || g.inWidth + pads[1] + pads[3] < g.dilationWidth * (g.kernelWidth - 1) + 1 || g.outHeight < 1 || g.outWidth < 1 {
            throw DeformRTError.invalidModel("the kernel does not fit the input: input \(shapes.x), weight \(shapes.w), pads \(pads)")
        }
        return g
    }

    /// Output size along one axis; nil when the window does not fit.
    static func outputSize(_ input: Int, kernel: Int, stride: Int, dilation: Int, padBegin: Int, padEnd: Int, ceilMode: Bool = false) -> Int? {
        let span = dilation * (kernel - 1) + 1
        let room = input + padBegin + padEnd - span
        if room < 0 { return nil }
        var out = (ceilMode ? (room + stride - 1) / stride : room / stride) + 1
        // With ceil_mode the last window must start inside the input or the begin padding.
        if ceilMode && (out - 1) * stride >= input + padBegin { out -= 1 }
        return out
    }
}

/// ONNX Conv for 1-D and 2-D inputs (1-D runs as 2-D over a height-1 map).
final class ConvOperator: Operator {
    var window: Window2D
    /// The attributes read for a 1-D input, where two pads are [begin, end] of the one axis.
    var window1D: Window2D
    let group: Int
    let packed = PackedWeights()
    /// The residual Add and activation a FusedConv node took over (none for a plain Conv).
    let epilogue: FusedEpilogue
    /// Channels-last input and/or output, as the layout pass chose (NCHW for a plain Conv).
    let layout: ConvDataLayout

    init(_ spec: OperatorSpec) throws {
        window = try Window2D(spec, kernelRequired: false)
        window1D = try Window2D(spec, kernelRequired: false, spatialRank: 1)
        group = try spec.attributes.int("group", default: 1)
        if group < 1 { throw spec.fail("group must be >= 1, got \(group)") }
        epilogue = try FusedEpilogue(spec, residualSlot: 3)
        layout = try ConvDataLayout(spec)
    }

    private func geometry(_ physicalX: [Int], _ w: [Int]) throws -> ConvGeometry {
        let x = try layout.logicalInputShape(physicalX)
        guard x.count == 4 || x.count == 3 else {
            throw DeformRTError.unsupported("only 1-D and 2-D convolutions are supported (input shape \(x))")
        }
        guard w.count == x.count else { throw DeformRTError.invalidModel("weight shape \(w) does not match input shape \(x)") }
        let is1D = x.count == 3
        var window = is1D ? window1D : window
        if is1D { window.liftTo2D() }
        let x4 = is1D ? [x[0], x[1], 1, x[2]] : x
        let w4 = is1D ? [w[0], w[1], 1, w[2]] : w
        if is1D, let pads = window.pads, pads.count == 4, pads[0] != 0 || pads[2] != 0 {
            throw DeformRTError.invalidModel("a 1-D convolution takes 2 pads [begin, end], got \(self.window.pads ?? [])")
        }
        return try window.convGeometry(input: x4, weight: w4, group: group, shapes: (x, w))
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let x = try PlanCheck.input(inputs, 0, "X"), w = try PlanCheck.input(inputs, 1, "W")
        try PlanCheck.float(x, "X")
        try PlanCheck.float(w, "W")
        let g = try geometry(x.shape, w.shape)
        if let b = PlanCheck.optionalInput(inputs, 2) {
            try PlanCheck.float(b, "B")
            if b.shape != [g.outChannels] { throw DeformRTError.invalidModel("bias shape \(b.shape) must be [\(g.outChannels)]") }
        }
        if !Conv2D.supports(g, layout: layout) {
            throw DeformRTError.unsupported("a depthwise convolution with channels-last data (input \(x.shape), weight \(w.shape))")
        }
        let shape = x.shape.count == 3 ? [g.batch, g.outChannels, g.outWidth] : layout.outputShape(g)
        try epilogue.plan(inputs, output: shape, broadcastAllowed: !layout.outputChannelsLast)
        let layout = layout
        packed.prepare(g.hasEmptyOutput ? nil : g, weight: w.constant,
                       packing: { Conv2D.weightPacking($0, layout: layout) },
                       byteCount: { Conv2DPlan($0, threads: 1, layout: layout).packedWeightByteCount },
                       pack: { Conv2DPlan($0, threads: 1, layout: layout).packWeight($1, into: $2) })
        return [PlanValue(ValueType(.float, shape))]
    }

    func workspaceByteCount(_ inputs: [ValueType?], _ outputs: [ValueType], threads: Int) -> Int {
        guard let g = try? geometry(inputs[0]!.shape, inputs[1]!.shape), !g.hasEmptyOutput else { return 0 }
        return kernelPlan(g, threads: threads).workspaceByteCount
    }

    /// The kernel's plan for `g`, on the weights `plan` packed when there are some for it.
    private func kernelPlan(_ g: ConvGeometry, threads: Int) -> Conv2DPlan {
        Conv2DPlan(g, threads: threads, layout: layout,
                   weightsPrepacked: packed.storage(for: Conv2D.weightPacking(g, layout: layout)) != nil)
    }

    func runState(_ inputs: [PlanValue?], _ outputs: [ValueType], threads: Int) throws -> AnyObject? {
        let g = try geometry(inputs[0]!.shape, inputs[1]!.shape)
        return ConvRunState(geometry: g, packedWeights: packed.storage(for: Conv2D.weightPacking(g, layout: layout)),
                            kernel: g.hasEmptyOutput ? .nothing : .plain(kernelPlan(g, threads: threads)))
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let state = try state(context, inputs, as: ConvRunState.self)!
        if state.geometry.hasEmptyOutput { return }
        guard case .plain(let kernel) = state.kernel else { throw DeformRTError(.internal, "Conv: no convolution plan") }
        kernel.run(input: inputs[0]!.floats, weight: state.weights(or: inputs[1]!),
                   bias: inputs.count > 2 ? inputs[2]?.floats : nil, output: outputs[0].floats, workspace: context.workspace, parallel: context.parallel,
                   epilogue: epilogue.kernelEpilogue(inputs))
        try epilogue.finish(inputs, output: outputs[0], context)
    }
}

/// Deformable convolution in every spelling exported models use. They share one kernel and
/// differ only in input order, attribute names and (OpenVINO) the border rule:
///   ai.onnx DeformConv-19/22:               X, W, offset, [B], [mask]
///   mmcv/mmdeploy MMCVModulatedDeformConv2d: input, offset, mask, weight, [bias]
///   mmcv/mmdeploy MMCVDeformConv2d:          input, offset, weight, [bias]
///   org.openvinotoolkit DeformableConv2D:    X, offset, W, [mask]
final class DeformConvOperator: Operator {
    enum Spelling { case onnx, mmcvModulated, mmcv, openVINO }

    let spelling: Spelling
    var window: Window2D
    let group: Int
    let offsetGroup: Int
    let border: DeformableBorder
    /// Positions of X, W, offset, B, mask among the node's inputs (nil: the spelling has none).
    let slots: (x: Int, w: Int, offset: Int, bias: Int?, mask: Int?)
    let packed = PackedWeights()
    /// The residual Add and activation a FusedDeformConv node took over.
    let epilogue: FusedEpilogue
    /// Channels-last X and/or output (offset and mask stay NCHW).
    let layout: ConvDataLayout
    /// The offset input holds the offsets, then the mask's logits (DeformableOffsetFusion): the
    /// run applies the sigmoid to those channels in place and reads the mask from there.
    let offsetMask: Bool

    init(_ spec: OperatorSpec, spelling: Spelling) throws {
        self.spelling = spelling
        let a = spec.attributes
        switch spelling {
        case .onnx:
            window = try Window2D(spec, kernelRequired: false)
            group = try a.int("group", default: 1)
            offsetGroup = try a.int("offset_group", default: 1)
            border = .zeroOutsideCorners
            slots = (0, 1, 2, 3, 4)
        case .mmcvModulated, .mmcv:
            window = try Window2D(spec, kernelRequired: false, names: ("stride", "padding", "dilation"))
            window.autoPad = "NOTSET"
            group = try a.int("groups", default: 1)
            offsetGroup = try a.int("deform_groups") ?? a.int("deformable_groups") ?? 1
            border = .zeroOutsideCorners
            slots = spelling == .mmcvModulated ? (0, 3, 1, 4, 2) : (0, 2, 1, 3, nil)
        case .openVINO:
            window = try Window2D(spec, kernelRequired: false)
            group = try a.int("group", default: 1)
            offsetGroup = try a.int("deformable_groups") ?? a.int("deform_groups") ?? 1
            border = try a.int("bilinear_interpolation_pad", default: 0) != 0 ? .zeroOutsideCorners : .openVINONoPad
            slots = (0, 2, 1, nil, 3)
        }
        if group < 1 { throw spec.fail("group must be >= 1, got \(group)") }
        if offsetGroup < 1 { throw spec.fail("offset group must be >= 1, got \(offsetGroup)") }
        // The residual follows every input of the spelling.
        epilogue = try FusedEpilogue(spec, residualSlot: [slots.x, slots.w, slots.offset, slots.bias ?? 0, slots.mask ?? 0].max()! + 1)
        layout = try ConvDataLayout(spec)
        let offsetMaskFlag = try a.int("offset_mask", default: 0)
        offsetMask = spec.node.domain == ConvNodeSlots.fusedDomain && spelling == .onnx && offsetMaskFlag != 0
    }

    /// The spelling a FusedDeformConv node was made from (its base_domain / base_op).
    static func spelling(ofFused spec: OperatorSpec) throws -> Spelling {
        let attributes = spec.attributes
        switch (try attributes.string("base_domain") ?? "", try attributes.string("base_op") ?? "") {
        case ("", "DeformConv"): return .onnx
        case ("mmcv", "MMCVModulatedDeformConv2d"), ("mmdeploy", "MMCVModulatedDeformConv2d"): return .mmcvModulated
        case ("mmcv", "MMCVDeformConv2d"), ("mmdeploy", "MMCVDeformConv2d"): return .mmcv
        case ("org.openvinotoolkit", "DeformableConv2D"): return .openVINO
        case let (domain, op): throw spec.fail("FusedDeformConv of unknown base operator (\(domain), \(op))")
        }
    }

    private struct Bound {
        var geometry: ConvGeometry
        var options: DeformableOptions
    }

    private func bind(x physicalX: [Int], w: [Int], offset: [Int], mask: [Int]?, bias: [Int]?) throws -> Bound {
        let x = try layout.logicalInputShape(physicalX)
        guard x.count == 4 else { throw DeformRTError.unsupported("only 2-D deformable convolution is supported (input shape \(x))") }
        guard w.count == 4 else { throw DeformRTError.invalidModel("weight must have rank 4, got shape \(w)") }
        if x[1] % offsetGroup != 0 || offsetGroup > max(x[1], 1) {
            throw DeformRTError.invalidModel("offset group \(offsetGroup) does not divide the \(x[1]) input channels")
        }
        let g = try window.convGeometry(input: x, weight: w, group: group, shapes: (x, w))
        let taps = g.kernelHeight * g.kernelWidth
        let offsetChannels = try Limits.product(offsetGroup, (offsetMask ? 3 : 2) * taps, what: "offset channels")
        _ = try Limits.product(g.inChannels, taps, what: "sampled columns")
        let expectedOffset = [g.batch, offsetChannels, g.outHeight, g.outWidth]
        if offset != expectedOffset {
            throw DeformRTError.invalidModel("offset shape \(offset) must be \(expectedOffset) (batch, offset_group*\(offsetMask ? "3 (offsets, then mask logits)" : "2")*kH*kW, out H, out W)")
        }
        if let mask {
            let expectedMask = [g.batch, offsetGroup * taps, g.outHeight, g.outWidth]
            if mask != expectedMask {
                throw DeformRTError.invalidModel("mask shape \(mask) must be \(expectedMask) (batch, offset_group*kH*kW, out H, out W)")
            }
        }
        if let bias, bias != [g.outChannels] {
            throw DeformRTError.invalidModel("bias shape \(bias) must be [\(g.outChannels)]")
        }
        return Bound(geometry: g, options: DeformableOptions(offsetGroup: offsetGroup, hasMask: mask != nil || offsetMask, border: border))
    }

    private func slot<T>(_ inputs: [T?], _ index: Int?) -> T? {
        guard let index, index < inputs.count else { return nil }
        return inputs[index]
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let x = try PlanCheck.input(inputs, slots.x, "X")
        let w = try PlanCheck.input(inputs, slots.w, "W")
        let offset = try PlanCheck.input(inputs, slots.offset, "offset")
        let bias = slot(inputs, slots.bias), mask = slot(inputs, slots.mask)
        for (value, name) in [(x, "X"), (w, "W"), (offset, "offset")] { try PlanCheck.float(value, name) }
        if let bias { try PlanCheck.float(bias, "B") }
        if let mask { try PlanCheck.float(mask, "mask") }
        let bound = try bind(x: x.shape, w: w.shape, offset: offset.shape, mask: mask?.shape, bias: bias?.shape)
        let g = bound.geometry
        if layout != .nchw && !DeformConv.supportsSampling(g) {
            throw DeformRTError.unsupported("channels-last data for a deformable convolution this large (input \(x.shape))")
        }
        try epilogue.plan(inputs, output: layout.outputShape(g), broadcastAllowed: !layout.outputChannelsLast)
        // Planes too large for the SIMD sampling plans run on the reference kernel, on raw weights.
        packed.prepare(g.hasEmptyOutput || !DeformConv.supportsSampling(g) ? nil : g, weight: w.constant,
                       packing: { DeformConv.weightPacking($0) },
                       byteCount: { DeformConv.packedWeightByteCount($0) },
                       pack: { DeformConv.packWeight($0, weight: $1, into: $2) })
        return [PlanValue(ValueType(.float, layout.outputShape(g)))]
    }

    func workspaceByteCount(_ inputs: [ValueType?], _ outputs: [ValueType], threads: Int) -> Int {
        guard let x = slot(inputs, slots.x), let w = slot(inputs, slots.w), let offset = slot(inputs, slots.offset),
              let bound = try? bind(x: x.shape, w: w.shape, offset: offset.shape, mask: slot(inputs, slots.mask)?.shape,
                                    bias: slot(inputs, slots.bias)?.shape) else { return 0 }
        if bound.geometry.hasEmptyOutput { return 0 }
        return kernelPlan(bound, threads: threads).workspaceByteCount
    }

    /// The kernel's plan for `bound`, on the weights `plan` packed when there are some for it.
    private func kernelPlan(_ bound: Bound, threads: Int) -> DeformConvPlan {
        var g = bound.geometry
        // offset_mask runs the images one at a time (run), each with its own slice of the offsets.
        if offsetMask { g.batch = min(g.batch, 1) }
        return DeformConvPlan(g, bound.options, threads: threads, layout: layout,
                              weightsPrepacked: packed.storage(for: DeformConv.weightPacking(bound.geometry)) != nil)
    }

    func runState(_ inputs: [PlanValue?], _ outputs: [ValueType], threads: Int) throws -> AnyObject? {
        guard let x = slot(inputs, slots.x), let w = slot(inputs, slots.w), let offset = slot(inputs, slots.offset) else {
            throw DeformRTError.invalidModel("X, W and offset are required")
        }
        let bound = try bind(x: x.shape, w: w.shape, offset: offset.shape, mask: slot(inputs, slots.mask)?.shape,
                             bias: slot(inputs, slots.bias)?.shape)
        let state = ConvRunState(geometry: bound.geometry,
                                 packedWeights: packed.storage(for: DeformConv.weightPacking(bound.geometry)),
                                 kernel: bound.geometry.hasEmptyOutput ? .nothing
                                     : .deformable(kernelPlan(bound, threads: threads)))
        // Offsets and logits fixed for the plan (folded while planning): the mask is made once
        // here, in a copy, since runs must not change a constant.
        if offsetMask, let constant = offset.constant {
            let prepared = constant.copy()
            applyMaskSigmoid(prepared.floats, bound.geometry, parallel: .serial)
            state.preparedOffset = prepared
        }
        return state
    }

    /// Turns the mask logits (the last K of every image's 3K offset channels) into the mask.
    private func applyMaskSigmoid(_ packed: UnsafeMutablePointer<Float>, _ g: ConvGeometry, parallel: Parallel) {
        let k = offsetGroup * g.kernelHeight * g.kernelWidth, pixels = g.outHeight * g.outWidth
        let sigmoid = ConvEpilogue(activation: .sigmoid)
        for n in 0..<g.batch {
            sigmoid.apply(elements: k * pixels, output: packed + (n * 3 + 2) * k * pixels, parallel: parallel)
        }
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let x = slot(inputs, slots.x)!, w = slot(inputs, slots.w)!, offset = slot(inputs, slots.offset)!
        let bias = slot(inputs, slots.bias), mask = slot(inputs, slots.mask)
        let state = try state(context, inputs, as: ConvRunState.self)!
        if state.geometry.hasEmptyOutput { return }
        guard case .deformable(let kernel) = state.kernel else {
            throw DeformRTError(.internal, "DeformConv: no deformable convolution plan")
        }
        let tiles = epilogue.kernelEpilogue(inputs)
        let weights = state.weights(or: w)
        func convolve(input: UnsafePointer<Float>, offset: UnsafePointer<Float>, mask: UnsafePointer<Float>?,
                      output: UnsafeMutablePointer<Float>, epilogue tiles: ConvEpilogue) {
            kernel.run(input: input, weight: weights, offset: offset, mask: mask, bias: bias?.floats, output: output,
                       workspace: context.workspace, parallel: context.parallel, epilogue: tiles)
        }
        if offsetMask {
            // Per image: [2K offset channels | K mask logits], the logits turned into the mask in
            // place (the offset convolution's output has no other reader; DeformableOffsetFusion).
            let g = state.geometry
            let k = offsetGroup * g.kernelHeight * g.kernelWidth, pixels = g.outHeight * g.outWidth
            let inputPerImage = g.inChannels * g.inHeight * g.inWidth, outputPerImage = g.outChannels * pixels
            let offsets: UnsafeMutablePointer<Float>
            if let prepared = state.preparedOffset {
                offsets = prepared.floats
            } else {
                offsets = offset.floats
                applyMaskSigmoid(offsets, g, parallel: context.parallel)
            }
            for n in 0..<g.batch {
                let packed = offsets + n * 3 * k * pixels
                convolve(input: x.floats + n * inputPerImage, offset: packed, mask: packed + 2 * k * pixels,
                         output: outputs[0].floats + n * outputPerImage, epilogue: tiles.shifted(by: n * outputPerImage))
            }
        } else {
            convolve(input: x.floats, offset: offset.floats, mask: mask?.floats, output: outputs[0].floats,
                     epilogue: tiles)
        }
        try epilogue.finish(inputs, output: outputs[0], context)
    }
}

/// The epilogue of a fused convolution node, as planned: a residual of the output's shape and
/// the activation run inside the kernel, tile by tile; a residual that broadcasts (rare: a
/// per-channel or per-image term) is added after the convolution, then the activation.
final class FusedEpilogue {
    let activation: UnaryFunction?
    let residualSlot: Int?
    private var residualBroadcasts = false
    private let add = BinaryOperator(.add)

    init(_ spec: OperatorSpec, residualSlot: Int) throws {
        (activation, self.residualSlot) = try FusedActivation.epilogue(spec, residualSlot: residualSlot)
    }

    /// `broadcastAllowed` false: the residual must have the output's shape (a channels-last
    /// output, whose residual the layout pass stores channels-last too).
    func plan(_ inputs: [PlanValue?], output shape: [Int], broadcastAllowed: Bool = true) throws {
        residualBroadcasts = false
        guard let residualSlot else { return }
        let residual = try PlanCheck.input(inputs, residualSlot, "residual")
        try PlanCheck.float(residual, "residual")
        if residual.shape == shape { return }
        if !broadcastAllowed {
            throw DeformRTError.invalidModel("the fused residual's shape \(residual.shape) must be the channels-last output's \(shape)")
        }
        if try Broadcast.shape(shape, residual.shape) != shape {
            throw DeformRTError.invalidModel("the fused residual's shape \(residual.shape) does not broadcast to the output's \(shape)")
        }
        residualBroadcasts = true
    }

    /// What the kernel applies per tile (nothing when the residual broadcasts: `finish` does it all).
    func kernelEpilogue(_ inputs: [Tensor?]) -> ConvEpilogue {
        if residualBroadcasts { return .none }
        return ConvEpilogue(residual: residualSlot.map { UnsafePointer(inputs[$0]!.floats) }, activation: activation)
    }

    func finish(_ inputs: [Tensor?], output: Tensor, _ context: RunContext) throws {
        guard residualBroadcasts, let residualSlot else { return }
        var addContext = context
        addContext.state = nil  // the convolution's state is not the Add's
        try add.run([output, inputs[residualSlot]], [output], addContext)
        ConvEpilogue(activation: activation).apply(elements: output.elementCount, output: output.floats, parallel: context.parallel)
    }
}

/// A convolution's weights packed once into the GEMM's order when they are a constant of the model,
/// for the geometry of the last plan (a re-plan for other shapes packs again, or drops them when
/// the weights are not constant). Saves a pass over every weight per run.
final class PackedWeights {
    private var storage: TensorStorage?
    private var packing: ConvWeightPacking?
    private var source: TensorStorage?

    /// Packs `weight` for `g` unless already packed from the same tensor the same way (`packing`:
    /// the same layer at another input size keeps its packed copy); nil `g` or `weight` drops it.
    func prepare(
        _ g: ConvGeometry?, weight: Tensor?, packing: (ConvGeometry) -> ConvWeightPacking,
        byteCount: (ConvGeometry) -> Int, pack: (ConvGeometry, UnsafePointer<Float>, UnsafeMutableRawPointer) -> Void
    ) {
        guard let g, let weight, weight.elementType == .float else {
            storage = nil
            self.packing = nil
            source = nil
            return
        }
        let wanted = packing(g)
        if self.packing == wanted && source === weight.storage { return }
        let packed = TensorStorage(uninitializedByteCount: byteCount(g))
        pack(g, weight.floats, packed.bytes)
        storage = packed
        self.packing = wanted
        source = weight.storage
    }

    /// The storage of the packed weights, if they were packed as `packing` (a plan keeps it alive).
    func storage(for packing: ConvWeightPacking) -> TensorStorage? {
        self.packing == packing ? storage : nil
    }
}

/// What a convolution's run takes from its plan (Operator.runState): the geometry, the weights
/// packed for it, and the kernel's plan.
final class ConvRunState {
    enum Kernel {
        case plain(Conv2DPlan)
        case deformable(DeformConvPlan)
        /// No batch items or no output channels (the kernels' tiling would divide by zero).
        case nothing
    }

    let geometry: ConvGeometry
    let packedWeights: TensorStorage?
    let kernel: Kernel
    /// A constant offset input with its mask logits already turned into the mask (offset_mask).
    var preparedOffset: Tensor?

    init(geometry: ConvGeometry, packedWeights: TensorStorage?, kernel: Kernel) {
        self.geometry = geometry
        self.packedWeights = packedWeights
        self.kernel = kernel
    }

    /// The packed weights, or else `weight` itself (OIHW), as the kernel's plan expects.
    func weights(or weight: Tensor) -> UnsafePointer<Float> {
        UnsafePointer(packedWeights.map { $0.bytes.assumingMemoryBound(to: Float.self) } ?? weight.floats)
    }
}

extension ConvGeometry {
    /// No batch items or no output channels: nothing to compute. The kernels' tiling divides by
    /// both, so the operators return before calling them (found by the fuzzer).
    var hasEmptyOutput: Bool { batch == 0 || outChannels == 0 }
}

extension ConvDataLayout {
    /// The layout a fused convolution node's `channels_last_input` / `channels_last_output`
    /// attributes ask for (the layout pass sets them; absent means NCHW).
    init(_ spec: OperatorSpec) throws {
        self.init(inputChannelsLast: try spec.attributes.int("channels_last_input", default: 0) != 0,
                  outputChannelsLast: try spec.attributes.int("channels_last_output", default: 0) != 0)
    }

    /// The NCHW shape of an input stored as `shape` in this layout.
    func logicalInputShape(_ shape: [Int]) throws -> [Int] {
        guard inputChannelsLast else { return shape }
        guard shape.count == 4 else {
            throw DeformRTError.invalidModel("a channels-last convolution input must have rank 4, got shape \(shape)")
        }
        return [shape[0], shape[3], shape[1], shape[2]]
    }

    /// The output shape as stored: [N, M, H, W] or channels-last [N, H, W, M].
    func outputShape(_ g: ConvGeometry) -> [Int] {
        outputChannelsLast ? [g.batch, g.outHeight, g.outWidth, g.outChannels]
            : [g.batch, g.outChannels, g.outHeight, g.outWidth]
    }
}
