#if canImport(Glibc)
import Glibc
#endif

/// 3x3, stride-1 convolutions by Winograd's minimal filtering F(2x2, 3x3)
/// (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016). Each 2x2
/// block of outputs (a tile) is Aᵀ [(G w Gᵀ) ⊙ (Bᵀ d B)] A over the tile's 4x4 input window d:
/// the elementwise products at the 16 points of the 4x4 transform become 16 GEMMs
/// ([tiles x cin] x [cin x cout] each), 16 multiply-adds per 4 outputs and input channel instead
/// of 36. These layers are most of a ResNet's FLOPs, and their GEMMs already run near the FMA
/// peak, so fewer multiply-adds is what is left to gain. The transforms are additions only
/// (G's halves are applied to the weights once, at plan time, in double precision); the outputs
/// differ from the direct convolution's by a few ulps of the sums' magnitude.
///
/// Work is cut into (block of tiles, 64-wide block of output channels) items, tile block major:
/// a worker transforms a tile block's inputs once (`transformed`: [point][tile][cin]), then for
/// each of its column blocks runs the 16 GEMMs into `products` ([point][tile][64]) and transforms
/// those back into the output, adding the bias, a fused residual and the activation as it stores.
/// Every tile's sums run over all of cin in one k loop, so the split (thread count) does not
/// change a result bit.
///
/// The transforms work 16 channels at a time on channels-last rows. NCHW input, or channels-last
/// input whose channel count is not a multiple of 16, is first copied into zero-padded rows;
/// NCHW output, or a channel count not a multiple of 16, is stored into padded rows and then
/// moved out (transposed for NCHW) with the bias, the epilogue following as a pass.
struct WinogradConvPlan {
    static let points = 16
    let g: ConvGeometry
    let layout: ConvDataLayout
    let cin: Int, cout: Int
    let cinPadded: Int, coutPadded: Int   // multiples of 16: the GEMMs' depth and width
    let tilesHigh: Int, tilesWide: Int, tiles: Int
    let tileBlocks: Int
    let blockRows: Int       // GEMM rows of a tile block: its most tiles, rounded up to the kernels' 6
    let columnBlocks: Int
    let items: Int
    let workers: Int
    let weightsPrepacked: Bool
    /// Channels-last input with a multiple of 16 channels: the transforms read it where it is.
    let readsInputInPlace: Bool
    /// Channels-last output with a multiple of 16 channels: stored in place, the epilogue with it.
    let writesOutputInPlace: Bool
    let rowsAt: Int          // the padded input rows (none when read in place)
    let resultAt: Int        // the padded output rows (none when written in place)
    let transformedFloats: Int   // per worker: points x blockRows x cinPadded
    let workerFloats: Int
    let workerAt: Int
    let totalFloats: Int

    /// Plain convolutions this plan computes: the packed engine (the micro-kernels), 3x3, stride 1,
    /// no dilation, one group, at least 16 input channels (fewer would be mostly zero padding),
    /// and an output map of at least 4 tiles that fill it well enough to save a third of the
    /// multiply-adds: on smaller maps (a 1x1 or 2x2 head, a single row) the tiles would compute
    /// more than the direct sums, from weights 16/9 the size.
    static func applies(_ g: ConvGeometry, engine: ConvEngine, layout: ConvDataLayout) -> Bool {
        let tiles = ((max(g.outHeight, 0) + 1) / 2) * ((max(g.outWidth, 0) + 1) / 2)
        return enabled && engine == .packedSIMD && g.group == 1 && g.kernelHeight == 3 && g.kernelWidth == 3
            && g.strideHeight == 1 && g.strideWidth == 1 && g.dilationHeight == 1 && g.dilationWidth == 1
            && g.inChannels >= 16 && tiles >= 4 && 16 * tiles <= 6 * g.outHeight * g.outWidth
    }

    /// DEFORMRT_WINOGRAD=0 in the environment (read once, when the first convolution is planned)
    /// keeps every convolution on the direct sums: for results closest to other runtimes' (an
    /// infinite input stays ±inf), or to compare with the deformable kernels, which share them.
    static let enabled: Bool = {
        guard let text = getenv("DEFORMRT_WINOGRAD") else { return true }
        return String(cString: text) != "0"
    }()

