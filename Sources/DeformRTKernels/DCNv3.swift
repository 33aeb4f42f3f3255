/// DCNv3 (InternImage): group-wise deformable sampling on channels-last input, no weights inside
/// the op. input [N, H, W, G*Gc], offset [N, Ho, Wo, G*P*2] ((x, y) per point), mask
/// [N, Ho, Wo, G*P] -> output [N, Ho, Wo, G*Gc]:
///
///     out[n, oy, ox, g*Gc + c] = sum over points k of mask[n, oy, ox, g*P + k]
///                                * bilinear(input[n, :, :, g*Gc + c], loc_y, loc_x)
///     loc_x = (half_w - pad_w + ox * stride_w) - half_w * offset_scale + (i * dilation_w + dx) * offset_scale
///     loc_y = (half_h - pad_h + oy * stride_h) - half_h * offset_scale + (j * dilation_h + dy) * offset_scale
///
/// with half = (dilation * (kernel - 1)) / 2, point k = (i, j) in the order `for i < kernel_w:
/// for j < kernel_h` minus the centre (kernel_w / 2, kernel_h / 2) when remove_center, and each
/// corner outside the input reading 0. This is InternImage's CUDA kernel
/// (classification/ops_dcnv3/src/cuda/dcnv3_im2col_cuda.cuh, dcnv3_im2col_gpu_kernel), in its
/// float arithmetic; points with loc outside (-1, H) x (-1, W) are skipped (so a non-finite mask
/// there adds nothing). `dcnv3_core_pytorch` differs where it pads H by pad_w and W by pad_h;
/// the kernel (followed here) pads H by pad_h. tools/deformable_attention_reference.py is the
/// NumPy oracle.
///
/// `run`: per output pixel, the plans of its G*P points are made 16 at a time by
/// `DeformableSampling.planVector` (the deformable convolutions' bilinear plan) and each point's
/// Gc channels are accumulated into the pixel's output row 16 at a time. Pixels are spread over
/// threads; nothing is allocated.
public struct DCNv3Params: Sendable, Equatable {
    public var batch: Int
    public var height: Int
    public var width: Int
    public var kernelHeight: Int
    public var kernelWidth: Int
    public var strideHeight: Int
    public var strideWidth: Int
    public var padHeight: Int
    public var padWidth: Int
    public var dilationHeight: Int
    public var dilationWidth: Int
    public var group: Int
    public var groupChannels: Int
    public var offsetScale: Float
    public var removeCenter: Bool

    public init(batch: Int, height: Int, width: Int, kernelHeight: Int, kernelWidth: Int, strideHeight: Int,
                strideWidth: Int, padHeight: Int, padWidth: Int, dilationHeight: Int, dilationWidth: Int,
                group: Int, groupChannels: Int, offsetScale: Float, removeCenter: Bool) {
        self.batch = batch
        self.height = height
        self.width = width
        self.kernelHeight = kernelHeight
        self.kernelWidth = kernelWidth
        self.strideHeight = strideHeight
        self.strideWidth = strideWidth
        self.padHeight = padHeight
        self.padWidth = padWidth
        self.dilationHeight = dilationHeight
        self.dilationWidth = dilationWidth
        self.group = group
        self.groupChannels = groupChannels
        self.offsetScale = offsetScale
        self.removeCenter = removeCenter
    }

    public var channels: Int { group * groupChannels }
    public var points: Int { kernelHeight * kernelWidth - (removeCenter ? 1 : 0) }
    /// The CUDA kernel's output size (dcnv3_cuda.cu).
    public var outHeight: Int { (height + 2 * padHeight - (dilationHeight * (kernelHeight - 1) + 1)) / strideHeight + 1 }
    public var outWidth: Int { (width + 2 * padWidth - (dilationWidth * (kernelWidth - 1) + 1)) / strideWidth + 1 }

