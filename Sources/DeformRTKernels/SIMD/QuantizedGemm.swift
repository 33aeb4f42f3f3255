/// The integer GEMM of the quantized convolutions and matrix products (QLinearConv, ConvInteger,
/// QLinearMatMul, MatMulInteger): C[r][n] = sum_k A[r][k] * B[k][n], exact in wrapping Int32.
///
/// - A ("rows") holds signed values a - a_zero_point in [-255, 255], packed once (weights: at plan
///   time) as Int16 pairs along k, in panels of 4 rows.
/// - B ("columns") holds the other operand without its zero point, as unsigned bytes (int8 data
///   flipped to x + 128), two consecutive k in one Int32 lane: lo | hi << 16, in panels of two
///   vectors' width [pairs(k)][width] so the microkernel streams them in order. The zero point is
///   taken out afterwards: sum_k A[r][k] * (u(B[k][n]) - u(zero)) = C[r][n] - rowSum[r] * u(zero),
///   so padding is simply the zero point's byte.
/// - The inner step multiplies Int32 lanes whose upper 17 bits are known to be zero (B's halves,
///   masked to 15 bits) by lanes sign-extended from Int16 (A): LLVM lowers each such multiply to
///   one pmaddwd (SSE2 / AVX2 / AVX-512BW, no VNNI needed) instead of pmulld. The lane width is the
///   tier's vector: 4 (baseline), 8 (AVX2), 16 (AVX-512) Int32.
/// - Work items are (column block of 256, panel of 4 rows); a worker takes consecutive panels of one
///   block, so the block's columns stay in cache, and hands each finished 4 x 256 block of sums to
///   the caller's `finish` (zero-point correction, bias, requantization), still in cache.
public enum QuantizedGemm {
    #if DEFORMRT_TIER_AVX512
    typealias Lane = SIMD16<Int32>
    #elseif DEFORMRT_TIER_AVX2
    typealias Lane = SIMD8<Int32>
    #else
    typealias Lane = SIMD4<Int32>
    #endif

    public static let panelRows = 4
    /// Columns of one work item (a multiple of every tier's column panel); `finish` sees at most this many at once.
    public static let blockColumns = 256

    /// k rounded up to pairs.
    @inline(__always) public static func pairs(_ k: Int) -> Int { (k + 1) / 2 }

    /// Int16 elements of `rows` packed rows of length k.
    public static func packedRowsCount(rows: Int, k: Int) -> Int { (rows + panelRows - 1) / panelRows * pairs(k) * 2 * panelRows }

    /// Int32 elements of the per-worker block buffers `gemm` needs.
    public static func scratchCount(threads: Int) -> Int { max(1, threads) * panelRows * blockColumns }

    /// The unsigned byte of an 8-bit value: int8 is flipped to x + 128.
    @inline(__always) public static func unsignedValue(_ value: Int32, signed: Bool) -> Int32 { signed ? value + 128 : value }

    /// Packs rows[r][k] - zeroPoints[r * zeroPointStride] (8-bit data, rows `rowStride` bytes apart)
    /// for `gemm`, and their sums into rowSums[r]. Rows missing from the last panel are zero.
    public static func packRows(_ data: UnsafeRawPointer, signed: Bool, rows: Int, k: Int, rowStride: Int,
                                zeroPoints: UnsafePointer<Int32>, zeroPointStride: Int,
                                into packed: UnsafeMutablePointer<Int16>, rowSums: UnsafeMutablePointer<Int32>) {
        let kPairs = pairs(k), panelSize = kPairs * 2 * panelRows
        packed.update(repeating: 0, count: packedRowsCount(rows: rows, k: k))
        for r in 0..<rows {
            let zeroPoint = zeroPoints[r * zeroPointStride]
            let panel = packed + (r / panelRows) * panelSize + (r % panelRows) * 2
            let row = data + r * rowStride
            var sum: Int32 = 0
            for kk in 0..<k {
                let raw = signed ? Int32(row.load(fromByteOffset: kk, as: Int8.self)) : Int32(row.load(fromByteOffset: kk, as: UInt8.self))
                let value = raw - zeroPoint
                sum &+= value
                panel[(kk >> 1) * 2 * panelRows + (kk & 1)] = Int16(truncatingIfNeeded: value)
            }
            rowSums[r] = sum
        }
    }

    /// Columns of one panel of packed columns: the microkernel's width, two vectors.
    @inline(__always) public static var columnPanel: Int { 2 * Lane.scalarCount }

