import CPlatform

/// Which GEMM the convolution paths use.
public enum ConvEngine: Sendable, Equatable {
    /// The register-blocked SIMD16 micro-kernels of PackedGemm on weights packed per call.
    case packedSIMD
    /// OpenBLAS sgemm (single-threaded; Gemm.swift) on the same panels.
    case blas

    /// Fixed by how the library was built, never by a timing probe, so that the same model and
    /// input give bit-identical outputs in every process. The shipped build (`make build`) sets
    /// DEFORMRT_WIDE_SIMD together with `-target-cpu`: the micro-kernels then run near the FMA
    /// peak, above OpenBLAS. Without a target LLVM lowers SIMD16 FMAs to calls of fmaf, over 100x
    /// slower, so plain `swift build` products (tests, dependents) use OpenBLAS.
    public static let preferred: ConvEngine = {
        #if DEFORMRT_WIDE_SIMD
        return .packedSIMD
        #else
        return .blas
        #endif
    }()
}

/// How a convolution's input and output tensors lie in memory: NCHW, or channels-last NHWC
/// ([batch, height, width, channels]), which the graph's layout pass keeps between convolutions
/// so that no transpose runs inside a chain.
public struct ConvDataLayout: Sendable, Equatable {
    public var inputChannelsLast: Bool
    public var outputChannelsLast: Bool

    public init(inputChannelsLast: Bool = false, outputChannelsLast: Bool = false) {
        self.inputChannelsLast = inputChannelsLast
        self.outputChannelsLast = outputChannelsLast
    }

    public static let nchw = ConvDataLayout()
}

/// What fills the A panel (one row per output pixel) of the channels-last convolution.
enum PanelSource {
    /// 1x1, stride 1, no padding: the channels-last input rows are the panel.
    case pointwise
    case im2col
    /// Offsets and mask of the current batch item.
    case deformable(DeformableOptions, offset: UnsafePointer<Float>, mask: UnsafePointer<Float>?)
}

/// Where the micro-kernels read the A rows of a k block: a panel (or the input), rows `lda` apart,
/// or a table of row pointers per tap (ChannelsLastConvPlan.readsRowsIndirectly).
enum PanelRows {
    case strided(UnsafePointer<Float>, lda: Int)
    case table(UnsafePointer<UnsafePointer<Float>>)

    /// The rows from row `rows` on.
    func advanced(by rows: Int) -> PanelRows {
        switch self {
        case let .strided(a, lda): return .strided(a + rows * lda, lda: lda)
        case let .table(table): return .table(table + rows)
        }
    }
}

/// The shared path of Conv2D (packed engine) and DeformConv (both engines): input transposed to
/// channels-last rows once per batch item, then per tile of output pixels and per k block a
/// pixel-major panel (im2col or deformable samples), multiplied into the tile's outputs.
///
/// Workspace: packed (or reordered) weights | channels-last input (+ 8 zero rows: the zero row
/// that padded / out-of-range samples read, and rows the last 6-row group may touch) |
/// per worker: panel, GEMM result (packed engine), sampling plan, sample origins.
struct ChannelsLastConvPlan {
    let g: ConvGeometry
    let engine: ConvEngine
    let cin: Int          // per conv group
    let cout: Int         // per conv group
    let coutPadded: Int   // cout rounded up to 16: the packed weight / result width
    let taps: Int
    let k: Int            // taps * cin
    let kc: Int           // k block
    let tileRows: Int     // output pixels per tile, a multiple of the micro-kernel's 6 rows
    let inPixels: Int
    let outPixels: Int
    let rowStride: Int    // channels-last row length: inChannels, rounded up to 16 for rows the plan copies
    let rowGroups: Int    // ceil(outPixels / 6)
    let workers: Int
    let weightsPrepacked: Bool  // the caller packed them once (packWeights); no weight region here
    let layout: ConvDataLayout
    /// Channels-last input whose rows already have the row stride (channels a multiple of 16):
    /// the panels read the input itself, and the rows region holds only the zero rows.
    let readsInputInPlace: Bool
    /// Plain convolution on few input channels (an RGB stem): the rows are packed (row stride =
    /// channels) and every image row gets zero columns on both sides, so the taps of one kernel
    /// row are one run of kernelWidth x channels floats, copied at once instead of tap by tap
    /// (a 7x7 stem on 3 channels: 7 copies of 21 floats per pixel instead of 49 of 3).
    let narrowRows: Bool
    /// Packed engine, channels-last output, output channels per group a multiple of 16: the
    /// micro-kernels write the tile's full 6-row groups straight into the output (row stride
    /// outChannels) instead of into the result buffer and then copying (a tile's last partial
    /// group still goes through the buffer: its padding rows would land on the next pixels).
    let writesOutputDirectly: Bool
    /// Small maps on several threads (7x7 and 14x14 at 224x224): each thread takes every pixel for
    /// its own 64-wide blocks of output channels instead of its share of the pixels, so it streams
    /// only its part of the weights and no thread waits on a short last share of row groups.
    let splitsColumns: Bool
    let columnBlocks: Int
    let narrowRowPixels: Int   // padLeft + inWidth + the right padding the last column reaches
    let zeroFloats: Int        // the zero region after the image rows
    let imageFloats: Int       // the copied image rows (none when the input is read in place)
    /// Deformable with one k block and a full 64-column block: the tile's plans are made up front
    /// and the gather of each 6-row group runs inside the micro-kernel of the group before it
    /// (PackedGemm.kernel6x64(interleaving:)), into a panel of two 6-row groups used in turn.
    /// Otherwise one plan at a time, gathered per k block into a panel of the whole tile.
    let interleavesSampling: Bool
    /// Plain convolution, not pointwise (packed engine): the micro-kernels read the channels-last
    /// rows through a table of row pointers (one per table tap and output pixel of the tile)
    /// instead of an im2col panel, so nothing is copied. On narrow rows a table tap is a kernel
    /// row: its kernelWidth x channels floats are one run of the zero-bordered row.
    let readsRowsIndirectly: Bool
    let tableTaps: Int          // taps, or kernel rows on narrow rows
    let segmentParts: Int       // equal parts a table tap's floats are read in (more than 640 channels)
    let segmentLength: Int      // floats per table tap / segmentParts
    let segmentsPerBlock: Int   // segments per k block of the indirect path
    let offsetGroupSpan: Int    // offset groups a conv group's channels touch (deformable)
    let planSlots: Int          // sampling plans held at once

