import DeformRTKernels

/// ONNX ConvTranspose (opsets 1-22), 1-D and 2-D, float; also the ai.deformrt FusedConvTranspose
/// the graph passes write (BatchNormalization folded into the weights, residual Add and
/// activation in the epilogue). 1-D runs as 2-D over a height-1 map.
///
/// Output size and padding per spatial axis, as onnxruntime computes them (the ONNX spec's
/// equations; onnx.reference differs where noted in the tests), with kspan = (k - 1) * d + 1:
///   output_shape given: total = max(0, s (in - 1) + output_padding + kspan - out), split
///     begin = total / 2 for SAME_UPPER, total - total / 2 otherwise; `pads` is ignored. The
///     size must be one the input could have come from: (out + total - kspan) / s + 1 == in.
///   SAME_UPPER / SAME_LOWER: total = max(0, s (in - 1) + output_padding + kspan - in s), the
///     same split; out = in * s, or less when the unpadded size is (onnxruntime's rule).
///   VALID: no padding; NOTSET: `pads` [begins..., ends...] (default 0).
///   out = s (in - 1) + output_padding + kspan - begin - end.
/// output_padding must be below max(stride, dilation) on each axis (onnxruntime's rule).
final class ConvTransposeOperator: Operator {
    let kernelShape: [Int]?
    let strides: [Int]?
    let dilations: [Int]?
    let pads: [Int]?
    let outputPadding: [Int]?
    let outputShape: [Int]?
    let autoPad: String
    let group: Int
    /// The residual Add and activation a FusedConvTranspose node took over (none for a plain one).
    let epilogue: FusedEpilogue

    init(_ spec: OperatorSpec) throws {
        let a = spec.attributes
        kernelShape = try a.ints("kernel_shape")
        strides = try a.ints("strides")
        dilations = try a.ints("dilations")
        pads = try a.ints("pads")
        outputPadding = try a.ints("output_padding")
        outputShape = try a.ints("output_shape")
        autoPad = try a.string("auto_pad") ?? "NOTSET"
        group = try a.int("group", default: 1)
        if group < 1 { throw spec.fail("group must be >= 1, got \(group)") }
        if !["NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"].contains(autoPad) {
            throw spec.fail("unknown auto_pad '\(autoPad)'")
        }
        for (name, values, low) in [("strides", strides, 1), ("dilations", dilations, 1), ("pads", pads, 0),
                                    ("output_padding", outputPadding, 0), ("kernel_shape", kernelShape, 1),
                                    ("output_shape", outputShape, 1)] {
            guard let values else { continue }
            if let bad = values.first(where: { $0 < low }) { throw spec.fail("\(name) must be >= \(low), got \(bad) in \(values)") }
            if name != "output_shape", values.contains(where: { $0 > Limits.maxWindowValue }) {
                throw spec.fail("\(name) \(values) exceeds the limit of \(Limits.maxWindowValue)")
            }
        }
        epilogue = try FusedEpilogue(spec, residualSlot: 3)
    }

