import CBLAS

/// Single-threaded OpenBLAS sgemm on row-major matrices: C = alpha * op(A) * op(B) + beta * C.
///
/// OpenBLAS is pinned to one thread so that threading is decided by the kernels (through
/// `Parallel`), the session's thread count is honoured and concurrent sessions do not contend
/// for OpenBLAS's global pool.
public enum Gemm {
    private static let singleThreaded: Void = { openblas_set_num_threads(1) }()

    @inline(__always)
    public static func sgemm(
        transposeA: Bool = false, transposeB: Bool = false,
        m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        _ = singleThreaded
        if m == 0 || n == 0 { return }
        cblas_sgemm(
            CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
            blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb), beta, c, blasint(ldc))
    }
}
