import DeformRTKernels

/// MaxPool and AveragePool over 2-D maps (1-D runs as 2-D over a height-1 map).
final class PoolOperator: Operator {
    enum Kind { case max, average, lp }
    let kind: Kind
    /// LpPool's exponent (1 for the others).
    let p: Int
    let window: Window2D
    let ceilMode: Bool
    let countIncludePad: Bool
    /// ai.deformrt ChannelsLastMaxPool / ChannelsLastAveragePool: [N, H, W, C] in and out.
    let channelsLast: Bool

    init(_ spec: OperatorSpec, kind: Kind, channelsLast: Bool = false) throws {
        self.kind = kind
        self.channelsLast = channelsLast
        window = try Window2D(spec, kernelRequired: true, spatialRank: (try spec.attributes.ints("kernel_shape"))?.count ?? 2)
        ceilMode = try spec.attributes.int("ceil_mode", default: 0) != 0
        countIncludePad = try spec.attributes.int("count_include_pad", default: 0) != 0
        p = kind == .lp ? try spec.attributes.int("p", default: 2) : 1
        if p < 1 || p > 64 { throw spec.fail("p must be in 1...64, got \(p)") }
        if spec.node.outputs.count > 1 { throw DeformRTError.unsupported("node \(spec.node.label) (MaxPool): the Indices output is not supported") }
        if kind == .max, try spec.attributes.int("storage_order", default: 0) != 0 {
            throw DeformRTError.unsupported("node \(spec.node.label) (MaxPool): storage_order 1 is not supported")
        }
    }

    /// The geometry for an input stored as `physical` (planes: images when channels-last).
    private func geometry(_ physical: [Int]) throws -> PoolGeometry {
        if channelsLast && physical.count != 4 {
            throw DeformRTError.invalidModel("a channels-last pooling input must have rank 4, got shape \(physical)")
        }
        let x = channelsLast ? [physical[0], physical[3], physical[1], physical[2]] : physical
        guard x.count == 4 || x.count == 3 else { throw DeformRTError.unsupported("only 1-D and 2-D pooling is supported (input shape \(x))") }
        // One kernel dim per spatial dim: a 2-D window over a 1-D input would write rows its output lacks.
        guard window.kernel.count == x.count - 2 else {
            throw DeformRTError.invalidModel("kernel_shape \(window.kernel) does not match input shape \(x)")
        }
        var window = window
        if x.count == 3 { window.liftTo2D() }
        let h = x.count == 3 ? 1 : x[2], w = x.count == 3 ? x[2] : x[3]
        let pads = try window.resolvedPads(size: [h, w])
        guard let oh = Window2D.outputSize(h, kernel: window.kernel[0], stride: window.strides[0], dilation: window.dilations[0],
                                           padBegin: pads[0], padEnd: pads[2], ceilMode: ceilMode),
              let ow = Window2D.outputSize(w, kernel: window.kernel[1], stride: window.strides[1], dilation: window.dilations[1],
                                           padBegin: pads[1], padEnd: pads[3], ceilMode: ceilMode) else {
            throw DeformRTError.invalidModel("the pooling window does not fit input shape \(x)")
        }
        let outH: Int, outW: Int
        if window.autoPad == "SAME_UPPER" || window.autoPad == "SAME_LOWER" {
            outH = (h + window.strides[0] - 1) / window.strides[0]
            outW = (w + window.strides[1] - 1) / window.strides[1]
        } else { outH = oh; outW = ow }
        if x.count == 3 && outH != 1 {
            throw DeformRTError.invalidModel("a 1-D pooling window takes 2 pads [begin, end], got \(self.window.pads ?? [])")
        }
        return PoolGeometry(planes: channelsLast ? x[0] : x[0] * x[1], inHeight: h, inWidth: w, outHeight: outH, outWidth: outW,
                            kernelHeight: window.kernel[0], kernelWidth: window.kernel[1],
                            strideHeight: window.strides[0], strideWidth: window.strides[1],
                            dilationHeight: window.dilations[0], dilationWidth: window.dilations[1],
                            padTop: pads[0], padLeft: pads[1], padBottom: pads[2], padRight: pads[3])
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let x = try PlanCheck.input(inputs, 0, "X")
        try PlanCheck.float(x, "X")
        let g = try geometry(x.shape)
        let shape = channelsLast ? [x.shape[0], g.outHeight, g.outWidth, x.shape[3]]
            : x.shape.count == 3 ? [x.shape[0], x.shape[1], g.outWidth] : [x.shape[0], x.shape[1], g.outHeight, g.outWidth]
        return [PlanValue(ValueType(.float, shape))]
    }

    func runState(_ inputs: [PlanValue?], _ outputs: [ValueType], threads: Int) throws -> AnyObject? {
        Planned(try geometry(try PlanCheck.input(inputs, 0, "X").shape))
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let g = try state(context, inputs, as: Planned<PoolGeometry>.self)!.value
        if channelsLast {
            let channels = inputs[0]!.shape[3]
            switch kind {
            case .max: ChannelsLastPooling.max(g, channels: channels, input: inputs[0]!.floats, output: outputs[0].floats,
                                               parallel: context.parallel)
            case .average: ChannelsLastPooling.average(g, channels: channels, countIncludePad: countIncludePad,
                                                       input: inputs[0]!.floats, output: outputs[0].floats,
                                                       parallel: context.parallel)
            case .lp: throw DeformRTError.unsupported("LpPool has no channels-last form")
            }
            return
        }
        switch kind {
        case .max: Pooling.max(g, input: inputs[0]!.floats, output: outputs[0].floats, parallel: context.parallel)
        case .average: Pooling.average(g, countIncludePad: countIncludePad, input: inputs[0]!.floats,
                                       output: outputs[0].floats, parallel: context.parallel)
        case .lp: Pooling.lp(g, p: p, input: inputs[0]!.floats, output: outputs[0].floats, parallel: context.parallel)
        }
    }
}

/// GlobalAveragePool: mean over every spatial dim, keeping them as size 1. The channels-last
/// form (ai.deformrt ChannelsLastGlobalAveragePool) reads [N, H, W, C] and returns the same
/// [N, C, 1, 1] as the plain one: a layout conversion that costs nothing.
final class GlobalAveragePoolOperator: Operator {
    let channelsLast: Bool

    init(channelsLast: Bool = false) {
        self.channelsLast = channelsLast
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let x = try PlanCheck.input(inputs, 0, "X")
        try PlanCheck.float(x, "X")
        if channelsLast {
            if x.shape.count != 4 { throw DeformRTError.invalidModel("a channels-last input must have rank 4, got shape \(x.shape)") }
            return [PlanValue(ValueType(.float, [x.shape[0], x.shape[3], 1, 1]))]
        }
        if x.shape.count < 3 { throw DeformRTError.invalidModel("input must have rank >= 3, got shape \(x.shape)") }
        return [PlanValue(ValueType(.float, [x.shape[0], x.shape[1]] + [Int](repeating: 1, count: x.shape.count - 2)))]
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let x = inputs[0]!
        if channelsLast {
            ChannelsLastPooling.globalAverage(batch: x.shape[0], pixels: x.shape[1] * x.shape[2], channels: x.shape[3],
                                              input: x.floats, output: outputs[0].floats, parallel: context.parallel)
            return
        }
        Pooling.globalAverage(planes: x.shape[0] * x.shape[1], size: x.shape.dropFirst(2).reduce(1, *),
                              input: x.floats, output: outputs[0].floats, parallel: context.parallel)
    }
}

