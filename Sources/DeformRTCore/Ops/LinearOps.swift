import DeformRTKernels

/// Gemm: Y = alpha * op(A) * op(B) + beta * C, C broadcast to [M, N].
final class GemmOperator: Operator {
    let alpha: Float, beta: Float
    let transA: Bool, transB: Bool

    init(_ spec: OperatorSpec) throws {
        let a = spec.attributes
        alpha = try a.float("alpha", default: 1)
        beta = try a.float("beta", default: 1)
        transA = try a.int("transA", default: 0) != 0
        transB = try a.int("transB", default: 0) != 0
    }

    private func dims(_ a: [Int], _ b: [Int]) throws -> (m: Int, n: Int, k: Int) {
        guard a.count == 2, b.count == 2 else { throw DeformRTError.invalidModel("A and B must be 2-D, got shapes \(a) and \(b)") }
        let m = transA ? a[1] : a[0], k = transA ? a[0] : a[1]
        let kb = transB ? b[1] : b[0], n = transB ? b[0] : b[1]
        if k != kb { throw DeformRTError.invalidModel("inner dimensions differ: A \(a) (transA \(transA)) and B \(b) (transB \(transB))") }
        return (m, n, k)
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let a = try PlanCheck.input(inputs, 0, "A"), b = try PlanCheck.input(inputs, 1, "B")
        try PlanCheck.float(a, "A")
        try PlanCheck.float(b, "B")
        let (m, n, _) = try dims(a.shape, b.shape)
        if let c = PlanCheck.optionalInput(inputs, 2) {
            try PlanCheck.float(c, "C")
            if try Broadcast.shape(c.shape, [m, n]) != [m, n] {
                throw DeformRTError.invalidModel("C shape \(c.shape) does not broadcast to [\(m), \(n)]")
            }
        }
        return [PlanValue(ValueType(.float, [m, n]))]
    }

    private struct Dims {
        var m: Int, n: Int, k: Int
        var shape: [Int]       // [m, n]
        var cStrides: [Int]?   // C broadcast to [m, n]; nil without C (or with beta 0)
    }

    func runState(_ inputs: [PlanValue?], _ outputs: [ValueType]) throws -> AnyObject? {
        let a = try PlanCheck.input(inputs, 0, "A"), b = try PlanCheck.input(inputs, 1, "B")
        let (m, n, k) = try dims(a.shape, b.shape)
        let c = beta != 0 ? PlanCheck.optionalInput(inputs, 2) : nil
        return Planned(Dims(m: m, n: n, k: k, shape: [m, n], cStrides: c.map { Broadcast.strides($0.shape, into: [m, n]) }))
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let a = inputs[0]!, b = inputs[1]!, y = outputs[0]
        let d = try state(context, inputs, as: Planned<Dims>.self)!.value
        let (m, n, k) = (d.m, d.n, d.k)
        var beta: Float = 0
        if let c = inputs.count > 2 ? inputs[2] : nil, let cStrides = d.cStrides {
            // Broadcast C into Y, then let sgemm accumulate onto it.
            StridedCopy.copy(elementSize: 4, shape: d.shape, sourceStrides: cStrides, source: c.rawPointer,
                             destination: y.rawPointer, parallel: context.parallel)
            beta = self.beta
        }
        MatrixMultiply.run(transposeA: transA, transposeB: transB, m: m, n: n, k: k, alpha: alpha,
                           a: a.floats, lda: a.shape[1], b: b.floats, ldb: b.shape[1], beta: beta,
                           c: y.floats, ldc: n, parallel: context.parallel)
    }
}

/// MatMul with numpy semantics: batch dims broadcast, 1-D operands promoted and squeezed.
final class MatMulOperator: Operator {
    private struct Layout {
        var m: Int, n: Int, k: Int
        var batchShape: [Int]
        var aBatch: [Int], bBatch: [Int]
        var outShape: [Int]
    }

    private func layout(_ a: [Int], _ b: [Int]) throws -> Layout {
        guard !a.isEmpty, !b.isEmpty else { throw DeformRTError.invalidModel("MatMul operands must have rank >= 1, got \(a) and \(b)") }
        let a2 = a.count == 1 ? [1, a[0]] : a
        let b2 = b.count == 1 ? [b[0], 1] : b
        let m = a2[a2.count - 2], k = a2[a2.count - 1], kb = b2[b2.count - 2], n = b2[b2.count - 1]
        if k != kb { throw DeformRTError.invalidModel("inner dimensions differ: shapes \(a) and \(b)") }
        let aBatch = Array(a2.dropLast(2)), bBatch = Array(b2.dropLast(2))
        let batchShape = try Broadcast.shape(aBatch, bBatch)
        var outShape = batchShape
        if a.count > 1 { outShape.append(m) }
        if b.count > 1 { outShape.append(n) }
        return Layout(m: m, n: n, k: k, batchShape: batchShape, aBatch: aBatch, bBatch: bBatch, outShape: outShape)
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let a = try PlanCheck.input(inputs, 0, "A"), b = try PlanCheck.input(inputs, 1, "B")
        try PlanCheck.float(a, "A")
        try PlanCheck.float(b, "B")
        return [PlanValue(ValueType(.float, try layout(a.shape, b.shape).outShape))]
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let a = inputs[0]!, b = inputs[1]!
        let l = try layout(a.shape, b.shape)
        let pa = a.floats, pb = b.floats, py = outputs[0].floats
        let aStrides = Broadcast.strides(l.aBatch, into: l.batchShape)
        let bStrides = Broadcast.strides(l.bBatch, into: l.batchShape)
        let batches = l.batchShape.reduce(1, *)
        for batch in 0..<batches {
            var rest = batch, aIndex = 0, bIndex = 0
            for d in stride(from: l.batchShape.count - 1, through: 0, by: -1) {
                let i = rest % l.batchShape[d]
                rest /= l.batchShape[d]
                aIndex += i * aStrides[d]
                bIndex += i * bStrides[d]
            }
            MatrixMultiply.run(m: l.m, n: l.n, k: l.k, a: pa + aIndex * l.m * l.k, lda: l.k,
                               b: pb + bIndex * l.k * l.n, ldb: l.n, c: py + batch * l.m * l.n, ldc: l.n,
                               parallel: context.parallel)
        }
    }
}