    // Workspace layout in floats from the (64-byte aligned) base; every region 16-float aligned.
    let weightsAt: Int
    let rowsAt: Int
    let workerAt: Int
    let workerFloats: Int
    let panelAt: Int      // within a worker's region
    let resultAt: Int
    let planIndexAt: Int
    let planWeightAt: Int
    let originYAt: Int
    let originXAt: Int
    let planTailAt: Int   // 48 floats: the last partial vector of offsets and mask
    let rowTableAt: Int   // tileRows x taps row pointers (readsRowsIndirectly)
    let planStride: Int
    let totalFloats: Int

    static let extraRows = 8
    /// Channels per k block of the indirect path, as the panel's kc: a 64-column weight block
    /// (<= 160 KB) stays in L2 while the tile's rows stream past it.
    static let indirectBlock = 640
    /// The row table holds taps x tileRows pointers per worker: up to 16x16 kernels (<= 400 KB);
    /// larger ones take the im2col panel, whose size does not grow with the kernel.
    static let maxIndirectTaps = 256
    /// At most this many plans (offset groups x taps) for interleaved sampling: ~6 KB each per worker.
    static let maxInterleavedPlans = 36
    /// Weights of one k block (all its columns) small enough to stay in L2 while a tile's 6-row
    /// groups take every column in turn (multiplyPacked): 256 KB.
    static let rowMajorWeightFloats = 65_536

    /// `offsetGroup`: the deformable offset groups, nil for plain convolution.
    init(
        _ g: ConvGeometry, engine: ConvEngine, threads: Int, pointwise: Bool = false, weightsPrepacked: Bool = false,
        offsetGroup: Int? = nil, layout: ConvDataLayout = .nchw
    ) {
        self.g = g
        self.engine = engine
        self.weightsPrepacked = weightsPrepacked
        self.layout = layout
        cin = g.inChannels / max(g.group, 1)
        cout = g.outChannels / max(g.group, 1)
        coutPadded = (cout + 15) & ~15
        taps = g.kernelHeight * g.kernelWidth
        k = cin * taps
        // k blocks of at most 640 keep a 64-column weight block (kc x 64, <= 160 KB) in L2 while
        // the tile's rows stream past it, and the panel small.
        let blocks = max(1, (k + 639) / 640)
        kc = max(1, (k + blocks - 1) / blocks)
        // ~192 KB each for the panel (rows x kc) and the result (rows x coutPadded).
        offsetGroupSpan = offsetGroup.map { Self.offsetGroupSpan(g, offsetGroup: $0) } ?? 0
        interleavesSampling = offsetGroup != nil && engine == .packedSIMD && kc == k && coutPadded >= 64
            && offsetGroupSpan * taps <= Self.maxInterleavedPlans
        planSlots = interleavesSampling ? offsetGroupSpan * taps : 1
        var rows = min(49_152 / max(kc, 1), 49_152 / coutPadded)
        rows = min(max(rows, 24), 192) / 6 * 6
        // Interleaved, the panel is a ring of two 6-row groups, so only the result bounds the tile.
        if interleavesSampling { rows = min(49_152 / coutPadded, 192) / 6 * 6 }
        inPixels = g.inHeight * g.inWidth
        outPixels = max(g.outHeight, 0) * max(g.outWidth, 0)
        narrowRows = offsetGroup == nil && !pointwise && g.group == 1 && g.inChannels < 16 && g.dilationWidth == 1
            && blocks == 1 && g.outWidth > 0
        let block = Self.indirectBlock
        tableTaps = narrowRows ? g.kernelHeight : taps
        let tapFloats = narrowRows ? g.kernelWidth * cin : cin
        segmentParts = max(1, (tapFloats + block - 1) / block)
        segmentLength = tapFloats / segmentParts
        readsRowsIndirectly = offsetGroup == nil && !pointwise && engine == .packedSIMD && cin > 0
            && tapFloats % segmentParts == 0 && tableTaps <= Self.maxIndirectTaps
        // The GEMM paths read A one float at a time, so channels-last input whose rows they read
        // in place needs no rows of a multiple of 16 (MobileNet widths: 24, 40, 72, 120, ...);
        // copies for im2col and deformable gathers move 16 channels at a time.
        let readsRowsAsTheyAre = layout.inputChannelsLast && offsetGroup == nil && !narrowRows
            && (pointwise || readsRowsIndirectly)
        rowStride = narrowRows || readsRowsAsTheyAre ? g.inChannels : (g.inChannels + 15) & ~15
        let lastColumn = (g.outWidth - 1) * g.strideWidth - g.padLeft + g.kernelWidth - 1
        narrowRowPixels = narrowRows ? g.padLeft + g.inWidth + max(0, lastColumn - (g.inWidth - 1)) : 0
        zeroFloats = (narrowRows ? max(Self.extraRows, g.kernelWidth) : Self.extraRows) * rowStride
        // Deformable sampling addresses the zero row by index, right after the image's rows.
        readsInputInPlace = layout.inputChannelsLast && rowStride == g.inChannels && offsetGroup == nil && !narrowRows
        rowGroups = (outPixels + 5) / 6
        // Read in place, the A rows need no panel: only the result bounds the tile.
        if readsRowsIndirectly { rows = min(max(49_152 / coutPadded, 24), 192) / 6 * 6 }
        tileRows = rows
        let segments = tableTaps * segmentParts
        let segmentsFit = max(1, block / max(segmentLength, 1))
        let segmentBlocks = (segments + segmentsFit - 1) / segmentsFit
        segmentsPerBlock = max(1, (segments + segmentBlocks - 1) / max(segmentBlocks, 1))
        writesOutputDirectly = engine == .packedSIMD && layout.outputChannelsLast && cout == coutPadded
            && !interleavesSampling
        columnBlocks = (coutPadded + 63) / 64
        splitsColumns = writesOutputDirectly && offsetGroup == nil && g.group == 1 && threads > 1
            && columnBlocks >= threads && rowGroups < 24 * threads
        workers = max(1, min(threads, splitsColumns ? columnBlocks : g.group * rowGroups))

        func aligned(_ n: Int) -> Int { (n + 15) & ~15 }
        weightsAt = 0
        rowsAt = weightsPrepacked ? 0 : aligned(engine == .packedSIMD ? g.group * k * coutPadded : g.outChannels * k)
        imageFloats = readsInputInPlace ? 0 : narrowRows ? g.inHeight * narrowRowPixels * rowStride : inPixels * rowStride
        let rowFloats = imageFloats + zeroFloats
        workerAt = rowsAt + aligned(rowFloats)
        planStride = aligned(tileRows)
        panelAt = 0
        let panelRows = readsRowsIndirectly ? 0 : interleavesSampling ? 2 * PackedGemm.rows : tileRows
        // Pointwise panels are the input rows, so the result may take the panel's place, except in
        // place, where the last group's rows are copied into the panel.
        resultAt = pointwise && engine == .packedSIMD && !readsInputInPlace ? panelAt : aligned(panelRows * kc)
        planIndexAt = resultAt + (engine == .packedSIMD ? aligned(tileRows * coutPadded) : 0)
        planWeightAt = planIndexAt + 4 * planStride * planSlots
        originYAt = planWeightAt + 4 * planStride * planSlots
        originXAt = originYAt + planStride
        planTailAt = originXAt + planStride
        rowTableAt = aligned(planTailAt + 48)
        let pointerFloats = MemoryLayout<UnsafePointer<Float>>.stride / MemoryLayout<Float>.stride
        workerFloats = aligned(rowTableAt + (readsRowsIndirectly ? pointerFloats * tileRows * tableTaps : 0))
        totalFloats = workerAt + workers * workerFloats
    }

