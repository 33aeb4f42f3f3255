/// ONNX GridSample (opsets 16, 20, 22) on float32 input, 4-D: X [N, C, H, W], grid [N, Ho, Wo, 2]
/// holding (x, y) in [-1, 1], Y [N, C, Ho, Wo]; or 5-D (opsets 20, 22; "volumetric"): X [N, C, D, H, W],
/// grid [N, Do, Ho, Wo, 3] holding (x, y, z), Y [N, C, Do, Ho, Wo], modes linear (trilinear: 8 taps)
/// and nearest (cubic is 4-D only in the spec and in onnxruntime; `invalidReason` refuses it).
///
/// Semantics are onnx.reference's (`onnx/reference/ops/op_grid_sample.py`), which onnxruntime
/// matches, with one exception where DeformRT follows onnxruntime and PyTorch: bicubic with
/// `border` padding clamps each of the 16 taps into the image and leaves the sample position
/// alone (onnx.reference first clamps the position into [0, size - 1], which changes results for
/// positions outside the image). Nearest rounds half to even (np.rint / std::nearbyint, as both).
/// A grid value that is not finite (NaN, ±Inf) reads 0 in every mode (both references give
/// undefined results or crash there).
///
/// `run`: a sampling plan per output pixel (1, 4, 8 or 16 taps: a row index and a weight each,
/// zero reads pointing at an all-zero row after the image), the bilinear zeros case vectorised 16
/// pixels at a time by the deformable kernels' `DeformableSampling.planVector`. The plan is shared
/// by every channel, which is read in one of three ways (`GridSamplePath`):
/// - channel blocks (8 or more channels, planes up to 32K pixels: most grids): 8 planes at a time
///   interleaved into rows of 8 channels that stay in L2, one SIMD8 load per tap;
/// - planes (fewer than 8 channels, grids sparser than the image): each plane sampled on its own;
/// - channels-last (the rest): each image transposed once to rows of all channels, each pixel's
///   channels gathered 16 at a time into a tile transposed into the NCHW output.
/// Work is spread over threads; nothing is allocated.
/// 5-D runs the same way on D*H*W "pixels" (a volume's rows are its voxels, z-major): its plan is
/// made voxel by voxel from the per-axis rules (`linearAxis`, `nearestAxis`), each axis padded as
/// the 4-D path pads x and y, so the two agree on every axis they share.
public enum GridSampleMode: Sendable { case linear, nearest, cubic }
/// How `GridSample.run` reads the input (see GridSample.swift's header).
public enum GridSamplePath: Sendable { case channelBlocks, planes, channelsLast }
public enum GridSamplePadding: Sendable { case zeros, border, reflection }

public struct GridSampleParams: Sendable, Equatable {
    public var batch: Int
    public var channels: Int
    public var inHeight: Int
    public var inWidth: Int
    public var outHeight: Int
    public var outWidth: Int
    public var mode: GridSampleMode
    public var padding: GridSamplePadding
    public var alignCorners: Bool
    /// 5-D: X [N, C, inDepth, H, W], grid [N, outDepth, Ho, Wo, 3]. (4-D: both depths are 1.)
    public var volumetric: Bool
    public var inDepth: Int
    public var outDepth: Int

    public init(batch: Int, channels: Int, inHeight: Int, inWidth: Int, outHeight: Int, outWidth: Int,
                mode: GridSampleMode, padding: GridSamplePadding, alignCorners: Bool) {
        self.batch = batch
        self.channels = channels
        self.inHeight = inHeight
        self.inWidth = inWidth
        self.outHeight = outHeight
        self.outWidth = outWidth
        self.mode = mode
        self.padding = padding
        self.alignCorners = alignCorners
        volumetric = false
        inDepth = 1
        outDepth = 1
    }

    /// 5-D GridSample: X [batch, channels, inDepth, inHeight, inWidth], grid [batch, outDepth, outHeight, outWidth, 3].
    public init(batch: Int, channels: Int, inDepth: Int, inHeight: Int, inWidth: Int, outDepth: Int, outHeight: Int,
                outWidth: Int, mode: GridSampleMode, padding: GridSamplePadding, alignCorners: Bool) {
        self.init(batch: batch, channels: channels, inHeight: inHeight, inWidth: inWidth, outHeight: outHeight,
                  outWidth: outWidth, mode: mode, padding: padding, alignCorners: alignCorners)
        volumetric = true
        self.inDepth = inDepth
        self.outDepth = outDepth
    }

    public var inPixels: Int { inDepth * inHeight * inWidth }
    var outPixels: Int { outDepth * outHeight * outWidth }
    /// Floats per output pixel in the grid: (x, y) or (x, y, z).
    var gridStride: Int { volumetric ? 3 : 2 }
    var taps: Int {
        switch mode {
        case .nearest: return 1
        case .linear: return volumetric ? 8 : 4
        case .cubic: return 16
        }
    }

