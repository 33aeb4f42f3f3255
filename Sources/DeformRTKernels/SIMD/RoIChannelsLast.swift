/// Channels-last kernels behind the optimised RoI pooling ops: the NCHW -> channels-last copy, and
/// the per-bin reductions that apply one table of samples to every channel, SIMD across channels
/// (32 -> 16 -> 8 -> 4 -> 1). Arithmetic is lane-wise in the references' order and without fused
/// multiply-adds, so each lane computes what the scalar reference computes.
enum RoIChannelsLast {
    /// Copies `groups` sets of `channels` planes of `pixels` floats into channels-last rows:
    /// destination[(g * pixels + p) * channels + c] = source(g)[c * channelStride + p].
    static func copy(
        groups: Int, channels: Int, pixels: Int, channelStride: Int,
        source: (_ group: Int) -> UnsafePointer<Float>,
        destination: UnsafeMutablePointer<Float>, parallel: Parallel
    ) {
        let chunk = 256
        let chunksPerGroup = (pixels + chunk - 1) / chunk
        parallel.forEachRange(groups * chunksPerGroup) { _, tasks in
            for task in tasks {
                let group = task / chunksPerGroup
                let p0 = (task % chunksPerGroup) * chunk
                transpose(
                    source(group) + p0, sourceStride: channelStride, rows: channels,
                    columns: min(chunk, pixels - p0),
                    into: destination + (group * pixels + p0) * channels, destinationStride: channels)
            }
        }
    }

    /// A whole NCHW batch of `channels` planes as [image][pixel][channel] rows.
    static func copy(
        images input: UnsafePointer<Float>, batch: Int, channels: Int, pixels: Int,
        into destination: UnsafeMutablePointer<Float>, parallel: Parallel
    ) {
        copy(
            groups: batch, channels: channels, pixels: pixels, channelStride: pixels,
            source: { input + $0 * channels * pixels }, destination: destination, parallel: parallel)
    }

    /// destination[j * destinationStride + i] = source[i * sourceStride + j] for i in 0..<rows,
    /// j in 0..<columns: 16 x 16 blocks transposed in registers, the edges one float at a time.
    static func transpose(
        _ source: UnsafePointer<Float>, sourceStride: Int, rows: Int, columns: Int,
        into destination: UnsafeMutablePointer<Float>, destinationStride: Int
    ) {
        var i0 = 0
        while i0 + 16 <= rows {
            var j0 = 0
            while j0 + 16 <= columns {
                transpose16(source + i0 * sourceStride + j0, sourceStride, destination + j0 * destinationStride + i0,
                            destinationStride)
                j0 += 16
            }
            for j in j0..<columns {
                for i in i0..<(i0 + 16) { destination[j * destinationStride + i] = source[i * sourceStride + j] }
            }
            i0 += 16
        }
        for i in i0..<rows {
            for j in 0..<columns { destination[j * destinationStride + i] = source[i * sourceStride + j] }
        }
    }

    /// One 16 x 16 block in registers: four rounds of "row k of the result = the even lanes of
    /// rows 2k and 2k + 1 side by side, row k + 8 = their odd lanes" transpose it.
    @inline(__always)
    private static func transpose16(
        _ source: UnsafePointer<Float>, _ sourceStride: Int, _ destination: UnsafeMutablePointer<Float>,
        _ destinationStride: Int
    ) {
        var r0 = load16(source), r1 = load16(source + sourceStride)
        var r2 = load16(source + 2 * sourceStride), r3 = load16(source + 3 * sourceStride)
        var r4 = load16(source + 4 * sourceStride), r5 = load16(source + 5 * sourceStride)
        var r6 = load16(source + 6 * sourceStride), r7 = load16(source + 7 * sourceStride)
        var r8 = load16(source + 8 * sourceStride), r9 = load16(source + 9 * sourceStride)
        var r10 = load16(source + 10 * sourceStride), r11 = load16(source + 11 * sourceStride)
        var r12 = load16(source + 12 * sourceStride), r13 = load16(source + 13 * sourceStride)
        var r14 = load16(source + 14 * sourceStride), r15 = load16(source + 15 * sourceStride)
        for _ in 0..<4 {
            let p0 = SIMD32(lowHalf: r0, highHalf: r1), p1 = SIMD32(lowHalf: r2, highHalf: r3)
            let p2 = SIMD32(lowHalf: r4, highHalf: r5), p3 = SIMD32(lowHalf: r6, highHalf: r7)
            let p4 = SIMD32(lowHalf: r8, highHalf: r9), p5 = SIMD32(lowHalf: r10, highHalf: r11)
            let p6 = SIMD32(lowHalf: r12, highHalf: r13), p7 = SIMD32(lowHalf: r14, highHalf: r15)
            r0 = p0.evenHalf; r1 = p1.evenHalf; r2 = p2.evenHalf; r3 = p3.evenHalf
            r4 = p4.evenHalf; r5 = p5.evenHalf; r6 = p6.evenHalf; r7 = p7.evenHalf
            r8 = p0.oddHalf; r9 = p1.oddHalf; r10 = p2.oddHalf; r11 = p3.oddHalf
            r12 = p4.oddHalf; r13 = p5.oddHalf; r14 = p6.oddHalf; r15 = p7.oddHalf
        }
        store16(r0, destination); store16(r1, destination + destinationStride)
        store16(r2, destination + 2 * destinationStride); store16(r3, destination + 3 * destinationStride)
        store16(r4, destination + 4 * destinationStride); store16(r5, destination + 5 * destinationStride)
        store16(r6, destination + 6 * destinationStride); store16(r7, destination + 7 * destinationStride)
        store16(r8, destination + 8 * destinationStride); store16(r9, destination + 9 * destinationStride)
        store16(r10, destination + 10 * destinationStride); store16(r11, destination + 11 * destinationStride)
        store16(r12, destination + 12 * destinationStride); store16(r13, destination + 13 * destinationStride)
        store16(r14, destination + 14 * destinationStride); store16(r15, destination + 15 * destinationStride)
    }