    /// The most offset groups that the input channels of one conv group fall into.
    static func offsetGroupSpan(_ g: ConvGeometry, offsetGroup: Int) -> Int {
        let cin = g.inChannels / max(g.group, 1)
        let perOffsetGroup = g.inChannels / max(offsetGroup, 1)
        guard cin > 0, perOffsetGroup > 0 else { return 1 }
        var span = 1
        for grp in 0..<g.group {
            let first = grp * cin / perOffsetGroup, last = ((grp + 1) * cin - 1) / perOffsetGroup
            span = max(span, last - first + 1)
        }
        return span
    }

    var byteCount: Int { outPixels == 0 || g.outChannels == 0 ? 0 : totalFloats * MemoryLayout<Float>.stride }

    /// Size of the packed weights of `packWeights`, whether they live in the workspace or with the caller.
    var packedWeightByteCount: Int {
        (engine == .packedSIMD ? g.group * k * coutPadded : g.outChannels * k) * MemoryLayout<Float>.stride
    }

    /// `weight` is OIHW, or the output of `packWeights` when the plan says `weightsPrepacked`.
    func run(
        _ source: (Int) -> PanelSource, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>,
        workspace: UnsafeMutableRawPointer, parallel: Parallel, epilogue: ConvEpilogue = .none
    ) {
        if byteCount == 0 { return }
        if k == 0 {
            ConvBias.fill(g, bias: bias, output: output, channelsLast: layout.outputChannelsLast)
            epilogue.apply(elements: g.batch * g.outChannels * outPixels, output: output, parallel: parallel)
            return
        }
        let base = workspace.bindMemory(to: Float.self, capacity: totalFloats)
        let copiedRows = base + rowsAt
        // The zero rows follow the copied image rows (start the region when the input is read in place).
        let zeroRows = copiedRows + imageFloats
        let weights: UnsafePointer<Float>
        if weightsPrepacked {
            weights = weight
        } else {
            packWeights(weight, into: base + weightsAt, parallel: parallel)
            weights = UnsafePointer(base + weightsAt)
        }
        zeroRows.update(repeating: 0, count: zeroFloats)
        let pixelBlocks = (inPixels + 15) / 16
        for n in 0..<g.batch {
            let image = input + n * g.inChannels * inPixels
            let rows = readsInputInPlace ? UnsafeMutablePointer(mutating: image) : copiedRows
            if narrowRows {
                copyNarrowRows(image, into: copiedRows, parallel: parallel)
            } else if !readsInputInPlace {
                parallel.forEachRange(pixelBlocks) { _, blocks in
                    let lo = blocks.lowerBound * 16, hi = min(blocks.upperBound * 16, inPixels)
                    ConvLayout.rows(from: image, channelsLast: layout.inputChannelsLast, channels: g.inChannels,
                                    planeSize: inPixels, pixels: lo..<hi, into: copiedRows, rowStride: rowStride)
                }
            }
            let src = source(n)
            let out = output + n * g.outChannels * outPixels
            let imageEpilogue = epilogue.shifted(by: n * g.outChannels * outPixels)
            let groupsPerTile = tileRows / 6
            if splitsColumns {
                // Items (64-wide column block, 6-row group), block after block, weighted by the
                // block's width: each worker takes a contiguous share of equal weight, so that
                // 160 columns (64 + 64 + 32) do not leave one thread two blocks and the other a
                // half one.
                let perGroup = coutPadded / 16, total = perGroup * rowGroups
                func item(at offset: Int) -> (block: Int, group: Int) {
                    let block = min(offset / (4 * rowGroups), columnBlocks - 1)
                    let weight = min(64, coutPadded - block * 64) / 16
                    let group = (offset - 4 * rowGroups * block + weight - 1) / weight
                    return group >= rowGroups ? (block + 1, 0) : (block, group)
                }
                parallel.forEachRange(workers) { worker, _ in
                    let scratch = base + workerAt + worker * workerFloats
                    let end = item(at: total * (worker + 1) / workers)
                    var (block, first) = item(at: total * worker / workers)
                    while block < end.block || (block == end.block && first < end.group) {
                        let last = block == end.block ? end.group : rowGroups
                        while first < last {
                            let groups = min(groupsPerTile, last - first)
                            runTile(grp: 0, p0: first * 6, count: min(groups * 6, outPixels - first * 6), source: src,
                                    rows: rows, zeroRows: zeroRows, weights: weights, bias: bias, output: out,
                                    scratch: scratch, epilogue: imageEpilogue, columnBlocks: block..<block + 1)
                            first += groups
                        }
                        block += 1
                        first = 0
                    }
                }
                continue
            }
            parallel.forEachRange(g.group * rowGroups) { worker, range in
                let scratch = base + workerAt + worker * workerFloats
                var at = range.lowerBound
                while at < range.upperBound {
                    let grp = at / rowGroups
                    let first = at - grp * rowGroups
                    let groups = min(groupsPerTile, range.upperBound - at, rowGroups - first)
                    let p0 = first * 6
                    runTile(grp: grp, p0: p0, count: min(groups * 6, outPixels - p0), source: src, rows: rows,
                            zeroRows: zeroRows, weights: weights, bias: bias, output: out, scratch: scratch,
                            epilogue: imageEpilogue)
                    at += groups
                }
            }
        }
    }

