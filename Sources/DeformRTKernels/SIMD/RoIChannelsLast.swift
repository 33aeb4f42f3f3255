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
                ConvLayout.channelsLast(
                    source(group), channels: channels, planeSize: channelStride, pixels: p0..<min(p0 + chunk, pixels),
                    rows: destination + group * pixels * channels, rowStride: channels)
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