    init(_ g: ConvGeometry, threads: Int, weightsPrepacked: Bool = false, layout: ConvDataLayout) {
        self.g = g
        self.layout = layout
        self.weightsPrepacked = weightsPrepacked
        cin = g.inChannels
        cout = g.outChannels
        cinPadded = (cin + 15) & ~15
        coutPadded = (cout + 15) & ~15
        readsInputInPlace = layout.inputChannelsLast && cin == cinPadded
        writesOutputInPlace = layout.outputChannelsLast && cout == coutPadded
        tilesHigh = (max(g.outHeight, 0) + 1) / 2
        tilesWide = (max(g.outWidth, 0) + 1) / 2
        tiles = tilesHigh * tilesWide
        // A tile block's transformed inputs and one column block's products (up to ~750 KB) stay
        // in L2 while the 16 GEMMs take them. Of the block counts that keep under that, the one
        // whose busiest thread has the fewest GEMM rows wins (each block's rounded up to 6), then
        // the one with the fewest rows in all: at 14x14, 49 tiles in 3 blocks of 18 rows, not 2
        // of 30; at 7x7, 16 tiles in one block of 18 rows, not 2 of 12 (the weights, 16 MB at 512
        // channels, are then streamed once); at 56x56 on 2 threads, 784 tiles in 12 blocks of 66
        // rows, not 9 of 90 (5 blocks for one thread, 4 for the other).
        let mostTiles = min(max(12_288 / (cinPadded + 64) / 6 * 6, 12), 96)
        let fewestBlocks = max(1, (tiles + mostTiles - 1) / mostTiles)
        let columnBlockCount = (coutPadded + 63) / 64
        var best = (blocks: fewestBlocks, rows: 0, cost: (busiest: Int.max, rows: Int.max))
        for blocks in fewestBlocks...(2 * fewestBlocks + threads) {
            let rows = ((tiles + blocks - 1) / blocks + 5) / 6 * 6
            let work = blocks * columnBlockCount, sharers = max(1, min(threads, work))
            let cost = (busiest: (work + sharers - 1) / sharers * rows, rows: blocks * rows)
            if cost < best.cost { best = (blocks, rows, cost) }
        }
        tileBlocks = best.blocks
        blockRows = best.rows
        columnBlocks = columnBlockCount
        items = tiles == 0 ? 0 : tileBlocks * columnBlocks
        workers = max(1, min(threads, items))
        func aligned(_ n: Int) -> Int { (n + 15) & ~15 }
        rowsAt = weightsPrepacked ? 0 : aligned(Self.points * cinPadded * coutPadded)
        resultAt = rowsAt + (readsInputInPlace ? 0 : aligned(g.inHeight * g.inWidth * cinPadded))
        workerAt = resultAt + (writesOutputInPlace ? 0 : aligned(max(g.outHeight, 0) * max(g.outWidth, 0) * coutPadded))
        transformedFloats = aligned(Self.points * blockRows * cinPadded)
        workerFloats = transformedFloats + aligned(Self.points * blockRows * 64)
        totalFloats = workerAt + workers * workerFloats
    }

    var packedWeightFloats: Int { Self.points * cinPadded * coutPadded }
    var byteCount: Int { items == 0 || g.batch == 0 ? 0 : totalFloats * MemoryLayout<Float>.stride }

    /// OIHW weights transformed (U = G w Gᵀ per filter and input channel) and packed
    /// [point][64-column block][cinPadded][block width]: the B operand of each point's GEMM, zero
    /// for the padding channels on either side.
    func packWeights(_ weight: UnsafePointer<Float>, into packed: UnsafeMutablePointer<Float>, parallel: Parallel) {
        let pointStride = cinPadded * coutPadded
        parallel.forEachRange(coutPadded) { _, filters in
            for co in filters {
                let block = co / 64, width = min(64, coutPadded - block * 64), lane = co - block * 64
                for ci in 0..<cinPadded {
                    let at = packed + block * 64 * cinPadded + ci * width + lane
                    guard co < cout && ci < cin else {
                        for point in 0..<Self.points { at[point * pointStride] = 0 }
                        continue
                    }
                    let w = weight + (co * cin + ci) * 9
                    // G w (G = [1 0 0; ½ ½ ½; ½ -½ ½; 0 0 1]), then each row of it times Gᵀ.
                    func column(_ j: Int) -> (Double, Double, Double) { (Double(w[j]), Double(w[3 + j]), Double(w[6 + j])) }
                    let (a0, b0, c0) = column(0), (a1, b1, c1) = column(1), (a2, b2, c2) = column(2)
                    func emit(_ r: Int, _ x0: Double, _ x1: Double, _ x2: Double) {
                        let row = at + r * 4 * pointStride
                        row[0] = Float(x0)
                        row[pointStride] = Float((x0 + x1 + x2) / 2)
                        row[2 * pointStride] = Float((x0 - x1 + x2) / 2)
                        row[3 * pointStride] = Float(x2)
                    }
                    emit(0, a0, a1, a2)
                    emit(1, (a0 + b0 + c0) / 2, (a1 + b1 + c1) / 2, (a2 + b2 + c2) / 2)
                    emit(2, (a0 - b0 + c0) / 2, (a1 - b1 + c1) / 2, (a2 - b2 + c2) / 2)
                    emit(3, c0, c1, c2)
                }
            }
        }
    }