    /// The batch item's image into zero-bordered packed rows (`narrowRows`).
    private func copyNarrowRows(_ image: UnsafePointer<Float>, into rows: UnsafeMutablePointer<Float>, parallel: Parallel) {
        let cin = g.inChannels, rowFloats = narrowRowPixels * cin
        let left = g.padLeft * cin, right = left + g.inWidth * cin
        parallel.forEachRange(g.inHeight) { _, ys in
            for y in ys {
                let row = rows + y * rowFloats
                row.update(repeating: 0, count: left)
                (row + right).update(repeating: 0, count: rowFloats - right)
                if layout.inputChannelsLast {
                    (row + left).update(from: image + y * g.inWidth * cin, count: g.inWidth * cin)
                } else {
                    ConvLayout.transpose(image + y * g.inWidth, srcStride: inPixels, row + left,
                                         dstStride: cin, rows: g.inWidth, columns: cin, rowBias: nil)
                }
            }
        }
    }

    /// Weights in this engine's order: packedSIMD [group][64-column block][k][column], k = tap * cin + c,
    /// columns zero-padded to 16; blas [filter][k].
    func packWeights(_ weight: UnsafePointer<Float>, into packed: UnsafeMutablePointer<Float>, parallel: Parallel) {
        switch engine {
        case .packedSIMD:
            let blocks = (coutPadded + 63) / 64
            parallel.forEachRange(g.group * blocks) { _, items in
                for item in items {
                    let grp = item / blocks, block = item - grp * blocks
                    ConvLayout.packBlock(weight + grp * cout * k, cin: cin, taps: taps, cout: cout,
                                         blockStart: block * 64, width: min(64, coutPadded - block * 64),
                                         packed: packed + grp * k * coutPadded + block * 64 * k)
                }
            }
        case .blas:
            parallel.forEachRange(g.outChannels) { _, filters in
                for m in filters {
                    ConvLayout.reorderFilter(weight + m * k, cin: cin, taps: taps, to: packed + m * k)
                }
            }
        }
    }

