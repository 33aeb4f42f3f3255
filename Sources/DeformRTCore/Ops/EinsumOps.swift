import DeformRTKernels

/// Einsum over float and double tensors (double always runs the general loop), any valid equation: explicit ("bij,bjk->bik") or implicit output,
/// "..." (right-aligned, broadcast where a dim is 1), repeated letters in one operand (diagonals),
/// letters summed away, any number of operands.
///
/// Two-operand equations where every letter is a batch, row, column or contracted letter (batched
/// matmul "bij,bjk->bik", attention "bhqd,bhkd->bhqk", "ij,jk") run as one GEMM per batch after
/// permuting the operands into [batch, m, k] / [batch, k, n] (copies skipped when already so);
/// one-operand permutations ("nchw->nhwc") are one strided copy. Everything else runs the general
/// loop: per output element, the sum over the contracted letters of the operands' product.
final class EinsumOperator: Operator {
    let equation: String
    let label: String
    /// Largest number of operand reads the general loop may do in one run (2^34, ~10 s).
    static let maxGeneralWork = Double(1 << 34)

    init(_ spec: OperatorSpec) throws {
        guard let equation = try spec.attributes.string("equation") else { throw spec.fail("missing attribute 'equation'") }
        self.equation = equation.filter { $0 != " " }
        label = "node \(spec.node.label) (Einsum)"
    }

    /// The equation bound to shapes: a letter id per operand dim (ellipsis dims get ids from 52
    /// on), the output's ids, each id's size, and how the run goes.
    final class Bound {
        var operands: [[Int]] = []
        var output: [Int] = []
        var sizes: [Int] = []
        var outputShape: [Int] = []
        /// Per operand, per letter id: the element stride (0 where absent or broadcast).
        var strides: [[Int]] = []
        /// Contracted letter ids (in no output), in a fixed order.
        var contracted: [Int] = []
        var gemm: Gemm?
        /// `product`, made once by runState.
        var packedProduct: BatchedLinearProduct?

        struct Gemm {
            var batch: [Int], m: [Int], n: [Int], k: [Int]
            var batchCount: Int, mCount: Int, nCount: Int, kCount: Int
            /// Views that permute A, B into [batch, m, k], [batch, k, n] (nil: already so, or
            /// stored as [batch, k, m] / [batch, n, k], which the GEMM reads transposed).
            var aView: ([Int], [Int])?, bView: ([Int], [Int])?
            var transposeA: Bool, transposeB: Bool
            /// The view that permutes C [batch, m, n] into the output (nil: C is the output).
            var cView: ([Int], [Int])?
        }

        var workspaceFloats: Int {
            guard let g = gemm else { return 0 }
            return (g.aView != nil ? g.batchCount * g.mCount * g.kCount : 0) + (g.bView != nil ? g.batchCount * g.kCount * g.nCount : 0)
                + (g.cView != nil ? g.batchCount * g.mCount * g.nCount : 0)
        }

        /// The products on the packed kernels (B packed per run), or nil for OpenBLAS.
        var product: BatchedLinearProduct? {
            guard let g = gemm, LinearProductChoice.usesPackedKernels(m: g.mCount, n: g.nCount, k: g.kCount, constantB: false)
            else { return nil }
            return BatchedLinearProduct(m: g.mCount, n: g.nCount, k: g.kCount, transposeA: g.transposeA,
                                        transposeB: g.transposeB, packsB: true)
        }

        /// Where the packed products' workspace starts, in bytes (after the views, 64-byte aligned).
        var productWorkspaceAt: Int { (workspaceFloats + 15) / 16 * 64 }
    }

    private static func letterID(_ c: Character) -> Int? {
        guard let a = c.asciiValue else { return nil }
        if a >= 97 && a <= 122 { return Int(a - 97) }
        if a >= 65 && a <= 90 { return 26 + Int(a - 65) }
        return nil
    }

