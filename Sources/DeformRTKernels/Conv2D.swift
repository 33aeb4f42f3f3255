/// 2-D convolution, NCHW float32: output = conv(input, weight) + bias.
///
/// `run` is the optimised path: 1x1 / stride 1 / no padding goes straight to GEMM on the input;
/// depthwise convolutions run directly (SIMD over output columns); 3x3 stride-1 ones on the packed
/// engine by Winograd's F(2x2, 3x3) (WinogradConvPlan); everything else is im2col into
/// a panel per tile of output pixels, then GEMM. Tiles are spread
/// over the threads of `parallel`, each with its own scratch in the caller's workspace. The GEMM
/// is `ConvEngine.preferred`. `reference` (Reference/ConvReference.swift) is the test oracle.
public enum Conv2D {
    /// Scratch bytes `run` needs for this geometry and thread count (0 allowed).
    public static func workspaceByteCount(_ g: ConvGeometry, threads: Int) -> Int {
        workspaceByteCount(g, threads: threads, engine: .preferred)
    }

    /// Optimised path: output = conv(input, weight) + bias. No allocation inside.
    public static func run(
        _ g: ConvGeometry, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>,
        workspace: UnsafeMutableRawPointer, parallel: Parallel, epilogue: ConvEpilogue = .none
    ) {
        run(g, input: input, weight: weight, bias: bias, output: output, workspace: workspace, parallel: parallel,
            engine: .preferred, epilogue: epilogue)
    }

    /// Scratch bytes of `run(..., engine:)`.
    public static func workspaceByteCount(_ g: ConvGeometry, threads: Int, engine: ConvEngine,
                                          layout: ConvDataLayout = .nchw) -> Int {
        if WinogradConvPlan.applies(g, engine: engine, layout: layout) {
            return WinogradConvPlan(g, threads: threads, layout: layout).byteCount
        }
        if usesChannelsLastPlan(g, engine: engine, layout: layout) {
            return ChannelsLastConvPlan(g, engine: engine, threads: threads, pointwise: isPointwise(g), layout: layout).byteCount
        }
        if runsDepthwiseChannelsLast(g, layout: layout) {
            // The weights are packed into the workspace first.
            return (DepthwiseConv.packedFloats(g) + DepthwiseConv.channelsLastScratchFloats(g, layout: layout))
                * MemoryLayout<Float>.stride
        }
        if DepthwiseConv.applies(g) { return 0 }
        let plan = BlasPlan(g, threads: threads)
        return plan.usesPanel ? plan.workers * plan.panelFloats * MemoryLayout<Float>.size : 0
    }

    /// `run` with a chosen GEMM engine. packedSIMD: input to channels-last rows (or read in place
    /// when it is channels-last already), im2col rows per pixel tile (none for pointwise), SIMD16
    /// micro-kernels. blas, NCHW: NCHW im2col panel per tile (none for pointwise), OpenBLAS sgemm
    /// straight into the output; blas with a channels-last layout runs the channels-last plan on
    /// sgemm. Depthwise convolutions take neither: a direct SIMD kernel, on NCHW data (no workspace)
    /// or, with a channel multiplier of 1, on channels-last data (DepthwiseConv.runChannelsLast).
    public static func run(
        _ g: ConvGeometry, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>,
        workspace: UnsafeMutableRawPointer, parallel: Parallel, engine: ConvEngine, epilogue: ConvEpilogue = .none,
        layout: ConvDataLayout = .nchw
    ) {
        if WinogradConvPlan.applies(g, engine: engine, layout: layout) {
            WinogradConvPlan(g, threads: parallel.threads, layout: layout)
                .run(input: input, weight: weight, bias: bias, output: output, workspace: workspace, parallel: parallel,
                     epilogue: epilogue)
            return
        }
        if usesChannelsLastPlan(g, engine: engine, layout: layout) {
            let pointwise = isPointwise(g)
            let plan = ChannelsLastConvPlan(g, engine: engine, threads: parallel.threads, pointwise: pointwise, layout: layout)
            plan.run({ _ in pointwise ? .pointwise : .im2col }, input: input, weight: weight, bias: bias,
                     output: output, workspace: workspace, parallel: parallel, epilogue: epilogue)
            return
        }
        if runsDepthwiseChannelsLast(g, layout: layout) {
            let packed = workspace.bindMemory(to: Float.self, capacity: DepthwiseConv.packedFloats(g)
                                              + DepthwiseConv.channelsLastScratchFloats(g, layout: layout))
            DepthwiseConv.pack(g, weight: weight, into: packed)
            DepthwiseConv.runChannelsLast(g, input: input, packedWeight: packed, bias: bias, output: output,
                                          scratch: packed + DepthwiseConv.packedFloats(g), parallel: parallel,
                                          epilogue: epilogue, layout: layout)
            return
        }
        if DepthwiseConv.applies(g) {
            DepthwiseConv.run(g, input: input, weight: weight, bias: bias, output: output, parallel: parallel)
            epilogue.apply(elements: g.batch * g.outChannels * g.outHeight * g.outWidth, output: output, parallel: parallel)
            return
        }
        let plan = BlasPlan(g, threads: parallel.threads)
        if plan.items == 0 { return }
        if plan.k == 0 {
            ConvBias.fill(g, bias: bias, output: output)
            epilogue.apply(elements: g.batch * g.outChannels * plan.outPixels, output: output, parallel: parallel)
            return
        }
        let panels = workspace.bindMemory(to: Float.self, capacity: plan.workers * plan.panelFloats)
        parallel.forEachRange(plan.items) { worker, items in
            let panel = panels + worker * plan.panelFloats
            for item in items {
                plan.runItem(item, input: input, weight: weight, bias: bias, output: output, panel: panel,
                             epilogue: epilogue)
            }
        }
    }