    /// Outputs of conv group `grp`, pixels p0 ..< p0 + count.
    /// `columnBlocks`: only these 64-wide blocks of output channels (`splitsColumns`; the direct
    /// path only), else all.
    private func runTile(
        grp: Int, p0: Int, count: Int, source: PanelSource, rows: UnsafeMutablePointer<Float>,
        zeroRows: UnsafeMutablePointer<Float>, weights: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
        output: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>, epilogue: ConvEpilogue,
        columnBlocks blocks: Range<Int>? = nil
    ) {
        let blocks = blocks ?? 0..<columnBlocks
        // Output channels c0 ..< c1 of the group.
        let c0 = blocks.lowerBound * 64, c1 = min(cout, blocks.upperBound * 64)
        let paddedRows = (count + 5) / 6 * 6
        let panel = scratch + panelAt
        let result = scratch + resultAt
        let channelBase = grp * cin
        let channelBias = bias.map { $0 + grp * cout }
        // The tile's first output and how its (channel, pixel) elements lie.
        let tileStart = layout.outputChannelsLast ? p0 * g.outChannels + grp * cout : grp * cout * outPixels + p0
        let out = output + tileStart
        // Direct path: the micro-kernels add the bias and the residual and apply the activation
        // to the full 6-row groups as they store their last k block (the tile's last partial
        // group still takes the passes below).
        let storeActivation = TileActivation(epilogue.activation)
        let finishesInKernel = writesOutputDirectly && storeActivation != nil
        // A last partial group of one or two rows: computed row by row straight into the output.
        let singleRowTail = writesOutputDirectly && coutPadded % 64 == 0 && count % 6 != 0 && count % 6 <= 2
        let directRows = singleRowTail ? count : count / 6 * 6
        let finishedRows = finishesInKernel ? directRows : 0
        let finish = finishesInKernel
            ? TileFinish(bias: channelBias, residual: epilogue.shifted(by: tileStart).residual,
                         residualStride: g.outChannels, activation: storeActivation ?? .none)
            : TileFinish.none
        // Runs when the tile's outputs are written, while they are in cache.
        defer {
            let e = epilogue.shifted(by: tileStart)
            if layout.outputChannelsLast {
                let skipped = finishedRows * g.outChannels + c0
                e.shifted(by: skipped).apply(rows: count - finishedRows, count: c1 - c0, stride: g.outChannels,
                                             output: out + skipped)
            } else { e.apply(rows: cout, count: count, stride: outPixels, output: out) }
        }
        if case .deformable = source {
            DeformableSampling.fillOrigins(g, p0: p0, count: count, baseY: scratch + originYAt,
                                           baseX: scratch + originXAt)
        }
        if interleavesSampling, case let .deformable(d, offset, mask) = source {
            let sampling = planTile(d, offset: offset, mask: mask, count: count, p0: p0, rows: rows,
                                    channelBase: channelBase, scratch: scratch)
            multiplyInterleaved(sampling, count: count, panel: panel, weights: weights + grp * k * coutPadded,
                                result: result)
            writeResult(result, count: count, bias: channelBias, out: out)
            return
        }
        var rowTable: UnsafePointer<UnsafePointer<Float>>?
        if readsRowsIndirectly, case .im2col = source {
            rowTable = fillRowTable(p0: p0, count: count, paddedRows: paddedRows, rows: rows, zeroRows: zeroRows,
                                    channelBase: channelBase, scratch: scratch)
        }
        var planKey = -1
        var kb = 0
        while kb < k {
            let kcCur = min(rowTable == nil ? kc : segmentsPerBlock * segmentLength, k - kb)
            var a = UnsafePointer(panel)
            var lda = kc
            switch source {
            case .im2col where rowTable != nil:
                break
            case .pointwise where readsInputInPlace && paddedRows > count:
                // The group's padding rows would read past the image (and, for the last one, the
                // tensor): copy the tile's rows instead.
                for r in 0..<count {
                    (panel + r * kc).update(from: rows + (p0 + r) * rowStride + channelBase + kb, count: kcCur)
                }
            case .pointwise:
                a = UnsafePointer(rows + p0 * rowStride + channelBase + kb)
                lda = rowStride
            case .im2col:
                fillIm2col(kb: kb, kcCur: kcCur, p0: p0, count: count, rows: rows, zeroRows: zeroRows,
                           channelBase: channelBase, panel: panel)
            case let .deformable(d, offset, mask):
                fillDeformable(d, offset: offset, mask: mask, kb: kb, kcCur: kcCur, count: count, p0: p0, rows: rows,
                               channelBase: channelBase, panel: panel, scratch: scratch, planKey: &planKey)
            }
            let panelRows = rowTable.map { PanelRows.table($0) } ?? .strided(a, lda: lda)
            if rowTable == nil && a == UnsafePointer(panel) && paddedRows > count {
                (panel + count * kc).update(repeating: 0, count: (paddedRows - count) * kc)
            }
            switch engine {
            case .packedSIMD where writesOutputDirectly:
                let fullRows = count / 6 * 6
                multiplyPacked(panelRows, kb: kb, kcCur: kcCur, rows: fullRows,
                               weights: weights + grp * k * coutPadded, result: out, ldc: g.outChannels, blocks: blocks,
                               finish: kb + kcCur == k ? finish : .none, streamsRows: a != UnsafePointer(panel))
                if singleRowTail {
                    for r in fullRows..<count {
                        multiplySingleRow(panelRows.advanced(by: r), kb: kb, kcCur: kcCur,
                                          weights: weights + grp * k * coutPadded, result: out + r * g.outChannels,
                                          blocks: blocks, finish: kb + kcCur == k ? finish.shifted(rows: r, columns: 0) : .none)
                    }
                } else if fullRows < count {
                    multiplyPacked(panelRows.advanced(by: fullRows), kb: kb, kcCur: kcCur, rows: 6,
                                   weights: weights + grp * k * coutPadded, result: result, ldc: coutPadded, blocks: blocks)
                }
            case .packedSIMD:
                multiplyPacked(panelRows, kb: kb, kcCur: kcCur, rows: paddedRows,
                               weights: weights + grp * k * coutPadded, result: result, ldc: coutPadded)
            case .blas where layout.outputChannelsLast:
                Gemm.sgemm(transposeB: true, m: count, n: cout, k: kcCur, a: a, lda: lda,
                           b: weights + grp * cout * k + kb, ldb: k, beta: kb == 0 ? 0 : 1, c: out, ldc: g.outChannels)
            case .blas:
                Gemm.sgemm(transposeB: true, m: cout, n: count, k: kcCur, a: weights + grp * cout * k + kb, lda: k,
                           b: a, ldb: lda, beta: kb == 0 ? 0 : 1, c: out, ldc: outPixels)
            }
            kb += kcCur
        }
        switch engine {
        case .packedSIMD where writesOutputDirectly:
            let fullRows = count / 6 * 6
            for r in directRows..<count {
                (out + r * g.outChannels + c0).update(from: result + (r - fullRows) * coutPadded + c0, count: c1 - c0)
            }
            if let channelBias, finishedRows < count {
                ConvBias.addToRows(channelBias + c0, columns: c1 - c0, to: out + finishedRows * g.outChannels + c0,
                                   ld: g.outChannels, rows: count - finishedRows)
            }
        case .packedSIMD:
            writeResult(result, count: count, bias: channelBias, out: out)
        case .blas:
            guard let channelBias else { break }
            if layout.outputChannelsLast {
                ConvBias.addToRows(channelBias, columns: cout, to: out, ld: g.outChannels, rows: count)
            } else {
                ConvBias.add(channelBias, rows: cout, to: out, ld: outPixels, count: count)
            }
        }
    }

    /// The packed engine's tile result (pixel-major rows of coutPadded) plus bias, into the output
    /// in its layout: transposed for NCHW, row by row for channels-last.
    private func writeResult(_ result: UnsafePointer<Float>, count: Int, bias: UnsafePointer<Float>?,
                             out: UnsafeMutablePointer<Float>) {
        ConvLayout.storeResult(result, resultStride: coutPadded, count: count, channels: cout, bias: bias, into: out,
                               channelsLast: layout.outputChannelsLast, planeSize: outPixels, outStride: g.outChannels)
    }