    /// The letters of one term; `ellipsisAt` is where "..." stands (nil: none).
    private func term(_ text: Substring) throws -> (letters: [Int], ellipsisAt: Int?) {
        var letters: [Int] = [], ellipsisAt: Int?
        var rest = text
        while let c = rest.first {
            if rest.hasPrefix("...") {
                if ellipsisAt != nil { throw DeformRTError.invalidModel("equation '\(equation)': more than one ellipsis in a term") }
                ellipsisAt = letters.count
                rest = rest.dropFirst(3)
                continue
            }
            guard let id = EinsumOperator.letterID(c) else {
                throw DeformRTError.invalidModel("equation '\(equation)': unexpected character '\(c)'")
            }
            letters.append(id)
            rest = rest.dropFirst()
        }
        return (letters, ellipsisAt)
    }

    func bind(_ shapes: [[Int]]) throws -> Bound {
        let sides = equation.components(separatedBy: "->")
        if sides.count > 2 { throw DeformRTError.invalidModel("equation '\(equation)' has more than one '->'") }
        let terms = sides[0].split(separator: ",", omittingEmptySubsequences: false)
        if terms.count != shapes.count {
            throw DeformRTError.invalidModel("equation '\(equation)' has \(terms.count) operands, the node \(shapes.count) inputs")
        }
        let bound = Bound()
        var sizes = [Int](repeating: -1, count: 52 + Limits.maxRank)
        var ellipsisRank = 0
        var parsed: [(letters: [Int], ellipsisAt: Int?)] = []
        for (index, text) in terms.enumerated() {
            let t = try term(text)
            let rank = shapes[index].count
            if t.ellipsisAt == nil ? t.letters.count != rank : t.letters.count > rank {
                throw DeformRTError.invalidModel("operand \(index) has shape \(shapes[index]), which term '\(text)' does not fit")
            }
            if t.ellipsisAt != nil { ellipsisRank = max(ellipsisRank, rank - t.letters.count) }
            parsed.append(t)
        }
        var counts = [Int](repeating: 0, count: 52)
        for (index, t) in parsed.enumerated() {
            let shape = shapes[index]
            var ids = t.letters
            if let at = t.ellipsisAt {
                let e = shape.count - t.letters.count
                ids.insert(contentsOf: (0..<e).map { 52 + ellipsisRank - e + $0 }, at: at)
            }
            for (d, id) in ids.enumerated() {
                if id < 52 { counts[id] += 1 }
                let size = shape[d]
                if sizes[id] == -1 || sizes[id] == 1 && id >= 52 { sizes[id] = size } else if sizes[id] != size && !(id >= 52 && size == 1) {
                    throw DeformRTError.invalidModel("equation '\(equation)': dimension \(d) of operand \(index) is \(size), elsewhere \(sizes[id])")
                }
            }
            bound.operands.append(ids)
        }
        let ellipsisIDs = (0..<ellipsisRank).map { 52 + $0 }
        if sides.count == 2 {
            let t = try term(Substring(sides[1]))
            if t.ellipsisAt != nil && parsed.allSatisfy({ $0.ellipsisAt == nil }) {
                throw DeformRTError.invalidModel("equation '\(equation)': ellipsis in the output only")
            }
            var ids = t.letters
            if let at = t.ellipsisAt { ids.insert(contentsOf: ellipsisIDs, at: at) }
            if Set(ids).count != ids.count { throw DeformRTError.invalidModel("equation '\(equation)': a letter repeats in the output") }
            for id in ids where id < 52 && counts[id] == 0 {
                throw DeformRTError.invalidModel("equation '\(equation)': output letter is in no operand")
            }
            bound.output = ids
        } else {
            // Implicit: the broadcast dims, then the letters seen once, in alphabetical (ASCII) order.
            let once = (0..<52).filter { counts[$0] == 1 }.sorted { ($0 >= 26 ? $0 - 26 : $0 + 100) < ($1 >= 26 ? $1 - 26 : $1 + 100) }
            bound.output = ellipsisIDs + once
        }
        for id in sizes.indices where sizes[id] == -1 { sizes[id] = 1 }
        bound.sizes = sizes
        bound.outputShape = bound.output.map { sizes[$0] }
        let outputSet = Set(bound.output)
        var contracted: [Int] = []
        for ids in bound.operands { for id in ids where !outputSet.contains(id) && !contracted.contains(id) { contracted.append(id) } }
        bound.contracted = contracted
        bound.strides = zip(bound.operands, shapes).map { ids, shape in
            var strides = [Int](repeating: 0, count: sizes.count)
            var running = 1
            for d in stride(from: ids.count - 1, through: 0, by: -1) {
                if shape[d] != 1 || sizes[ids[d]] == 1 { strides[ids[d]] += running }
                running *= shape[d]
            }
            return strides
        }
        bound.gemm = gemmPlan(bound, shapes)
        return bound
    }