    /// UInt32 elements of packed columns for k x n: panels of `columnPanel` columns (the last one
    /// padded), each [pairs(k)][columnPanel], so the microkernel reads them in order.
    public static func packedColumnsCount(k: Int, n: Int) -> Int { (n + columnPanel - 1) / columnPanel * columnPanel * pairs(k) }

    /// Packs the 8-bit matrix b [k][n] (rows `rowStride` bytes apart) as unsigned pairs along k
    /// (an odd k's last high half is 0) into packed columns.
    public static func packColumns(_ b: UnsafeRawPointer, signed: Bool, k: Int, n: Int, rowStride: Int,
                                   into columns: UnsafeMutablePointer<UInt32>) {
        for q in 0..<pairs(k) {
            let lo = (b + 2 * q * rowStride).assumingMemoryBound(to: UInt8.self)
            pairRows(lo, 2 * q + 1 < k ? lo + rowStride : nil, count: n, signed: signed, pair: q, kPairs: pairs(k), into: columns)
        }
    }

    /// Writes pair row `pair` of packed columns (kPairs pairs, `count` columns) from two byte rows
    /// of raw 8-bit data (hi nil: 0); the padding of the last panel is 0.
    @inline(__always)
    public static func pairRows(_ lo: UnsafePointer<UInt8>, _ hi: UnsafePointer<UInt8>?, count: Int, signed: Bool,
                                pair: Int, kPairs: Int, into columns: UnsafeMutablePointer<UInt32>) {
        let flip: UInt8 = signed ? 0x80 : 0
        let width = columnPanel
        var start = 0
        while start < count {
            let n = min(width, count - start)
            let out = columns + (start / width * kPairs + pair) * width
            let l = lo + start
            if n == width, let hi {
                // A constant trip count: LLVM vectorises it whole (a variable one of at most 32 fell
                // to its scalar remainder loop).
                let h = hi + start
                for j in 0..<columnPanel { out[j] = UInt32(l[j] ^ flip) | UInt32(h[j] ^ flip) << 16 }
            } else if let hi {
                let h = hi + start
                for j in 0..<n { out[j] = UInt32(l[j] ^ flip) | UInt32(h[j] ^ flip) << 16 }
            } else {
                for j in 0..<n { out[j] = UInt32(l[j] ^ flip) }
            }
            if n < width { (out + n).update(repeating: 0, count: width - n) }
            start += width
        }
    }

    /// sums[r][c] = sum_k A[row + r][k] * B[k][column + c] for every 4-row panel and 256-column block,
    /// then finish(row, rowCount, column, columnCount, sums, sumsStride) on the worker that made them.
    /// B is either packed whole (`packedColumns`), or packed block by block by `packBlock(worker,
    /// column, width, into)` into the worker's buffer of `blockBufferCount(k:)` (convolutions: the im2col
    /// of 256 pixels is made where it is used, in cache, instead of a whole image's worth in memory).
    public static func gemm(rows: Int, columns: Int, k: Int, packedRows: UnsafePointer<Int16>,
                            packedColumns: UnsafePointer<UInt32>?,
                            packBlock: ((_ worker: Int, _ column: Int, _ width: Int, _ into: UnsafeMutablePointer<UInt32>) -> Void)? = nil,
                            blockBuffers: UnsafeMutablePointer<UInt32>? = nil,
                            scratch: UnsafeMutablePointer<Int32>, parallel: Parallel,
                            finish: (_ row: Int, _ rowCount: Int, _ column: Int, _ columnCount: Int,
                                     _ sums: UnsafeMutablePointer<Int32>, _ sumsStride: Int) -> Void) {
        if rows == 0 || columns == 0 { return }
        let kPairs = pairs(k)
        let panels = (rows + panelRows - 1) / panelRows, blocks = (columns + blockColumns - 1) / blockColumns
        let panelSize = kPairs * 2 * panelRows
        let work = rows * columns * max(k, 1)
        if let packedColumns {
            parallel.forEachRange(panels * blocks, totalWork: work) { worker, items in
                let sums = scratch + worker * panelRows * blockColumns
                for item in items {
                    let block = item / panels, panel = item % panels
                    let column = block * blockColumns, width = min(blockColumns, columns - column)
                    let source = UnsafeRawPointer(packedColumns + column * kPairs).assumingMemoryBound(to: Int32.self)
                    computeBlock(packedRows + panel * panelSize, source, kPairs: kPairs, width: width, into: sums)
                    finish(panel * panelRows, min(panelRows, rows - panel * panelRows), column, width, sums, blockColumns)
                }
            }
        } else if let packBlock, let blockBuffers {
            parallel.forEachRange(blocks, totalWork: work) { worker, items in
                let sums = scratch + worker * panelRows * blockColumns
                let buffer = blockBuffers + worker * blockBufferCount(k: k)
                for block in items {
                    let column = block * blockColumns, width = min(blockColumns, columns - column)
                    packBlock(worker, column, width, buffer)
                    let source = UnsafeRawPointer(buffer).assumingMemoryBound(to: Int32.self)
                    for panel in 0..<panels {
                        computeBlock(packedRows + panel * panelSize, source, kPairs: kPairs, width: width, into: sums)
                        finish(panel * panelRows, min(panelRows, rows - panel * panelRows), column, width, sums, blockColumns)
                    }
                }
            }
        }
    }

