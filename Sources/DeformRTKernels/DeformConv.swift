/// Deformable convolution (DCNv1, and modulated DCNv2 when a mask is given), NCHW float32:
/// output[m][p] = bias[m] + sum over c, tap of weight[m][c][tap] * mask * bilinear(input[c], p + tap + offset).
/// Offset / mask channel order and the border rules are described on ConvGeometry and
/// DeformableBorder; `reference` (Reference/DeformConvReference.swift) is the test oracle.
///
/// DeformConvPlan runs it: input transposed once to channels-last rows (or read in place); per
/// tile of output pixels, a sampling plan per (offset group, tap, pixel) -- four corner rows and
/// four weights with the mask folded in, computed 16 pixels at a time -- then a SIMD gather of 16
/// channels at a time into a pixel-major panel that the GEMM micro-kernel consumes while it is in
/// cache. When the whole K fits one panel (e.g. 64 channels, 3x3), the gather of each 6-pixel
/// group runs inside the micro-kernel of the group before it, hiding its cache misses behind the
/// FMAs; otherwise each k block's panel is gathered and then multiplied. Tiles are spread over
/// threads; nothing is allocated.
public enum DeformConv {
    /// Whether `run` samples this input with its SIMD plans, which hold input rows as Int32 and
    /// convert coordinates below 2^22 exactly: planes up to 4M rows or columns and 2^30 pixels.
    /// Larger planes go to the scalar reference (raw weights) or are refused (packed weights).
    public static func supportsSampling(_ g: ConvGeometry) -> Bool {
        g.inHeight < 1 << 22 && g.inWidth < 1 << 22 && g.inHeight * g.inWidth < 1 << 30
    }

    // Constant weights can be packed once (e.g. when a session is created) instead of on every
    // call: packWeight writes them in the engine's order for a DeformConvPlan made with
    // `weightsPrepacked`, skipping a pass over all weights per run. The packing depends on
    // neither the layout nor the thread count.

    /// What `packWeight` writes for this geometry depends on (see ConvWeightPacking).
    public static func weightPacking(_ g: ConvGeometry, engine: ConvEngine = .preferred) -> ConvWeightPacking {
        ConvWeightPacking(g, engine: engine, channelsLastPlan: true)
    }

    /// Bytes `packWeight` writes for this geometry and engine.
    public static func packedWeightByteCount(_ g: ConvGeometry, engine: ConvEngine = .preferred) -> Int {
        ChannelsLastConvPlan(g, engine: engine, threads: 1).packedWeightByteCount
    }

    /// Packs OIHW `weight` into `packed` (packedWeightByteCount bytes, 64-byte aligned) for `engine`.
    public static func packWeight(
        _ g: ConvGeometry, weight: UnsafePointer<Float>, into packed: UnsafeMutableRawPointer,
        engine: ConvEngine = .preferred, parallel: Parallel = .serial
    ) {
        let plan = ChannelsLastConvPlan(g, engine: engine, threads: parallel.threads)
        let floats = plan.packedWeightByteCount / MemoryLayout<Float>.stride
        plan.packWeights(weight, into: packed.bindMemory(to: Float.self, capacity: floats), parallel: parallel)
    }
}

/// What DeformConv computes one geometry with, decided once for an engine, layout, thread count
/// and weight form: the channels-last plan that samples and multiplies, or, for planes too large
/// for its sampling plans, the scalar reference. An operator makes it with its plan and hands it
/// to every run (ConvRunState).
public struct DeformConvPlan {
    public let geometry: ConvGeometry
    public let options: DeformableOptions
    /// The threads the tiles and per-thread scratch are planned for; `run` takes a Parallel of as many.
    public let threads: Int
    /// nil: the plane is too large for the SIMD sampling plans (DeformConv.supportsSampling).
    let sampling: ChannelsLastConvPlan?
    let weightsPrepacked: Bool
    let layout: ConvDataLayout

    public init(_ g: ConvGeometry, _ d: DeformableOptions, threads: Int, engine: ConvEngine = .preferred,
                layout: ConvDataLayout = .nchw, weightsPrepacked: Bool = false) {
        geometry = g
        options = d
        self.threads = threads
        self.weightsPrepacked = weightsPrepacked
        self.layout = layout
        sampling = DeformConv.supportsSampling(g)
            ? ChannelsLastConvPlan(g, engine: engine, threads: threads, weightsPrepacked: weightsPrepacked,
                                   offsetGroup: d.offsetGroup, layout: layout)
            : nil
    }

    /// Scratch bytes `run` needs (0 allowed).
    public var workspaceByteCount: Int { sampling?.byteCount ?? 0 }

    /// output = deformable conv + bias, then `epilogue`; no allocation inside. `weight` is OIHW,
    /// or the output of DeformConv.packWeight when `weightsPrepacked`; the
    /// reference path (planes too large to sample) takes OIHW weights and NCHW data only.
    public func run(
        input: UnsafePointer<Float>, weight: UnsafePointer<Float>, offset: UnsafePointer<Float>,
        mask: UnsafePointer<Float>?, bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>,
        workspace: UnsafeMutableRawPointer, parallel: Parallel, epilogue: ConvEpilogue = .none
    ) {
        // The per-thread scratch was sized for `threads`.
        precondition(parallel.threads == threads, "DeformConvPlan: planned for \(threads) threads, run on \(parallel.threads)")
        let g = geometry, d = options
        guard let plan = sampling else {
            precondition(layout == .nchw && !weightsPrepacked,
                         "DeformConv: planes too large for the sampling plan take NCHW data and OIHW weights")
            DeformConv.reference(g, d, input: input, weight: weight, offset: offset, mask: mask, bias: bias, output: output)
            epilogue.apply(elements: g.batch * g.outChannels * g.outHeight * g.outWidth, output: output, parallel: parallel)
            return
        }
        let taps = g.kernelHeight * g.kernelWidth
        let offsetPerImage = d.offsetGroup * 2 * taps * plan.outPixels
        let maskPerImage = d.offsetGroup * taps * plan.outPixels
        let usedMask = d.hasMask ? mask : nil
        plan.run({ n in .deformable(d, offset: offset + n * offsetPerImage, mask: usedMask.map { $0 + n * maskPerImage }) },
                 input: input, weight: weight, bias: bias, output: output, workspace: workspace, parallel: parallel,
                 epilogue: epilogue)
    }
}