    /// The GEMM form of a two-operand equation, when it has one.
    private func gemmPlan(_ b: Bound, _ shapes: [[Int]]) -> Bound.Gemm? {
        guard b.operands.count == 2 else { return nil }
        let a = b.operands[0], c = b.operands[1], out = b.output
        guard Set(a).count == a.count, Set(c).count == c.count else { return nil }
        for (ids, shape) in zip(b.operands, shapes) where zip(ids, shape).contains(where: { b.sizes[$0] != $1 }) { return nil }
        let sa = Set(a), sc = Set(c), so = Set(out)
        // A letter in one operand only and not in the output would need its own sum first.
        if sa.contains(where: { !sc.contains($0) && !so.contains($0) }) || sc.contains(where: { !sa.contains($0) && !so.contains($0) }) { return nil }
        let batch = out.filter { sa.contains($0) && sc.contains($0) }
        let m = out.filter { sa.contains($0) && !sc.contains($0) }
        let n = out.filter { sc.contains($0) && !sa.contains($0) }
        let k = a.filter { sc.contains($0) && !so.contains($0) }
        let count = { (ids: [Int]) in ids.reduce(1) { $0 * b.sizes[$1] } }
        func view(_ ids: [Int], _ order: [Int], _ strides: [Int]) -> ([Int], [Int])? {
            if ids == order { return nil }
            return (order.map { b.sizes[$0] }, order.map { strides[$0] })
        }
        var outStrides = [Int](repeating: 0, count: b.sizes.count)
        var running = 1
        for id in (batch + m + n).reversed() { outStrides[id] = running; running *= b.sizes[id] }
        let transposeA = a == batch + k + m && a != batch + m + k
        let transposeB = c == batch + n + k && c != batch + k + n
        return Bound.Gemm(batch: batch, m: m, n: n, k: k, batchCount: count(batch), mCount: count(m), nCount: count(n), kCount: count(k),
                          aView: transposeA ? nil : view(a, batch + m + k, b.strides[0]),
                          bView: transposeB ? nil : view(c, batch + k + n, b.strides[1]),
                          transposeA: transposeA, transposeB: transposeB,
                          cView: view(batch + m + n, out, outStrides))
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let operands = inputs.compactMap { $0 }
        if operands.count != inputs.count || operands.isEmpty { throw DeformRTError.invalidModel("every input must be given") }
        let type = operands[0].elementType
        if type != .float && type != .double {
            throw DeformRTError.unsupported("input Inputs[0] is \(type.onnxName); float and double are supported")
        }
        for (i, x) in operands.enumerated() where x.elementType != type {
            throw DeformRTError.invalidModel("input Inputs[\(i)] is \(x.elementType.onnxName), Inputs[0] \(type.onnxName)")
        }
        let bound = try bind(operands.map(\.shape))
        if type == .double { bound.gemm = nil }
        if bound.gemm == nil {
            // The general loop does one multiply per operand per term: a hostile equation over
            // large dims would run for hours, so its work is capped (a GEMM-shaped one is not).
            var work = 1.0
            for id in Set(bound.output + bound.contracted) { work *= Double(bound.sizes[id]) }
            if work * Double(operands.count) > EinsumOperator.maxGeneralWork {
                throw DeformRTError.unsupported("equation '\(equation)' on shapes \(operands.map(\.shape)) needs \(work) terms in the general loop (limit \(Int(EinsumOperator.maxGeneralWork)))")
            }
        }
        return [PlanValue(ValueType(type, bound.outputShape))]
    }