    /// `weight` is OIHW, or the output of `packWeights` when the plan says `weightsPrepacked`.
    /// `epilogue` as the other convolution paths take it (residual in the output's layout).
    func run(
        input: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
        output: UnsafeMutablePointer<Float>, workspace: UnsafeMutableRawPointer, parallel: Parallel,
        epilogue: ConvEpilogue
    ) {
        if byteCount == 0 { return }
        let base = workspace.bindMemory(to: Float.self, capacity: totalFloats)
        let weights: UnsafePointer<Float>
        if weightsPrepacked {
            weights = weight
        } else {
            packWeights(weight, into: base, parallel: parallel)
            weights = UnsafePointer(base)
        }
        let inPixels = g.inHeight * g.inWidth, outPixels = g.outHeight * g.outWidth
        let storeActivation = TileActivation(epilogue.activation)
        for n in 0..<g.batch {
            let image = input + n * cin * inPixels, out = output + n * cout * outPixels
            let imageEpilogue = epilogue.shifted(by: n * cout * outPixels)
            let rows = readsInputInPlace ? image : UnsafePointer(base + rowsAt)
            if !readsInputInPlace { copyRows(image, into: base + rowsAt, parallel: parallel) }
            // Stored in place: bias, residual and activation as the tiles are stored. Else raw
            // sums into the padded rows, finished when they are moved out.
            let target = writesOutputInPlace ? out : base + resultAt
            let pixelStride = writesOutputInPlace ? cout : coutPadded
            let storeBias = writesOutputInPlace ? bias : nil
            let storeEpilogue = writesOutputInPlace ? imageEpilogue : .none
            let activation = writesOutputInPlace ? storeActivation : TileActivation.none
            parallel.forEachRange(items) { worker, range in
                let scratch = base + workerAt + worker * workerFloats
                let transformed = scratch, products = scratch + transformedFloats
                var transformedBlock = -1
                for item in range {
                    let tileBlock = item / columnBlocks, columnBlock = item - tileBlock * columnBlocks
                    let first = tileBlock * tiles / tileBlocks, end = (tileBlock + 1) * tiles / tileBlocks
                    if tileBlock != transformedBlock {
                        transformInput(rows, tiles: first..<end, into: transformed)
                        transformedBlock = tileBlock
                    }
                    multiply(transformed, weights: weights, columnBlock: columnBlock, into: products)
                    transformOutput(products, tiles: first..<end, columnBlock: columnBlock, output: target,
                                    pixelStride: pixelStride, bias: storeBias, epilogue: storeEpilogue,
                                    storeActivation: activation)
                }
            }
            if !writesOutputInPlace {
                moveResult(base + resultAt, bias: bias, to: out, parallel: parallel)
                imageEpilogue.apply(elements: cout * outPixels, output: out, parallel: parallel)
            }
        }
    }

    /// One batch item's input into channels-last rows of cinPadded floats, the padding channels zero.
    private func copyRows(_ image: UnsafePointer<Float>, into rows: UnsafeMutablePointer<Float>, parallel: Parallel) {
        let pixels = g.inHeight * g.inWidth
        parallel.forEachRange((pixels + 15) / 16, totalWork: pixels * cinPadded) { _, blocks in
            let lo = blocks.lowerBound * 16, hi = min(blocks.upperBound * 16, pixels)
            ConvLayout.rows(from: image, channelsLast: layout.inputChannelsLast, channels: cin, planeSize: pixels,
                            pixels: lo..<hi, into: rows, rowStride: cinPadded)
            if cinPadded > cin {
                for p in lo..<hi { (rows + p * cinPadded + cin).update(repeating: 0, count: cinPadded - cin) }
            }
        }
    }

    /// The padded output rows (raw sums) into the output in its layout, plus the bias.
    private func moveResult(_ result: UnsafePointer<Float>, bias: UnsafePointer<Float>?, to out: UnsafeMutablePointer<Float>,
                            parallel: Parallel) {
        let pixels = g.outHeight * g.outWidth
        parallel.forEachRange((pixels + 15) / 16, totalWork: pixels * cout) { _, blocks in
            let lo = blocks.lowerBound * 16, hi = min(blocks.upperBound * 16, pixels)
            let channelsLast = layout.outputChannelsLast
            ConvLayout.storeResult(result + lo * coutPadded, resultStride: coutPadded, count: hi - lo, channels: cout,
                                   bias: bias, into: out + (channelsLast ? lo * cout : lo), channelsLast: channelsLast,
                                   planeSize: pixels, outStride: cout)
        }
    }

