import CPlatform

/// GEMM micro-kernels for the convolution paths: C[rows][cols] (+)= A[rows][k] * B[k][cols], where
/// A is the sampled (or im2col) panel, one row per output pixel with k contiguous, and B is the
/// packed weights, one row of `cols` output channels per k. A values are broadcast, B rows are
/// SIMD16 loads, C tiles live in registers for the whole k loop.
///
/// 6 rows x 64 columns is 24 zmm accumulators + 4 for B: the most that fits the 32 AVX-512
/// registers while every B load feeds 6 FMAs and every broadcast feeds 4.
///
/// The 6x64 kernels also take `prefetch`: the part of the weight block the caller multiplies
/// next that this call should bring into L2, `step` bytes further on per k step. A block
/// (kc x 256 bytes) is read from L2 by every 6-row group of a tile, but the first group would
/// wait on memory for it: fetched by the groups before, behind their FMAs, it is there in time
/// (8-10% on weight blocks coming from memory, measured in isolation).
/// Work a micro-kernel runs between its k steps: `count` items, run once each, in order.
protocol InterleavedWork {
    var count: Int { get }
    func run(_ item: Int)
}

/// A compile-time count of SIMD16 columns (the narrow kernels' width).
protocol VectorCount { static var count: Int { get } }
enum OneVector: VectorCount { static var count: Int { 1 } }
enum TwoVectors: VectorCount { static var count: Int { 2 } }
enum ThreeVectors: VectorCount { static var count: Int { 3 } }

/// Memory a 6x64 kernel asks the caches for while it computes: one prefetch per k step, the
/// first at `start`, each `step` bytes after the one before (16 to 64: a line per 4 to 1 steps);
/// after `firstCount` of them it goes on at `then` (two regions in one stream).
struct PrefetchStream {
    var start: UnsafeRawPointer
    var step: Int
    var then: UnsafeRawPointer? = nil
    var firstCount = Int.max

    /// The part that starts `offset` bytes (a multiple of `step`) into `first` (`firstBytes` long,
    /// taken in whole steps) followed by `second` (`secondBytes`), or nil past their end: a share
    /// of the two regions for one of several calls.
    static func share(from offset: Int, step: Int, first: UnsafeRawPointer, firstBytes: Int,
                      second: UnsafeRawPointer, secondBytes: Int) -> PrefetchStream? {
        let firstSpan = (firstBytes + step - 1) / step * step
        if offset < firstSpan {
            return PrefetchStream(start: first + offset, step: step, then: second, firstCount: (firstSpan - offset) / step)
        }
        return offset - firstSpan < secondBytes ? PrefetchStream(start: second + (offset - firstSpan), step: step) : nil
    }
}

/// A kernel's walk along its PrefetchStream, one L2 hint per k step. Without a stream it hints
/// at `own` (the call's own weights, in cache): one code path, no branch in the k loop.
struct PrefetchCursor {
    private var next: UnsafeRawPointer
    private let step: Int
    private var left: Int
    private let then: UnsafeRawPointer

    @inline(__always)
    init(_ stream: PrefetchStream?, own: UnsafeRawPointer) {
        next = stream?.start ?? own
        step = stream?.step ?? 16
        then = stream?.then ?? own
        left = stream?.then == nil ? Int.max : stream!.firstCount
    }

    @inline(__always)
    mutating func fetch() { deformrt_prefetch_l2(advance()) }

    /// The address of this k step's hint; moves on to the next.
    @inline(__always)
    mutating func advance() -> UnsafeRawPointer {
        let address = next
        next += step
        left &-= 1
        if left == 0 { next = then }
        return address
    }
}

struct NoWork: InterleavedWork {
    var count: Int { 0 }
    func run(_ item: Int) {}
}

/// The activations a tile's store applies in registers: those convolutions most often end with
/// (Relu; Relu6 as Clip and HardSwish in MobileNets). Others take the epilogue's pass.
enum TileActivation: Equatable {
    case none, relu, hardSwish
    case clip(low: Float, high: Float)

    /// nil for an activation the store does not apply.
    init?(_ function: UnaryFunction?) {
        switch function {
        case nil: self = .none
        case .relu?: self = .relu
        case .hardSwish?: self = .hardSwish
        case let .clip(low, high)?: self = .clip(low: low, high: high)
        default: return nil
        }
    }
}

