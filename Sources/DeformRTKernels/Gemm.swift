import CBLAS
import Synchronization

/// Single-threaded OpenBLAS sgemm on row-major matrices: C = alpha * op(A) * op(B) + beta * C.
///
/// OpenBLAS is pinned to one thread so that threading is decided by the kernels (through
/// `Parallel`), the session's thread count is honoured and concurrent sessions do not contend
/// for OpenBLAS's global pool.
public enum Gemm {
    /// Whether calls must be serialised: OpenBLAS's sequential build (Debian's serial variant,
    /// which the shipped library links) is not safe to call from two threads at once. Measured:
    /// a Gemm split over a session's two workers gave wrong results in about 1 of 1,500 runs,
    /// and none with the threaded build or with the calls serialised
    /// (Tests/python/test_blas_concurrency.py). Threaded builds lock internally.
    static let serialiseCalls: Bool = {
        openblas_set_num_threads(1)
        return openblas_get_parallel() == 0
    }()
    private static let callLock = Mutex<Void>(())

    @inline(__always)
    private static func call(_ body: () -> Void) {
        if serialiseCalls { callLock.withLock { _ in body() } } else { body() }
    }

    @inline(__always)
    public static func sgemm(
        transposeA: Bool = false, transposeB: Bool = false,
        m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        if m == 0 || n == 0 { return }
        if m == 1 && k > 0 {
            // One row of C (a batch-1 classifier head): sgemv streams B once, where sgemm would
            // pack all of it first (3x slower on a 2048 x 1000 head).
            let incA = transposeA ? lda : 1
            // Some OpenBLAS builds scale y by beta = 0 as a multiply, which keeps a NaN from the
            // buffer's previous contents; sgemm's contract is that C is not read.
            if beta == 0 { c.update(repeating: 0, count: n) }
            call {
                if transposeB {  // c[j] = sum_p a[p] * B[j][p]
                    cblas_sgemv(CblasRowMajor, CblasNoTrans, blasint(n), blasint(k), alpha, b, blasint(ldb),
                                a, blasint(incA), beta, c, 1)
                } else {         // c[j] = sum_p a[p] * B[p][j]
                    cblas_sgemv(CblasRowMajor, CblasTrans, blasint(k), blasint(n), alpha, b, blasint(ldb),
                                a, blasint(incA), beta, c, 1)
                }
            }
            return
        }
        call {
            cblas_sgemm(
                CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb), beta, c, blasint(ldc))
        }
    }
}