    /// Channel blocks whenever their rows (32 bytes a pixel, per thread) fit in a typical L2: on
    /// 64 x 128 x 128 with a dense random grid 3.5x faster than the channels-last copy, whose
    /// 4 MB of rows the taps read from L3; on a sparse 256 x 100 x 134 one 2.5x faster than the
    /// planes (a tap's index and weight read once for 8 channels, no per-channel zero test).
    /// Otherwise planes when the grid reads fewer samples than about twice the image's pixels
    /// (a channels-last copy of the whole input, a read and a write of it, would cost more than
    /// it saves), else the channels-last copy.
    public var path: GridSamplePath {
        if channels >= 8 && inPixels < 1 << 15 { return .channelBlocks }
        return outPixels * taps < 2 * inPixels ? .planes : .channelsLast
    }

    /// Output pixels per tile: about 32 KB of gathered channels, a multiple of 16.
    var tile: Int { max(16, min(256, (8192 / max(channels, 1)) & ~15)) }

    /// Why the kernel cannot run these sizes (nil: it can). Row indices are Int32 and positions
    /// are converted to integers below 2^22 (DeformableSampling), as in the deformable kernels.
    public var invalidReason: String? {
        if [batch, channels, inDepth, inHeight, inWidth, outDepth, outHeight, outWidth].contains(where: { $0 < 0 }) {
            return "negative size"
        }
        if volumetric && mode == .cubic {
            return "mode cubic is defined for 4-D X only (the ONNX specification; onnxruntime refuses it too); 5-D takes linear or nearest"
        }
        let size = volumetric ? "\(inDepth) x \(inHeight) x \(inWidth)" : "\(inHeight) x \(inWidth)"
        if batch * channels * outPixels > 0 && (inDepth == 0 || inHeight == 0 || inWidth == 0) {
            return "input spatial size \(size) is empty; there is nothing to sample"
        }
        // Each factor below 2^22 first, so that the products cannot overflow.
        if inDepth >= 1 << 22 || inHeight >= 1 << 22 || inWidth >= 1 << 22 || inDepth * inHeight >= 1 << 30
            || inDepth * inHeight * inWidth >= 1 << 30 {
            return "input \(size) is too large for the sampler (at most 2^22 along an axis and 2^30 pixels)"
        }
        return nil
    }
}

public enum GridSample {
    /// Scratch bytes of `run`. Channel blocks: the plans of every output pixel, and per thread 8-channel
    /// rows and a tile. Planes: the plans. Channels-last: the channels-last images (plus a zero row
    /// each), and per thread a plan and a tile.
    public static func workspaceByteCount(_ p: GridSampleParams, threads: Int) -> Int {
        switch p.path {
        case .channelBlocks: return planBytes(p) + max(1, threads) * blockBytes(p) + 64
        case .planes: return planBytes(p) + max(1, threads) * 48 * 4 + 64
        case .channelsLast:
            return p.batch * (p.inPixels + 1) * p.channels * 4 + max(1, threads) * perThreadBytes(p) + 64
        }
    }

    static func perThreadBytes(_ p: GridSampleParams) -> Int {
        let t = p.tile
        return (p.taps * t * 8 + t * max(p.channels, 1) * 4 + 48 * 4 + 63) & ~63
    }

    public static func run(
        _ p: GridSampleParams, input: UnsafePointer<Float>, grid: UnsafePointer<Float>,
        output: UnsafeMutablePointer<Float>, workspace: UnsafeMutableRawPointer, parallel: Parallel
    ) {
        let c = p.channels, hw = p.inPixels, outPixels = p.outPixels
        if p.batch * c * outPixels == 0 { return }
        let base = UnsafeMutableRawPointer(bitPattern: (Int(bitPattern: workspace) + 63) & ~63)!
        switch p.path {
        case .channelBlocks:
            runOnChannelBlocks(p, input: input, grid: grid, output: output, scratch: base, parallel: parallel)
            return
        case .planes:
            runOnPlanes(p, input: input, grid: grid, output: output, scratch: base, parallel: parallel)
            return
        case .channelsLast: break
        }
        let rows = base.bindMemory(to: Float.self, capacity: p.batch * (hw + 1) * c)
        let imageFloats = (hw + 1) * c
        // Channels-last rows of every image, its zero row after them.
        parallel.forEachRange(p.batch * hw, totalWork: p.batch * hw * c) { _, range in
            var i = range.lowerBound
            while i < range.upperBound {
                let n = i / hw, start = i - n * hw
                let end = min(hw, start + (range.upperBound - i))
                ConvLayout.channelsLast(input + n * c * hw, channels: c, planeSize: hw, pixels: start..<end,
                                        rows: rows + n * imageFloats, rowStride: c)
                i += end - start
            }
        }
        for n in 0..<p.batch { (rows + n * imageFloats + hw * c).update(repeating: 0, count: c) }

        let tile = p.tile, taps = p.taps
        let tilesPerImage = (outPixels + tile - 1) / tile
        let scratch = base + p.batch * imageFloats * 4
        let stride = perThreadBytes(p)
        parallel.forEachRange(p.batch * tilesPerImage, totalWork: p.batch * outPixels * c * taps) { worker, range in
            let mine = scratch + worker * stride
            let index = mine.bindMemory(to: Int32.self, capacity: taps * tile)
            let weight = (mine + taps * tile * 4).bindMemory(to: Float.self, capacity: taps * tile)
            let gathered = (mine + taps * tile * 8).bindMemory(to: Float.self, capacity: tile * max(c, 1))
            let tail = (mine + taps * tile * 8 + tile * max(c, 1) * 4).bindMemory(to: Float.self, capacity: 48)
            for t in range {
                let n = t / tilesPerImage
                let p0 = (t - n * tilesPerImage) * tile
                let count = min(tile, outPixels - p0)
                let image = UnsafePointer(rows + n * imageFloats)
                plan(p, grid: grid + (n * outPixels + p0) * p.gridStride, count: count, index: index, weight: weight,
                     stride: tile, tail: tail)
                gather(p, rows: image, count: count, index: index, weight: weight, stride: tile, tile: gathered)
                ConvLayout.transpose(gathered, srcStride: c, output + n * c * outPixels + p0, dstStride: outPixels,
                                     rows: c, columns: count, rowBias: nil)
            }
        }
    }