    /// UInt32 elements of one worker's block buffer for `gemm`'s packBlock.
    public static func blockBufferCount(k: Int) -> Int { packedColumnsCount(k: k, n: blockColumns) }

    /// Lanes of 2 * 8-bit values times the Int16 pair at `a`: lo * a[0] + hi * a[1] (two pmaddwd).
    @inline(__always)
    static func pairProduct(_ lo: Lane, _ hi: Lane, _ a: UnsafePointer<Int16>) -> Lane {
        lo &* Lane(repeating: Int32(a[0])) &+ hi &* Lane(repeating: Int32(a[1]))
    }

    /// One 4-row panel times `width` packed columns (whole column panels; a partial last one is
    /// computed in full) into sums [4][blockColumns].
    @inline(__always)
    static func computeBlock(_ panel: UnsafePointer<Int16>, _ columns: UnsafePointer<Int32>, kPairs: Int,
                             width: Int, into sums: UnsafeMutablePointer<Int32>) {
        let mask = Lane(repeating: 0x7FFF), shift = Lane(repeating: 16)
        let size = MemoryLayout<Lane>.size, r = blockColumns * 4
        var c = 0
        while c < width {
            var c00 = Lane(), c01 = Lane(), c10 = Lane(), c11 = Lane(), c20 = Lane(), c21 = Lane(), c30 = Lane(), c31 = Lane()
            var a = panel
            var b = UnsafeRawPointer(columns + c * kPairs)
            for _ in 0..<kPairs {
                let b0 = b.loadUnaligned(as: Lane.self), b1 = b.loadUnaligned(fromByteOffset: size, as: Lane.self)
                let lo0 = b0 & mask, hi0 = (b0 &>> shift) & mask, lo1 = b1 & mask, hi1 = (b1 &>> shift) & mask
                c00 &+= pairProduct(lo0, hi0, a); c01 &+= pairProduct(lo1, hi1, a)
                c10 &+= pairProduct(lo0, hi0, a + 2); c11 &+= pairProduct(lo1, hi1, a + 2)
                c20 &+= pairProduct(lo0, hi0, a + 4); c21 &+= pairProduct(lo1, hi1, a + 4)
                c30 &+= pairProduct(lo0, hi0, a + 6); c31 &+= pairProduct(lo1, hi1, a + 6)
                a += 8
                b += 2 * size
            }
            let out = UnsafeMutableRawPointer(sums + c)
            out.storeBytes(of: c00, as: Lane.self); out.storeBytes(of: c01, toByteOffset: size, as: Lane.self)
            out.storeBytes(of: c10, toByteOffset: r, as: Lane.self); out.storeBytes(of: c11, toByteOffset: r + size, as: Lane.self)
            out.storeBytes(of: c20, toByteOffset: 2 * r, as: Lane.self); out.storeBytes(of: c21, toByteOffset: 2 * r + size, as: Lane.self)
            out.storeBytes(of: c30, toByteOffset: 3 * r, as: Lane.self); out.storeBytes(of: c31, toByteOffset: 3 * r + size, as: Lane.self)
            c += 2 * Lane.scalarCount
        }
    }

    /// sums[c] += offset: the zero-point correction -rowSum * u(zero) and QLinearConv's bias, when
    /// the columns share one zero point (convolutions).
    @inline(__always)
    public static func correct(_ sums: UnsafeMutablePointer<Int32>, count: Int, offset: Int32) {
        for c in 0..<count { sums[c] &+= offset }
    }

    /// sums[c] -= rowSum * columnZeros[c]: the correction for a zero point per column (matrix products).
    @inline(__always)
    public static func correct(_ sums: UnsafeMutablePointer<Int32>, count: Int, rowSum: Int32, columnZeros: UnsafePointer<Int32>) {
        for c in 0..<count { sums[c] = sums[c] &- rowSum &* columnZeros[c] }
    }
}
