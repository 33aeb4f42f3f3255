/// GEMM micro-kernels for the convolution paths: C[rows][cols] (+)= A[rows][k] * B[k][cols], where
/// A is the sampled (or im2col) panel, one row per output pixel with k contiguous, and B is the
/// packed weights, one row of `cols` output channels per k. A values are broadcast, B rows are
/// SIMD16 loads, C tiles live in registers for the whole k loop.
///
/// 6 rows x 64 columns is 24 zmm accumulators + 4 for B: the most that fits the 32 AVX-512
/// registers while every B load feeds 6 FMAs and every broadcast feeds 4.
/// Work a micro-kernel runs between its k steps: `count` items, run once each, in order.
protocol InterleavedWork {
    var count: Int { get }
    func run(_ item: Int)
}

struct NoWork: InterleavedWork {
    var count: Int { 0 }
    func run(_ item: Int) {}
}

enum PackedGemm {
    static let rows = 6
    static let wideColumns = 64

    /// C[0..<6][0..<64] (+)= A[0..<6][0..<kc] * B[0..<kc][0..<64]. A rows `lda` apart, B rows 64 apart,
    /// C rows `ldc` apart. `accumulate` false overwrites C.
    @inline(never)
    static func kernel6x64(
        kc: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>,
        c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool
    ) {
        multiply6x64(kc: kc, a: a, lda: lda, b: b, c: c, ldc: ldc, accumulate: accumulate, interleaving: NoWork())
    }

    /// kernel6x64 that also runs `work`'s items, spread evenly over its k loop. The FMAs keep
    /// the FP pipes busy while load-bound work (the deformable gather of the next rows) waits on
    /// the caches; run back to back, the two take ~15% longer on a small-K layer.
    @inline(never)
    static func kernel6x64(
        kc: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>,
        c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, interleaving work: PanelRowSampling
    ) {
        multiply6x64(kc: kc, a: a, lda: lda, b: b, c: c, ldc: ldc, accumulate: accumulate, interleaving: work)
    }

    @inline(__always)
    private static func multiply6x64<Work: InterleavedWork>(
        kc: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>,
        c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, interleaving work: Work
    ) {
        var c00 = SIMD16<Float>(), c01 = SIMD16<Float>(), c02 = SIMD16<Float>(), c03 = SIMD16<Float>()
        var c10 = SIMD16<Float>(), c11 = SIMD16<Float>(), c12 = SIMD16<Float>(), c13 = SIMD16<Float>()
        var c20 = SIMD16<Float>(), c21 = SIMD16<Float>(), c22 = SIMD16<Float>(), c23 = SIMD16<Float>()
        var c30 = SIMD16<Float>(), c31 = SIMD16<Float>(), c32 = SIMD16<Float>(), c33 = SIMD16<Float>()
        var c40 = SIMD16<Float>(), c41 = SIMD16<Float>(), c42 = SIMD16<Float>(), c43 = SIMD16<Float>()
        var c50 = SIMD16<Float>(), c51 = SIMD16<Float>(), c52 = SIMD16<Float>(), c53 = SIMD16<Float>()
        let a0 = a, a1 = a + lda, a2 = a + 2 * lda, a3 = a + 3 * lda, a4 = a + 4 * lda, a5 = a + 5 * lda
        var bp = UnsafeRawPointer(b)
        let items = work.count
        var nextItem = 0, itemDue = 0
        for k in 0..<kc {
            if k == itemDue && nextItem < items {
                work.run(nextItem)
                nextItem += 1
                itemDue = nextItem * kc / items
            }
            let b0 = bp.loadUnaligned(as: SIMD16<Float>.self)
            let b1 = bp.loadUnaligned(fromByteOffset: 64, as: SIMD16<Float>.self)
            let b2 = bp.loadUnaligned(fromByteOffset: 128, as: SIMD16<Float>.self)
            let b3 = bp.loadUnaligned(fromByteOffset: 192, as: SIMD16<Float>.self)
            bp += 256
            var s = SIMD16<Float>(repeating: a0[k])
            c00 = c00.addingProduct(s, b0); c01 = c01.addingProduct(s, b1)
            c02 = c02.addingProduct(s, b2); c03 = c03.addingProduct(s, b3)
            s = SIMD16<Float>(repeating: a1[k])
            c10 = c10.addingProduct(s, b0); c11 = c11.addingProduct(s, b1)
            c12 = c12.addingProduct(s, b2); c13 = c13.addingProduct(s, b3)
            s = SIMD16<Float>(repeating: a2[k])
            c20 = c20.addingProduct(s, b0); c21 = c21.addingProduct(s, b1)
            c22 = c22.addingProduct(s, b2); c23 = c23.addingProduct(s, b3)
            s = SIMD16<Float>(repeating: a3[k])
            c30 = c30.addingProduct(s, b0); c31 = c31.addingProduct(s, b1)
            c32 = c32.addingProduct(s, b2); c33 = c33.addingProduct(s, b3)
            s = SIMD16<Float>(repeating: a4[k])
            c40 = c40.addingProduct(s, b0); c41 = c41.addingProduct(s, b1)
            c42 = c42.addingProduct(s, b2); c43 = c43.addingProduct(s, b3)
            s = SIMD16<Float>(repeating: a5[k])
            c50 = c50.addingProduct(s, b0); c51 = c51.addingProduct(s, b1)
            c52 = c52.addingProduct(s, b2); c53 = c53.addingProduct(s, b3)
        }
        while nextItem < items {
            work.run(nextItem)
            nextItem += 1
        }
        let out = UnsafeMutableRawPointer(c)
        let rowBytes = ldc * MemoryLayout<Float>.stride
        @inline(__always)
        func store(_ row: Int, _ v0: SIMD16<Float>, _ v1: SIMD16<Float>, _ v2: SIMD16<Float>, _ v3: SIMD16<Float>) {
            let p = out + row * rowBytes
            if accumulate {
                p.storeBytes(of: v0 + p.loadUnaligned(as: SIMD16<Float>.self), as: SIMD16<Float>.self)
                p.storeBytes(of: v1 + p.loadUnaligned(fromByteOffset: 64, as: SIMD16<Float>.self),
                             toByteOffset: 64, as: SIMD16<Float>.self)
                p.storeBytes(of: v2 + p.loadUnaligned(fromByteOffset: 128, as: SIMD16<Float>.self),
                             toByteOffset: 128, as: SIMD16<Float>.self)
                p.storeBytes(of: v3 + p.loadUnaligned(fromByteOffset: 192, as: SIMD16<Float>.self),
                             toByteOffset: 192, as: SIMD16<Float>.self)
            } else {
                p.storeBytes(of: v0, as: SIMD16<Float>.self)
                p.storeBytes(of: v1, toByteOffset: 64, as: SIMD16<Float>.self)
                p.storeBytes(of: v2, toByteOffset: 128, as: SIMD16<Float>.self)
                p.storeBytes(of: v3, toByteOffset: 192, as: SIMD16<Float>.self)
            }
        }
        store(0, c00, c01, c02, c03)
        store(1, c10, c11, c12, c13)
        store(2, c20, c21, c22, c23)
        store(3, c30, c31, c32, c33)
        store(4, c40, c41, c42, c43)
        store(5, c50, c51, c52, c53)
    }