    /// `run` on blocks of 8 channels: the plans of every output pixel first (threads over pixels),
    /// then per (image, block of 8 channels) the block's planes interleaved into channels-last rows
    /// of 8 floats with a zero row after them (32 bytes per pixel: it stays in L2, unlike a
    /// channels-last copy of every channel), each output pixel sampled as one SIMD8 per tap, and
    /// the pixel-major results transposed 8 x 8 into the NCHW planes. Threads take runs of
    /// (block, group of output tiles) items: a block is split into groups only when there are too
    /// few blocks to go round, and a thread interleaves each block it meets once.
    static func runOnChannelBlocks(
        _ p: GridSampleParams, input: UnsafePointer<Float>, grid: UnsafePointer<Float>,
        output: UnsafeMutablePointer<Float>, scratch: UnsafeMutableRawPointer, parallel: Parallel
    ) {
        let c = p.channels, hw = p.inPixels, outPixels = p.outPixels
        let taps = p.taps, total = p.batch * outPixels
        let perThread = blockBytes(p)
        let threadScratch = scratch + planBytes(p)
        let (index, weight) = planAll(p, grid: grid, scratch: scratch, parallel: parallel) { worker in
            (threadScratch + worker * perThread).bindMemory(to: Float.self, capacity: 48)
        }
        let blocksPerImage = (c + 7) / 8, blocks = p.batch * blocksPerImage
        let tiles = (outPixels + blockTile - 1) / blockTile
        let groups = max(1, min(tiles, (4 * parallel.threads + blocks - 1) / blocks))
        parallel.forEachRange(blocks * groups, totalWork: total * c * taps) { worker, range in
            let mine = threadScratch + worker * perThread
            let rows = (mine + 48 * 4).bindMemory(to: Float.self, capacity: (hw + 1) * 8 + blockTile * 8)
            let tile = rows + (hw + 1) * 8
            var interleaved = -1
            for item in range {
                let block = item / groups, group = item - block * groups
                let n = block / blocksPerImage
                let c0 = (block - n * blocksPerImage) * 8
                let live = min(8, c - c0)
                if block != interleaved {
                    interleave8(input + (n * c + c0) * hw, live: live, planeSize: hw, rows: rows)
                    interleaved = block
                }
                let first = n * outPixels
                var r0 = group * tiles / groups * blockTile
                let end = min(outPixels, (group + 1) * tiles / groups * blockTile)
                while r0 < end {
                    let count = min(blockTile, end - r0)
                    sample8(rows: rows, taps: taps, index: index + first + r0, weight: weight + first + r0,
                            stride: total, count: count, tile: tile)
                    store8(tile, count: count, live: live, output + (n * c + c0) * outPixels + r0, planeStride: outPixels)
                    r0 += count
                }
            }
        }
    }

    /// `run` on the NCHW planes, one at a time: the plans of every output pixel first, then each
    /// (image, channel) plane sampled at all of its image's pixels (threads over planes), so
    /// that a plane stays in cache while it is read (tiles of pixels over all channels would cycle
    /// through every plane per tile: 10x slower on a 256 x 100 x 134 input).
    static func runOnPlanes(
        _ p: GridSampleParams, input: UnsafePointer<Float>, grid: UnsafePointer<Float>,
        output: UnsafeMutablePointer<Float>, scratch: UnsafeMutableRawPointer, parallel: Parallel
    ) {
        let c = p.channels, hw = p.inPixels, outPixels = p.outPixels
        let taps = p.taps, total = p.batch * outPixels
        let tails = (scratch + planBytes(p)).bindMemory(to: Float.self, capacity: 48 * parallel.threads)
        let zeroRow = Int32(hw)
        let (index, weight) = planAll(p, grid: grid, scratch: scratch, parallel: parallel) { tails + $0 * 48 }
        let sink = tails.withMemoryRebound(to: SIMD16<Float>.self, capacity: 3 * parallel.threads) { $0 }
        parallel.forEachRange(p.batch * c, totalWork: total * c * taps) { worker, range in
            for plane in range {
                let n = plane / c
                let source = input + plane * hw
                // Read the plane in order first (one load per cache line): the hardware prefetcher
                // then streams it into L2, where the samples' scattered reads find it (measured
                // ~2x on a 100 x 134 plane sampled at 4800 random points).
                if hw * 4 <= 256 << 10 {
                    var touched = SIMD16<Float>()
                    var i = 0
                    while i + 16 <= hw {
                        touched += UnsafeRawPointer(source + i).loadUnaligned(as: SIMD16<Float>.self)
                        i += 16
                    }
                    sink[worker * 3] = touched
                }
                let out = output + plane * outPixels
                let first = n * outPixels
                switch taps {
                case 1:
                    let i0 = index + first
                    for r in 0..<outPixels {
                        out[r] = i0[r] == zeroRow ? 0 : source[Int(i0[r])]
                    }
                case 4:
                    let i0 = index + first, i1 = i0 + total, i2 = i1 + total, i3 = i2 + total
                    let w0 = weight + first, w1 = w0 + total, w2 = w1 + total, w3 = w2 + total
                    for r in 0..<outPixels {
                        let top = w0[r] * (i0[r] == zeroRow ? 0 : source[Int(i0[r])])
                            + w1[r] * (i1[r] == zeroRow ? 0 : source[Int(i1[r])])
                        let bottom = w2[r] * (i2[r] == zeroRow ? 0 : source[Int(i2[r])])
                            + w3[r] * (i3[r] == zeroRow ? 0 : source[Int(i3[r])])
                        out[r] = top + bottom
                    }
                default:
                    for r in 0..<outPixels {
                        var sum: Float = 0
                        for q in 0..<taps {
                            let i = index[q * total + first + r]
                            sum += weight[q * total + first + r] * (i == zeroRow ? 0 : source[Int(i)])
                        }
                        out[r] = sum
                    }
                }
            }
        }
    }

