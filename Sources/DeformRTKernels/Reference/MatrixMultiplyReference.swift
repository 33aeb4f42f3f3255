extension PackedLinearPlan {
    /// The oracle of the packed products and of Gemm: C = alpha * op(A) * op(B) + beta * addend
    /// (addend[i * addendRowStride + j * addendColumnStride], nil: 0), sums in Double.
    /// op(A) is m x k (transposeA: A stored k x m), op(B) is k x n (transposeB: stored n x k).
    public static func reference(
        transposeA: Bool = false, transposeB: Bool = false, m: Int, n: Int, k: Int, alpha: Float = 1,
        a: [Float], lda: Int, b: [Float], ldb: Int, beta: Float = 1, addend: [Float]? = nil,
        addendRowStride: Int = 0, addendColumnStride: Int = 1
    ) -> [Float] {
        var c = [Float](repeating: 0, count: m * n)
        for i in 0..<m {
            for j in 0..<n {
                var sum = 0.0
                for p in 0..<k {
                    let x = transposeA ? a[p * lda + i] : a[i * lda + p]
                    let y = transposeB ? b[j * ldb + p] : b[p * ldb + j]
                    sum += Double(x) * Double(y)
                }
                var value = Double(alpha) * sum
                if let addend { value += Double(beta) * Double(addend[i * addendRowStride + j * addendColumnStride]) }
                c[i * n + j] = Float(value)
            }
        }
        return c
    }
}