    /// accumulator[c] += ((w0 x[o0 + c] + w1 x[o1 + c]) + w2 x[o2 + c]) + w3 x[o3 + c] for each
    /// table entry in order, c in 0..<channels; `base` points at channel 0 of the image.
    static func accumulate(
        _ table: RoISampleTable, base: UnsafePointer<Float>, channels: Int,
        into accumulator: UnsafeMutablePointer<Float>
    ) {
        let offsets = table.offsets
        let weights = table.weights
        let entries = table.count
        var c = 0
        while c + 32 <= channels {
            var a0 = load16(accumulator + c)
            var a1 = load16(accumulator + c + 16)
            for e in 0..<entries {
                let o = offsets + 4 * e
                let w = weights + 4 * e
                let p0 = base + o[0] + c, p1 = base + o[1] + c, p2 = base + o[2] + c, p3 = base + o[3] + c
                let w0 = SIMD16<Float>(repeating: w[0]), w1 = SIMD16<Float>(repeating: w[1])
                let w2 = SIMD16<Float>(repeating: w[2]), w3 = SIMD16<Float>(repeating: w[3])
                a0 += ((w0 * load16(p0) + w1 * load16(p1)) + w2 * load16(p2)) + w3 * load16(p3)
                a1 += ((w0 * load16(p0 + 16) + w1 * load16(p1 + 16)) + w2 * load16(p2 + 16))
                    + w3 * load16(p3 + 16)
            }
            store16(a0, accumulator + c)
            store16(a1, accumulator + c + 16)
            c += 32
        }
        if c + 16 <= channels {
            var a = load16(accumulator + c)
            for e in 0..<entries {
                let o = offsets + 4 * e
                let w = weights + 4 * e
                a += ((SIMD16(repeating: w[0]) * load16(base + o[0] + c)
                    + SIMD16(repeating: w[1]) * load16(base + o[1] + c))
                    + SIMD16(repeating: w[2]) * load16(base + o[2] + c))
                    + SIMD16(repeating: w[3]) * load16(base + o[3] + c)
            }
            store16(a, accumulator + c)
            c += 16
        }
        if c + 8 <= channels {
            var a = load8(accumulator + c)
            for e in 0..<entries {
                let o = offsets + 4 * e
                let w = weights + 4 * e
                a += ((SIMD8(repeating: w[0]) * load8(base + o[0] + c)
                    + SIMD8(repeating: w[1]) * load8(base + o[1] + c))
                    + SIMD8(repeating: w[2]) * load8(base + o[2] + c))
                    + SIMD8(repeating: w[3]) * load8(base + o[3] + c)
            }
            store8(a, accumulator + c)
            c += 8
        }
        if c + 4 <= channels {
            var a = load4(accumulator + c)
            for e in 0..<entries {
                let o = offsets + 4 * e
                let w = weights + 4 * e
                a += ((SIMD4(repeating: w[0]) * load4(base + o[0] + c)
                    + SIMD4(repeating: w[1]) * load4(base + o[1] + c))
                    + SIMD4(repeating: w[2]) * load4(base + o[2] + c))
                    + SIMD4(repeating: w[3]) * load4(base + o[3] + c)
            }
            store4(a, accumulator + c)
            c += 4
        }
        while c < channels {
            var a = accumulator[c]
            for e in 0..<entries {
                let o = offsets + 4 * e
                let w = weights + 4 * e
                a += ((w[0] * base[o[0] + c] + w[1] * base[o[1] + c]) + w[2] * base[o[2] + c])
                    + w[3] * base[o[3] + c]
            }
            accumulator[c] = a
            c += 1
        }
    }