    /// The plans of all total = batch * outPixels output pixels, at the start of `scratch`
    /// (planBytes): tap q of pixel i at index[q * total + i], weight likewise. Threads over runs
    /// of 16 pixels; `tail(worker)` is that thread's 48 floats. A run may cross images: the grid is
    /// contiguous over (n, pixel), and a pixel's plan only depends on its own grid values.
    static func planAll(
        _ p: GridSampleParams, grid: UnsafePointer<Float>, scratch: UnsafeMutableRawPointer, parallel: Parallel,
        tail: (Int) -> UnsafeMutablePointer<Float>
    ) -> (index: UnsafeMutablePointer<Int32>, weight: UnsafeMutablePointer<Float>) {
        let total = p.batch * p.outPixels
        let index = scratch.bindMemory(to: Int32.self, capacity: p.taps * total)
        let weight = (scratch + p.taps * total * 4).bindMemory(to: Float.self, capacity: p.taps * total)
        parallel.forEachRange((total + 15) / 16, totalWork: total * p.taps * 16) { worker, range in
            let start = range.lowerBound * 16, end = min(total, range.upperBound * 16)
            if start < end {
                plan(p, grid: grid + start * p.gridStride, count: end - start, index: index + start,
                     weight: weight + start, stride: total, tail: tail(worker))
            }
        }
        return (index, weight)
    }

    /// Output pixels per tile of `runOnChannelBlocks` (a multiple of 8).
    static let blockTile = 64

    static func planBytes(_ p: GridSampleParams) -> Int { (p.taps * p.batch * p.outPixels * 8 + 63) & ~63 }

    /// Per-thread scratch of `runOnChannelBlocks`: a plan tail, the 8-channel rows and a tile.
    static func blockBytes(_ p: GridSampleParams) -> Int { (48 * 4 + ((p.inPixels + 1) * 8 + blockTile * 8) * 4 + 63) & ~63 }

    /// rows[i * 8 + k] = planes[k * planeSize + i] for k < live (0 for k >= live), i < planeSize,
    /// then a zero row: 8 x 8 register transposes when all 8 planes exist.
    static func interleave8(_ planes: UnsafePointer<Float>, live: Int, planeSize: Int, rows: UnsafeMutablePointer<Float>) {
        let out = UnsafeMutableRawPointer(rows)
        var i = 0
        if live == 8 {
            while i + 8 <= planeSize {
                let t = ConvLayout.transposed8x8(planes + i, srcStride: planeSize)
                let b = i * 32
                out.storeBytes(of: t.0, toByteOffset: b, as: SIMD8<Float>.self)
                out.storeBytes(of: t.1, toByteOffset: b + 32, as: SIMD8<Float>.self)
                out.storeBytes(of: t.2, toByteOffset: b + 64, as: SIMD8<Float>.self)
                out.storeBytes(of: t.3, toByteOffset: b + 96, as: SIMD8<Float>.self)
                out.storeBytes(of: t.4, toByteOffset: b + 128, as: SIMD8<Float>.self)
                out.storeBytes(of: t.5, toByteOffset: b + 160, as: SIMD8<Float>.self)
                out.storeBytes(of: t.6, toByteOffset: b + 192, as: SIMD8<Float>.self)
                out.storeBytes(of: t.7, toByteOffset: b + 224, as: SIMD8<Float>.self)
                i += 8
            }
        }
        while i < planeSize {
            for k in 0..<8 { rows[i * 8 + k] = k < live ? planes[k * planeSize + i] : 0 }
            i += 1
        }
        out.storeBytes(of: SIMD8<Float>(), toByteOffset: planeSize * 32, as: SIMD8<Float>.self)
    }