    /// V = Bᵀ d B for every tile of `range` and every 16 input channels, into
    /// transformed[point][tile - range.lowerBound][channel] (the rows past the block's tiles zero).
    /// Bᵀ = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]; inputs outside the image read 0.
    private func transformInput(_ image: UnsafePointer<Float>, tiles range: Range<Int>,
                                into transformed: UnsafeMutablePointer<Float>) {
        typealias V = SIMD16<Float>
        let pointStride = blockRows * cinPadded
        for (row, tile) in range.enumerated() {
            let ty = tile / tilesWide, tx = tile - ty * tilesWide
            let y0 = 2 * ty - g.padTop, x0 = 2 * tx - g.padLeft
            let interior = y0 >= 0 && y0 + 3 < g.inHeight && x0 >= 0 && x0 + 3 < g.inWidth
            var c = 0
            while c < cinPadded {
                // One input row's four columns, combined (· B) as they are loaded.
                @inline(__always)
                func rowTransform(_ r: Int) -> (V, V, V, V) {
                    let y = y0 + r
                    var d0 = V(), d1 = V(), d2 = V(), d3 = V()
                    if interior {
                        let p = UnsafeRawPointer(image + ((y * g.inWidth + x0) * cinPadded + c))
                        let step = cinPadded * MemoryLayout<Float>.stride
                        d0 = p.loadUnaligned(as: V.self)
                        d1 = p.loadUnaligned(fromByteOffset: step, as: V.self)
                        d2 = p.loadUnaligned(fromByteOffset: 2 * step, as: V.self)
                        d3 = p.loadUnaligned(fromByteOffset: 3 * step, as: V.self)
                    } else if y >= 0 && y < g.inHeight {
                        @inline(__always)
                        func load(_ s: Int) -> V {
                            let x = x0 + s
                            guard x >= 0 && x < g.inWidth else { return V() }
                            return UnsafeRawPointer(image + ((y * g.inWidth + x) * cinPadded + c)).loadUnaligned(as: V.self)
                        }
                        d0 = load(0); d1 = load(1); d2 = load(2); d3 = load(3)
                    }
                    return (d0 - d2, d1 + d2, d2 - d1, d1 - d3)
                }
                let u0 = rowTransform(0), u1 = rowTransform(1), u2 = rowTransform(2), u3 = rowTransform(3)
                let at = UnsafeMutableRawPointer(transformed + row * cinPadded + c)
                let stride = pointStride * MemoryLayout<Float>.stride
                @inline(__always)
                func store(_ point: Int, _ v: V) { (at + point * stride).storeBytes(of: v, as: V.self) }
                store(0, u0.0 - u2.0); store(1, u0.1 - u2.1); store(2, u0.2 - u2.2); store(3, u0.3 - u2.3)
                store(4, u1.0 + u2.0); store(5, u1.1 + u2.1); store(6, u1.2 + u2.2); store(7, u1.3 + u2.3)
                store(8, u2.0 - u1.0); store(9, u2.1 - u1.1); store(10, u2.2 - u1.2); store(11, u2.3 - u1.3)
                store(12, u1.0 - u3.0); store(13, u1.1 - u3.1); store(14, u1.2 - u3.2); store(15, u1.3 - u3.3)
                c += 16
            }
        }
        // The GEMMs run whole 6-row groups: the rows past the block's tiles must hold numbers.
        let count = range.count
        if count < blockRows {
            for point in 0..<Self.points {
                (transformed + point * pointStride + count * cinPadded).update(repeating: 0,
                                                                               count: (blockRows - count) * cinPadded)
            }
        }
    }

