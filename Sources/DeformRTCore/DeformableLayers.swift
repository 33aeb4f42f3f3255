/// A graph's deformable convolutions and where they sample, for tools that read their offsets
/// (`deformrt analyze`). The geometry comes from the same attribute parsing the operator uses.
public struct DeformableLayer: Sendable {
    public let name: String
    public let opType: String
    /// Value names of the layer's input, its offsets and (modulated) its mask.
    public let input: String
    public let offset: String
    public let mask: String?
    public let kernel: [Int]
    public let strides: [Int]
    public let dilations: [Int]
    public let offsetGroups: Int
    let window: Window2D

    /// Pads [top, left, bottom, right] for an input map of [height, width].
    public func pads(inputSize: [Int]) throws -> [Int] { try window.resolvedPads(size: inputSize) }

    /// Sampling locations of every output position, in input-map pixels: [offset group][position]
    /// [tap] as (y, x); offsets [offsetGroups * taps * 2, outH, outW] as ONNX lays them out.
    public func samplingLocations(offsets: UnsafeBufferPointer<Float>, outputSize: [Int], inputSize: [Int]) throws -> [[[(y: Float, x: Float)]]] {
        let pads = try pads(inputSize: inputSize)
        let taps = kernel[0] * kernel[1], positions = outputSize[0] * outputSize[1]
        guard offsets.count == offsetGroups * taps * 2 * positions else {
            throw DeformRTError.invalidArgument("layer \(name): \(offsets.count) offsets for \(offsetGroups) group(s) of \(taps) taps at \(outputSize)")
        }
        return (0..<offsetGroups).map { group in
            (0..<positions).map { position in
                let oy = position / outputSize[1], ox = position % outputSize[1]
                return (0..<taps).map { tap in
                    let channel = (group * taps + tap) * 2
                    let dy = offsets[channel * positions + position], dx = offsets[(channel + 1) * positions + position]
                    let y = Float(oy * strides[0] - pads[0] + (tap / kernel[1]) * dilations[0]) + dy
                    let x = Float(ox * strides[1] - pads[1] + (tap % kernel[1]) * dilations[1]) + dx
                    return (y, x)
                }
            }
        }
    }
}

extension Graph {
    /// The deformable convolutions (every spelling DeformRT runs) in graph order.
    public func deformableLayers() throws -> [DeformableLayer] {
        try nodes.compactMap { node -> DeformableLayer? in
            let spelling: DeformConvOperator.Spelling
            switch (node.domain, node.opType) {
            case ("", "DeformConv"): spelling = .onnx
            case ("mmcv", "MMCVModulatedDeformConv2d"), ("mmdeploy", "MMCVModulatedDeformConv2d"): spelling = .mmcvModulated
            case ("mmcv", "MMCVDeformConv2d"), ("mmdeploy", "MMCVDeformConv2d"): spelling = .mmcv
            case ("org.openvinotoolkit", "DeformableConv2D"): spelling = .openVINO
            default: return nil
            }
            return try node.naming {
                let op = try DeformConvOperator(OperatorSpec(node: node, opset: opset(for: node.domain) ?? 1), spelling: spelling)
                let slots = op.slots
                let name = { (slot: Int?) -> String? in
                    guard let slot, slot < node.inputs.count, let id = node.inputs[slot] else { return nil }
                    return valueNames[id]
                }
                guard let input = name(slots.x), let offset = name(slots.offset) else {
                    throw DeformRTError.invalidModel("missing input or offset")
                }
                var kernel = op.window.kernel
                if kernel.count != 2, let wId = node.inputs[slots.w], let weight = initializers[wId], weight.shape.count == 4 {
                    kernel = Array(weight.shape[2...])
                }
                guard kernel.count == 2, op.window.strides.count == 2, op.window.dilations.count == 2 else {
                    throw DeformRTError.unsupported("the kernel size is not known (no kernel_shape and the weight is not an initializer)")
                }
                var window = op.window
                window.kernel = kernel
                return DeformableLayer(name: node.name.isEmpty ? node.label : node.name, opType: node.opType, input: input,
                                       offset: offset, mask: name(slots.mask), kernel: kernel, strides: window.strides,
                                       dilations: window.dilations, offsetGroups: op.offsetGroup, window: window)
            }
        }
    }
}
