/// Geometry of a 2-D transposed convolution (1-D runs as height 1), batch-major NCHW float32.
///
///   input  [batch, inChannels, inHeight, inWidth]
///   weight [inChannels, outChannels / group, kernelHeight, kernelWidth]   (ONNX ConvTranspose)
///   bias   [outChannels] (optional)
///   output [batch, outChannels, outHeight, outWidth]
/// Input pixel (ih, iw) and tap (a, b) add to output pixel
///   (ih * strideHeight - padTop + a * dilationHeight, iw * strideWidth - padLeft + b * dilationWidth)
/// when that lies inside the output; the output size is the caller's (pads, output_padding,
/// output_shape all resolved), so the end padding needs no field.
public struct ConvTransposeGeometry: Sendable, Equatable {
    public var batch: Int
    public var inChannels: Int
    public var inHeight: Int
    public var inWidth: Int
    public var outChannels: Int
    public var kernelHeight: Int
    public var kernelWidth: Int
    public var strideHeight: Int
    public var strideWidth: Int
    public var dilationHeight: Int
    public var dilationWidth: Int
    public var padTop: Int
    public var padLeft: Int
    public var outHeight: Int
    public var outWidth: Int
    public var group: Int

    public init(batch: Int, inChannels: Int, inHeight: Int, inWidth: Int, outChannels: Int,
                kernelHeight: Int, kernelWidth: Int, strideHeight: Int, strideWidth: Int,
                dilationHeight: Int, dilationWidth: Int, padTop: Int, padLeft: Int,
                outHeight: Int, outWidth: Int, group: Int) {
        self.batch = batch
        self.inChannels = inChannels
        self.inHeight = inHeight
        self.inWidth = inWidth
        self.outChannels = outChannels
        self.kernelHeight = kernelHeight
        self.kernelWidth = kernelWidth
        self.strideHeight = strideHeight
        self.strideWidth = strideWidth
        self.dilationHeight = dilationHeight
        self.dilationWidth = dilationWidth
        self.padTop = padTop
        self.padLeft = padLeft
        self.outHeight = outHeight
        self.outWidth = outWidth
        self.group = group
    }

    var inChannelsPerGroup: Int { inChannels / group }
    var outChannelsPerGroup: Int { outChannels / group }
    var taps: Int { kernelHeight * kernelWidth }
}

/// Transposed convolution as GEMM + col2im, the formulation of Caffe, PyTorch's CPU kernel and
/// onnxruntime: per image and group, columns[(m, a, b)][pixel] = W_g^T X_g (one row per output
/// channel and tap, one column per input pixel, K = input channels per group), then each column
/// row is scatter-added into its output plane at the tap's offset.
///
/// Why this and not a direct (gather) loop: the multiply-adds, all but 1/inChannels of the work,
/// run at GEMM speed; the scatter is a strided add per column row (SIMD for strides 1 and 2).
/// The GEMM is PackedGemm's 6x64 micro-kernel on W_g^T packed once per plan (`packWeights`,
/// wide-SIMD builds, constant weights) with the input tile copied into 64-column panels; else
/// OpenBLAS reads W_g^T straight from the [C, M/g, kH, kW] weight with transposeA (it packs A
/// itself on every call). Measured (thread CPU time, AVX-512 machine): DBNet's 64->64 k2 s2
/// layer at 160x160 took 0.58x the time with the packed kernel as with OpenBLAS's Haswell sgemm.
///
/// Work items are (image, group, block of output channels[, band of output rows]); each owns
/// its output planes (or rows), writes the bias there, adds its columns and applies the
/// epilogue while the block is warm, so no two threads write the same element. Output rows are
/// split into bands only when a kernel's row span is at most the stride (DBNet's kernel 2
/// stride 2, SAME 1x1): then input rows feed disjoint output rows and a band of input rows
/// owns exactly the output rows it can reach.
public enum ConvTranspose {
    /// Column-buffer size aimed at per worker (floats): a few hundred KB, near the L2.
    static let columnTarget = 1 << 17
    /// Most GEMM rows (output channels x taps) one block takes.
    static let blockRows = 256