    /// The geometry for input shape `x` and weight shape `w` (all checks of the attributes against them).
    private func geometry(_ x: [Int], _ w: [Int]) throws -> ConvTransposeGeometry {
        guard x.count == 3 || x.count == 4 else {
            throw DeformRTError.unsupported("only 1-D and 2-D ConvTranspose is supported (input shape \(x))")
        }
        let rank = x.count - 2
        guard w.count == x.count else { throw DeformRTError.invalidModel("weight shape \(w) does not match input shape \(x)") }
        if w[0] != x[1] {
            throw DeformRTError.invalidModel("weight shape \(w) must have the input's \(x[1]) channels first ([C, M/group, k...])")
        }
        if x[1] % group != 0 {
            throw DeformRTError.invalidModel("group \(group) does not divide the \(x[1]) input channels")
        }
        let kernel = Array(w[2...])
        if kernel.contains(where: { $0 < 1 }) { throw DeformRTError.invalidModel("weight shape \(w) has an empty kernel") }
        func perAxis(_ values: [Int]?, _ name: String, _ fallback: Int, count: Int) throws -> [Int] {
            guard let values else { return [Int](repeating: fallback, count: count) }
            if values.count != count {
                throw DeformRTError.invalidModel("\(name) \(values) must have \(count) values for a \(rank)-D ConvTranspose")
            }
            return values
        }
        if let kernelShape, kernelShape != kernel {
            throw DeformRTError.invalidModel("kernel_shape \(kernelShape) disagrees with weight shape \(w)")
        }
        let s = try perAxis(strides, "strides", 1, count: rank)
        let d = try perAxis(dilations, "dilations", 1, count: rank)
        let op = try perAxis(outputPadding, "output_padding", 0, count: rank)
        let explicitPads = try perAxis(pads, "pads", 0, count: 2 * rank)
        var begin = [Int](repeating: 0, count: rank), out = [Int](repeating: 0, count: rank)
        for i in 0..<rank {
            let input = x[i + 2]
            if input < 1 { throw DeformRTError.invalidModel("input shape \(x) has an empty spatial axis") }
            if op[i] >= max(s[i], d[i]) {
                throw DeformRTError.invalidModel("output_padding \(op) must be below max(stride, dilation) on each axis (strides \(s), dilations \(d))")
            }
            let span = (kernel[i] - 1) * d[i] + 1
            let full = (input - 1) * s[i] + op[i] + span
            if let outputShape {
                guard outputShape.count == rank else {
                    throw DeformRTError.invalidModel("output_shape \(outputShape) must have \(rank) values (the spatial sizes)")
                }
                out[i] = outputShape[i]
                let total = max(0, full - out[i])
                begin[i] = autoPad == "SAME_UPPER" ? total / 2 : total - total / 2
                if (out[i] + total - span) / s[i] + 1 != input {
                    throw DeformRTError.invalidModel("output_shape \(outputShape) is inconsistent with input shape \(x), kernel \(kernel), strides \(s), dilations \(d), output_padding \(op)")
                }
            } else if autoPad == "SAME_UPPER" || autoPad == "SAME_LOWER" {
                // in * s, or the unpadded size when that is smaller (onnxruntime pads by
                // max(0, ...) and never crops with negative padding; the spec leaves it open).
                let total = max(0, full - input * s[i])
                out[i] = full - total
                begin[i] = autoPad == "SAME_UPPER" ? total / 2 : total - total / 2
            } else {
                if autoPad == "NOTSET" { begin[i] = explicitPads[i] }
                out[i] = full - begin[i] - (autoPad == "NOTSET" ? explicitPads[i + rank] : 0)
                if out[i] < 1 {
                    throw DeformRTError.invalidModel("pads \(explicitPads) leave no output (input \(x), weight \(w), strides \(s))")
                }
            }
        }
        let mg = w[1]
        let outChannels = try Limits.product(mg, group, what: "output channels")
        _ = try Limits.elementCount([x[0], outChannels] + out, what: "ConvTranspose output")
        _ = try Limits.elementCount([w[0], w[1]] + kernel, what: "ConvTranspose weight")
        let is1D = rank == 1
        return ConvTransposeGeometry(
            batch: x[0], inChannels: x[1], inHeight: is1D ? 1 : x[2], inWidth: x[x.count - 1], outChannels: outChannels,
            kernelHeight: is1D ? 1 : kernel[0], kernelWidth: kernel[rank - 1],
            strideHeight: is1D ? 1 : s[0], strideWidth: s[rank - 1], dilationHeight: is1D ? 1 : d[0], dilationWidth: d[rank - 1],
            padTop: is1D ? 0 : begin[0], padLeft: begin[rank - 1],
            outHeight: is1D ? 1 : out[0], outWidth: out[rank - 1], group: group)
    }

    private func outputShape(_ g: ConvTransposeGeometry, rank: Int) -> [Int] {
        rank == 3 ? [g.batch, g.outChannels, g.outWidth] : [g.batch, g.outChannels, g.outHeight, g.outWidth]
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
        let shape = outputShape(g, rank: x.shape.count)
        try epilogue.plan(inputs, output: shape)
        return [PlanValue(ValueType(.float, shape))]
    }

    func workspaceByteCount(_ inputs: [ValueType?], _ outputs: [ValueType], threads: Int) -> Int {
        guard let g = try? geometry(inputs[0]!.shape, inputs[1]!.shape) else { return 0 }
        // Sized for the larger of the two paths: the plan's state decides which one runs.
        return max(ConvTranspose.Plan(g, threads: threads).workspaceByteCount,
                   ConvTranspose.Plan(g, threads: threads, packed: ConvTranspose.packsWeights).workspaceByteCount)
    }

    /// The kernel's plan, and the weight packed for the SIMD GEMM when it is a constant (once per plan).
    final class RunState {
        let plan: ConvTranspose.Plan
        let packedWeight: TensorStorage?
        init(plan: ConvTranspose.Plan, packedWeight: TensorStorage?) {
            self.plan = plan
            self.packedWeight = packedWeight
        }
    }

    func runState(_ inputs: [PlanValue?], _ outputs: [ValueType], threads: Int) throws -> AnyObject? {
        let g = try geometry(inputs[0]!.shape, inputs[1]!.shape)
        var packed: TensorStorage?
        if ConvTranspose.packsWeights, g.inChannels > 0, let w = inputs[1]?.constant, w.elementType == .float {
            let storage = TensorStorage(uninitializedByteCount: ConvTranspose.packedWeightByteCount(g))
            ConvTranspose.packWeights(g, weight: w.floats, into: storage.bytes)
            packed = storage
        }
        return RunState(plan: ConvTranspose.Plan(g, threads: threads, packed: packed != nil), packedWeight: packed)
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let state = try state(context, inputs, as: RunState.self)!
        let bias = inputs.count > 2 ? inputs[2]?.floats : nil
        state.plan.run(input: inputs[0]!.floats, weight: inputs[1]!.floats,
                       packedWeight: state.packedWeight.map { UnsafeRawPointer($0.bytes) }, bias: bias,
                       output: outputs[0].floats, workspace: context.workspace, parallel: context.parallel,
                       epilogue: epilogue.kernelEpilogue(inputs))
        try epilogue.finish(inputs, output: outputs[0], context)
    }
}