    func runState(_ inputs: [PlanValue?], _ outputs: [ValueType], threads: Int) throws -> AnyObject? {
        let bound = try bind(inputs.map { $0?.shape ?? [] })
        if inputs.first??.elementType != .float { bound.gemm = nil }
        bound.packedProduct = bound.product
        return bound
    }

    func workspaceByteCount(_ inputs: [ValueType?], _ outputs: [ValueType], threads: Int) -> Int {
        if inputs.first??.elementType != .float { return 0 }
        guard let bound = try? bind(inputs.map { $0?.shape ?? [] }) else { return 0 }
        guard let product = bound.product else { return bound.workspaceFloats * 4 }
        return bound.productWorkspaceAt + product.workspaceBytes(threads: threads)
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let bound = try state(context, inputs, as: Bound.self)!
        let out = outputs[0]
        if let g = bound.gemm {
            let needed = bound.packedProduct.map { bound.productWorkspaceAt + $0.workspaceBytes(threads: context.parallel.threads) }
                ?? bound.workspaceFloats * 4
            if context.workspaceByteCount < needed { throw DeformRTError(.internal, "\(label): workspace too small") }
            runGemm(bound, g, inputs[0]!, inputs[1]!, out, context)
            return
        }
        if inputs.count == 1 && bound.contracted.isEmpty && Set(bound.operands[0]).count == bound.operands[0].count {
            StridedCopy.copy(elementSize: out.elementType.byteSize, shape: bound.outputShape,
                             sourceStrides: bound.output.map { bound.strides[0][$0] },
                             source: inputs[0]!.rawPointer, destination: out.rawPointer, parallel: context.parallel)
            return
        }
        if out.elementType == .double {
            runGeneral(bound, inputs.map { $0!.pointer(Double.self) }, out.pointer(Double.self), context)
        } else {
            runGeneral(bound, inputs.map { $0!.floats }, out.floats, context)
        }
    }

    private func runGemm(_ bound: Bound, _ g: Bound.Gemm, _ a: Tensor, _ b: Tensor, _ out: Tensor, _ context: RunContext) {
        var scratch = context.workspace.assumingMemoryBound(to: Float.self)
        func place(_ view: ([Int], [Int])?, _ source: Tensor, _ count: Int) -> UnsafeMutablePointer<Float> {
            guard let (shape, strides) = view else { return source.floats }
            StridedCopy.copy(elementSize: 4, shape: shape, sourceStrides: strides, source: source.rawPointer,
                             destination: UnsafeMutableRawPointer(scratch), parallel: context.parallel)
            defer { scratch += count }
            return scratch
        }
        let pa = place(g.aView, a, g.batchCount * g.mCount * g.kCount)
        let pb = place(g.bView, b, g.batchCount * g.kCount * g.nCount)
        let pc = g.cView == nil ? out.floats : scratch
        let (m, n, k) = (g.mCount, g.nCount, g.kCount)
        if let product = bound.packedProduct {
            product.run(batches: g.batchCount, a: { UnsafePointer(pa + $0 * m * k) }, b: { UnsafePointer(pb + $0 * k * n) },
                        prepacked: { _ in UnsafePointer(pb) }, c: { pc + $0 * m * n },
                        workspace: context.workspace + bound.productWorkspaceAt, parallel: context.parallel)
        } else {
            multiplyOnBLAS(g, a: pa, b: pb, c: pc, context.parallel)
        }
        if let (shape, strides) = g.cView {
            StridedCopy.copy(elementSize: 4, shape: shape, sourceStrides: strides, source: pc, destination: out.rawPointer,
                             parallel: context.parallel)
        }
    }

