/// Matrix products C = A * B on PackedGemm's micro-kernels, with B packed once (a constant weight:
/// at plan time) and the work spread over the session's threads.
///
/// Why not OpenBLAS: the serial OpenBLAS the library links is not safe to call from two threads
/// at once (Gemm.swift serialises its calls), so a split product gained nothing on two threads.
/// These kernels are plain Swift and any number of threads may run them.
///
/// Every element of C is the same sequence of float operations whatever the thread count and
/// tiling: a k block's products are summed from zero in k order with FMAs (the 6-row kernels and
/// the 1-row kernel here do the same), and the k blocks are fixed by K alone. So the result is
/// bit-identical for 1 and N threads and in every process.

/// Where B lies once packed: [64-column block][k][block width], the widths (64, or the last
/// block's 16, 32 or 48) zero-padded so the micro-kernels need no column tail.
public struct PackedMatrixShape: Sendable, Equatable {
    public let k: Int
    public let n: Int

    public init(k: Int, n: Int) {
        self.k = k
        self.n = n
    }

    public var paddedColumns: Int { (n + 15) & ~15 }
    public var floatCount: Int { k * paddedColumns }
    var blocks: Int { (paddedColumns + 63) / 64 }
    @inline(__always) func width(ofBlock block: Int) -> Int { min(64, paddedColumns - block * 64) }

    /// B (k x n; `transposed`: stored n x k, as Gemm's transB and the recurrent weights are) into
    /// `packed` (`floatCount` floats).
    public func pack(_ b: UnsafePointer<Float>, ldb: Int, transposed: Bool, into packed: UnsafeMutablePointer<Float>,
                     parallel: Parallel) {
        if k == 0 || n == 0 { return }
        parallel.forEachRange(blocks, totalWork: k * paddedColumns) { _, range in
            for block in range {
                let col = block * 64, width = width(ofBlock: block), valid = min(width, n - col)
                let out = packed + col * k
                if transposed {
                    for j in 0..<width {
                        if j >= valid {
                            for kk in 0..<k { out[kk * width + j] = 0 }
                            continue
                        }
                        let source = b + (col + j) * ldb
                        for kk in 0..<k { out[kk * width + j] = source[kk] }
                    }
                } else {
                    for kk in 0..<k {
                        let row = out + kk * width
                        row.update(from: b + kk * ldb + col, count: valid)
                        if valid < width { (row + valid).update(repeating: 0, count: width - valid) }
                    }
                }
            }
        }
    }
}

/// A packed B that owns its memory (a constant weight, packed when the plan is made).
public final class PackedMatrix: @unchecked Sendable {
    public let shape: PackedMatrixShape
    public let floats: UnsafeMutablePointer<Float>

    public init(_ b: UnsafePointer<Float>, ldb: Int, transposed: Bool, k: Int, n: Int, parallel: Parallel = .serial) {
        shape = PackedMatrixShape(k: k, n: n)
        floats = UnsafeMutableRawPointer.allocate(byteCount: max(shape.floatCount, 1) * 4, alignment: 64)
            .bindMemory(to: Float.self, capacity: max(shape.floatCount, 1))
        shape.pack(b, ldb: ldb, transposed: transposed, into: floats, parallel: parallel)
    }

    deinit { floats.deallocate() }
}

/// What happens to A * B on its way into C:
///   C = alpha * (A B) + beta * addend[row * addendRowStride + column * addendColumnStride]
/// (Gemm's broadcast C; a per-column bias has row stride 0), or, with `accumulates`,
///   C = C + A B  (alpha 1, no addend: the recurrent step adds onto the step's projections).
public struct LinearEpilogue {
    public var alpha: Float
    public var addend: UnsafePointer<Float>?
    public var addendRowStride: Int
    public var addendColumnStride: Int
    public var beta: Float
    public var accumulates: Bool

    public init(alpha: Float = 1, addend: UnsafePointer<Float>? = nil, addendRowStride: Int = 0,
                addendColumnStride: Int = 1, beta: Float = 1, accumulates: Bool = false) {
        precondition(!accumulates || (alpha == 1 && addend == nil), "an accumulating product takes no alpha or addend")
        self.alpha = alpha
        self.addend = addend
        self.addendRowStride = addendRowStride
        self.addendColumnStride = addendColumnStride
        self.beta = beta
        self.accumulates = accumulates
    }

    public static var none: LinearEpilogue { LinearEpilogue() }

    var isIdentity: Bool { alpha == 1 && addend == nil }