    /// tile[r * 8 + k] = the planned sum of pixel r, channel k, from 8-channel rows; taps in
    /// groups of four summed as SampleGather.sum does, so the result is the channels-last path's.
    @inline(__always)
    static func sample8(
        rows: UnsafePointer<Float>, taps: Int, index: UnsafePointer<Int32>, weight: UnsafePointer<Float>,
        stride: Int, count: Int, tile: UnsafeMutablePointer<Float>
    ) {
        let source = UnsafeRawPointer(rows), out = UnsafeMutableRawPointer(tile)
        @inline(__always) func row(_ q: Int, _ r: Int) -> SIMD8<Float> {
            source.loadUnaligned(fromByteOffset: Int(index[q * stride + r]) * 32, as: SIMD8<Float>.self)
        }
        @inline(__always) func four(_ q: Int, _ r: Int) -> SIMD8<Float> {
            let top = SIMD8<Float>(repeating: weight[q * stride + r]) * row(q, r)
                + SIMD8<Float>(repeating: weight[(q + 1) * stride + r]) * row(q + 1, r)
            let bottom = SIMD8<Float>(repeating: weight[(q + 2) * stride + r]) * row(q + 2, r)
                + SIMD8<Float>(repeating: weight[(q + 3) * stride + r]) * row(q + 3, r)
            return top + bottom
        }
        switch taps {
        case 1:
            // Nearest: a copy (weights are 1, and the zero row reads 0).
            for r in 0..<count { out.storeBytes(of: row(0, r), toByteOffset: r * 32, as: SIMD8<Float>.self) }
        case 4:
            for r in 0..<count { out.storeBytes(of: four(0, r), toByteOffset: r * 32, as: SIMD8<Float>.self) }
        default:
            for r in 0..<count {
                var v = four(0, r)
                var q = 4
                while q < taps {
                    v += four(q, r)
                    q += 4
                }
                out.storeBytes(of: v, toByteOffset: r * 32, as: SIMD8<Float>.self)
            }
        }
    }

    /// planes[k * planeStride + r] = tile[r * 8 + k] for k < live, r < count: 8 x 8 transposes.
    static func store8(
        _ tile: UnsafePointer<Float>, count: Int, live: Int, _ planes: UnsafeMutablePointer<Float>, planeStride: Int
    ) {
        var r = 0
        if live == 8 {
            let out = UnsafeMutableRawPointer(planes)
            let sb = planeStride * 4
            while r + 8 <= count {
                let t = ConvLayout.transposed8x8(tile + r * 8, srcStride: 8)
                let b = r * 4
                out.storeBytes(of: t.0, toByteOffset: b, as: SIMD8<Float>.self)
                out.storeBytes(of: t.1, toByteOffset: b + sb, as: SIMD8<Float>.self)
                out.storeBytes(of: t.2, toByteOffset: b + 2 * sb, as: SIMD8<Float>.self)
                out.storeBytes(of: t.3, toByteOffset: b + 3 * sb, as: SIMD8<Float>.self)
                out.storeBytes(of: t.4, toByteOffset: b + 4 * sb, as: SIMD8<Float>.self)
                out.storeBytes(of: t.5, toByteOffset: b + 5 * sb, as: SIMD8<Float>.self)
                out.storeBytes(of: t.6, toByteOffset: b + 6 * sb, as: SIMD8<Float>.self)
                out.storeBytes(of: t.7, toByteOffset: b + 7 * sb, as: SIMD8<Float>.self)
                r += 8
            }
        }
        while r < count {
            for k in 0..<live { planes[k * planeStride + r] = tile[r * 8 + k] }
            r += 1
        }
    }

    /// The plan of `count` pixels whose grid pairs start at `grid`: tap q of pixel r in
    /// index[q * stride + r], weight[q * stride + r]; zero reads point at row inPixels.
    static func plan(
        _ p: GridSampleParams, grid: UnsafePointer<Float>, count: Int, index: UnsafeMutablePointer<Int32>,
        weight: UnsafeMutablePointer<Float>, stride: Int, tail: UnsafeMutablePointer<Float>
    ) {
        let zeroRow = Int32(p.inPixels)
        if p.volumetric {
            for r in 0..<count {
                planVoxel(p, gx: grid[r * 3], gy: grid[r * 3 + 1], gz: grid[r * 3 + 2], zeroRow: zeroRow,
                          index: index + r, weight: weight + r, stride: stride)
            }
            return
        }
        if p.mode == .linear && p.padding == .zeros {
            // Positions 16 at a time, then the deformable kernels' bilinear plan (its border rule
            // is GridSample's zeros padding: each corner outside reads 0).
            let w = Float(p.inWidth), h = Float(p.inHeight)
            var r = 0
            while r < count {
                let n = min(16, count - r)
                for i in 0..<16 {
                    let j = min(i, n - 1)
                    let gx = grid[(r + j) * 2], gy = grid[(r + j) * 2 + 1]
                    tail[i] = denormalize(gx, w, p.alignCorners)
                    tail[16 + i] = denormalize(gy, h, p.alignCorners)
                }
                let x = UnsafeRawPointer(tail).loadUnaligned(as: SIMD16<Float>.self)
                let y = UnsafeRawPointer(tail + 16).loadUnaligned(as: SIMD16<Float>.self)
                if n == 16 {
                    DeformableSampling.planVector(
                        border: .zeroOutsideCorners, height: p.inHeight, width: p.inWidth, y: y, x: x,
                        mask: SIMD16<Float>(repeating: 1), zeroRow: zeroRow, index: index + r, weight: weight + r,
                        stride: stride)
                } else {
                    // The last partial vector, lane by lane (planVector stores 16 lanes).
                    partialPlan(p, x: x, y: y, n: n, zeroRow: zeroRow, index: index + r, weight: weight + r,
                                stride: stride)
                }
                r += 16
            }
            return
        }
        for r in 0..<count {
            planPoint(p, gx: grid[r * 2], gy: grid[r * 2 + 1], zeroRow: zeroRow, index: index + r,
                      weight: weight + r, stride: stride)
        }
    }