    private func multiplyOnBLAS(_ g: Bound.Gemm, a pa: UnsafeMutablePointer<Float>, b pb: UnsafeMutablePointer<Float>,
                                c pc: UnsafeMutablePointer<Float>, _ parallel: Parallel) {
        let (m, n, k) = (g.mCount, g.nCount, g.kCount)
        let lda = max(g.transposeA ? m : k, 1), ldb = max(g.transposeB ? k : n, 1)
        let (transposeA, transposeB) = (g.transposeA, g.transposeB)
        func multiply(_ batch: Int, _ parallel: Parallel) {
            MatrixMultiply.run(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k,
                               a: pa + batch * m * k, lda: lda, b: pb + batch * k * n, ldb: ldb,
                               c: pc + batch * m * n, ldc: max(n, 1), parallel: parallel)
        }
        // Several batches: one thread per batch (small per-head products gain nothing from
        // splitting one GEMM); one batch: the GEMM splits itself.
        if g.batchCount > 1 {
            parallel.forEachRange(g.batchCount, totalWork: g.batchCount * m * n * k) { _, range in
                for batch in range { multiply(batch, .serial) }
            }
        } else {
            multiply(0, parallel)
        }
    }

    /// out[o] = sum over the contracted letters of the product of the operands.
    private func runGeneral<T: BinaryFloatingPoint>(_ b: Bound, _ operands: [UnsafeMutablePointer<T>], _ out: UnsafeMutablePointer<T>,
                                                    _ context: RunContext) {
        let outputCount = b.outputShape.reduce(1, *)
        if outputCount == 0 { return }
        let contractedSizes = b.contracted.map { b.sizes[$0] }
        let contractedCount = contractedSizes.reduce(1, *)
        let count = operands.count
        // Per operand, the strides along the output letters and the contracted letters.
        let outStrides = (0..<count).map { i in b.output.map { b.strides[i][$0] } }
        let sumStrides = (0..<count).map { i in b.contracted.map { b.strides[i][$0] } }
        let outShape = b.outputShape
        context.parallel.forEachRange(outputCount, totalWork: outputCount * max(contractedCount, 1) * count) { _, range in
            withUnsafeTemporaryAllocation(of: Int.self, capacity: count * 2 + contractedSizes.count + 1) { scratch in
                let base = scratch.baseAddress!, offsets = base + count, coords = base + 2 * count
                for o in range {
                    var rest = o
                    for i in 0..<count { base[i] = 0 }
                    for d in stride(from: outShape.count - 1, through: 0, by: -1) {
                        let c = rest % outShape[d]
                        rest /= outShape[d]
                        for i in 0..<count { base[i] += c * outStrides[i][d] }
                    }
                    var sum: T = 0
                    if contractedCount > 0 {
                        for d in 0..<contractedSizes.count { coords[d] = 0 }
                        for i in 0..<count { offsets[i] = base[i] }
                        for _ in 0..<contractedCount {
                            var product: T = 1
                            for i in 0..<count { product *= operands[i][offsets[i]] }
                            sum += product
                            var d = contractedSizes.count - 1
                            while d >= 0 {
                                coords[d] += 1
                                for i in 0..<count { offsets[i] += sumStrides[i][d] }
                                if coords[d] < contractedSizes[d] { break }
                                for i in 0..<count { offsets[i] -= coords[d] * sumStrides[i][d] }
                                coords[d] = 0
                                d -= 1
                            }
                        }
                    }
                    out[o] = sum
                }
            }
        }
    }
}
