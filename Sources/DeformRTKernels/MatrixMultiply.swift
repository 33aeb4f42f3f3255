/// sgemm on a session's threads: splits the columns of C over threads, each calling single-threaded
/// sgemm, when OpenBLAS allows concurrent calls. The products with a constant or large B take
/// PackedLinearPlan instead (LinearOps, EinsumOps, Recurrent), which threads on any build.
public enum MatrixMultiply {
    public static func run(transposeA: Bool = false, transposeB: Bool = false, m: Int, n: Int, k: Int, alpha: Float = 1,
                           a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int, beta: Float = 0,
                           c: UnsafeMutablePointer<Float>, ldc: Int, parallel: Parallel) {
        if m == 0 || n == 0 { return }
        if k == 0 {
            // sgemm with K = 0 leaves beta * C; do it here so OpenBLAS never sees a zero leading dim.
            for i in 0..<m { for j in 0..<n { c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j] } }
            return
        }
        // Threads only pay off on enough work; split N in multiples of 16 columns. Serialised
        // OpenBLAS calls (Gemm.serialiseCalls) gain nothing from a split: one call on this thread.
        let work = m * n * k
        let chunks = work < 1 << 18 || Gemm.serialiseCalls ? 1 : min(parallel.threads, max(1, n / 16))
        parallel.forEachRange(chunks) { _, range in
            for chunk in range {
                let start = n * chunk / chunks / 16 * 16
                let end = chunk == chunks - 1 ? n : n * (chunk + 1) / chunks / 16 * 16
                if end <= start { continue }
                Gemm.sgemm(transposeA: transposeA, transposeB: transposeB, m: m, n: end - start, k: k, alpha: alpha,
                           a: a, lda: max(lda, 1), b: transposeB ? b + start * ldb : b + start, ldb: max(ldb, 1),
                           beta: beta, c: c + start, ldc: max(ldc, 1))
            }
        }
    }
}
