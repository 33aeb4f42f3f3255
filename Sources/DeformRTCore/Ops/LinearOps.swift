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

    /// B packed for the kernels when it is a constant (LinearProduct.swift).
    private let packedB = PackedConstantOperand()

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let a = try PlanCheck.input(inputs, 0, "A"), b = try PlanCheck.input(inputs, 1, "B")
        try PlanCheck.float(a, "A")
        try PlanCheck.float(b, "B")
        let (m, n, k) = try dims(a.shape, b.shape)
        if let c = PlanCheck.optionalInput(inputs, 2) {
            try PlanCheck.float(c, "C")
            if try Broadcast.shape(c.shape, [m, n]) != [m, n] {
                throw DeformRTError.invalidModel("C shape \(c.shape) does not broadcast to [\(m), \(n)]")
            }
        }
        let packs = LinearProductChoice.usesPackedKernels(m: m, n: n, k: k, constantB: b.constant != nil)
        packedB.prepare(packs ? b.constant : nil, batches: 1, k: k, n: n, transposed: transB)
        return [PlanValue(ValueType(.float, [m, n]))]
    }

    private struct Dims {
        var m: Int, n: Int, k: Int
        var shape: [Int]       // [m, n]
        var cStrides: [Int]?   // C broadcast to [m, n]; nil without C (or with beta 0)
        /// The packed-kernel product (nil: OpenBLAS) and B's packed copy when B is a constant.
        var product: BatchedLinearProduct?
        var packedB: PackedMatrix?
    }

    /// The product on the packed kernels, or nil for OpenBLAS: the same choice in every stage.
    private func product(m: Int, n: Int, k: Int) -> (BatchedLinearProduct, PackedMatrix?)? {
        let constant = packedB.matrices(batches: 1, k: k, n: n, transposed: transB)?.first
        guard LinearProductChoice.usesPackedKernels(m: m, n: n, k: k, constantB: constant != nil) else { return nil }
        return (BatchedLinearProduct(m: m, n: n, k: k, transposeA: transA, transposeB: transB, packsB: constant == nil),
                constant)
    }

    func workspaceByteCount(_ inputs: [ValueType?], _ outputs: [ValueType], threads: Int) -> Int {
        guard let a = inputs[0], let b = inputs[1], let d = try? dims(a.shape, b.shape),
              let chosen = product(m: d.m, n: d.n, k: d.k) else { return 0 }
        return chosen.0.workspaceBytes(threads: threads)
    }

    func runState(_ inputs: [PlanValue?], _ outputs: [ValueType], threads: Int) throws -> AnyObject? {
        let a = try PlanCheck.input(inputs, 0, "A"), b = try PlanCheck.input(inputs, 1, "B")
        let (m, n, k) = try dims(a.shape, b.shape)
        let c = beta != 0 ? PlanCheck.optionalInput(inputs, 2) : nil
        let packed = product(m: m, n: n, k: k)
        return Planned(Dims(m: m, n: n, k: k, shape: [m, n], cStrides: c.map { Broadcast.strides($0.shape, into: [m, n]) },
                            product: packed?.0, packedB: packed?.1))
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let a = inputs[0]!, b = inputs[1]!, y = outputs[0]
        let d = try state(context, inputs, as: Planned<Dims>.self)!.value
        let (m, n, k) = (d.m, d.n, d.k)
        let c = inputs.count > 2 ? inputs[2] : nil
        if let product = d.product {
            // Y = alpha A B + beta C in the tiles' epilogue, C read through its broadcast strides.
            var epilogue = LinearEpilogue(alpha: alpha)
            if let c, let cStrides = d.cStrides {
                epilogue = LinearEpilogue(alpha: alpha, addend: UnsafePointer(c.floats), addendRowStride: cStrides[0],
                                          addendColumnStride: cStrides[1], beta: beta)
            }
            if context.workspaceByteCount < product.workspaceBytes(threads: context.parallel.threads) {
                throw DeformRTError(.internal, "Gemm: workspace too small")
            }
            let packed = d.packedB.map { UnsafePointer($0.floats) }
            product.run(batches: 1, a: { _ in UnsafePointer(a.floats) }, b: { _ in UnsafePointer(b.floats) },
                        prepacked: { _ in packed! }, c: { _ in y.floats }, epilogue: epilogue,
                        workspace: context.workspace, parallel: context.parallel)
            return
        }
        var beta: Float = 0
        if let c, let cStrides = d.cStrides {
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
/// FusedMatMul (MatMulBiasFusion) also adds a bias [N] to every row.
final class MatMulOperator: Operator {
    /// Whether input 2 is a bias [N] (FusedMatMul).
    let addsBias: Bool

    init(addsBias: Bool = false) {
        self.addsBias = addsBias
    }

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

    private let packedB = PackedConstantOperand()

    /// Products over the batch dims: a B shared by every batch (a Linear layer's weight) makes
    /// one product with the batches stacked into M.
    private struct Batching {
        var batches: Int, m: Int
        var bBatches: Int
        var aOffsets: [Int], bOffsets: [Int]   // per batch, in matrices
    }

    private func batching(_ l: Layout, aRank: Int) -> Batching {
        let batches = l.batchShape.reduce(1, *)
        let aCount = l.aBatch.reduce(1, *), bCount = l.bBatch.reduce(1, *)
        if bCount == 1 && aCount == batches && aRank > 1 {
            return Batching(batches: 1, m: batches * l.m, bBatches: 1, aOffsets: [0], bOffsets: [0])
        }
        let aStrides = Broadcast.strides(l.aBatch, into: l.batchShape)
        let bStrides = Broadcast.strides(l.bBatch, into: l.batchShape)
        var aOffsets: [Int] = [], bOffsets: [Int] = []
        for batch in 0..<batches {
            var rest = batch, aIndex = 0, bIndex = 0
            for d in stride(from: l.batchShape.count - 1, through: 0, by: -1) {
                let i = rest % l.batchShape[d]
                rest /= l.batchShape[d]
                aIndex += i * aStrides[d]
                bIndex += i * bStrides[d]
            }
            aOffsets.append(aIndex)
            bOffsets.append(bIndex)
        }
        return Batching(batches: batches, m: l.m, bBatches: bCount, aOffsets: aOffsets, bOffsets: bOffsets)
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let a = try PlanCheck.input(inputs, 0, "A"), b = try PlanCheck.input(inputs, 1, "B")
        try PlanCheck.float(a, "A")
        try PlanCheck.float(b, "B")
        let l = try layout(a.shape, b.shape)
        if addsBias {
            let bias = try PlanCheck.input(inputs, 2, "bias")
            try PlanCheck.float(bias, "bias")
            if bias.shape != [l.n] { throw DeformRTError.invalidModel("bias shape \(bias.shape) must be [\(l.n)]") }
        }
        let m = batching(l, aRank: a.shape.count).m
        let packs = LinearProductChoice.usesPackedKernels(m: m, n: l.n, k: l.k, constantB: b.constant != nil)
        packedB.prepare(packs ? b.constant : nil, batches: l.bBatch.reduce(1, *), k: l.k, n: l.n, transposed: false)
        return [PlanValue(ValueType(.float, l.outShape))]
    }

    private final class State {
        let layout: Layout
        let batching: Batching
        let product: BatchedLinearProduct?
        let packedB: [PackedMatrix]?
        init(_ layout: Layout, _ batching: Batching, _ product: BatchedLinearProduct?, _ packedB: [PackedMatrix]?) {
            self.layout = layout
            self.batching = batching
            self.product = product
            self.packedB = packedB
        }
    }

    private func makeState(_ a: [Int], _ b: [Int]) throws -> State {
        let l = try layout(a, b)
        let batching = batching(l, aRank: a.count)
        let constant = packedB.matrices(batches: batching.bBatches, k: l.k, n: l.n, transposed: false)
        var product: BatchedLinearProduct?
        if LinearProductChoice.usesPackedKernels(m: batching.m, n: l.n, k: l.k, constantB: constant != nil) {
            product = BatchedLinearProduct(m: batching.m, n: l.n, k: l.k, transposeA: false, transposeB: false,
                                           packsB: constant == nil)
        }
        return State(l, batching, product, product == nil ? nil : constant)
    }

    func workspaceByteCount(_ inputs: [ValueType?], _ outputs: [ValueType], threads: Int) -> Int {
        guard let a = inputs[0], let b = inputs[1], let state = try? makeState(a.shape, b.shape) else { return 0 }
        return state.product?.workspaceBytes(threads: threads) ?? 0
    }

    func runState(_ inputs: [PlanValue?], _ outputs: [ValueType], threads: Int) throws -> AnyObject? {
        let a = try PlanCheck.input(inputs, 0, "A"), b = try PlanCheck.input(inputs, 1, "B")
        return try makeState(a.shape, b.shape)
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let a = inputs[0]!, b = inputs[1]!
        let state = try state(context, inputs, as: State.self)!
        let l = state.layout, batching = state.batching
        let pa = a.floats, pb = b.floats, py = outputs[0].floats
        let m = batching.m, (n, k) = (l.n, l.k)
        let bias = addsBias ? UnsafePointer(inputs[2]!.floats) : nil
        if let product = state.product {
            if context.workspaceByteCount < product.workspaceBytes(threads: context.parallel.threads) {
                throw DeformRTError(.internal, "MatMul: workspace too small")
            }
            let packed = state.packedB
            product.run(batches: batching.batches, a: { UnsafePointer(pa + batching.aOffsets[$0] * m * k) },
                        b: { UnsafePointer(pb + batching.bOffsets[$0] * k * n) },
                        prepacked: { UnsafePointer(packed![batching.bOffsets[$0]].floats) },
                        c: { py + $0 * m * n }, epilogue: LinearEpilogue(addend: bias, addendRowStride: 0),
                        workspace: context.workspace, parallel: context.parallel)
            return
        }
        for batch in 0..<batching.batches {
            MatrixMultiply.run(m: m, n: n, k: k, a: pa + batching.aOffsets[batch] * m * k, lda: k,
                               b: pb + batching.bOffsets[batch] * k * n, ldb: n, c: py + batch * m * n, ldc: n,
                               parallel: context.parallel)
        }
        if let bias {
            let rows = batching.batches * m
            context.parallel.forEachRange(rows, totalWork: rows * n) { _, range in
                LinearEpilogue(addend: bias, addendRowStride: 0).apply(py, ldc: n, rows: range, col: 0, count: n)
            }
        }
    }
}