    /// The bilinear-zeros plan of the last n < 16 lanes, computed lane by lane (same arithmetic).
    static func partialPlan(
        _ p: GridSampleParams, x: SIMD16<Float>, y: SIMD16<Float>, n: Int, zeroRow: Int32,
        index: UnsafeMutablePointer<Int32>, weight: UnsafeMutablePointer<Float>, stride: Int
    ) {
        for i in 0..<n {
            bilinearZeros(p, x: x[i], y: y[i], zeroRow: zeroRow, index: index + i, weight: weight + i, stride: stride)
        }
    }

    @inline(__always)
    static func denormalize(_ v: Float, _ length: Float, _ alignCorners: Bool) -> Float {
        alignCorners ? (v + 1) / 2 * (length - 1) : ((v + 1) * length - 1) / 2
    }

    /// onnx.reference's `_gs_reflect`: reflects x by the near border until it lies in [low, high],
    /// in double precision as there; a zero-width range gives `low`.
    static func reflect(_ x: Float, low: Float, high: Float) -> Float {
        let fx = Double(x), lo = Double(low), hi = Double(high)
        let range = hi - lo
        if range <= 0 { return low }
        var result = fx
        if fx < lo {
            let dx = lo - fx
            let n = (dx / range).rounded(.towardZero)
            let r = dx - n * range
            result = n.truncatingRemainder(dividingBy: 2) == 0 ? lo + r : hi - r
        } else if fx > hi {
            let dx = fx - hi
            let n = (dx / range).rounded(.towardZero)
            let r = dx - n * range
            result = n.truncatingRemainder(dividingBy: 2) == 0 ? hi - r : lo + r
        }
        return Float(min(max(result, lo), hi))
    }

    /// The sample position along one axis after the padding rule (for linear and nearest; cubic
    /// transforms only under reflection, see `cubicAxis`).
    @inline(__always)
    static func padded(_ x: Float, length: Int, _ p: GridSampleParams) -> Float {
        let low: Float = p.alignCorners ? 0 : -0.5
        let high: Float = p.alignCorners ? Float(length - 1) : Float(length) - 0.5
        if x >= low && x <= high { return x }
        switch p.padding {
        case .zeros: return x
        case .border: return min(max(x, 0), Float(length - 1))
        case .reflection: return reflect(x, low: low, high: high)
        }
    }

    /// A tap index along one axis of `length` after the padding rule; -1 reads 0. `i` is small
    /// (callers bound positions first).
    @inline(__always)
    static func tapIndex(_ i: Int, length: Int, _ p: GridSampleParams) -> Int {
        if i >= 0 && i < length { return i }
        switch p.padding {
        case .zeros: return -1
        case .border: return min(max(i, 0), length - 1)
        case .reflection:
            let low: Float = p.alignCorners ? 0 : -0.5
            let high: Float = p.alignCorners ? Float(length - 1) : Float(length) - 0.5
            return min(max(Int(reflect(Float(i), low: low, high: high)), 0), length - 1)
        }
    }

    /// Keys' cubic convolution coefficients (A = -0.75) of the four taps around t in [0, 1).
    @inline(__always)
    static func cubicCoefficients(_ t: Float) -> (Float, Float, Float, Float) {
        let a: Float = -0.75
        let x = abs(t)
        let c0 = ((a * (x + 1) - 5 * a) * (x + 1) + 8 * a) * (x + 1) - 4 * a
        let c1 = ((a + 2) * x - (a + 3)) * x * x + 1
        let c2 = ((a + 2) * (1 - x) - (a + 3)) * (1 - x) * (1 - x) + 1
        let c3 = ((a * (2 - x) - 5 * a) * (2 - x) + 8 * a) * (2 - x) - 4 * a
        return (c0, c1, c2, c3)
    }