    /// Why these sizes cannot run (nil: they can). Window values are bounded by the op layer.
    public var invalidReason: String? {
        if kernelHeight < 1 || kernelWidth < 1 || strideHeight < 1 || strideWidth < 1 || dilationHeight < 1
            || dilationWidth < 1 || padHeight < 0 || padWidth < 0 || group < 1 || groupChannels < 1 {
            return "kernel, stride, dilation, group and group_channels must be positive and pads non-negative"
        }
        if points < 1 { return "remove_center leaves no sampling point in a 1 x 1 kernel" }
        if height + 2 * padHeight < dilationHeight * (kernelHeight - 1) + 1
            || width + 2 * padWidth < dilationWidth * (kernelWidth - 1) + 1 {
            return "the padded input \(height + 2 * padHeight) x \(width + 2 * padWidth) is smaller than the dilated kernel"
        }
        if height >= 1 << 22 || width >= 1 << 22 || height * width >= 1 << 30 {
            return "input plane \(height) x \(width) is too large for the sampler (at most 2^22 rows or columns and 2^30 pixels)"
        }
        return nil
    }
}

public enum DCNv3 {
    /// Per thread: point tables (x and y tap positions), a 16-point plan, lane scratch, a zero row.
    static func perThreadBytes(_ p: DCNv3Params) -> Int {
        let flat = (p.group * p.points + 15) & ~15
        return (flat * 8 + 16 * 8 * 4 + 48 * 4 + p.groupChannels * 4 + 63) & ~63
    }

    public static func workspaceByteCount(_ p: DCNv3Params, threads: Int) -> Int {
        max(1, threads) * perThreadBytes(p) + 64
    }