    /// C[0..<6][0..<16] (+)= A[0..<6][0..<kc] * B[0..<kc][0..<16] for the last < 64 output channels;
    /// B rows `ldb` apart.
    @inline(never)
    static func kernel6x16(
        kc: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool
    ) {
        var c0 = SIMD16<Float>(), c1 = SIMD16<Float>(), c2 = SIMD16<Float>()
        var c3 = SIMD16<Float>(), c4 = SIMD16<Float>(), c5 = SIMD16<Float>()
        let a0 = a, a1 = a + lda, a2 = a + 2 * lda, a3 = a + 3 * lda, a4 = a + 4 * lda, a5 = a + 5 * lda
        var bp = UnsafeRawPointer(b)
        let bStep = ldb * MemoryLayout<Float>.stride
        for k in 0..<kc {
            let b0 = bp.loadUnaligned(as: SIMD16<Float>.self)
            bp += bStep
            c0 = c0.addingProduct(SIMD16<Float>(repeating: a0[k]), b0)
            c1 = c1.addingProduct(SIMD16<Float>(repeating: a1[k]), b0)
            c2 = c2.addingProduct(SIMD16<Float>(repeating: a2[k]), b0)
            c3 = c3.addingProduct(SIMD16<Float>(repeating: a3[k]), b0)
            c4 = c4.addingProduct(SIMD16<Float>(repeating: a4[k]), b0)
            c5 = c5.addingProduct(SIMD16<Float>(repeating: a5[k]), b0)
        }
        let out = UnsafeMutableRawPointer(c)
        let rowBytes = ldc * MemoryLayout<Float>.stride
        @inline(__always)
        func store(_ row: Int, _ v: SIMD16<Float>) {
            let p = out + row * rowBytes
            if accumulate {
                p.storeBytes(of: v + p.loadUnaligned(as: SIMD16<Float>.self), as: SIMD16<Float>.self)
            } else {
                p.storeBytes(of: v, as: SIMD16<Float>.self)
            }
        }
        store(0, c0)
        store(1, c1)
        store(2, c2)
        store(3, c3)
        store(4, c4)
        store(5, c5)
    }
}