    /// One pixel's bilinear plan with zeros padding (the scalar form of planVector's rule).
    @inline(__always)
    static func bilinearZeros(
        _ p: GridSampleParams, x: Float, y: Float, zeroRow: Int32, index: UnsafeMutablePointer<Int32>,
        weight: UnsafeMutablePointer<Float>, stride: Int
    ) {
        for q in 0..<4 {
            index[q * stride] = zeroRow
            weight[q * stride] = 0
        }
        guard y > -1 && y < Float(p.inHeight) && x > -1 && x < Float(p.inWidth) else { return }
        let y0 = y.rounded(.down), x0 = x.rounded(.down)
        let ly = y - y0, lx = x - x0
        let iy = Int(y0), ix = Int(x0)
        let ys = (iy, iy + 1), xs = (ix, ix + 1)
        let wy = (1 - ly, ly), wx = (1 - lx, lx)
        for a in 0..<2 {
            let row = a == 0 ? ys.0 : ys.1
            let w1 = a == 0 ? wy.0 : wy.1
            guard row >= 0 && row < p.inHeight else { continue }
            for b in 0..<2 {
                let column = b == 0 ? xs.0 : xs.1
                guard column >= 0 && column < p.inWidth else { continue }
                index[(a * 2 + b) * stride] = Int32(row * p.inWidth + column)
                weight[(a * 2 + b) * stride] = w1 * (b == 0 ? wx.0 : wx.1)
            }
        }
    }

    /// One pixel's plan in any mode and padding.
    static func planPoint(
        _ p: GridSampleParams, gx: Float, gy: Float, zeroRow: Int32, index: UnsafeMutablePointer<Int32>,
        weight: UnsafeMutablePointer<Float>, stride: Int
    ) {
        let taps = p.taps
        for q in 0..<taps {
            index[q * stride] = zeroRow
            weight[q * stride] = 0
        }
        let h = p.inHeight, w = p.inWidth
        var x = denormalize(gx, Float(w), p.alignCorners)
        var y = denormalize(gy, Float(h), p.alignCorners)
        guard x.isFinite && y.isFinite else { return }
        switch p.mode {
        case .nearest:
            x = padded(x.rounded(.toNearestOrEven), length: w, p)
            y = padded(y.rounded(.toNearestOrEven), length: h, p)
            guard x >= 0 && x < Float(w) && y >= 0 && y < Float(h) else { return }
            index[0] = Int32(Int(y) * w + Int(x))
            weight[0] = 1
        case .linear:
            x = padded(x, length: w, p)
            y = padded(y, length: h, p)
            if p.padding == .zeros {
                bilinearZeros(p, x: x, y: y, zeroRow: zeroRow, index: index, weight: weight, stride: stride)
                return
            }
            // Border and reflection positions lie in [-0.5, size - 0.5]: small.
            let y0 = y.rounded(.down), x0 = x.rounded(.down)
            let ly = y - y0, lx = x - x0
            let iy = Int(y0), ix = Int(x0)
            let rows = (tapIndex(iy, length: h, p), tapIndex(iy + 1, length: h, p))
            let columns = (tapIndex(ix, length: w, p), tapIndex(ix + 1, length: w, p))
            let wy = (1 - ly, ly), wx = (1 - lx, lx)
            for a in 0..<2 {
                for b in 0..<2 {
                    let row = a == 0 ? rows.0 : rows.1, column = b == 0 ? columns.0 : columns.1
                    index[(a * 2 + b) * stride] = Int32(row * w + column)
                    weight[(a * 2 + b) * stride] = (a == 0 ? wy.0 : wy.1) * (b == 0 ? wx.0 : wx.1)
                }
            }
        case .cubic:
            guard let (rows, cy) = cubicAxis(y, length: h, p), let (columns, cx) = cubicAxis(x, length: w, p) else {
                return
            }
            for a in 0..<4 {
                let row = a == 0 ? rows.0 : a == 1 ? rows.1 : a == 2 ? rows.2 : rows.3
                let wa = a == 0 ? cy.0 : a == 1 ? cy.1 : a == 2 ? cy.2 : cy.3
                guard row >= 0 else { continue }
                for b in 0..<4 {
                    let column = b == 0 ? columns.0 : b == 1 ? columns.1 : b == 2 ? columns.2 : columns.3
                    guard column >= 0 else { continue }
                    index[(a * 4 + b) * stride] = Int32(row * w + column)
                    weight[(a * 4 + b) * stride] = wa * (b == 0 ? cx.0 : b == 1 ? cx.1 : b == 2 ? cx.2 : cx.3)
                }
            }
        }
    }