    // Constant weights can be packed once (e.g. when a session is created) instead of on every
    // call: packWeight writes them in the engine's order (OIHW unchanged for blas and for
    // depthwise convolutions), and the packedWeight variants of workspaceByteCount / run use them.

    /// Whether the channels-last plan runs this convolution: the packed engine, and every
    /// channels-last layout (the BLAS plan is NCHW only); never a depthwise convolution.
    static func usesChannelsLastPlan(_ g: ConvGeometry, engine: ConvEngine, layout: ConvDataLayout) -> Bool {
        (engine == .packedSIMD || layout != .nchw) && !DepthwiseConv.applies(g)
    }

    /// Whether `run` computes this convolution by Winograd's F(2x2, 3x3) (WinogradConvPlan): 3x3,
    /// stride 1, one group, at least 16 input channels, an output of at least 4 well-filled tiles,
    /// the packed engine, and not DEFORMRT_WINOGRAD=0. Its outputs differ from the direct sums by a
    /// few ulps of their magnitude.
    public static func runsWinograd(_ g: ConvGeometry, engine: ConvEngine = .preferred, layout: ConvDataLayout) -> Bool {
        WinogradConvPlan.applies(g, engine: engine, layout: layout)
    }

    /// Whether `layout` can run this convolution (depthwise convolutions with a channel
    /// multiplier above 1 are NCHW only).
    public static func supports(_ g: ConvGeometry, layout: ConvDataLayout) -> Bool {
        layout == .nchw || !DepthwiseConv.applies(g) || DepthwiseConv.runsChannelsLast(g)
    }

    /// A depthwise convolution (multiplier 1) with channels-last data on either side: the
    /// channels-last depthwise kernel, on weights packed [tap][channel].
    static func runsDepthwiseChannelsLast(_ g: ConvGeometry, layout: ConvDataLayout) -> Bool {
        layout != .nchw && DepthwiseConv.runsChannelsLast(g)
    }

    /// What `packWeight` writes for this geometry depends on (see ConvWeightPacking).
    public static func weightPacking(_ g: ConvGeometry, engine: ConvEngine = .preferred,
                                     layout: ConvDataLayout = .nchw) -> ConvWeightPacking {
        ConvWeightPacking(g, engine: engine, channelsLastPlan: usesChannelsLastPlan(g, engine: engine, layout: layout),
                          channelsLastDepthwise: runsDepthwiseChannelsLast(g, layout: layout),
                          winograd: WinogradConvPlan.applies(g, engine: engine, layout: layout))
    }

    /// Bytes `packWeight` writes for this geometry and engine.
    public static func packedWeightByteCount(_ g: ConvGeometry, engine: ConvEngine = .preferred,
                                             layout: ConvDataLayout = .nchw) -> Int {
        if WinogradConvPlan.applies(g, engine: engine, layout: layout) {
            return WinogradConvPlan(g, threads: 1, layout: layout).packedWeightFloats * MemoryLayout<Float>.stride
        }
        if usesChannelsLastPlan(g, engine: engine, layout: layout) {
            return ChannelsLastConvPlan(g, engine: engine, threads: 1, layout: layout).packedWeightByteCount
        }
        if runsDepthwiseChannelsLast(g, layout: layout) { return DepthwiseConv.packedFloats(g) * MemoryLayout<Float>.stride }
        return BlasPlan(g, threads: 1).weightFloats * MemoryLayout<Float>.stride
    }