    /// onnxruntime's RoiAlign max mode: accumulator[c] = max(accumulator[c], w0 x[o0 + c], ...,
    /// w3 x[o3 + c]) over the table, each max taken as std::max does (a < b ? b : a).
    static func accumulateMax(
        _ table: RoISampleTable, base: UnsafePointer<Float>, channels: Int,
        into accumulator: UnsafeMutablePointer<Float>
    ) {
        let offsets = table.offsets
        let weights = table.weights
        let entries = table.count
        var c = 0
        while c + 16 <= channels {
            var a = load16(accumulator + c)
            for e in 0..<entries {
                let o = offsets + 4 * e
                let w = weights + 4 * e
                var m = SIMD16(repeating: w[0]) * load16(base + o[0] + c)
                for k in 1..<4 {
                    let v = SIMD16(repeating: w[k]) * load16(base + o[k] + c)
                    m.replace(with: v, where: m .< v)
                }
                a.replace(with: m, where: a .< m)
            }
            store16(a, accumulator + c)
            c += 16
        }
        if c + 8 <= channels {
            var a = load8(accumulator + c)
            for e in 0..<entries {
                let o = offsets + 4 * e
                let w = weights + 4 * e
                var m = SIMD8(repeating: w[0]) * load8(base + o[0] + c)
                for k in 1..<4 {
                    let v = SIMD8(repeating: w[k]) * load8(base + o[k] + c)
                    m.replace(with: v, where: m .< v)
                }
                a.replace(with: m, where: a .< m)
            }
            store8(a, accumulator + c)
            c += 8
        }
        if c + 4 <= channels {
            var a = load4(accumulator + c)
            for e in 0..<entries {
                let o = offsets + 4 * e
                let w = weights + 4 * e
                var m = SIMD4(repeating: w[0]) * load4(base + o[0] + c)
                for k in 1..<4 {
                    let v = SIMD4(repeating: w[k]) * load4(base + o[k] + c)
                    m.replace(with: v, where: m .< v)
                }
                a.replace(with: m, where: a .< m)
            }
            store4(a, accumulator + c)
            c += 4
        }
        while c < channels {
            var a = accumulator[c]
            for e in 0..<entries {
                let o = offsets + 4 * e
                let w = weights + 4 * e
                var m = w[0] * base[o[0] + c]
                for k in 1..<4 {
                    let v = w[k] * base[o[k] + c]
                    if m < v { m = v }
                }
                if a < m { a = m }
            }
            accumulator[c] = a
            c += 1
        }
    }

    /// torchvision roi_pool / onnxruntime MaxRoiPool over one bin: accumulator[c] takes x[c] of
    /// each pixel `(h, w)` in the rectangle when x > accumulator (so NaN never replaces).
    /// `base` is the image's channels-last rows, `width` its row length in pixels.
    static func maxOverRectangle(
        base: UnsafePointer<Float>, width: Int, channels: Int,
        rows: Range<Int>, columns: Range<Int>, into accumulator: UnsafeMutablePointer<Float>
    ) {
        var c = 0
        while c + 16 <= channels {
            var a = load16(accumulator + c)
            for h in rows {
                var p = base + (h * width + columns.lowerBound) * channels + c
                for _ in columns {
                    let v = load16(p)
                    a.replace(with: v, where: v .> a)
                    p += channels
                }
            }
            store16(a, accumulator + c)
            c += 16
        }
        if c + 8 <= channels {
            var a = load8(accumulator + c)
            for h in rows {
                var p = base + (h * width + columns.lowerBound) * channels + c
                for _ in columns {
                    let v = load8(p)
                    a.replace(with: v, where: v .> a)
                    p += channels
                }
            }
            store8(a, accumulator + c)
            c += 8
        }
        if c + 4 <= channels {
            var a = load4(accumulator + c)
            for h in rows {
                var p = base + (h * width + columns.lowerBound) * channels + c
                for _ in columns {
                    let v = load4(p)
                    a.replace(with: v, where: v .> a)
                    p += channels
                }
            }
            store4(a, accumulator + c)
            c += 4
        }
        while c < channels {
            var a = accumulator[c]
            for h in rows {
                var p = base + (h * width + columns.lowerBound) * channels + c
                for _ in columns {
                    if p.pointee > a { a = p.pointee }
                    p += channels
                }
            }
            accumulator[c] = a
            c += 1
        }
    }

    @inline(__always) static func load16(_ p: UnsafePointer<Float>) -> SIMD16<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self)
    }
    @inline(__always) static func load8(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
    }
    @inline(__always) static func load4(_ p: UnsafePointer<Float>) -> SIMD4<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD4<Float>.self)
    }
    @inline(__always) static func load16(_ p: UnsafeMutablePointer<Float>) -> SIMD16<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self)
    }
    @inline(__always) static func load8(_ p: UnsafeMutablePointer<Float>) -> SIMD8<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
    }
    @inline(__always) static func load4(_ p: UnsafeMutablePointer<Float>) -> SIMD4<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD4<Float>.self)
    }
    @inline(__always) static func store16(_ v: SIMD16<Float>, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD16<Float>.self)
    }
    @inline(__always) static func store8(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<Float>.self)
    }
    @inline(__always) static func store4(_ v: SIMD4<Float>, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD4<Float>.self)
    }
}