    /// How one geometry's call is cut into items and sized, decided once (the operator keeps it
    /// in its plan's state): blocks of output channels, bands of rows, the GEMM tile, the workers.
    public struct Plan {
        let g: ConvTransposeGeometry
        let threads: Int             // the Parallel `run` takes has as many
        let channelBlock: Int        // output channels per item
        let blocksPerGroup: Int
        let bands: Int               // items along the output rows (1 when rows overlap)
        let tilePixels: Int          // input pixels (GEMM columns) per GEMM call
        let items: Int
        let workers: Int
        /// Multiply-adds and adds of the whole call, saturating (only used to size the threading).
        let work: Int
        /// The packed SIMD GEMM on weights packed by `packWeights` (else OpenBLAS on the raw ones).
        let packed: Bool
        /// Column-buffer row stride: the tile, rounded up to whole 64-column panels when packed.
        var columnStride: Int { packed ? (tilePixels + 63) / 64 * 64 : tilePixels }
        /// Column-buffer rows: the block's (m, a, b) rows, rounded up to the micro-kernel's 6.
        var columnRows: Int { packed ? (channelBlock * g.taps + 5) / 6 * 6 : channelBlock * g.taps }
        /// Per worker: the column buffer, then (packed) the input tile in 64-column panels.
        var columnFloats: Int { columnRows * columnStride + (packed ? g.inChannelsPerGroup * columnStride : 0) }

        /// `packed`: `run` will be given weights from packWeights (the SIMD GEMM), else raw ones.
        public init(_ g: ConvTransposeGeometry, threads: Int, packed: Bool = false) {
            self.g = g
            self.threads = threads
            self.packed = packed
            let mg = g.outChannelsPerGroup, taps = max(g.taps, 1)
            let images = g.batch * g.group
            var block = max(1, min(mg, blockRows / taps))
            // Enough blocks to keep every thread busy, but not below ~16 GEMM rows per block.
            let wanted = images == 0 ? 1 : (2 * threads + images - 1) / images
            if (mg + block - 1) / block < wanted {
                block = max(min(mg, (16 + taps - 1) / taps), (mg + wanted - 1) / wanted)
            }
            channelBlock = max(1, min(block, mg))
            blocksPerGroup = mg == 0 ? 0 : (mg + channelBlock - 1) / channelBlock
            let disjointRows = (g.kernelHeight - 1) * g.dilationHeight + 1 <= g.strideHeight
            let itemsSoFar = images * blocksPerGroup
            if disjointRows && itemsSoFar > 0 && itemsSoFar < 2 * threads {
                bands = max(1, min(g.inHeight, (2 * threads + itemsSoFar - 1) / itemsSoFar))
            } else {
                bands = 1
            }
            tilePixels = max(1, min(g.inHeight * g.inWidth, ConvTranspose.columnTarget / (channelBlock * taps)))
            items = images * blocksPerGroup * bands
            work = items == 0 ? 0 : Self.saturating(Self.saturating(g.batch * g.outChannels, g.taps),
                                                    Self.saturating(g.inHeight * g.inWidth, max(g.inChannelsPerGroup, 1)))
            // Parallel.workers(for:totalWork:) for a Parallel of `threads` threads.
            workers = max(1, min(threads, items, max(1, work / Parallel.minimumWorkPerThread)))
        }

        /// a * b, or Int.max when it overflows (no array, so planning a run allocates nothing).
        static func saturating(_ a: Int, _ b: Int) -> Int {
            let (p, overflow) = a.multipliedReportingOverflow(by: b)
            return overflow ? Int.max : p
        }