    /// result[r][m] (+)= sum over k in kb ..< kb + kcCur of a[r][k - kb] * packed[k][m], 64 columns at a time
    /// (each column block over all rows, so that its weights stay in cache). While a block's
    /// groups run, they fetch the weight block that comes next (the next column block, else the
    /// first one of the next k block, else of the tile's first) into L2, a share each.
    private func multiplyPacked(
        _ a: PanelRows, kb: Int, kcCur: Int, rows: Int, weights: UnsafePointer<Float>,
        result: UnsafeMutablePointer<Float>, ldc: Int, blocks: Range<Int>? = nil, finish: TileFinish = .none,
        streamsRows: Bool = false
    ) {
        let first = (blocks?.lowerBound ?? 0) * 64
        var col = first
        let end = min(coutPadded, (blocks?.upperBound ?? columnBlocks) * 64)
        if (end - first) * kcCur <= Self.rowMajorWeightFloats {
            // The k block's weights for all the columns stay in L2: take the groups in turn, each
            // across all its columns, so the outputs (and a fused residual) are written (read)
            // row after row, one run of memory the hardware prefetchers follow, instead of
            // 64-column strips, each row a stride apart (a 1x1 expansion with a residual Add ran
            // at 60% of its FMA rate that way).
            // Meanwhile the calls fetch what the next group reads: its input rows when they come
            // straight from the activation (`streamsRows`: a 1x1 layer with few output channels
            // reads each input row from memory for few FMAs, 1.3x slower unfetched), then what its
            // store reads: the residual rows when a residual Add is fused, else the output rows.
            let rowBytes = ldc * MemoryLayout<Float>.stride
            let groupBytes = 6 * rowBytes
            var inputRows = UnsafeRawPointer(result), inputRowBytes = 0
            if streamsRows, case let .strided(pointer, lda) = a, lda == kcCur {
                inputRows = UnsafeRawPointer(pointer)
                inputRowBytes = lda * MemoryLayout<Float>.stride
            }
            let step = Self.prefetchStep(bytes: groupBytes + 6 * inputRowBytes, calls: (end - first + 63) / 64,
                                         kc: kcCur)
            let share = kcCur * step
            let ahead = finish.residual.map { UnsafeRawPointer($0) } ?? UnsafeRawPointer(result)
            var r = 0
            while r < rows {
                var c = first
                while c < end {
                    let fetch = r + 6 < rows
                        ? PrefetchStream.share(from: (c - first) / 64 * share, step: step,
                                               first: inputRows + (r + 6) * inputRowBytes, firstBytes: 6 * inputRowBytes,
                                               second: ahead + (r + 6) * rowBytes, secondBytes: groupBytes) : nil
                    multiplyGroup(a.advanced(by: r), kb: kb, kcCur: kcCur, col: c, weights: weights,
                                  result: result + r * ldc, ldc: ldc, finish: finish.shifted(rows: r, columns: c),
                                  prefetch: fetch)
                    c += 64
                }
                r += 6
            }
            return
        }
        while col < end {
            let next: UnsafeRawPointer, nextBytes: Int
            if col + 64 < end {
                let width = min(64, coutPadded - col - 64)
                next = UnsafeRawPointer(weights + (col + 64) * k + kb * width)
                nextBytes = kcCur * width * MemoryLayout<Float>.stride
            } else {
                let nextKb = kb + kcCur < k ? kb + kcCur : 0
                let width = min(64, coutPadded - first)
                next = UnsafeRawPointer(weights + first * k + nextKb * width)
                nextBytes = min(kcCur, k - nextKb) * width * MemoryLayout<Float>.stride
            }
            // The next block spread over this block's groups (a 7x7 map has only 8 full ones).
            let step = Self.prefetchStep(bytes: nextBytes, calls: max(rows / 6, 1), kc: kcCur)
            let share = kcCur * step
            let width = min(64, end - col)
            var r = 0
            while r < rows {
                let offset = r / 6 * share
                // What the next group's store reads, 6 short rows a whole output row apart, which
                // the hardware prefetchers do not follow (layer3's 1x1 expansions of ResNet-50 at
                // 512x512, a residual Add fused: 0.85x the time with these hints).
                if r + 6 < rows {
                    if let residual = finish.residual {
                        Self.hintRows(residual + (r + 6) * finish.residualStride + col, stride: finish.residualStride,
                                      width: width)
                    } else {
                        Self.hintRows(result + (r + 6) * ldc + col, stride: ldc, width: width)
                    }
                }
                multiplyGroup(a.advanced(by: r), kb: kb, kcCur: kcCur, col: col, weights: weights,
                              result: result + r * ldc, ldc: ldc, finish: finish.shifted(rows: r, columns: col),
                              prefetch: offset < nextBytes ? PrefetchStream(start: next + offset, step: step) : nil)
                r += 6
            }
            col += 64
        }
    }

    /// L2 hints for 6 rows of `width` floats, `stride` floats apart.
    @inline(__always)
    private static func hintRows(_ first: UnsafePointer<Float>, stride: Int, width: Int) {
        for row in 0..<6 {
            let start = UnsafeRawPointer(first + row * stride)
            for line in Swift.stride(from: 0, to: width * MemoryLayout<Float>.stride, by: 64) {
                deformrt_prefetch_l2(start + line)
            }
        }
    }

    /// The step of the PrefetchStreams with which `calls` kernel calls of `kc` k steps each fetch
    /// `bytes` between them: 16 bytes (a line per 4 k steps) up to 64 (a line per step).
    static func prefetchStep(bytes: Int, calls: Int, kc: Int) -> Int {
        let steps = max(calls * kc, 1)
        return min(64, max(16, ((bytes + steps - 1) / steps + 15) & ~15))
    }

    /// One row times the 64-column blocks `blocks` (singleRowTail: every block is 64 wide).
    private func multiplySingleRow(
        _ rows: PanelRows, kb: Int, kcCur: Int, weights: UnsafePointer<Float>, result: UnsafeMutablePointer<Float>,
        blocks: Range<Int>, finish: TileFinish
    ) {
        for block in blocks {
            let col = block * 64
            let b = weights + col * k + kb * 64
            let blockFinish = finish.shifted(rows: 0, columns: col)
            switch rows {
            case let .strided(a, _):
                withUnsafePointer(to: a) {
                    PackedGemm.kernel1x64(segments: 0..<1, parts: 1, length: kcCur, rows: $0, tableStride: 0, b: b,
                                          c: result + col, accumulate: kb > 0, finish: blockFinish)
                }
            case let .table(table):
                PackedGemm.kernel1x64(segments: kb / segmentLength ..< (kb + kcCur) / segmentLength,
                                      parts: segmentParts, length: segmentLength, rows: table, tableStride: tileRows,
                                      b: b, c: result + col, accumulate: kb > 0, finish: blockFinish)
            }
        }
    }

    /// One 6-row group times the 64-column block at `col` (or the last, narrower one).
    @inline(__always)
    private func multiplyGroup(
        _ rows: PanelRows, kb: Int, kcCur: Int, col: Int, weights: UnsafePointer<Float>,
        result: UnsafeMutablePointer<Float>, ldc: Int, finish: TileFinish = .none, prefetch: PrefetchStream? = nil
    ) {
        let width = min(64, coutPadded - col)
        let block = weights + col * k + kb * width
        let a: UnsafePointer<Float>, lda: Int
        switch rows {
        case let .strided(pointer, stride):
            (a, lda) = (pointer, stride)
        case let .table(table):
            // k blocks of the indirect path start and end on segments.
            let segments = kb / segmentLength ..< (kb + kcCur) / segmentLength
            if width == 64 {
                PackedGemm.kernel6x64(segments: segments, parts: segmentParts, length: segmentLength, rows: table,
                                      tableStride: tileRows, b: block, c: result + col, ldc: ldc, accumulate: kb > 0,
                                      finish: finish, prefetch: prefetch)
            } else {
                PackedGemm.kernel6xNarrow(vectors: width / 16, segments: segments, parts: segmentParts,
                                          length: segmentLength, rows: table, tableStride: tileRows, b: block, ldb: width,
                                          c: result + col, ldc: ldc, accumulate: kb > 0, finish: finish)
            }
            return
        }
        if width == 64 {
            PackedGemm.kernel6x64(kc: kcCur, a: a, lda: lda, b: block, c: result + col, ldc: ldc,
                                  accumulate: kb > 0, finish: finish, prefetch: prefetch)
        } else {
            PackedGemm.kernel6xNarrow(vectors: width / 16, kc: kcCur, a: a, lda: lda, b: block, ldb: width,
                                      c: result + col, ldc: ldc, accumulate: kb > 0, finish: finish)
        }
    }