    /// Packs OIHW `weight` into `packed` (packedWeightByteCount bytes, 64-byte aligned) for `engine`.
    public static func packWeight(
        _ g: ConvGeometry, weight: UnsafePointer<Float>, into packed: UnsafeMutableRawPointer,
        engine: ConvEngine = .preferred, parallel: Parallel = .serial, layout: ConvDataLayout = .nchw
    ) {
        let floats = packedWeightByteCount(g, engine: engine, layout: layout) / MemoryLayout<Float>.stride
        let destination = packed.bindMemory(to: Float.self, capacity: floats)
        if WinogradConvPlan.applies(g, engine: engine, layout: layout) {
            WinogradConvPlan(g, threads: parallel.threads, layout: layout)
                .packWeights(weight, into: destination, parallel: parallel)
        } else if usesChannelsLastPlan(g, engine: engine, layout: layout) {
            ChannelsLastConvPlan(g, engine: engine, threads: parallel.threads, layout: layout)
                .packWeights(weight, into: destination, parallel: parallel)
        } else if runsDepthwiseChannelsLast(g, layout: layout) {
            DepthwiseConv.pack(g, weight: weight, into: destination)
        } else {
            destination.update(from: weight, count: floats)
        }
    }

    /// Scratch bytes of `run(..., packedWeight: ...)`.
    public static func workspaceByteCount(
        _ g: ConvGeometry, threads: Int, packedWeight: Bool, engine: ConvEngine = .preferred,
        layout: ConvDataLayout = .nchw
    ) -> Int {
        if WinogradConvPlan.applies(g, engine: engine, layout: layout) {
            return WinogradConvPlan(g, threads: threads, weightsPrepacked: packedWeight, layout: layout).byteCount
        }
        if usesChannelsLastPlan(g, engine: engine, layout: layout) {
            return ChannelsLastConvPlan(g, engine: engine, threads: threads, pointwise: isPointwise(g),
                                        weightsPrepacked: packedWeight, layout: layout).byteCount
        }
        if packedWeight && runsDepthwiseChannelsLast(g, layout: layout) {
            return DepthwiseConv.channelsLastScratchFloats(g, layout: layout) * MemoryLayout<Float>.stride
        }
        return workspaceByteCount(g, threads: threads, engine: engine, layout: layout)
    }

    /// `run` on weights prepared by `packWeight` for the same geometry and engine.
    public static func run(
        _ g: ConvGeometry, input: UnsafePointer<Float>, packedWeight: UnsafeRawPointer,
        bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>,
        workspace: UnsafeMutableRawPointer, parallel: Parallel, engine: ConvEngine = .preferred,
        epilogue: ConvEpilogue = .none, layout: ConvDataLayout = .nchw
    ) {
        let weights = packedWeight.assumingMemoryBound(to: Float.self)
        if WinogradConvPlan.applies(g, engine: engine, layout: layout) {
            WinogradConvPlan(g, threads: parallel.threads, weightsPrepacked: true, layout: layout)
                .run(input: input, weight: weights, bias: bias, output: output, workspace: workspace, parallel: parallel,
                     epilogue: epilogue)
        } else if usesChannelsLastPlan(g, engine: engine, layout: layout) {
            let pointwise = isPointwise(g)
            let plan = ChannelsLastConvPlan(g, engine: engine, threads: parallel.threads, pointwise: pointwise,
                                            weightsPrepacked: true, layout: layout)
            plan.run({ _ in pointwise ? .pointwise : .im2col }, input: input, weight: weights, bias: bias,
                     output: output, workspace: workspace, parallel: parallel, epilogue: epilogue)
        } else if runsDepthwiseChannelsLast(g, layout: layout) {
            DepthwiseConv.runChannelsLast(g, input: input, packedWeight: weights, bias: bias, output: output,
                                          scratch: workspace.bindMemory(to: Float.self, capacity: DepthwiseConv
                                              .channelsLastScratchFloats(g, layout: layout)),
                                          parallel: parallel, epilogue: epilogue, layout: layout)
        } else {
            run(g, input: input, weight: weights, bias: bias, output: output, workspace: workspace,
                parallel: parallel, engine: engine, epilogue: epilogue)
        }
    }

    /// 1x1, stride 1, no padding: the input itself is the GEMM operand.
    static func isPointwise(_ g: ConvGeometry) -> Bool {
        g.kernelHeight == 1 && g.kernelWidth == 1 && g.strideHeight == 1 && g.strideWidth == 1
            && g.padTop == 0 && g.padLeft == 0 && g.outHeight == g.inHeight && g.outWidth == g.inWidth
    }
}