        /// Input rows [r0, r1) of band `band` and the output rows [lo, hi) it owns.
        func band(_ band: Int) -> (r0: Int, r1: Int, lo: Int, hi: Int) {
            if bands <= 1 { return (0, g.inHeight, 0, g.outHeight) }
            let r0 = g.inHeight * band / bands, r1 = g.inHeight * (band + 1) / bands
            let lo = band == 0 ? 0 : min(g.outHeight, max(0, r0 * g.strideHeight - g.padTop))
            let hi = band == bands - 1 ? g.outHeight : min(g.outHeight, max(0, r1 * g.strideHeight - g.padTop))
            return (r0, r1, lo, hi)
        }

        /// Scratch bytes `run` needs (one column buffer per worker, and its input panels when packed).
        public var workspaceByteCount: Int {
            items == 0 || g.inChannelsPerGroup == 0 ? 0 : workers * columnFloats * MemoryLayout<Float>.stride
        }

        /// output = conv_transpose(input, weight) + bias, then `epilogue`. No allocation. When the
        /// plan is `packed`, `packedWeight` (from packWeights for this geometry) feeds the SIMD GEMM.
        public func run(
            input: UnsafePointer<Float>, weight: UnsafePointer<Float>, packedWeight: UnsafeRawPointer?,
            bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>,
            workspace: UnsafeMutableRawPointer, parallel: Parallel, epilogue: ConvEpilogue = .none
        ) {
            precondition((packedWeight != nil) == packed,
                         "ConvTranspose.Plan: packed weights \(packed ? "missing" : "not planned")")
            // The per-worker column buffers were sized for `threads`.
            precondition(parallel.threads == threads,
                         "ConvTranspose.Plan: planned for \(threads) threads, run on \(parallel.threads)")
            if items == 0 { return }
            let columns = workspace.bindMemory(to: Float.self, capacity: max(workers * columnFloats, 1))
            let packedRows = packedWeight.map { $0.assumingMemoryBound(to: Float.self) }
            parallel.forEachRange(items, totalWork: work) { worker, range in
                for item in range {
                    ConvTranspose.runItem(self, item, input: input, weight: weight, packed: packedRows, bias: bias,
                                          output: output, columns: columns + worker * columnFloats, epilogue: epilogue)
                }
            }
        }
    }

    /// Whether constant weights are worth packing for the SIMD micro-kernels: the build has the
    /// wide-SIMD target (ConvEngine.preferred, as for Conv), else OpenBLAS runs on the raw weight.
    public static var packsWeights: Bool { ConvEngine.preferred == .packedSIMD }

    /// Rows of one group in the packed weights: its (m, a, b) rows, plus 6 zero rows so that a
    /// 6-row step starting anywhere in the group stays inside it.
    static func packedRowsPerGroup(_ g: ConvTransposeGeometry) -> Int { g.outChannelsPerGroup * g.taps + 6 }

    /// Bytes `packWeights` writes.
    public static func packedWeightByteCount(_ g: ConvTransposeGeometry) -> Int {
        g.group * packedRowsPerGroup(g) * g.inChannelsPerGroup * MemoryLayout<Float>.stride
    }

    /// W_g^T of each group, row (m, a, b) holding its C/group input-channel weights contiguously
    /// (the micro-kernel's A operand), from the [C, M/group, kH, kW] weight; made once per plan.
    public static func packWeights(_ g: ConvTransposeGeometry, weight: UnsafePointer<Float>, into packed: UnsafeMutableRawPointer) {
        let cg = g.inChannelsPerGroup, rows = g.outChannelsPerGroup * g.taps, perGroup = packedRowsPerGroup(g)
        let out = packed.bindMemory(to: Float.self, capacity: max(1, g.group * perGroup * cg))
        out.update(repeating: 0, count: g.group * perGroup * cg)
        for grp in 0..<g.group {
            for c in 0..<cg {
                let source = weight + (grp * cg + c) * rows
                let target = out + grp * perGroup * cg + c
                for r in 0..<rows { target[r * cg] = source[r] }
            }
        }
    }

