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
        if m == 1 && k > 0 {
            // One row of C (a batch-1 classifier head): sgemv streams B once, where sgemm would
            // pack all of it first (3x slower on a 2048 x 1000 head).
            let incA = transposeA ? lda : 1
            // Some OpenBLAS builds scale y by beta = 0 as a multiply, which keeps a NaN from the
            // buffer's previous contents; sgemm's contract is that C is not read.
            if beta == 0 { c.update(repeating: 0, count: n) }
            if transposeB {  // c[j] = sum_p a[p] * B[j][p]
                cblas_sgemv(CblasRowMajor, CblasNoTrans, blasint(n), blasint(k), alpha, b, blasint(ldb),
                            a, blasint(incA), beta, c, 1)
            } else {         // c[j] = sum_p a[p] * B[p][j]
                cblas_sgemv(CblasRowMajor, CblasTrans, blasint(k), blasint(n), alpha, b, blasint(ldb),
                            a, blasint(incA), beta, c, 1)
            }
            return
        }
        cblas_sgemm(
            CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
            blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb), beta, c, blasint(ldc))
    }
}
