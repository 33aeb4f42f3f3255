/// Layout changes around the packed convolution GEMM: NCHW input to channels-last rows, the
/// pixel-major GEMM result back to NCHW (+ bias), and weights to the packed or BLAS order.
enum ConvLayout {
    /// Splits two rows into their even and odd lanes: three rounds over 8 rows transpose 8 x 8
    /// (each round rotates the 6-bit (row, column) index right by one bit). Lanes are named one by
    /// one (LLVM makes each result one shuffle): the stdlib's evenHalf / oddHalf are generic lane
    /// loops that are not always inlined (measured: 5% of a DeformConv run when they were not).
    @inline(__always)
    static func unzip(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> (SIMD8<Float>, SIMD8<Float>) {
        (SIMD8<Float>(a[0], a[2], a[4], a[6], b[0], b[2], b[4], b[6]),
         SIMD8<Float>(a[1], a[3], a[5], a[7], b[1], b[3], b[5], b[7]))
    }

    typealias Rows8 = (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>,
                       SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>)

    /// The 8 x 8 block at `src` (rows `srcStride` floats apart), transposed: row r is source column r.
    @inline(__always)
    static func transposed8x8(_ src: UnsafePointer<Float>, srcStride: Int) -> Rows8 {
        let s = UnsafeRawPointer(src)
        let sb = srcStride * MemoryLayout<Float>.stride
        @inline(__always) func load(_ r: Int) -> SIMD8<Float> {
            s.loadUnaligned(fromByteOffset: r * sb, as: SIMD8<Float>.self)
        }
        var r0 = load(0), r1 = load(1), r2 = load(2), r3 = load(3)
        var r4 = load(4), r5 = load(5), r6 = load(6), r7 = load(7)
        for _ in 0..<3 {
            let (n0, n4) = unzip(r0, r1), (n1, n5) = unzip(r2, r3)
            let (n2, n6) = unzip(r4, r5), (n3, n7) = unzip(r6, r7)
            r0 = n0; r1 = n1; r2 = n2; r3 = n3; r4 = n4; r5 = n5; r6 = n6; r7 = n7
        }
        return (r0, r1, r2, r3, r4, r5, r6, r7)
    }

    /// Transposes a 16 x 16 block of `src` (rows `srcStride` floats apart) and hands output row r,
    /// which is source column r, to `store(r, row)`. Built from 8 x 8 blocks of 256-bit vectors:
    /// half the registers of a 16 x 16 register transpose, so nothing spills (measured ~20% faster
    /// on Zen 4 than 512-bit unzips).
    @inline(__always)
    static func transpose16x16(
        _ src: UnsafePointer<Float>, srcStride: Int, store: (Int, SIMD16<Float>) -> Void
    ) {
        for half in 0..<2 {
            let top = transposed8x8(src + 8 * half, srcStride: srcStride)
            let bottom = transposed8x8(src + 8 * srcStride + 8 * half, srcStride: srcStride)
            let r = 8 * half
            store(r, SIMD16(lowHalf: top.0, highHalf: bottom.0))
            store(r + 1, SIMD16(lowHalf: top.1, highHalf: bottom.1))
            store(r + 2, SIMD16(lowHalf: top.2, highHalf: bottom.2))
            store(r + 3, SIMD16(lowHalf: top.3, highHalf: bottom.3))
            store(r + 4, SIMD16(lowHalf: top.4, highHalf: bottom.4))
            store(r + 5, SIMD16(lowHalf: top.5, highHalf: bottom.5))
            store(r + 6, SIMD16(lowHalf: top.6, highHalf: bottom.6))
            store(r + 7, SIMD16(lowHalf: top.7, highHalf: bottom.7))
        }
    }

    /// dst[r][c] = src[c][r] + (rowBias?[r] ?? 0) for a 16 x 16 block; strides in floats.
    static func transpose16x16(
        _ src: UnsafePointer<Float>, srcStride: Int, _ dst: UnsafeMutablePointer<Float>, dstStride: Int,
        rowBias: UnsafePointer<Float>?
    ) {
        let d = UnsafeMutableRawPointer(dst)
        let db = dstStride * MemoryLayout<Float>.stride
        if let rowBias {
            transpose16x16(src, srcStride: srcStride) { r, v in
                d.storeBytes(of: v + SIMD16<Float>(repeating: rowBias[r]), toByteOffset: r * db, as: SIMD16<Float>.self)
            }
        } else {
            transpose16x16(src, srcStride: srcStride) { r, v in
                d.storeBytes(of: v, toByteOffset: r * db, as: SIMD16<Float>.self)
            }
        }
    }

    /// dst[r][c] = src[c][r] (+ rowBias[r]) for r < rows, c < columns: 16 x 16 blocks, scalar edges.
    static func transpose(
        _ src: UnsafePointer<Float>, srcStride: Int, _ dst: UnsafeMutablePointer<Float>, dstStride: Int,
        rows: Int, columns: Int, rowBias: UnsafePointer<Float>?
    ) {
        let fullRows = rows & ~15
        let fullColumns = columns & ~15
        var r = 0
        while r < fullRows {
            var c = 0
            while c < fullColumns {
                transpose16x16(src + c * srcStride + r, srcStride: srcStride, dst + r * dstStride + c,
                               dstStride: dstStride, rowBias: rowBias.map { $0 + r })
                c += 16
            }
            r += 16
        }
        // The columns right of the blocks, then the rows below them. Column by column: each
        // source row is read in order (an image's 3 planes into RGB pixels ran at a quarter of
        // an element per cycle row by row, 3 columns per trip of the inner loop).
        moveColumns(fullColumns..<columns, rows: 0..<fullRows)
        moveColumns(0..<columns, rows: fullRows..<rows)

        func moveColumns(_ columnRange: Range<Int>, rows rowRange: Range<Int>) {
            for c in columnRange {
                let from = src + c * srcStride, to = dst + c
                // Without a bias the bits move unchanged (adding 0 would turn -0.0 into 0.0, and
                // StridedCopy moves int32 data through here).
                if let rowBias {
                    for r in rowRange { to[r * dstStride] = from[r] + rowBias[r] }
                } else {
                    for r in rowRange { to[r * dstStride] = from[r] }
                }
            }
        }
    }

    /// One batch item NCHW -> channels-last rows: rows[p * rowStride + c] = input[c][p] for the
    /// pixel range `pixels`.
    /// Per chunk of pixels, 16 planes at a time: reading all planes at once (64 streams for 64
    /// channels) thrashes the caches when the plane size is a power of two, as every plane then
    /// maps to the same sets (measured: 3x slower on 64 x 128 x 128).
    static func channelsLast(
        _ input: UnsafePointer<Float>, channels: Int, planeSize: Int, pixels: Range<Int>,
        rows: UnsafeMutablePointer<Float>, rowStride: Int
    ) {
        let chunk = 512
        var p = pixels.lowerBound
        while p < pixels.upperBound {
            let count = min(chunk, pixels.upperBound - p)
            var c = 0
            while c < channels {
                transpose(input + c * planeSize + p, srcStride: planeSize, rows + p * rowStride + c,
                          dstStride: rowStride, rows: count, columns: min(16, channels - c), rowBias: nil)
                c += 16
            }
            p += count
        }
    }

    /// Pixels `pixels` of one batch item into rows `rowStride` floats apart: copied row by row
    /// from channels-last input, transposed from NCHW planes (channelsLast(_:...)).
    static func rows(
        from image: UnsafePointer<Float>, channelsLast: Bool, channels: Int, planeSize: Int, pixels: Range<Int>,
        into rows: UnsafeMutablePointer<Float>, rowStride: Int
    ) {
        if channelsLast {
            for p in pixels { (rows + p * rowStride).update(from: image + p * channels, count: channels) }
        } else {
            self.channelsLast(image, channels: channels, planeSize: planeSize, pixels: pixels, rows: rows,
                              rowStride: rowStride)
        }
    }

    /// GEMM result rows (one per pixel, `resultStride` floats apart) of `count` pixels plus the bias
    /// into an output: transposed into NCHW planes of `planeSize` floats, or copied into
    /// channels-last rows `outStride` floats apart.
    static func storeResult(
        _ result: UnsafePointer<Float>, resultStride: Int, count: Int, channels: Int, bias: UnsafePointer<Float>?,
        into out: UnsafeMutablePointer<Float>, channelsLast: Bool, planeSize: Int, outStride: Int
    ) {
        if !channelsLast {
            transpose(result, srcStride: resultStride, out, dstStride: planeSize, rows: channels, columns: count,
                      rowBias: bias)
            return
        }
        for r in 0..<count {
            ConvBias.copyRow(result + r * resultStride, adding: bias, to: out + r * outStride, columns: channels)
        }
    }

    /// Packed-GEMM weights of one conv group and one block of output channels:
    /// packed[k][col] = weight[blockStart + col][c][tap] with k = tap * cin + c, zero for columns past
    /// `cout`. `width` is the block width (a multiple of 16); `weight` points at the group's first filter.
    /// 16 filters x 16 consecutive (c, tap) entries are transposed at a time; each transposed row
    /// goes to its own packed row.
    static func packBlock(
        _ weight: UnsafePointer<Float>, cin: Int, taps: Int, cout: Int, blockStart: Int, width: Int,
        packed: UnsafeMutablePointer<Float>
    ) {
        let filterSize = cin * taps
        let live = min(width, cout - blockStart)
        let fullColumns = live & ~15
        let fullEntries = filterSize & ~15
        let out = UnsafeMutableRawPointer(packed)
        var col = 0
        while col < fullColumns {
            let filters = weight + (blockStart + col) * filterSize
            var e = 0
            while e < fullEntries {
                transpose16x16(filters + e, srcStride: filterSize) { r, v in
                    let c = (e + r) / taps, tap = e + r - c * taps
                    out.storeBytes(of: v, toByteOffset: ((tap * cin + c) * width + col) * 4, as: SIMD16<Float>.self)
                }
                e += 16
            }
            for e in fullEntries..<filterSize {
                let c = e / taps, tap = e - c * taps
                let row = packed + (tap * cin + c) * width
                for j in col..<(col + 16) { row[j] = filters[(j - col) * filterSize + e] }
            }
            col += 16
        }
        for c in 0..<cin {
            for tap in 0..<taps {
                let row = packed + (tap * cin + c) * width
                for j in fullColumns..<live { row[j] = weight[(blockStart + j) * filterSize + c * taps + tap] }
                for j in live..<width { row[j] = 0 }
            }
        }
    }

    /// BLAS-order weights of one filter: reordered[tap * cin + c] = filter[c * taps + tap].
    static func reorderFilter(_ filter: UnsafePointer<Float>, cin: Int, taps: Int, to reordered: UnsafeMutablePointer<Float>) {
        for c in 0..<cin {
            for tap in 0..<taps { reordered[tap * cin + c] = filter[c * taps + tap] }
        }
    }
}