    /// C[r][c] for rows `rows`, columns col ..< col + count: the alpha and addend part.
    @inline(__always)
    public func apply(_ c: UnsafeMutablePointer<Float>, ldc: Int, rows: Range<Int>, col: Int, count: Int) {
        if isIdentity { return }
        let a = SIMD16<Float>(repeating: alpha), b = SIMD16<Float>(repeating: beta)
        for r in rows {
            let y = c + r * ldc + col
            var j = 0
            if let addend {
                let source = addend + r * addendRowStride + col * addendColumnStride
                if addendColumnStride == 1 {
                    while j + 16 <= count {
                        let v = a * UnsafeRawPointer(y + j).loadUnaligned(as: SIMD16<Float>.self)
                            + b * UnsafeRawPointer(source + j).loadUnaligned(as: SIMD16<Float>.self)
                        UnsafeMutableRawPointer(y + j).storeBytes(of: v, as: SIMD16<Float>.self)
                        j += 16
                    }
                    while j < count { y[j] = alpha * y[j] + beta * source[j]; j += 1 }
                } else {
                    while j < count { y[j] = alpha * y[j] + beta * source[j * addendColumnStride]; j += 1 }
                }
            } else {
                while j + 16 <= count {
                    let v = a * UnsafeRawPointer(y + j).loadUnaligned(as: SIMD16<Float>.self)
                    UnsafeMutableRawPointer(y + j).storeBytes(of: v, as: SIMD16<Float>.self)
                    j += 16
                }
                while j < count { y[j] = alpha * y[j]; j += 1 }
            }
        }
    }
}

/// The tiling of one product shape: fixed by M, N and K (not by the thread count), made when the
/// plan is made. Work items are (row tile, 64-column block) pairs, row tile major, so a thread's
/// consecutive items reuse the A tile in cache; inside an item the B block (kc x 64, <= 160 KB)
/// stays in L2 while the tile's 6-row groups stream past it.
public struct PackedLinearPlan: Sendable, Equatable {
    public let m: Int
    public let n: Int
    public let k: Int
    let kc: Int
    let tileRows: Int
    let rowTiles: Int
    let blocks: Int
    let paddedColumns: Int

    public init(m: Int, n: Int, k: Int) {
        self.m = m
        self.n = n
        self.k = k
        let shape = PackedMatrixShape(k: k, n: n)
        paddedColumns = shape.paddedColumns
        blocks = shape.blocks
        // k blocks of at most 640, as the convolutions use them (ChannelsLastConvPlan).
        let kBlocks = max(1, (k + 639) / 640)
        kc = max(1, (k + kBlocks - 1) / kBlocks)
        // A tile of up to ~384 KB next to the B block in L2: a Linear layer of ~100 rows (RoI
        // heads) is one tile, so B streams from memory once.
        var rows = min(max(98_304 / kc, 24), 192) / 6 * 6
        // Enough items for a few threads when there are few column blocks (a CRNN's projection).
        while rows > 6 && ((m + rows - 1) / rows) * blocks < 8 { rows = max(6, rows / 2 / 6 * 6) }
        tileRows = rows
        rowTiles = (m + rows - 1) / rows
    }

    /// Scratch floats per worker: a tile's result for the last column block when N is not a
    /// multiple of 16 (the micro-kernels write whole 16-column strips).
    var scratchFloatsPerWorker: Int { n % 16 == 0 ? 0 : tileRows * 64 }

    /// Scratch floats `run` needs on `threads` threads.
    public func scratchFloats(threads: Int) -> Int { max(1, threads) * scratchFloatsPerWorker }

    /// Multiply-adds, for the rule on work too small to split.
    var work: Int { m * n * k }

    /// C (ldc apart) = epilogue(A (rows lda apart, k contiguous) * B), B from `PackedMatrixShape.pack`.
    /// `scratch`: `scratchFloats(threads: parallel.threads)` floats.
    public func run(a: UnsafePointer<Float>, lda: Int, packed: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>,
                    ldc: Int, epilogue: LinearEpilogue = .none, scratch: UnsafeMutablePointer<Float>?,
                    parallel: Parallel) {
        if m == 0 || n == 0 { return }
        if k == 0 {
            if !epilogue.accumulates { for r in 0..<m { (c + r * ldc).update(repeating: 0, count: n) } }
            epilogue.apply(c, ldc: ldc, rows: 0..<m, col: 0, count: n)
            return
        }
        let items = rowTiles * blocks
        parallel.forEachRange(items, totalWork: work) { worker, range in
            let result = scratch.map { $0 + worker * scratchFloatsPerWorker }
            for item in range {
                let tile = item / blocks
                runItem(tile: tile, block: item - tile * blocks, a: a, lda: lda, packed: packed, c: c, ldc: ldc,
                        epilogue: epilogue, result: result)
            }
        }
    }