    /// columns[r][0..<count] = sum_k A[r][k] X[k][p0 + ...] for the block's rows with the 6x64
    /// micro-kernel: X's tile copied into 64-column panels (zero-padded) after the columns.
    private static func packedProduct(
        _ plan: Plan, a: UnsafePointer<Float>, rows: Int, x: UnsafePointer<Float>, ldx: Int, count: Int,
        columns: UnsafeMutablePointer<Float>
    ) {
        let cg = plan.g.inChannelsPerGroup, ldc = plan.columnStride, panels = (count + 63) / 64
        let panel = columns + plan.columnRows * ldc
        for q in 0..<panels {
            let start = q * 64, width = min(64, count - start)
            let target = panel + q * cg * 64
            for c in 0..<cg {
                let row = target + c * 64
                row.update(from: x + c * ldx + start, count: width)
                if width < 64 { (row + width).update(repeating: 0, count: 64 - width) }
            }
        }
        for q in 0..<panels {
            var r = 0
            while r < rows {
                PackedGemm.kernel6x64(kc: cg, a: a + r * cg, lda: cg, b: panel + q * cg * 64,
                                      c: columns + r * ldc + q * 64, ldc: ldc, accumulate: false)
                r += 6
            }
        }
    }

    private static func runItem(
        _ plan: Plan, _ item: Int, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        packed: UnsafePointer<Float>?,
        bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>, columns: UnsafeMutablePointer<Float>,
        epilogue: ConvEpilogue
    ) {
        let g = plan.g
        let band = item % plan.bands
        let block = item / plan.bands % plan.blocksPerGroup
        let image = item / plan.bands / plan.blocksPerGroup
        let grp = image % g.group, n = image / g.group
        let cg = g.inChannelsPerGroup, mg = g.outChannelsPerGroup, taps = g.taps
        let m0 = block * plan.channelBlock, mb = min(plan.channelBlock, mg - m0)
        let outPlane = g.outHeight * g.outWidth, inPlane = g.inHeight * g.inWidth
        let planes = output + (n * g.outChannels + grp * mg + m0) * outPlane
        let (r0, r1, lo, hi) = plan.band(band)
        let wo = g.outWidth
        // Output rows get the bias just before the first tile that can reach them, and the
        // epilogue as soon as no later tile can: each row is written, added to and finished
        // while it is in cache, instead of three passes over the block's planes.
        var filled = lo, finished = lo
        func fill(to row: Int) {
            if row <= filled { return }
            for j in 0..<mb {
                let value = bias.map { $0[grp * mg + m0 + j] } ?? 0
                (planes + j * outPlane + filled * wo).update(repeating: value, count: (row - filled) * wo)
            }
            filled = row
        }
        func finish(to row: Int) {
            if row <= finished { return }
            let first = planes + finished * wo
            epilogue.shifted(by: first - output).apply(rows: mb, count: (row - finished) * wo, stride: outPlane, output: first)
            finished = row
        }
        if cg > 0 && hi > lo {
            let a = weight + grp * cg * mg * taps + m0 * taps
            let x = input + (n * g.inChannels + grp * cg) * inPlane
            let span = (g.kernelHeight - 1) * g.dilationHeight + 1
            // Tiles of consecutive input pixels (whole rows or parts of one), one GEMM each.
            var p0 = r0 * g.inWidth
            let end = r1 * g.inWidth
            while p0 < end {
                let p1 = min(end, p0 + plan.tilePixels)
                // Rows this tile reaches end before its last input row's reach.
                fill(to: min(hi, max(lo, (p1 - 1) / g.inWidth * g.strideHeight - g.padTop + span)))
                if let packed {
                    packedProduct(plan, a: packed + (grp * packedRowsPerGroup(g) + m0 * taps) * cg, rows: mb * taps,
                                  x: x + p0, ldx: inPlane, count: p1 - p0, columns: columns)
                } else {
                    Gemm.sgemm(transposeA: true, m: mb * taps, n: p1 - p0, k: cg, a: a, lda: mg * taps,
                               b: x + p0, ldb: inPlane, c: columns, ldc: plan.columnStride)
                }
                scatter(g, columns: columns, ld: plan.columnStride, channels: mb, pixels: p0..<p1, ownedRows: lo..<hi,
                        planes: planes)
                // Later tiles start at input row p1 / inWidth: rows above its reach are final.
                if p1 < end { finish(to: min(filled, max(lo, p1 / g.inWidth * g.strideHeight - g.padTop))) }
                p0 = p1
            }
        }
        fill(to: hi)
        finish(to: hi)
    }

