/// Multi-scale deformable attention (Deformable DETR, DINO, BEVFormer), float32:
/// value [bs, keys, heads, dim], per level l a map of H_l x W_l keys starting at key start_l,
/// sampling_locations [bs, q, heads, L, P, 2] ((x, y) in [0, 1]), attention_weights
/// [bs, q, heads, L, P] -> output [bs, q, heads * dim]:
///
///     out[b, q, h*dim + c] = sum over l, p of weight * bilinear(level l of value[b, :, h, c],
///                            y = loc_y * H_l - 0.5, x = loc_x * W_l - 0.5)
///
/// each corner outside the level reading 0 and points outside (-1, H_l) x (-1, W_l) skipped (so a
/// non-finite weight there adds nothing): mmcv's CUDA kernel
/// (mmcv/ops/csrc/common/cuda/ms_deform_attn_cuda_kernel.cuh, ms_deformable_im2col_bilinear),
/// which reads level l at level_start_index[l]. `multi_scale_deformable_attn_pytorch` (grid_sample,
/// bilinear, zeros, align_corners False) is the same sampling. The op layer checks the levels
/// against value's keys; tools/deformable_attention_reference.py is the NumPy oracle.
///
/// `run`: per (batch, query, head), the plans of its L*P points are made 16 at a time (a lane
/// per point, each with its level's size and first key: `planLanes`, the per-lane form of
/// `DeformableSampling.planVector`'s bilinear rule) and each point's dim channels are accumulated
/// into the output row 16 at a time. Work is spread over threads; nothing is allocated.
public struct MultiScaleDeformableAttentionParams: Sendable, Equatable {
    public var batch: Int
    public var keys: Int
    public var heads: Int
    public var dim: Int
    public var queries: Int
    public var levels: Int
    public var points: Int

    public init(batch: Int, keys: Int, heads: Int, dim: Int, queries: Int, levels: Int, points: Int) {
        self.batch = batch
        self.keys = keys
        self.heads = heads
        self.dim = dim
        self.queries = queries
        self.levels = levels
        self.points = points
    }

    /// Why the kernel cannot take these sizes (nil: it can): keys are Int32 row indices.
    public var invalidReason: String? {
        if keys >= 1 << 30 { return "value has \(keys) keys; at most 2^30 are supported" }
        return nil
    }
}

public enum MultiScaleDeformableAttention {
    /// Per thread: per-lane level tables (height, width, row length, first key) of the L*P points,
    /// a 16-point plan, lane scratch and a zero row.
    static func perThreadBytes(_ p: MultiScaleDeformableAttentionParams) -> Int {
        let flat = (p.levels * p.points + 15) & ~15
        return (flat * 16 + 16 * 8 * 4 + 48 * 4 + p.dim * 4 + 63) & ~63
    }

    public static func workspaceByteCount(_ p: MultiScaleDeformableAttentionParams, threads: Int) -> Int {
        max(1, threads) * perThreadBytes(p) + 64
    }

    /// `shapes` holds (H_l, W_l) pairs and `starts` the first key of each level; the caller has
    /// checked that every level lies inside value's keys and that H_l, W_l < 2^22.
    public static func run(
        _ p: MultiScaleDeformableAttentionParams, value: UnsafePointer<Float>, shapes: (Int) -> (Int, Int),
        starts: (Int) -> Int, locations: UnsafePointer<Float>, weights: UnsafePointer<Float>,
        output: UnsafeMutablePointer<Float>, workspace: UnsafeMutableRawPointer, parallel: Parallel
    ) {
        let flat = p.levels * p.points
        let total = p.batch * p.queries * p.heads
        if total == 0 || p.dim == 0 { return }
        if flat == 0 {
            output.update(repeating: 0, count: total * p.dim)
            return
        }
        let base = UnsafeMutableRawPointer(bitPattern: (Int(bitPattern: workspace) + 63) & ~63)!
        let stride = perThreadBytes(p)
        let padded = (flat + 15) & ~15
        let dim = p.dim, rowStride = p.heads * p.dim
        let zeroRow = Int32(p.keys)
        let valuePerBatch = p.keys * rowStride
        // The level tables, made once on this thread and copied into each worker's scratch.
        let first = base.bindMemory(to: Float.self, capacity: 4 * padded)
        for j in 0..<padded {
            let l = min(j, flat - 1) / p.points
            let (h, w) = shapes(l)
            first[j] = Float(h)
            first[padded + j] = Float(w)
            UnsafeMutableRawPointer(first + 2 * padded).storeBytes(of: Int32(w), toByteOffset: j * 4, as: Int32.self)
            UnsafeMutableRawPointer(first + 3 * padded).storeBytes(of: Int32(starts(l)), toByteOffset: j * 4, as: Int32.self)
        }
        parallel.forEachRange(total, totalWork: total * flat * (dim + 16)) { worker, range in
            let mine = base + worker * stride
            let tables = mine.bindMemory(to: Float.self, capacity: 4 * padded)
            if worker > 0 { tables.update(from: first, count: 4 * padded) }
            let tableBytes = UnsafeRawPointer(tables)
            let index = (mine + padded * 16).bindMemory(to: Int32.self, capacity: 64)
            let weight = (mine + padded * 16 + 256).bindMemory(to: Float.self, capacity: 64)
            let lane = (mine + padded * 16 + 512).bindMemory(to: Float.self, capacity: 48)
            let zero = (mine + padded * 16 + 512 + 192).bindMemory(to: Float.self, capacity: dim)
            zero.update(repeating: 0, count: dim)
            for t in range {
                let b = t / (p.queries * p.heads)
                let head = t % p.heads
                let loc = locations + t * flat * 2
                let wt = weights + t * flat
                let out = output + t * dim
                // head_dim a multiple of 16 up to 64 (Deformable DETR's 32): the row summed in
                // registers over every point and stored once; otherwise summed in the output row.
                let inRegisters = SampleGather.RegisterRow.fits(dim)
                var registers = SampleGather.RegisterRow()
                if !inRegisters { out.update(repeating: 0, count: dim) }
                let rows = value + b * valuePerBatch + head * dim
                var j0 = 0
                while j0 < flat {
                    let count = min(16, flat - j0)
                    for l in 0..<16 {
                        let j = j0 + min(l, count - 1)
                        let height = tables[j], width = tables[padded + j]
                        let x = loc[j * 2] * width - 0.5
                        let y = loc[j * 2 + 1] * height - 0.5
                        lane[l] = x
                        lane[16 + l] = y
                        lane[32 + l] = y > -1 && y < height && x > -1 && x < width ? wt[j] : 0
                    }
                    let raw = UnsafeRawPointer(lane)
                    planLanes(
                        y: raw.loadUnaligned(fromByteOffset: 64, as: SIMD16<Float>.self),
                        x: raw.loadUnaligned(as: SIMD16<Float>.self),
                        weight: raw.loadUnaligned(fromByteOffset: 128, as: SIMD16<Float>.self),
                        height: tableBytes.loadUnaligned(fromByteOffset: j0 * 4, as: SIMD16<Float>.self),
                        width: tableBytes.loadUnaligned(fromByteOffset: (padded + j0) * 4, as: SIMD16<Float>.self),
                        rowLength: tableBytes.loadUnaligned(fromByteOffset: (2 * padded + j0) * 4, as: SIMD16<Int32>.self),
                        start: tableBytes.loadUnaligned(fromByteOffset: (3 * padded + j0) * 4, as: SIMD16<Int32>.self),
                        zeroRow: zeroRow, index: index, weights: weight)
                    for l in 0..<count {
                        if inRegisters {
                            registers.add(SampleGather.Point(rows: rows, rowStride: rowStride, index: index + l,
                                                             weight: weight + l, stride: 16, zeroRow: zeroRow,
                                                             zero: zero), vectors: dim >> 4)
                        } else {
                            SampleGather.corners(rows: rows, rowStride: rowStride, channels: dim, index: index + l,
                                                 weight: weight + l, stride: 16, zeroRow: zeroRow, zero: zero, out: out,
                                                 accumulate: true)
                        }
                    }
                    j0 += 16
                }
                if inRegisters { registers.store(to: out, vectors: dim >> 4) }
            }
        }
    }