    /// The tile's product with its deformable panel gathered on the fly: group by group, the panel
    /// rows of group i + 1 are gathered into the other half of the two-group panel while the first
    /// 64 columns of group i are computed; the other column blocks follow on the same rows.
    private func multiplyInterleaved(
        _ sampling: PanelRowSampling, count: Int, panel: UnsafeMutablePointer<Float>, weights: UnsafePointer<Float>,
        result: UnsafeMutablePointer<Float>
    ) {
        let groupFloats = PackedGemm.rows * kc
        func half(_ group: Int) -> UnsafeMutablePointer<Float> { panel + (group & 1) * groupFloats }
        let first = sampling.group(at: 0, count: min(6, count), into: panel)
        for item in 0..<first.count { first.run(item) }
        var r = 0, group = 0
        while r < count {
            let a = half(group)
            if count - r < 6 { (a + (count - r) * kc).update(repeating: 0, count: (6 - count + r) * kc) }
            let c = result + r * coutPadded
            if r + 6 < count {
                PackedGemm.kernel6x64(kc: k, a: a, lda: kc, b: weights, c: c, ldc: coutPadded, accumulate: false,
                                      interleaving: sampling.group(at: r + 6, count: min(6, count - r - 6),
                                                                   into: half(group + 1)))
            } else {
                multiplyGroup(.strided(a, lda: kc), kb: 0, kcCur: k, col: 0, weights: weights, result: c, ldc: coutPadded)
            }
            var col = 64
            while col < coutPadded {
                multiplyGroup(.strided(a, lda: kc), kb: 0, kcCur: k, col: col, weights: weights, result: c,
                              ldc: coutPadded)
                col += 64
            }
            r += 6
            group += 1
        }
    }

    /// The tile's row pointers (`readsRowsIndirectly`): table[tap * tileRows + r] is where output
    /// pixel p0 + r reads the channels of conv group `channelBase / cin` for `tap`; the zero row
    /// outside the image and for the padding rows from `count` to `paddedRows`.
    private func fillRowTable(
        p0: Int, count: Int, paddedRows: Int, rows: UnsafeMutablePointer<Float>, zeroRows: UnsafeMutablePointer<Float>,
        channelBase: Int, scratch: UnsafeMutablePointer<Float>
    ) -> UnsafePointer<UnsafePointer<Float>> {
        let table = UnsafeMutableRawPointer(scratch + rowTableAt)
            .bindMemory(to: UnsafePointer<Float>.self, capacity: tableTaps * tileRows)
        let zero = UnsafePointer(zeroRows + channelBase)
        let image = UnsafePointer(rows + channelBase)
        if narrowRows {
            // Kernel row i of pixel (oy, ox) starts at column ox * strideWidth of the bordered
            // row (padLeft zero columns first); rows above or below the image read the zero region.
            let rowFloats = narrowRowPixels * cin, step = g.strideWidth * cin
            for i in 0..<g.kernelHeight {
                fillRuns(table + i * tileRows, p0: p0, count: count, paddedRows: paddedRows,
                         dy: i * g.dilationHeight - g.padTop, zero: zero) { y, ox, column, run in
                    var source = image + y * rowFloats + ox * step
                    for q in 0..<run {
                        column[q] = source
                        source += step
                    }
                }
            }
            return UnsafePointer(table)
        }
        for tap in 0..<taps {
            let i = tap / g.kernelWidth, j = tap - i * g.kernelWidth
            let dxTap = j * g.dilationWidth - g.padLeft
            fillRuns(table + tap * tileRows, p0: p0, count: count, paddedRows: paddedRows,
                     dy: i * g.dilationHeight - g.padTop, zero: zero) { y, ox, column, run in
                let row = image + y * g.inWidth * rowStride
                var x = ox * g.strideWidth + dxTap
                for q in 0..<run {
                    column[q] = x >= 0 && x < g.inWidth ? row + x * rowStride : zero
                    x += g.strideWidth
                }
            }
        }
        return UnsafePointer(table)
    }

    /// One tap's (or kernel row's) column of the row table for output pixels p0 ..< p0 + count,
    /// one output row's run of pixels at a time: its input row y = oy * strideHeight + dy is in
    /// or out of the image as a whole. Runs outside read `zero`; `fill(y, ox, column + r, run)`
    /// writes the others (pixels (oy, ox) ... (oy, ox + run - 1)); the padding rows up to
    /// `paddedRows` read `zero`.
    @inline(__always)
    private func fillRuns(
        _ column: UnsafeMutablePointer<UnsafePointer<Float>>, p0: Int, count: Int, paddedRows: Int, dy: Int,
        zero: UnsafePointer<Float>,
        _ fill: (_ y: Int, _ ox: Int, _ column: UnsafeMutablePointer<UnsafePointer<Float>>, _ run: Int) -> Void
    ) {
        var oy = p0 / g.outWidth
        var ox = p0 - oy * g.outWidth
        var r = 0
        while r < count {
            let run = min(g.outWidth - ox, count - r)
            let y = oy * g.strideHeight + dy
            if y < 0 || y >= g.inHeight {
                (column + r).update(repeating: zero, count: run)
            } else {
                fill(y, ox, column + r, run)
            }
            r += run
            ox = 0
            oy += 1
        }
        (column + count).update(repeating: zero, count: paddedRows - count)
    }

