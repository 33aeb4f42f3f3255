import DeformRTKernels

/// DepthToSpace (DCR and, from opset 11, CRD) and SpaceToDepth (DCR and, from opset 28, CRD),
/// any element type.
/// Each is the spec's reshape to 6-D, transpose, reshape: a strided view of the input copied into
/// the output (StridedCopy, threaded over rows), made once per plan.
///   DepthToSpace DCR: [N, b, b, C/b², H, W] -> perm (0, 3, 4, 1, 5, 2) -> [N, C/b², H b, W b]
///   DepthToSpace CRD: [N, C/b², b, b, H, W] -> perm (0, 1, 4, 2, 5, 3)
///   SpaceToDepth DCR: [N, C, H/b, b, W/b, b] -> perm (0, 3, 5, 1, 2, 4) -> [N, C b², H/b, W/b]
///   SpaceToDepth CRD: [N, C, H/b, b, W/b, b] -> perm (0, 1, 3, 5, 2, 4)
final class SpaceDepthOperator: Operator {
    enum Kind { case depthToSpaceDCR, depthToSpaceCRD, spaceToDepthDCR, spaceToDepthCRD }
    let kind: Kind
    let blockSize: Int

    init(_ spec: OperatorSpec, toSpace: Bool) throws {
        guard let block = try spec.attributes.int("blocksize") else { throw spec.fail("missing attribute blocksize") }
        if block < 1 { throw spec.fail("blocksize must be >= 1, got \(block)") }
        if block > Limits.maxWindowValue { throw spec.fail("blocksize \(block) exceeds the limit of \(Limits.maxWindowValue)") }
        blockSize = block
        switch (toSpace, try spec.attributes.string("mode") ?? "DCR") {
        case (true, "DCR"): kind = .depthToSpaceDCR
        case (true, "CRD"): kind = .depthToSpaceCRD
        case (false, "DCR"): kind = .spaceToDepthDCR
        case (false, "CRD"): kind = .spaceToDepthCRD
        case let (_, mode): throw spec.fail("unknown mode '\(mode)' (DCR or CRD)")
        }
    }

    /// The output shape and the strided view of the input that, copied densely, is the output.
    private func view(_ x: [Int]) throws -> (shape: [Int], view: StridedView) {
        guard x.count == 4 else { throw DeformRTError.invalidModel("input must have rank 4 [N, C, H, W], got shape \(x)") }
        let (n, c, h, w, b) = (x[0], x[1], x[2], x[3], blockSize)
        let bb = try Limits.product(b, b, what: "blocksize squared")
        let six: [Int], perm: [Int], output: [Int]
        switch kind {
        case .depthToSpaceDCR, .depthToSpaceCRD:
            if c % bb != 0 { throw DeformRTError.invalidModel("channels \(c) are not divisible by blocksize² \(bb)") }
            six = kind == .depthToSpaceDCR ? [n, b, b, c / bb, h, w] : [n, c / bb, b, b, h, w]
            perm = kind == .depthToSpaceDCR ? [0, 3, 4, 1, 5, 2] : [0, 1, 4, 2, 5, 3]
            output = [n, c / bb, try Limits.product(h, b, what: "output height"), try Limits.product(w, b, what: "output width")]
        case .spaceToDepthDCR, .spaceToDepthCRD:
            if h % b != 0 || w % b != 0 {
                throw DeformRTError.invalidModel("height \(h) and width \(w) must be divisible by blocksize \(b)")
            }
            six = [n, c, h / b, b, w / b, b]
            perm = kind == .spaceToDepthDCR ? [0, 3, 5, 1, 2, 4] : [0, 1, 3, 5, 2, 4]
            output = [n, try Limits.product(c, bb, what: "output channels"), h / b, w / b]
        }
        _ = try Limits.elementCount(output, what: "output")
        var strides = [Int](repeating: 1, count: 6)
        for axis in stride(from: 4, through: 0, by: -1) { strides[axis] = strides[axis + 1] * six[axis + 1] }
        return (output, StridedView(shape: perm.map { six[$0] }, strides: perm.map { strides[$0] }, startOffset: 0))
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let x = try PlanCheck.input(inputs, 0, "input")
        return [PlanValue(ValueType(x.elementType, try view(x.shape).shape))]
    }

    func runState(_ inputs: [PlanValue?], _ outputs: [ValueType], threads: Int) throws -> AnyObject? {
        try view(PlanCheck.input(inputs, 0, "input").shape).view
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let view = try state(context, inputs, as: StridedView.self)!
        view.copy(inputs[0]!, into: outputs[0], parallel: context.parallel)
    }
}