/// What the store of a tile's last k block adds to it, in the order the separate passes over the
/// output used to (so the results are bit-identical): c = (c + previous) + bias[column]
/// + residual[row][column], then the activation, with ElementwiseMath's lane functions. Done in
/// registers, it saves a pass over the tile for the bias and one for the residual Add and the
/// activation.
struct TileFinish {
    /// At the tile's first column.
    var bias: UnsafePointer<Float>?
    /// At the tile's first element, rows `residualStride` floats apart.
    var residual: UnsafePointer<Float>?
    var residualStride: Int
    var activation: TileActivation

    static var none: TileFinish { TileFinish(bias: nil, residual: nil, residualStride: 0, activation: .none) }

    var isEmpty: Bool { bias == nil && residual == nil && activation == .none }

    /// The finish of the sub-tile that starts `rows` rows and `columns` columns further on.
    func shifted(rows: Int, columns: Int) -> TileFinish {
        TileFinish(bias: bias.map { $0 + columns }, residual: residual.map { $0 + rows * residualStride + columns },
                   residualStride: residualStride, activation: activation)
    }

    /// `v` (the sums of SIMD16 column `vector` of tile row `row`) finished in registers, as the
    /// kernels store it. Applied to the stored tile instead (a pass of its own that reloaded it),
    /// it stalled on the stores just made: 13% of a ResNet-50's time.
    @_transparent
    func applied(to v: SIMD16<Float>, row: Int, vector: Int) -> SIMD16<Float> {
        var x = v
        if let bias { x += UnsafeRawPointer(bias + 16 * vector).loadUnaligned(as: SIMD16<Float>.self) }
        if let residual {
            x += UnsafeRawPointer(residual + row * residualStride + 16 * vector).loadUnaligned(as: SIMD16<Float>.self)
        }
        switch activation {
        case .none: break
        case .relu: x = LaneFunctions.Relu()(x)
        case .hardSwish: x = LaneFunctions.HardSwish()(x)
        case let .clip(low, high): x = LaneFunctions.Clip(low: low, high: high)(x)
        }
        return x
    }
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
        multiply6x64(kc: kc, a: a, lda: lda, b: b, c: c, ldc: ldc, accumulate: accumulate, interleaving: NoWork(),
                     finish: .none, prefetch: nil)
    }

    /// kernel6x64 whose store also applies `finish` (a convolution tile's last k block).
    @inline(never)
    static func kernel6x64(
        kc: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>,
        c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, finish: TileFinish, prefetch: PrefetchStream?
    ) {
        multiply6x64(kc: kc, a: a, lda: lda, b: b, c: c, ldc: ldc, accumulate: accumulate, interleaving: NoWork(),
                     finish: finish, prefetch: prefetch)
    }

    /// kernel6x64 that also runs `work`'s items, spread evenly over its k loop. The FMAs keep
    /// the FP pipes busy while load-bound work (the deformable gather of the next rows) waits on
    /// the caches; run back to back, the two take ~15% longer on a small-K layer.
    @inline(never)
    static func kernel6x64(
        kc: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>,
        c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, interleaving work: PanelRowSampling
    ) {
        multiply6x64(kc: kc, a: a, lda: lda, b: b, c: c, ldc: ldc, accumulate: accumulate, interleaving: work,
                     finish: .none, prefetch: nil)
    }

    /// kernel6x64 on rows read through pointers (indirect convolution: no im2col panel). The k
    /// loop runs over `segments`, each `length` floats of every row: segment s is part
    /// s % parts of tap s / parts, and row r reads it from rows[tap * tableStride + r] + part * length.
    /// B rows follow one another over all segments, as in kernel6x64.
    @inline(never)
    static func kernel6x64(
        segments: Range<Int>, parts: Int, length: Int, rows: UnsafePointer<UnsafePointer<Float>>, tableStride: Int,
        b: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, finish: TileFinish,
        prefetch: PrefetchStream?
    ) {
        #if DEFORMRT_TIER_AVX2
        let steps = segments.count * length
        for vector in 0..<4 {
            strip6x16(segments: segments, parts: parts, length: length, rows: rows, tableStride: tableStride,
                      b: UnsafeRawPointer(b + 16 * vector), bStep: 256, c: c + 16 * vector, ldc: ldc,
                      accumulate: accumulate, finish: finish, vector: vector,
                      prefetch: prefetch.flatMap { $0.quarter(vector, steps: steps) })
        }
        #else
        var c00 = SIMD16<Float>(), c01 = SIMD16<Float>(), c02 = SIMD16<Float>(), c03 = SIMD16<Float>()
        var c10 = SIMD16<Float>(), c11 = SIMD16<Float>(), c12 = SIMD16<Float>(), c13 = SIMD16<Float>()
        var c20 = SIMD16<Float>(), c21 = SIMD16<Float>(), c22 = SIMD16<Float>(), c23 = SIMD16<Float>()
        var c30 = SIMD16<Float>(), c31 = SIMD16<Float>(), c32 = SIMD16<Float>(), c33 = SIMD16<Float>()
        var c40 = SIMD16<Float>(), c41 = SIMD16<Float>(), c42 = SIMD16<Float>(), c43 = SIMD16<Float>()
        var c50 = SIMD16<Float>(), c51 = SIMD16<Float>(), c52 = SIMD16<Float>(), c53 = SIMD16<Float>()
        var bp = UnsafeRawPointer(b)
        var ahead = PrefetchCursor(prefetch, own: bp)
        for segment in segments {
            let tap = segment / parts
            let offset = (segment - tap * parts) * length
            let p = rows + tap * tableStride
            let a0 = p[0] + offset, a1 = p[1] + offset, a2 = p[2] + offset
            let a3 = p[3] + offset, a4 = p[4] + offset, a5 = p[5] + offset
            for k in 0..<length {
                ahead.fetch()
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
        }
        let rowBytes = ldc * MemoryLayout<Float>.stride
        let out = UnsafeMutableRawPointer(c)
        storeRow64(out, c00, c01, c02, c03, accumulate: accumulate, finish: finish, row: 0)
        storeRow64(out + rowBytes, c10, c11, c12, c13, accumulate: accumulate, finish: finish, row: 1)
        storeRow64(out + 2 * rowBytes, c20, c21, c22, c23, accumulate: accumulate, finish: finish, row: 2)
        storeRow64(out + 3 * rowBytes, c30, c31, c32, c33, accumulate: accumulate, finish: finish, row: 3)
        storeRow64(out + 4 * rowBytes, c40, c41, c42, c43, accumulate: accumulate, finish: finish, row: 4)
        storeRow64(out + 5 * rowBytes, c50, c51, c52, c53, accumulate: accumulate, finish: finish, row: 5)
        #endif
    }

    /// One row of the indirect kernel6x64 (same arguments; only rows[tap * tableStride] is read),
    /// for a tile's last one or two rows: a padded 6-row group would compute five or four rows of
    /// zeros (a 7x7 map has 49 pixels, 8 groups and one row). With one row per B load it runs at
    /// about a third of the FMA rate, still faster than the padded group for those rows.
    @inline(never)
    static func kernel1x64(
        segments: Range<Int>, parts: Int, length: Int, rows: UnsafePointer<UnsafePointer<Float>>, tableStride: Int,
        b: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>, accumulate: Bool, finish: TileFinish
    ) {
        var c0 = SIMD16<Float>(), c1 = SIMD16<Float>(), c2 = SIMD16<Float>(), c3 = SIMD16<Float>()
        var bp = UnsafeRawPointer(b)
        for segment in segments {
            let tap = segment / parts
            let a = rows[tap * tableStride] + (segment - tap * parts) * length
            for k in 0..<length {
                let s = SIMD16<Float>(repeating: a[k])
                c0 = c0.addingProduct(s, bp.loadUnaligned(as: SIMD16<Float>.self))
                c1 = c1.addingProduct(s, bp.loadUnaligned(fromByteOffset: 64, as: SIMD16<Float>.self))
                c2 = c2.addingProduct(s, bp.loadUnaligned(fromByteOffset: 128, as: SIMD16<Float>.self))
                c3 = c3.addingProduct(s, bp.loadUnaligned(fromByteOffset: 192, as: SIMD16<Float>.self))
                bp += 256
            }
        }
        storeRow64(UnsafeMutableRawPointer(c), c0, c1, c2, c3, accumulate: accumulate, finish: finish, row: 0)
    }

    /// Writes (or, with `accumulate`, adds) one 64-float row of a tile at `p`, then finishes it
    /// (row `row` of the tile's `finish`): the store of every 64-column kernel.
    @_transparent
    private static func storeRow64(
        _ p: UnsafeMutableRawPointer, _ v0: SIMD16<Float>, _ v1: SIMD16<Float>, _ v2: SIMD16<Float>,
        _ v3: SIMD16<Float>, accumulate: Bool, finish: TileFinish, row: Int
    ) {
        var x0 = v0, x1 = v1, x2 = v2, x3 = v3
        if accumulate {
            x0 += p.loadUnaligned(as: SIMD16<Float>.self)
            x1 += p.loadUnaligned(fromByteOffset: 64, as: SIMD16<Float>.self)
            x2 += p.loadUnaligned(fromByteOffset: 128, as: SIMD16<Float>.self)
            x3 += p.loadUnaligned(fromByteOffset: 192, as: SIMD16<Float>.self)
        }
        if !finish.isEmpty {
            x0 = finish.applied(to: x0, row: row, vector: 0)
            x1 = finish.applied(to: x1, row: row, vector: 1)
            x2 = finish.applied(to: x2, row: row, vector: 2)
            x3 = finish.applied(to: x3, row: row, vector: 3)
        }
        p.storeBytes(of: x0, as: SIMD16<Float>.self)
        p.storeBytes(of: x1, toByteOffset: 64, as: SIMD16<Float>.self)
        p.storeBytes(of: x2, toByteOffset: 128, as: SIMD16<Float>.self)
        p.storeBytes(of: x3, toByteOffset: 192, as: SIMD16<Float>.self)
    }

    @inline(__always)
    private static func multiply6x64<Work: InterleavedWork>(
        kc: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>,
        c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, interleaving work: Work, finish: TileFinish,
        prefetch: PrefetchStream?
    ) {
        #if DEFORMRT_TIER_AVX2
        // The strips read the six rows through a table of one segment of kc floats; the work
        // items are shared out between the strips.
        let table = (a, a + lda, a + 2 * lda, a + 3 * lda, a + 4 * lda, a + 5 * lda)
        let items = work.count
        var nextItem = 0
        withUnsafeBytes(of: table) { bytes in
            let rows = bytes.baseAddress!.assumingMemoryBound(to: UnsafePointer<Float>.self)
            for vector in 0..<4 {
                while nextItem < (vector + 1) * items / 4 {
                    work.run(nextItem)
                    nextItem += 1
                }
                strip6x16(segments: 0..<1, parts: 1, length: kc, rows: rows, tableStride: 0,
                          b: UnsafeRawPointer(b + 16 * vector), bStep: 256, c: c + 16 * vector, ldc: ldc,
                          accumulate: accumulate, finish: finish, vector: vector,
                          prefetch: prefetch.flatMap { $0.quarter(vector, steps: kc) })
            }
        }
        #else
        var c00 = SIMD16<Float>(), c01 = SIMD16<Float>(), c02 = SIMD16<Float>(), c03 = SIMD16<Float>()
        var c10 = SIMD16<Float>(), c11 = SIMD16<Float>(), c12 = SIMD16<Float>(), c13 = SIMD16<Float>()
        var c20 = SIMD16<Float>(), c21 = SIMD16<Float>(), c22 = SIMD16<Float>(), c23 = SIMD16<Float>()
        var c30 = SIMD16<Float>(), c31 = SIMD16<Float>(), c32 = SIMD16<Float>(), c33 = SIMD16<Float>()
        var c40 = SIMD16<Float>(), c41 = SIMD16<Float>(), c42 = SIMD16<Float>(), c43 = SIMD16<Float>()
        var c50 = SIMD16<Float>(), c51 = SIMD16<Float>(), c52 = SIMD16<Float>(), c53 = SIMD16<Float>()
        let a0 = a, a1 = a + lda, a2 = a + 2 * lda, a3 = a + 3 * lda, a4 = a + 4 * lda, a5 = a + 5 * lda
        var bp = UnsafeRawPointer(b)
        var ahead = PrefetchCursor(prefetch, own: bp)
        let items = work.count
        var nextItem = 0, itemDue = 0
        for k in 0..<kc {
            if k == itemDue && nextItem < items {
                work.run(nextItem)
                nextItem += 1
                itemDue = nextItem * kc / items
            }
            ahead.fetch()
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
        let rowBytes = ldc * MemoryLayout<Float>.stride
        let out = UnsafeMutableRawPointer(c)
        storeRow64(out, c00, c01, c02, c03, accumulate: accumulate, finish: finish, row: 0)
        storeRow64(out + rowBytes, c10, c11, c12, c13, accumulate: accumulate, finish: finish, row: 1)
        storeRow64(out + 2 * rowBytes, c20, c21, c22, c23, accumulate: accumulate, finish: finish, row: 2)
        storeRow64(out + 3 * rowBytes, c30, c31, c32, c33, accumulate: accumulate, finish: finish, row: 3)
        storeRow64(out + 4 * rowBytes, c40, c41, c42, c43, accumulate: accumulate, finish: finish, row: 4)
        storeRow64(out + 5 * rowBytes, c50, c51, c52, c53, accumulate: accumulate, finish: finish, row: 5)
        #endif
    }

    /// The indirect kernel6x64 (same segments) for a last column block narrower than 64: `vectors`
    /// (1, 2 or 3) SIMD16 columns, B rows `ldb` floats apart. One pass over the A rows for the
    /// whole block: per k, `vectors` B loads and 6 broadcasts feed 6 x `vectors` FMAs (16 columns
    /// at a time took 7 loads per 6 FMAs).
    @inline(never)
    static func kernel6xNarrow(
        vectors: Int, segments: Range<Int>, parts: Int, length: Int, rows: UnsafePointer<UnsafePointer<Float>>,
        tableStride: Int, b: UnsafePointer<Float>, ldb: Int, c: UnsafeMutablePointer<Float>, ldc: Int,
        accumulate: Bool, finish: TileFinish
    ) {
        switch vectors {
        case 1:
            multiply6xNarrow(OneVector.self, segments: segments, parts: parts, length: length, rows: rows,
                             tableStride: tableStride, b: b, ldb: ldb, c: c, ldc: ldc, accumulate: accumulate,
                             finish: finish)
        case 2:
            multiply6xNarrow(TwoVectors.self, segments: segments, parts: parts, length: length, rows: rows,
                             tableStride: tableStride, b: b, ldb: ldb, c: c, ldc: ldc, accumulate: accumulate,
                             finish: finish)
        default:
            multiply6xNarrow(ThreeVectors.self, segments: segments, parts: parts, length: length, rows: rows,
                             tableStride: tableStride, b: b, ldb: ldb, c: c, ldc: ldc, accumulate: accumulate,
                             finish: finish)
        }
    }

    /// kernel6xNarrow on six rows `lda` floats apart: one segment of `kc` floats.
    @inline(__always)
    static func kernel6xNarrow(
        vectors: Int, kc: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, finish: TileFinish
    ) {
        let table = (a, a + lda, a + 2 * lda, a + 3 * lda, a + 4 * lda, a + 5 * lda)
        withUnsafeBytes(of: table) { bytes in
            kernel6xNarrow(vectors: vectors, segments: 0..<1, parts: 1, length: kc,
                           rows: bytes.baseAddress!.assumingMemoryBound(to: UnsafePointer<Float>.self),
                           tableStride: 0, b: b, ldb: ldb, c: c, ldc: ldc, accumulate: accumulate, finish: finish)
        }
    }

    @inline(__always)
    private static func multiply6xNarrow<Width: VectorCount>(
        _: Width.Type, segments: Range<Int>, parts: Int, length: Int, rows: UnsafePointer<UnsafePointer<Float>>,
        tableStride: Int, b: UnsafePointer<Float>, ldb: Int, c: UnsafeMutablePointer<Float>, ldc: Int,
        accumulate: Bool, finish: TileFinish
    ) {
        #if DEFORMRT_TIER_AVX2
        for vector in 0..<Width.count {
            strip6x16(segments: segments, parts: parts, length: length, rows: rows, tableStride: tableStride,
                      b: UnsafeRawPointer(b + 16 * vector), bStep: ldb * MemoryLayout<Float>.stride,
                      c: c + 16 * vector, ldc: ldc, accumulate: accumulate, finish: finish, vector: vector,
                      prefetch: nil)
        }
        #else
        let n = Width.count
        var c00 = SIMD16<Float>(), c01 = SIMD16<Float>(), c02 = SIMD16<Float>()
        var c10 = SIMD16<Float>(), c11 = SIMD16<Float>(), c12 = SIMD16<Float>()
        var c20 = SIMD16<Float>(), c21 = SIMD16<Float>(), c22 = SIMD16<Float>()
        var c30 = SIMD16<Float>(), c31 = SIMD16<Float>(), c32 = SIMD16<Float>()
        var c40 = SIMD16<Float>(), c41 = SIMD16<Float>(), c42 = SIMD16<Float>()
        var c50 = SIMD16<Float>(), c51 = SIMD16<Float>(), c52 = SIMD16<Float>()
        var bp = UnsafeRawPointer(b)
        let bStep = ldb * MemoryLayout<Float>.stride
        for segment in segments {
            let tap = segment / parts
            let offset = (segment - tap * parts) * length
            let p = rows + tap * tableStride
            let a0 = p[0] + offset, a1 = p[1] + offset, a2 = p[2] + offset
            let a3 = p[3] + offset, a4 = p[4] + offset, a5 = p[5] + offset
            for k in 0..<length {
                let b0 = bp.loadUnaligned(as: SIMD16<Float>.self)
                let b1 = n > 1 ? bp.loadUnaligned(fromByteOffset: 64, as: SIMD16<Float>.self) : b0
                let b2 = n > 2 ? bp.loadUnaligned(fromByteOffset: 128, as: SIMD16<Float>.self) : b0
                bp += bStep
                var s = SIMD16<Float>(repeating: a0[k])
                c00 = c00.addingProduct(s, b0)
                if n > 1 { c01 = c01.addingProduct(s, b1) }
                if n > 2 { c02 = c02.addingProduct(s, b2) }
                s = SIMD16<Float>(repeating: a1[k])
                c10 = c10.addingProduct(s, b0)
                if n > 1 { c11 = c11.addingProduct(s, b1) }
                if n > 2 { c12 = c12.addingProduct(s, b2) }
                s = SIMD16<Float>(repeating: a2[k])
                c20 = c20.addingProduct(s, b0)
                if n > 1 { c21 = c21.addingProduct(s, b1) }
                if n > 2 { c22 = c22.addingProduct(s, b2) }
                s = SIMD16<Float>(repeating: a3[k])
                c30 = c30.addingProduct(s, b0)
                if n > 1 { c31 = c31.addingProduct(s, b1) }
                if n > 2 { c32 = c32.addingProduct(s, b2) }
                s = SIMD16<Float>(repeating: a4[k])
                c40 = c40.addingProduct(s, b0)
                if n > 1 { c41 = c41.addingProduct(s, b1) }
                if n > 2 { c42 = c42.addingProduct(s, b2) }
                s = SIMD16<Float>(repeating: a5[k])
                c50 = c50.addingProduct(s, b0)
                if n > 1 { c51 = c51.addingProduct(s, b1) }
                if n > 2 { c52 = c52.addingProduct(s, b2) }
            }
        }
        let out = UnsafeMutableRawPointer(c)
        let rowBytes = ldc * MemoryLayout<Float>.stride
        @inline(__always)
        func store(_ row: Int, _ v0: SIMD16<Float>, _ v1: SIMD16<Float>, _ v2: SIMD16<Float>) {
            let p = out + row * rowBytes
            var x0 = v0, x1 = v1, x2 = v2
            if accumulate {
                x0 += p.loadUnaligned(as: SIMD16<Float>.self)
                if n > 1 { x1 += p.loadUnaligned(fromByteOffset: 64, as: SIMD16<Float>.self) }
                if n > 2 { x2 += p.loadUnaligned(fromByteOffset: 128, as: SIMD16<Float>.self) }
            }
            if !finish.isEmpty {
                x0 = finish.applied(to: x0, row: row, vector: 0)
                if n > 1 { x1 = finish.applied(to: x1, row: row, vector: 1) }
                if n > 2 { x2 = finish.applied(to: x2, row: row, vector: 2) }
            }
            p.storeBytes(of: x0, as: SIMD16<Float>.self)
            if n > 1 { p.storeBytes(of: x1, toByteOffset: 64, as: SIMD16<Float>.self) }
            if n > 2 { p.storeBytes(of: x2, toByteOffset: 128, as: SIMD16<Float>.self) }
        }
        store(0, c00, c01, c02)
        store(1, c10, c11, c12)
        store(2, c20, c21, c22)
        store(3, c30, c31, c32)
        store(4, c40, c41, c42)
        store(5, c50, c51, c52)
        #endif
    }
}

#if DEFORMRT_TIER_AVX2
extension PrefetchStream {
    /// Strip `strip` of 4 (AVX2's 16-column strips, `steps` k steps each): a quarter of the
    /// stream, so that the four strips fetch what the whole tile's k loop did.
    func quarter(_ strip: Int, steps: Int) -> PrefetchStream? {
        let quarterStep = step / 4
        let offset = strip * steps * quarterStep
        guard let then else { return PrefetchStream(start: start + offset, step: quarterStep) }
        let firstBytes = firstCount * step
        return PrefetchStream.share(from: offset, step: quarterStep, first: start, firstBytes: firstBytes,
                                    second: then, secondBytes: Int.max / 2)
    }
}

extension PackedGemm {
    /// AVX2 has 16 ymm registers: the 6x64 tile's accumulators (48 ymm) would spill to the stack
    /// on every k step (the AVX2 tier ran at a third of its FMA rate). This tier computes the
    /// tile as strips of 16 columns instead, 6x16 each (BLIS's Haswell shape): 12 ymm
    /// accumulators, 2 for B and one broadcast. The rows are read as in the indirect kernel6x64;
    /// B rows are `bStep` bytes apart; C and `finish` are at the strip (SIMD16 column `vector`
    /// of the tile). Every element gets the same sums in the same order as the wide kernels.
    @inline(__always)
    static func strip6x16(
        segments: Range<Int>, parts: Int, length: Int, rows: UnsafePointer<UnsafePointer<Float>>, tableStride: Int,
        b: UnsafeRawPointer, bStep: Int, c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool,
        finish: TileFinish, vector: Int, prefetch: PrefetchStream?
    ) {
        typealias V = SIMD8<Float>
        var c00 = V(), c01 = V(), c10 = V(), c11 = V(), c20 = V(), c21 = V()
        var c30 = V(), c31 = V(), c40 = V(), c41 = V(), c50 = V(), c51 = V()
        var bp = b
        var ahead = PrefetchCursor(prefetch, own: bp)
        for segment in segments {
            let tap = segment / parts
            let offset = (segment - tap * parts) * length
            let p = rows + tap * tableStride
            let a0 = p[0] + offset, a1 = p[1] + offset, a2 = p[2] + offset
            let a3 = p[3] + offset, a4 = p[4] + offset, a5 = p[5] + offset
            for k in 0..<length {
                ahead.fetch()
                let b0 = bp.loadUnaligned(as: V.self)
                let b1 = bp.loadUnaligned(fromByteOffset: 32, as: V.self)
                bp += bStep
                var s = V(repeating: a0[k])
                c00 = c00.addingProduct(s, b0); c01 = c01.addingProduct(s, b1)
                s = V(repeating: a1[k])
                c10 = c10.addingProduct(s, b0); c11 = c11.addingProduct(s, b1)
                s = V(repeating: a2[k])
                c20 = c20.addingProduct(s, b0); c21 = c21.addingProduct(s, b1)
                s = V(repeating: a3[k])
                c30 = c30.addingProduct(s, b0); c31 = c31.addingProduct(s, b1)
                s = V(repeating: a4[k])
                c40 = c40.addingProduct(s, b0); c41 = c41.addingProduct(s, b1)
                s = V(repeating: a5[k])
                c50 = c50.addingProduct(s, b0); c51 = c51.addingProduct(s, b1)
            }
        }
        let out = UnsafeMutableRawPointer(c)
        let rowBytes = ldc * MemoryLayout<Float>.stride
        @inline(__always)
        func store(_ row: Int, _ lo: V, _ hi: V) {
            let p = out + row * rowBytes
            var x = SIMD16<Float>(lowHalf: lo, highHalf: hi)
            if accumulate { x += p.loadUnaligned(as: SIMD16<Float>.self) }
            if !finish.isEmpty { x = finish.applied(to: x, row: row, vector: vector) }
            p.storeBytes(of: x, as: SIMD16<Float>.self)
        }
        store(0, c00, c01)
        store(1, c10, c11)
        store(2, c20, c21)
        store(3, c30, c31)
        store(4, c40, c41)
        store(5, c50, c51)
    }
}
#endif