    /// Panel columns kb ..< kb + kcCur (k = tap * cin + c) of plain convolution.
    private func fillIm2col(
        kb: Int, kcCur: Int, p0: Int, count: Int, rows: UnsafeMutablePointer<Float>, zeroRows: UnsafeMutablePointer<Float>,
        channelBase: Int, panel: UnsafeMutablePointer<Float>
    ) {
        if narrowRows {
            fillNarrowIm2col(p0: p0, count: count, rows: rows, zeroRows: zeroRows, panel: panel)
            return
        }
        var kk = kb
        while kk < kb + kcCur {
            let tap = kk / cin
            let c0 = kk - tap * cin
            let c1 = min(cin, c0 + kb + kcCur - kk)
            let i = tap / g.kernelWidth, j = tap - i * g.kernelWidth
            DeformableSampling.im2col(g, i: i, j: j, p0: p0, count: count, rows: rows + channelBase + c0,
                                      rowStride: rowStride, zeroRow: zeroRows + channelBase + c0,
                                      channels: c1 - c0, panel: panel + (kk - kb), panelStride: kc)
            kk += c1 - c0
        }
    }

    /// `fillIm2col` on narrow rows (one k block): per pixel and kernel row, one run of
    /// kernelWidth x channels floats; kernel rows above or below the image read the zero region.
    private func fillNarrowIm2col(
        p0: Int, count: Int, rows: UnsafeMutablePointer<Float>, zeroRows: UnsafeMutablePointer<Float>,
        panel: UnsafeMutablePointer<Float>
    ) {
        let run = g.kernelWidth * cin, rowFloats = narrowRowPixels * cin
        var oy = p0 / g.outWidth
        var ox = p0 - oy * g.outWidth
        for r in 0..<count {
            // Column of tap 0 in the bordered row (padLeft zero columns first): ox * stride.
            let column = ox * g.strideWidth * cin
            let destination = panel + r * kc
            for i in 0..<g.kernelHeight {
                let y = oy * g.strideHeight + i * g.dilationHeight - g.padTop
                let source = y >= 0 && y < g.inHeight ? rows + y * rowFloats + column : zeroRows
                DeformableSampling.copy(source, to: destination + i * run, count: run)
            }
            ox += 1
            if ox == g.outWidth { ox = 0; oy += 1 }
        }
    }

    /// The sampling plan of offset group `og` and `tap` for the tile's pixels p0 ..< p0 + count.
    private func plan(
        _ d: DeformableOptions, offset: UnsafePointer<Float>, mask: UnsafePointer<Float>?, offsetGroup og: Int,
        tap: Int, count: Int, p0: Int, index: UnsafeMutablePointer<Int32>, weight: UnsafeMutablePointer<Float>,
        scratch: UnsafeMutablePointer<Float>
    ) {
        let key = og * taps + tap
        let i = tap / g.kernelWidth, j = tap - i * g.kernelWidth
        let dyPlane = offset + (2 * key) * outPixels + p0
        DeformableSampling.plan(
            border: d.border, height: g.inHeight, width: g.inWidth,
            tapY: Float(i * g.dilationHeight), tapX: Float(j * g.dilationWidth),
            dy: dyPlane, dx: dyPlane + outPixels, mask: mask.map { $0 + key * outPixels + p0 }, count: count,
            baseY: scratch + originYAt, baseX: scratch + originXAt, zeroRow: Int32(inPixels),
            index: index, weight: weight, stride: planStride, tail: scratch + planTailAt)
    }

    /// Every plan of the tile (one per tap and offset group of conv group `channelBase / cin`), as the
    /// sampling work of its whole panel.
    private func planTile(
        _ d: DeformableOptions, offset: UnsafePointer<Float>, mask: UnsafePointer<Float>?, count: Int, p0: Int,
        rows: UnsafeMutablePointer<Float>, channelBase: Int, scratch: UnsafeMutablePointer<Float>
    ) -> PanelRowSampling {
        let perOffsetGroup = g.inChannels / d.offsetGroup
        let firstGroup = channelBase / perOffsetGroup
        let span = (channelBase + cin - 1) / perOffsetGroup - firstGroup + 1
        let index = UnsafeMutableRawPointer(scratch + planIndexAt).assumingMemoryBound(to: Int32.self)
        let weight = scratch + planWeightAt
        for j in 0..<span {
            for tap in 0..<taps {
                let slot = (j * taps + tap) * 4 * planStride
                plan(d, offset: offset, mask: mask, offsetGroup: firstGroup + j, tap: tap, count: count, p0: p0,
                     index: index + slot, weight: weight + slot, scratch: scratch)
            }
        }
        return PanelRowSampling(
            rows: rows + channelBase, rowStride: rowStride, index: index, weight: weight, planStride: planStride,
            taps: taps, cin: cin, channelBase: channelBase, perOffsetGroup: perOffsetGroup,
            firstOffsetGroup: firstGroup, offsetGroups: span, pixels: count, panel: nil, panelStride: kc)
    }

    /// Panel columns kb ..< kb + kcCur of deformable convolution: for each run of channels sharing
    /// a tap and an offset group, one sampling plan, then a gather over the run.
    private func fillDeformable(
        _ d: DeformableOptions, offset: UnsafePointer<Float>, mask: UnsafePointer<Float>?, kb: Int, kcCur: Int,
        count: Int, p0: Int, rows: UnsafeMutablePointer<Float>, channelBase: Int, panel: UnsafeMutablePointer<Float>,
        scratch: UnsafeMutablePointer<Float>, planKey: inout Int
    ) {
        let perOffsetGroup = g.inChannels / d.offsetGroup
        let planIndex = UnsafeMutableRawPointer(scratch + planIndexAt).assumingMemoryBound(to: Int32.self)
        let planWeight = scratch + planWeightAt
        var kk = kb
        while kk < kb + kcCur {
            let tap = kk / cin
            let c0 = kk - tap * cin
            let og = (channelBase + c0) / perOffsetGroup
            let c1 = min(cin, c0 + kb + kcCur - kk, (og + 1) * perOffsetGroup - channelBase)
            let key = og * taps + tap
            if key != planKey {
                plan(d, offset: offset, mask: mask, offsetGroup: og, tap: tap, count: count, p0: p0,
                     index: planIndex, weight: planWeight, scratch: scratch)
                planKey = key
            }
            DeformableSampling.gather(rows: rows + channelBase + c0, rowStride: rowStride, channels: c1 - c0,
                                      count: count, index: planIndex, weight: planWeight, stride: planStride,
                                      panel: panel + (kk - kb), panelStride: kc)
            kk += c1 - c0
        }
    }
}