    /// One voxel's plan (5-D, linear or nearest): the tap q = 4 * a + 2 * b + c of corner
    /// (z + a, y + b, x + c), each axis padded by `linearAxis` / `nearestAxis`.
    static func planVoxel(
        _ p: GridSampleParams, gx: Float, gy: Float, gz: Float, zeroRow: Int32, index: UnsafeMutablePointer<Int32>,
        weight: UnsafeMutablePointer<Float>, stride: Int
    ) {
        for q in 0..<p.taps {
            index[q * stride] = zeroRow
            weight[q * stride] = 0
        }
        let d = p.inDepth, h = p.inHeight, w = p.inWidth
        let x = denormalize(gx, Float(w), p.alignCorners)
        let y = denormalize(gy, Float(h), p.alignCorners)
        let z = denormalize(gz, Float(d), p.alignCorners)
        guard x.isFinite && y.isFinite && z.isFinite else { return }
        switch p.mode {
        case .nearest:
            guard let ix = nearestAxis(x, length: w, p), let iy = nearestAxis(y, length: h, p),
                  let iz = nearestAxis(z, length: d, p) else { return }
            index[0] = Int32((iz * h + iy) * w + ix)
            weight[0] = 1
        case .linear:
            guard let (xs, wx) = linearAxis(x, length: w, p), let (ys, wy) = linearAxis(y, length: h, p),
                  let (zs, wz) = linearAxis(z, length: d, p) else { return }
            for a in 0..<2 {
                let iz = a == 0 ? zs.0 : zs.1
                guard iz >= 0 else { continue }
                for b in 0..<2 {
                    let iy = b == 0 ? ys.0 : ys.1
                    guard iy >= 0 else { continue }
                    let wzy = (a == 0 ? wz.0 : wz.1) * (b == 0 ? wy.0 : wy.1)
                    for c in 0..<2 {
                        let ix = c == 0 ? xs.0 : xs.1
                        guard ix >= 0 else { continue }
                        let q = 4 * a + 2 * b + c
                        index[q * stride] = Int32((iz * h + iy) * w + ix)
                        weight[q * stride] = wzy * (c == 0 ? wx.0 : wx.1)
                    }
                }
            }
        case .cubic:
            return  // refused by invalidReason: cubic is 4-D only
        }
    }

    /// The voxel index along one axis for nearest (round half to even, then the padding rule, as
    /// the 4-D path); nil reads 0.
    @inline(__always)
    static func nearestAxis(_ v: Float, length: Int, _ p: GridSampleParams) -> Int? {
        let x = padded(v.rounded(.toNearestOrEven), length: length, p)
        guard x >= 0 && x < Float(length) else { return nil }
        return Int(x)
    }

    /// The two linear taps along one axis (-1: reads 0) and their weights; nil when both read 0
    /// (zeros padding, position at or beyond one pixel outside). Border and reflection positions
    /// lie in [-0.5, length - 0.5] after `padded`, so the conversions below see small numbers.
    @inline(__always)
    static func linearAxis(_ v: Float, length: Int, _ p: GridSampleParams) -> ((Int, Int), (Float, Float))? {
        let x = padded(v, length: length, p)
        if p.padding == .zeros && !(x > -1 && x < Float(length)) { return nil }
        let x0 = x.rounded(.down)
        let i = Int(x0), fraction = x - x0
        return ((tapIndex(i, length: length, p), tapIndex(i + 1, length: length, p)), (1 - fraction, fraction))
    }

    /// The four tap indices (-1: reads 0) and coefficients of a bicubic axis; nil when every tap
    /// reads 0. Zeros: taps outside read 0. Border: taps clamped into the image, the position
    /// left alone (onnxruntime, PyTorch). Reflection: the position reflected into range, then
    /// each tap reflected (onnx.reference; onnxruntime agrees).
    @inline(__always)
    static func cubicAxis(_ v: Float, length: Int, _ p: GridSampleParams)
        -> ((Int, Int, Int, Int), (Float, Float, Float, Float))? {
        var x = v
        switch p.padding {
        case .zeros:
            guard x > -3 && x < Float(length + 2) else { return nil }
        case .border:
            // Beyond these every tap clamps to the same edge and the coefficients sum to 1.
            x = min(max(x, -4), Float(length + 3))
        case .reflection:
            x = padded(x, length: length, p)
        }
        let x0 = x.rounded(.down)
        let i0 = Int(x0)
        let taps = (tapIndex(i0 - 1, length: length, p), tapIndex(i0, length: length, p),
                    tapIndex(i0 + 1, length: length, p), tapIndex(i0 + 2, length: length, p))
        return (taps, cubicCoefficients(x - x0))
    }

    /// Gathers the planned taps of `count` pixels into tile rows of `channels` floats.
    static func gather(
        _ p: GridSampleParams, rows: UnsafePointer<Float>, count: Int, index: UnsafePointer<Int32>,
        weight: UnsafePointer<Float>, stride: Int, tile: UnsafeMutablePointer<Float>
    ) {
        let c = p.channels
        switch p.mode {
        case .nearest:
            for r in 0..<count {
                DeformableSampling.copy(rows + Int(index[r]) * c, to: tile + r * c, count: c)
            }
        case .linear where p.volumetric:
            // The z0 plane's four corners, then the z1 plane's added.
            for r in 0..<count {
                SampleGather.corners(rows: rows, rowStride: c, channels: c, index: index + r, weight: weight + r,
                                     stride: stride, out: tile + r * c, accumulate: false)
                SampleGather.corners(rows: rows, rowStride: c, channels: c, index: index + 4 * stride + r,
                                     weight: weight + 4 * stride + r, stride: stride, out: tile + r * c,
                                     accumulate: true)
            }
        case .linear:
            DeformableSampling.gather(rows: rows, rowStride: c, channels: c, count: count, index: index,
                                      weight: weight, stride: stride, panel: tile, panelStride: c)
        case .cubic:
            for r in 0..<count {
                for a in 0..<4 {
                    SampleGather.corners(rows: rows, rowStride: c, channels: c, index: index + a * 4 * stride + r,
                                         weight: weight + a * 4 * stride + r, stride: stride, out: tile + r * c,
                                         accumulate: a > 0)
                }
            }
        }
    }
}