    public static func run(
        _ p: DCNv3Params, input: UnsafePointer<Float>, offset: UnsafePointer<Float>, mask: UnsafePointer<Float>,
        output: UnsafeMutablePointer<Float>, workspace: UnsafeMutableRawPointer, parallel: Parallel
    ) {
        let outPixels = p.outHeight * p.outWidth
        let c = p.channels, gc = p.groupChannels, points = p.points, flat = p.group * points
        let total = p.batch * outPixels
        if total == 0 || c == 0 { return }
        let base = UnsafeMutableRawPointer(bitPattern: (Int(bitPattern: workspace) + 63) & ~63)!
        let stride = perThreadBytes(p)
        let padded = (flat + 15) & ~15
        let halfH = (p.dilationHeight * (p.kernelHeight - 1)) >> 1
        let halfW = (p.dilationWidth * (p.kernelWidth - 1)) >> 1
        let scale = p.offsetScale
        let h = Float(p.height), w = Float(p.width)
        let hV = SIMD16<Float>(repeating: h), wV = SIMD16<Float>(repeating: w)
        let zeroRow = Int32(p.height * p.width)
        let imageFloats = p.height * p.width * c
        parallel.forEachRange(total, totalWork: total * flat * (gc + 16)) { worker, range in
            let mine = base + worker * stride
            let tapX = mine.bindMemory(to: Float.self, capacity: 2 * padded)
            let tapY = tapX + padded
            let index = (mine + padded * 8).bindMemory(to: Int32.self, capacity: 64)
            let weight = (mine + padded * 8 + 256).bindMemory(to: Float.self, capacity: 64)
            let lane = (mine + padded * 8 + 512).bindMemory(to: Float.self, capacity: 48)
            let zero = (mine + padded * 8 + 512 + 192).bindMemory(to: Float.self, capacity: gc)
            zero.update(repeating: 0, count: gc)
            // Tap positions (i * dilation_w, j * dilation_h) of every (group, point), CUDA order.
            var k = 0
            for i in 0..<p.kernelWidth {
                for j in 0..<p.kernelHeight where !(p.removeCenter && i == p.kernelWidth / 2 && j == p.kernelHeight / 2) {
                    for g in 0..<p.group {
                        tapX[g * points + k] = Float(i * p.dilationWidth)
                        tapY[g * points + k] = Float(j * p.dilationHeight)
                    }
                    k += 1
                }
            }
            for t in range {
                let n = t / outPixels
                let pixel = t - n * outPixels
                let oy = pixel / p.outWidth, ox = pixel - oy * p.outWidth
                // p0_w_ = p0_w - half_w * offset_scale, in the kernel's order of operations.
                let x0 = Float(halfW - p.padWidth + ox * p.strideWidth) - Float(halfW) * scale
                let y0 = Float(halfH - p.padHeight + oy * p.strideHeight) - Float(halfH) * scale
                let off = offset + t * flat * 2
                let m = mask + t * flat
                let out = output + t * c
                // Group channels a multiple of 16 up to 64 (InternImage's 16 and 32): each group's
                // row summed in registers and stored once; otherwise summed in the output row.
                let inRegisters = SampleGather.RegisterRow.fits(gc)
                var registers = SampleGather.RegisterRow()
                if !inRegisters { out.update(repeating: 0, count: c) }
                let image = input + n * imageFloats
                var j0 = 0
                while j0 < flat {
                    let count = min(16, flat - j0)
                    if count == 16 {
                        // Sixteen (x, y) offset pairs split into x and y vectors, then the
                        // positions and the inside test 16 lanes at a time.
                        let o = UnsafeRawPointer(off + j0 * 2)
                        let (xa, ya) = ConvLayout.unzip(o.loadUnaligned(as: SIMD8<Float>.self),
                                                        o.loadUnaligned(fromByteOffset: 32, as: SIMD8<Float>.self))
                        let (xb, yb) = ConvLayout.unzip(o.loadUnaligned(fromByteOffset: 64, as: SIMD8<Float>.self),
                                                        o.loadUnaligned(fromByteOffset: 96, as: SIMD8<Float>.self))
                        let tx = UnsafeRawPointer(tapX + j0).loadUnaligned(as: SIMD16<Float>.self)
                        let ty = UnsafeRawPointer(tapY + j0).loadUnaligned(as: SIMD16<Float>.self)
                        let scaleV = SIMD16<Float>(repeating: scale)
                        let x = SIMD16<Float>(repeating: x0) + (tx + SIMD16<Float>(lowHalf: xa, highHalf: xb)) * scaleV
                        let y = SIMD16<Float>(repeating: y0) + (ty + SIMD16<Float>(lowHalf: ya, highHalf: yb)) * scaleV
                        let minusOne = SIMD16<Float>(repeating: -1)
                        let inside = DeformableSampling.lanes(y .> minusOne) & DeformableSampling.lanes(y .< hV)
                            & DeformableSampling.lanes(x .> minusOne) & DeformableSampling.lanes(x .< wV)
                        let mv = UnsafeRawPointer(m + j0).loadUnaligned(as: SIMD16<Float>.self)
                        let lp = UnsafeMutableRawPointer(lane)
                        lp.storeBytes(of: x, as: SIMD16<Float>.self)
                        lp.storeBytes(of: y, toByteOffset: 64, as: SIMD16<Float>.self)
                        lp.storeBytes(of: DeformableSampling.select(inside, mv, SIMD16<Float>()), toByteOffset: 128,
                                      as: SIMD16<Float>.self)
                    } else {
                        for l in 0..<16 {
                            let j = j0 + min(l, count - 1)
                            let x = x0 + (tapX[j] + off[j * 2]) * scale
                            let y = y0 + (tapY[j] + off[j * 2 + 1]) * scale
                            lane[l] = x
                            lane[16 + l] = y
                            // Points outside are skipped by the kernel: weight 0 whatever the mask.
                            lane[32 + l] = y > -1 && y < h && x > -1 && x < w ? m[j] : 0
                        }
                    }
                    let raw = UnsafeRawPointer(lane)
                    DeformableSampling.planVector(
                        border: .zeroOutsideCorners, height: p.height, width: p.width,
                        y: raw.loadUnaligned(fromByteOffset: 64, as: SIMD16<Float>.self),
                        x: raw.loadUnaligned(as: SIMD16<Float>.self),
                        mask: raw.loadUnaligned(fromByteOffset: 128, as: SIMD16<Float>.self), zeroRow: zeroRow,
                        index: index, weight: weight, stride: 16)
                    // The group of point j0 + l, stepped rather than divided per point.
                    var g = j0 / points
                    var k = j0 - g * points
                    for l in 0..<count {
                        if inRegisters {
                            registers.add(SampleGather.Point(rows: image + g &* gc, rowStride: c, index: index + l,
                                                             weight: weight + l, stride: 16, zeroRow: zeroRow,
                                                             zero: zero), vectors: gc >> 4)
                            // A group's points are consecutive: its row is complete after its last.
                            if k == points &- 1 { registers.store(to: out + g &* gc, vectors: gc >> 4) }
                        } else {
                            SampleGather.corners(rows: image + g * gc, rowStride: c, channels: gc, index: index + l,
                                                 weight: weight + l, stride: 16, zeroRow: zeroRow, zero: zero,
                                                 out: out + g * gc, accumulate: true)
                        }
                        k &+= 1
                        if k == points {
                            k = 0
                            g &+= 1
                        }
                    }
                    j0 += 16
                }
            }
        }
    }
}