    private func runItem(tile: Int, block: Int, a: UnsafePointer<Float>, lda: Int, packed: UnsafePointer<Float>,
                         c: UnsafeMutablePointer<Float>, ldc: Int, epilogue: LinearEpilogue,
                         result: UnsafeMutablePointer<Float>?) {
        let r0 = tile * tileRows, rows = min(tileRows, m - r0)
        let col = block * 64, width = min(64, paddedColumns - col), valid = min(width, n - col)
        // A block whose padding columns would land in C (past N) goes through the result buffer.
        let direct = valid == width
        let out = direct ? c + r0 * ldc + col : result!
        let ldo = direct ? ldc : 64
        if !direct && epilogue.accumulates {
            for r in 0..<rows { (out + r * ldo).update(from: c + (r0 + r) * ldc + col, count: valid) }
        }
        let fullRows = rows / 6 * 6
        let rowsA = a + r0 * lda
        var kb = 0
        while kb < k {
            let kcCur = min(kc, k - kb)
            let accumulate = kb > 0 || epilogue.accumulates
            let b = packed + col * k + kb * width
            var r = 0
            while r < fullRows {
                let aRows = rowsA + r * lda + kb, cRows = out + r * ldo
                if width == 64 {
                    PackedGemm.kernel6x64(kc: kcCur, a: aRows, lda: lda, b: b, c: cRows, ldc: ldo, accumulate: accumulate)
                } else {
                    PackedGemm.kernel6xNarrow(vectors: width / 16, kc: kcCur, a: aRows, lda: lda, b: b, ldb: width,
                                              c: cRows, ldc: ldo, accumulate: accumulate, finish: .none)
                }
                r += 6
            }
            while r < rows {
                PackedLinear.rowKernel(kc: kcCur, a: rowsA + r * lda + kb, b: b, width: width, c: out + r * ldo,
                                       accumulate: accumulate)
                r += 1
            }
            kb += kcCur
        }
        if !direct {
            for r in 0..<rows { (c + (r0 + r) * ldc + col).update(from: out + r * ldo, count: valid) }
        }
        epilogue.apply(c, ldc: ldc, rows: r0..<(r0 + rows), col: col, count: valid)
    }
}

enum PackedLinear {
    /// c[0..<width] (+)= a[0..<kc] * b[0..<kc][0..<width], b rows `width` apart: one row of C, for
    /// the rows a 6-row group does not fill (a batch-1 Linear layer, a recurrent step). Same
    /// arithmetic per element as PackedGemm's kernels: sums from zero in k order, then added to C.
    @inline(never)
    static func rowKernel(kc: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>, width: Int,
                          c: UnsafeMutablePointer<Float>, accumulate: Bool) {
        typealias V = SIMD16<Float>
        @inline(__always)
        func store(_ v: V, _ at: Int) {
            let p = UnsafeMutableRawPointer(c + at)
            if accumulate { p.storeBytes(of: v + p.loadUnaligned(as: V.self), as: V.self) } else { p.storeBytes(of: v, as: V.self) }
        }
        if width == 64 {
            var c0 = V(), c1 = V(), c2 = V(), c3 = V()
            var bp = UnsafeRawPointer(b)
            for kk in 0..<kc {
                let s = V(repeating: a[kk])
                c0 = c0.addingProduct(s, bp.loadUnaligned(as: V.self))
                c1 = c1.addingProduct(s, bp.loadUnaligned(fromByteOffset: 64, as: V.self))
                c2 = c2.addingProduct(s, bp.loadUnaligned(fromByteOffset: 128, as: V.self))
                c3 = c3.addingProduct(s, bp.loadUnaligned(fromByteOffset: 192, as: V.self))
                bp += 256
            }
            store(c0, 0); store(c1, 16); store(c2, 32); store(c3, 48)
            return
        }
        var s = 0
        while s < width {
            var acc = V()
            var bp = UnsafeRawPointer(b + s)
            let step = width * 4
            for kk in 0..<kc {
                acc = acc.addingProduct(V(repeating: a[kk]), bp.loadUnaligned(as: V.self))
                bp += step
            }
            store(acc, s)
            s += 16
        }
    }

    /// Row-major `rows` x `columns` (ld `ld`) transposed into `out` (columns x rows, ld `rows`):
    /// Gemm's transA operand turned into rows with k contiguous.
    static func transpose(_ source: UnsafePointer<Float>, rows: Int, columns: Int, ld: Int,
                          into out: UnsafeMutablePointer<Float>, parallel: Parallel) {
        parallel.forEachRange((columns + 15) / 16, totalWork: rows * columns) { _, range in
            for block in range {
                let j0 = block * 16, j1 = min(columns, j0 + 16)
                for i in 0..<rows {
                    let row = source + i * ld
                    for j in j0..<j1 { out[j * rows + i] = row[j] }
                }
            }
        }
    }
}

extension PackedLinearPlan {
    /// Gemm's transA: A stored k x m (ld `lda`) copied into `aRows` (m x k) first.
    public func transposeA(_ a: UnsafePointer<Float>, lda: Int, into aRows: UnsafeMutablePointer<Float>,
                           parallel: Parallel) {
        PackedLinear.transpose(a, rows: k, columns: m, ld: lda, into: aRows, parallel: parallel)
    }
}