    /// DeformableSampling.planVector's zero-outside-corners rule with a size and first row per
    /// lane: corner rows (start + y * W + x, or zeroRow) at index[q * 16 + lane], weights times
    /// `weight` likewise.
    @inline(__always)
    static func planLanes(
        y: SIMD16<Float>, x: SIMD16<Float>, weight: SIMD16<Float>, height h: SIMD16<Float>, width w: SIMD16<Float>,
        rowLength: SIMD16<Int32>, start: SIMD16<Int32>, zeroRow: Int32, index: UnsafeMutablePointer<Int32>,
        weights: UnsafeMutablePointer<Float>
    ) {
        typealias S = DeformableSampling
        let zero = SIMD16<Float>(), one = SIMD16<Float>(repeating: 1), minusOne = SIMD16<Float>(repeating: -1)
        let zeroIndex = SIMD16<Int32>(repeating: zeroRow)
        let inside = S.lanes(y .> minusOne) & S.lanes(y .< h) & S.lanes(x .> minusOne) & S.lanes(x .< w)
        let ys = S.select(inside, y, zero), xs = S.select(inside, x, zero)
        let y0 = S.floor(ys), x0 = S.floor(xs)
        let ly = ys - y0, lx = xs - x0
        let hy = one - ly, hx = one - lx
        let top = inside & S.lanes(y0 .>= zero), bottom = inside & S.lanes(y0 .< h - one)
        let left = S.lanes(x0 .>= zero), right = S.lanes(x0 .< w - one)
        let i = start &+ S.integer(y0) &* rowLength &+ S.integer(x0)
        @inline(__always) func clamp(_ i: SIMD16<Int32>) -> SIMD16<Int32> {
            let low = S.select(S.lanes(i .< SIMD16<Int32>()), SIMD16<Int32>(), i)
            return S.select(S.lanes(low .> zeroIndex), zeroIndex, low)
        }
        let ip = UnsafeMutableRawPointer(index), wp = UnsafeMutableRawPointer(weights)
        ip.storeBytes(of: clamp(S.select(top & left, i, zeroIndex)), as: SIMD16<Int32>.self)
        ip.storeBytes(of: clamp(S.select(top & right, i &+ 1, zeroIndex)), toByteOffset: 64, as: SIMD16<Int32>.self)
        ip.storeBytes(of: clamp(S.select(bottom & left, i &+ rowLength, zeroIndex)), toByteOffset: 128, as: SIMD16<Int32>.self)
        ip.storeBytes(of: clamp(S.select(bottom & right, i &+ rowLength &+ 1, zeroIndex)), toByteOffset: 192,
                      as: SIMD16<Int32>.self)
        wp.storeBytes(of: S.select(top & left, hy * hx, zero) * weight, as: SIMD16<Float>.self)
        wp.storeBytes(of: S.select(top & right, hy * lx, zero) * weight, toByteOffset: 64, as: SIMD16<Float>.self)
        wp.storeBytes(of: S.select(bottom & left, ly * hx, zero) * weight, toByteOffset: 128, as: SIMD16<Float>.self)
        wp.storeBytes(of: S.select(bottom & right, ly * lx, zero) * weight, toByteOffset: 192, as: SIMD16<Float>.self)
    }
}
