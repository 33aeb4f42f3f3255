import DeformRTKernels

/// Shared by Gemm, MatMul and Einsum: when their matrix products run on the packed kernels
/// (PackedLinearPlan, threaded on any OpenBLAS build) and how B gets packed.
enum LinearProductChoice {
    /// The packed kernels need the wide-SIMD tiers (ConvEngine.preferred says why); elsewhere
    /// OpenBLAS runs the products, one call at a time.
    static let packedKernelsAvailable = ConvEngine.preferred == .packedSIMD

    /// A constant B is packed once; a run-time B is packed on every run, which pays when its
    /// K x N copy is small beside the M x N x K product (M >= 6: one 6-row group). N under 16 would
    /// waste most of each 16-column strip, so skinny products stay on OpenBLAS unless M is tiny.
    static func usesPackedKernels(m: Int, n: Int, k: Int, constantB: Bool) -> Bool {
        guard packedKernelsAvailable, m > 0, n > 0, k > 0 else { return false }
        if constantB { return n >= 8 || m <= 6 }
        return m >= 6 && n >= 16
    }
}

/// A constant B operand packed for the kernels once per plan (one packed matrix per batch of B),
/// cached by the tensor it came from, like the convolutions' PackedWeights.
final class PackedConstantOperand {
    private(set) var matrices: [PackedMatrix] = []
    private var source: TensorStorage?
    private var key: [Int] = []

    /// Packs `value` (batches of k x n; `transposed`: n x k) unless already packed from the same
    /// tensor with the same shape; nil drops the packed copy.
    func prepare(_ value: Tensor?, batches: Int, k: Int, n: Int, transposed: Bool) {
        let newKey = [batches, k, n, transposed ? 1 : 0]
        guard let value, value.elementType == .float else {
            matrices = []
            source = nil
            key = []
            return
        }
        if source === value.storage && key == newKey { return }
        let b = value.floats
        matrices = (0..<batches).map { batch in
            PackedMatrix(b + batch * k * n, ldb: transposed ? k : n, transposed: transposed, k: k, n: n)
        }
        source = value.storage
        key = newKey
    }

    /// The packed batches when they were made for this shape.
    func matrices(batches: Int, k: Int, n: Int, transposed: Bool) -> [PackedMatrix]? {
        key == [batches, k, n, transposed ? 1 : 0] && !matrices.isEmpty ? matrices : nil
    }
}

/// Batches of C_b = epilogue(op(A_b) * op(B_b)) on the packed kernels. With as many batches as
/// threads, each thread takes whole batches (per-head products gain nothing from a split and
/// skip a wake-up each); otherwise the batches run in turn, each over all threads.
///
/// Workspace, per thread: op(A) as rows when A is transposed, B packed when it is not a
/// prepacked constant, and the plan's scratch.
struct BatchedLinearProduct {
    let plan: PackedLinearPlan
    let transposeA: Bool
    let transposeB: Bool
    let packsB: Bool
    let shape: PackedMatrixShape

    init(m: Int, n: Int, k: Int, transposeA: Bool, transposeB: Bool, packsB: Bool) {
        plan = PackedLinearPlan(m: m, n: n, k: k)
        self.transposeA = transposeA
        self.transposeB = transposeB
        self.packsB = packsB
        shape = PackedMatrixShape(k: k, n: n)
    }

    private static func aligned(_ n: Int) -> Int { (n + 15) & ~15 }
    private var rowsFloats: Int { transposeA ? Self.aligned(plan.m * plan.k) : 0 }
    private var packedFloats: Int { packsB ? Self.aligned(shape.floatCount) : 0 }
    private var slotFloats: Int { rowsFloats + packedFloats }

    func workspaceBytes(threads: Int) -> Int {
        (max(1, threads) * slotFloats + Self.aligned(plan.scratchFloats(threads: threads))) * MemoryLayout<Float>.size
    }

    /// `a(batch)`, `b(batch)`, `c(batch)`: the batch's operands as stored (A m x k or k x m; B
    /// k x n or n x k; C m x n, ldc n). `prepacked(batch)`: the packed B when `packsB` is false.
    func run(batches: Int, a: (Int) -> UnsafePointer<Float>, b: (Int) -> UnsafePointer<Float>,
             prepacked: (Int) -> UnsafePointer<Float>, c: (Int) -> UnsafeMutablePointer<Float>,
             epilogue: LinearEpilogue = .none, workspace: UnsafeMutableRawPointer, parallel: Parallel) {
        if batches == 0 || plan.m == 0 || plan.n == 0 { return }
        let base = workspace.assumingMemoryBound(to: Float.self)
        let scratch = base + parallel.threads * slotFloats
        let (m, n, k) = (plan.m, plan.n, plan.k)
        func product(_ batch: Int, slot: Int, scratch: UnsafeMutablePointer<Float>, _ parallel: Parallel) {
            let region = base + slot * slotFloats
            var rows = a(batch), lda = k
            if transposeA {
                plan.transposeA(rows, lda: m, into: region, parallel: parallel)
                rows = UnsafePointer(region)
            }
            var packed: UnsafePointer<Float>
            if packsB {
                shape.pack(b(batch), ldb: transposeB ? k : n, transposed: transposeB, into: region + rowsFloats,
                           parallel: parallel)
                packed = UnsafePointer(region + rowsFloats)
            } else {
                packed = prepacked(batch)
            }
            if k == 0 { lda = 1 }
            plan.run(a: rows, lda: lda, packed: packed, c: c(batch), ldc: n, epilogue: epilogue, scratch: scratch,
                     parallel: parallel)
        }
        if batches > 1 && batches >= parallel.threads {
            let perWorker = plan.scratchFloats(threads: 1)
            parallel.forEachRange(batches, totalWork: batches * plan.m * plan.n * max(plan.k, 1)) { worker, range in
                for batch in range { product(batch, slot: worker, scratch: scratch + worker * perWorker, .serial) }
            }
        } else {
            for batch in 0..<batches { product(batch, slot: 0, scratch: scratch, parallel) }
        }
    }
}