    /// col2im: adds column row (j, a, b), which holds input pixels `pixels` (row-major in the
    /// plane), into plane j at tap (a, b)'s offset, only on output rows in `ownedRows`.
    private static func scatter(
        _ g: ConvTransposeGeometry, columns: UnsafeMutablePointer<Float>, ld: Int, channels: Int, pixels: Range<Int>,
        ownedRows: Range<Int>, planes: UnsafeMutablePointer<Float>
    ) {
        let outPlane = g.outHeight * g.outWidth
        let sw = g.strideWidth, wo = g.outWidth, wi = g.inWidth
        let firstRow = pixels.lowerBound / wi, lastRow = (pixels.upperBound - 1) / wi
        for j in 0..<channels {
            let plane = planes + j * outPlane
            for ka in 0..<g.kernelHeight {
                for kb in 0..<g.kernelWidth {
                    let row = UnsafePointer(columns + ((j * g.kernelHeight + ka) * g.kernelWidth + kb) * ld)
                    // Output column ow = iw * sw + ow0; the input columns that land inside [0, wo).
                    let ow0 = kb * g.dilationWidth - g.padLeft
                    let iwLo = ow0 >= 0 ? 0 : (-ow0 + sw - 1) / sw
                    let iwHi = ow0 > wo - 1 ? 0 : min(wi, (wo - 1 - ow0) / sw + 1)
                    if iwHi <= iwLo { continue }
                    for ih in firstRow...lastRow {
                        let oh = ih * g.strideHeight - g.padTop + ka * g.dilationHeight
                        if oh < ownedRows.lowerBound || oh >= ownedRows.upperBound { continue }
                        // This tile's part of input row ih, within the columns that land inside.
                        let rowStart = ih * wi
                        let from = max(iwLo, pixels.lowerBound - rowStart), to = min(iwHi, pixels.upperBound - rowStart)
                        if to <= from { continue }
                        let src = row + (rowStart - pixels.lowerBound)
                        let dst = plane + oh * wo + ow0
                        if sw == 1 {
                            add(src + from, into: dst + from, to - from)
                        } else if sw == 2 {
                            addEven(src + from, into: dst + 2 * from, to - from)
                        } else {
                            var d = dst + from * sw, s = src + from
                            for _ in 0..<(to - from) {
                                d.pointee += s.pointee
                                d += sw
                                s += 1
                            }
                        }
                    }
                }
            }
        }
    }

    /// y[2 i] += x[i] for i < count (stride-2 upsampling): 8 inputs into the even lanes of 16
    /// outputs per step; the odd lanes are stored back unchanged.
    @inline(__always)
    private static func addEven(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, _ count: Int) {
        var i = 0
        while i + 8 <= count {
            let source = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self)
            let target = UnsafeMutableRawPointer(y + 2 * i)
            var v = target.loadUnaligned(as: SIMD16<Float>.self)
            v.evenHalf += source
            target.storeBytes(of: v, as: SIMD16<Float>.self)
            i += 8
        }
        while i < count {
            y[2 * i] += x[i]
            i += 1
        }
    }

    @inline(__always)
    private static func add(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, _ count: Int) {
        var i = 0
        while i + 16 <= count {
            ElementwiseKernels.store16(ElementwiseKernels.load16(y + i) + ElementwiseKernels.load16(x + i), y + i)
            i += 16
        }
        while i < count {
            y[i] += x[i]
            i += 1
        }
    }
}