    /// products[point][tile][0..<width] = transformed[point][tile][...] x packed[point][columnBlock]
    /// for the block's `width` (64, or the last block's multiple of 16) output channels. While a
    /// point's row groups run, they fetch the next point's weights into L2, a share each (the
    /// weights of 512-channel layers come from memory; the AVX2 strips, which walk them a quarter
    /// row at a time, ran at half speed unfetched).
    private func multiply(_ transformed: UnsafePointer<Float>, weights: UnsafePointer<Float>, columnBlock: Int,
                          into products: UnsafeMutablePointer<Float>) {
        let width = min(64, coutPadded - columnBlock * 64)
        let pointFloats = cinPadded * coutPadded, blockBytes = cinPadded * width * MemoryLayout<Float>.stride
        let groups = blockRows / PackedGemm.rows
        let step = ChannelsLastConvPlan.prefetchStep(bytes: blockBytes, calls: groups, kc: cinPadded)
        for point in 0..<Self.points {
            let a = transformed + point * blockRows * cinPadded
            let b = weights + point * pointFloats + columnBlock * 64 * cinPadded
            let c = products + point * blockRows * 64
            let next = UnsafeRawPointer(b + pointFloats)
            for group in 0..<groups {
                let row = group * PackedGemm.rows
                if width == 64 {
                    let offset = group * cinPadded * step
                    let fetch = point + 1 < Self.points && offset < blockBytes
                        ? PrefetchStream(start: next + offset, step: step) : nil
                    PackedGemm.kernel6x64(kc: cinPadded, a: a + row * cinPadded, lda: cinPadded, b: b,
                                          c: c + row * 64, ldc: 64, accumulate: false, finish: .none, prefetch: fetch)
                } else {
                    // 16-48 columns (DCNv2's 27-channel offset convolutions): one pass over the rows.
                    PackedGemm.kernel6xNarrow(vectors: width / 16, kc: cinPadded, a: a + row * cinPadded, lda: cinPadded,
                                              b: b, ldb: width, c: c + row * 64, ldc: 64, accumulate: false,
                                              finish: .none)
                }
            }
        }
    }

    /// Y = Aᵀ M A (Aᵀ = [1 1 1 0; 0 1 -1 -1]) for every tile of `range` and the column block's
    /// channels, plus the bias, the residual and the activation, into the output pixels that exist.
    private func transformOutput(
        _ products: UnsafePointer<Float>, tiles range: Range<Int>, columnBlock: Int, output: UnsafeMutablePointer<Float>,
        pixelStride: Int, bias: UnsafePointer<Float>?, epilogue: ConvEpilogue, storeActivation: TileActivation?
    ) {
        typealias V = SIMD16<Float>
        let column0 = columnBlock * 64, width = min(64, coutPadded - column0)
        let pointStride = blockRows * 64 * MemoryLayout<Float>.stride
        for (row, tile) in range.enumerated() {
            let ty = tile / tilesWide, tx = tile - ty * tilesWide
            let y0 = 2 * ty, x0 = 2 * tx
            let hasRight = x0 + 1 < g.outWidth, hasBelow = y0 + 1 < g.outHeight
            let first = (y0 * g.outWidth + x0) * pixelStride + column0
            let below = g.outWidth * pixelStride
            let pixels = (first, first + pixelStride, first + below, first + below + pixelStride)
            let m = UnsafeRawPointer(products + row * 64)
            for vector in 0..<width / 16 {
                let at = m + vector * 64
                @inline(__always)
                func load(_ point: Int) -> V { (at + point * pointStride).loadUnaligned(as: V.self) }
                // Aᵀ M: two rows of four.
                let s00 = load(0) + load(4) + load(8), s01 = load(1) + load(5) + load(9)
                let s02 = load(2) + load(6) + load(10), s03 = load(3) + load(7) + load(11)
                let s10 = load(4) - load(8) - load(12), s11 = load(5) - load(9) - load(13)
                let s12 = load(6) - load(10) - load(14), s13 = load(7) - load(11) - load(15)
                // (Aᵀ M) A.
                let y00 = s00 + s01 + s02, y01 = s01 - s02 - s03
                let y10 = s10 + s11 + s12, y11 = s11 - s12 - s13
                @inline(__always)
                func store(_ y: V, at offset: Int) {
                    let p = output + offset + 16 * vector
                    if let storeActivation {
                        let finish = TileFinish(bias: bias.map { $0 + column0 },
                                                residual: epilogue.residual.map { $0 + offset },
                                                residualStride: 0, activation: storeActivation)
                        UnsafeMutableRawPointer(p).storeBytes(of: finish.applied(to: y, row: 0, vector: vector), as: V.self)
                    } else {
                        var x = y
                        if let bias { x += UnsafeRawPointer(bias + column0 + 16 * vector).loadUnaligned(as: V.self) }
                        UnsafeMutableRawPointer(p).storeBytes(of: x, as: V.self)
                        // An activation the store cannot apply: the epilogue's pass over these 16.
                        epilogue.shifted(by: offset + 16 * vector).apply(rows: 1, count: 16, stride: 0, output: p)
                    }
                }
                store(y00, at: pixels.0)
                if hasRight { store(y01, at: pixels.1) }
                if hasBelow {
                    store(y10, at: pixels.2)
                    if hasRight { store(y11, at: pixels.3) }
                }
            }
        }
    }
}