/// How `Conv2D.run` cuts one call into independent items (batch x group x column tile).
struct BlasPlan {
    let g: ConvGeometry
    let cinPerGroup: Int
    let coutPerGroup: Int
    let k: Int
    let outPixels: Int
    let tileColumns: Int
    let tilesPerImage: Int
    let items: Int
    let workers: Int
    let usesPanel: Bool
    var panelFloats: Int { usesPanel ? k * tileColumns : 0 }
    var weightFloats: Int { g.outChannels * k }

    init(_ g: ConvGeometry, threads: Int) {
        self.g = g
        cinPerGroup = g.inChannels / max(g.group, 1)
        coutPerGroup = g.outChannels / max(g.group, 1)
        k = cinPerGroup * g.kernelHeight * g.kernelWidth
        outPixels = max(g.outHeight, 0) * max(g.outWidth, 0)
        usesPanel = !Conv2D.isPointwise(g)
        tileColumns = BlasPlan.tileColumns(k: k, m: coutPerGroup, pixels: outPixels,
                                           images: g.batch * g.group, threads: threads)
        tilesPerImage = tileColumns == 0 ? 0 : (outPixels + tileColumns - 1) / tileColumns
        items = g.outChannels == 0 ? 0 : g.batch * g.group * tilesPerImage
        workers = max(1, min(threads, items))
    }

    /// Wide enough that GEMM amortises packing the weights (m x k) once per call, small enough
    /// that the panel stays near cache, and enough tiles to keep every thread busy.
    static func tileColumns(k: Int, m: Int, pixels: Int, images: Int, threads: Int) -> Int {
        if pixels == 0 { return 0 }
        var tile = max(128, min(1024, (1 << 18) / max(k, 1)))
        tile = (tile + 15) / 16 * 16
        let wanted = images == 0 ? 1 : max(1, (2 * threads + images - 1) / images)
        if (pixels + tile - 1) / tile < wanted {
            tile = max(64, ((pixels + wanted - 1) / wanted + 15) / 16 * 16)
        }
        return min(tile, pixels)
    }

    func runItem(
        _ item: Int, input: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
        output: UnsafeMutablePointer<Float>, panel: UnsafeMutablePointer<Float>, epilogue: ConvEpilogue
    ) {
        let tile = item % tilesPerImage
        let image = item / tilesPerImage
        let grp = image % g.group
        let n = image / g.group
        let n0 = tile * tileColumns
        let count = min(tileColumns, outPixels - n0)
        let plane0 = input + (n * g.inChannels + grp * cinPerGroup) * g.inHeight * g.inWidth
        let w = weight + grp * coutPerGroup * k
        let c = output + (n * g.outChannels + grp * coutPerGroup) * outPixels + n0
        if usesPanel {
            ConvIm2col.fill(g, plane0: plane0, channels: cinPerGroup, panel: panel, ld: count, n0: n0, count: count)
            Gemm.sgemm(m: coutPerGroup, n: count, k: k, a: w, lda: k, b: panel, ldb: count, c: c, ldc: outPixels)
        } else {
            Gemm.sgemm(m: coutPerGroup, n: count, k: k, a: w, lda: k, b: plane0 + n0, ldb: outPixels,
                       c: c, ldc: outPixels)
        }
        if let bias {
            ConvBias.add(bias + grp * coutPerGroup, rows: coutPerGroup, to: c, ld: outPixels, count: count)
        }
        epilogue.shifted(by: c - output).apply(rows: coutPerGroup, count: count, stride: outPixels, output: c)
    }
}

/// The parts of a convolution's geometry its packed weights depend on. The packing reads the
/// channel counts, the group and the taps, never the input size or the batch, so the same layer
/// planned for another input shape packs the same bytes and a re-plan reuses them.
public struct ConvWeightPacking: Equatable, Sendable {
    let channelsLastPlan: Bool
    let channelsLastDepthwise: Bool
    let winograd: Bool
    let engine: ConvEngine
    let group, inChannels, outChannels, kernelHeight, kernelWidth: Int

    init(_ g: ConvGeometry, engine: ConvEngine, channelsLastPlan: Bool, channelsLastDepthwise: Bool = false,
         winograd: Bool = false) {
        self.channelsLastPlan = channelsLastPlan
        self.channelsLastDepthwise = channelsLastDepthwise
        self.winograd = winograd
        self.engine = engine
        group = g.group
        inChannels = g.inChannels
        outChannels = g.outChannels
        kernelHeight = g.kernelHeight
        kernelWidth = g.kernelWidth
    }
}
