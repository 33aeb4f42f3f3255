/// 2-D convolution, NCHW or channels-last float32: output = conv(input, weight) + bias.
///
/// Conv2DPlan runs it: 1x1 / stride 1 / no padding goes straight to GEMM on the input; depthwise
/// convolutions run directly (SIMD over output columns); 3x3 stride-1 ones on the packed engine
/// by Winograd's F(2x2, 3x3) (WinogradConvPlan); everything else is im2col (or rows read through
/// pointers) per tile of output pixels, then GEMM. Tiles are spread over the threads of
/// `parallel`, each with its own scratch in the caller's workspace. The GEMM is
/// `ConvEngine.preferred` unless the plan is given another. This enum says which path a geometry
/// takes; `reference` (Reference/ConvReference.swift) is the test oracle.
public enum Conv2D {
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

    /// 1x1, stride 1, no padding: the input itself is the GEMM operand.
    static func isPointwise(_ g: ConvGeometry) -> Bool {
        g.kernelHeight == 1 && g.kernelWidth == 1 && g.strideHeight == 1 && g.strideWidth == 1
            && g.padTop == 0 && g.padLeft == 0 && g.outHeight == g.inHeight && g.outWidth == g.inWidth
    }
}

/// What Conv2D computes one geometry with, for one engine, layout, thread count and weight form,
/// decided once: the path (Winograd, the channels-last plan, a depthwise kernel, or im2col +
/// OpenBLAS) and that path's own plan (tiles, workspace regions, Winograd's block count). An
/// operator makes it with its plan and hands it to every run (ConvRunState). Constant weights
/// can be packed once (packWeight) for a plan made with `weightsPrepacked`, skipping a pass over
/// every weight per run.
public struct Conv2DPlan {
    enum Path {
        case winograd(WinogradConvPlan)
        case channelsLast(ChannelsLastConvPlan, pointwise: Bool)
        case depthwiseChannelsLast
        case depthwise
        case blas(BlasPlan)
    }

    public let geometry: ConvGeometry
    /// The threads the tiles and per-thread scratch are planned for; `run` takes a Parallel of as many.
    public let threads: Int
    /// `run` takes the output of `packWeight` (else OIHW weights, packed into the workspace per run).
    public let weightsPrepacked: Bool
    let layout: ConvDataLayout
    let path: Path

    public init(_ g: ConvGeometry, threads: Int, engine: ConvEngine = .preferred, layout: ConvDataLayout = .nchw,
                weightsPrepacked: Bool = false) {
        geometry = g
        self.threads = threads
        self.weightsPrepacked = weightsPrepacked
        self.layout = layout
        if WinogradConvPlan.applies(g, engine: engine, layout: layout) {
            path = .winograd(WinogradConvPlan(g, threads: threads, weightsPrepacked: weightsPrepacked, layout: layout))
        } else if Conv2D.usesChannelsLastPlan(g, engine: engine, layout: layout) {
            let pointwise = Conv2D.isPointwise(g)
            path = .channelsLast(ChannelsLastConvPlan(g, engine: engine, threads: threads, pointwise: pointwise,
                                                      weightsPrepacked: weightsPrepacked, layout: layout),
                                 pointwise: pointwise)
        } else if Conv2D.runsDepthwiseChannelsLast(g, layout: layout) {
            path = .depthwiseChannelsLast
        } else if DepthwiseConv.applies(g) {
            path = .depthwise
        } else {
            path = .blas(BlasPlan(g, threads: threads))
        }
    }

    /// Scratch bytes `run` needs (0 allowed).
    public var workspaceByteCount: Int {
        let floats: Int
        switch path {
        case .winograd(let plan): return plan.byteCount
        case .channelsLast(let plan, _): return plan.byteCount
        case .depthwiseChannelsLast:
            // Raw weights are packed into the workspace first.
            floats = (weightsPrepacked ? 0 : DepthwiseConv.packedFloats(geometry))
                + DepthwiseConv.channelsLastScratchFloats(geometry, layout: layout)
        case .depthwise: floats = 0
        case .blas(let plan): floats = plan.usesPanel ? plan.workers * plan.panelFloats : 0
        }
        return floats * MemoryLayout<Float>.stride
    }

    /// Bytes `packWeight` writes.
    public var packedWeightByteCount: Int {
        let floats: Int
        switch path {
        case .winograd(let plan): floats = plan.packedWeightFloats
        case .channelsLast(let plan, _): return plan.packedWeightByteCount
        case .depthwiseChannelsLast: floats = DepthwiseConv.packedFloats(geometry)
        case .depthwise, .blas: floats = BlasPlan.weightFloats(geometry)
        }
        return floats * MemoryLayout<Float>.stride
    }

    /// Packs OIHW `weight` into `packed` (packedWeightByteCount bytes, 64-byte aligned) in this
    /// path's order (OIHW unchanged for OpenBLAS and NCHW depthwise convolutions).
    public func packWeight(_ weight: UnsafePointer<Float>, into packed: UnsafeMutableRawPointer,
                           parallel: Parallel = .serial) {
        let floats = packedWeightByteCount / MemoryLayout<Float>.stride
        let destination = packed.bindMemory(to: Float.self, capacity: floats)
        switch path {
        case .winograd(let plan): plan.packWeights(weight, into: destination, parallel: parallel)
        case .channelsLast(let plan, _): plan.packWeights(weight, into: destination, parallel: parallel)
        case .depthwiseChannelsLast: DepthwiseConv.pack(geometry, weight: weight, into: destination)
        case .depthwise, .blas: destination.update(from: weight, count: floats)
        }
    }

    /// output = conv(input, weight) + bias, then `epilogue`. `weight` is OIHW, or the output of
    /// `packWeight` when `weightsPrepacked`. No allocation inside.
    public func run(
        input: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
        output: UnsafeMutablePointer<Float>, workspace: UnsafeMutableRawPointer, parallel: Parallel,
        epilogue: ConvEpilogue = .none
    ) {
        // The per-thread scratch was sized for `threads`.
        precondition(parallel.threads == threads, "Conv2DPlan: planned for \(threads) threads, run on \(parallel.threads)")
        let g = geometry
        switch path {
        case .winograd(let plan):
            plan.run(input: input, weight: weight, bias: bias, output: output, workspace: workspace, parallel: parallel,
                     epilogue: epilogue)
        case .channelsLast(let plan, let pointwise):
            plan.run({ _ in pointwise ? .pointwise : .im2col }, input: input, weight: weight, bias: bias,
                     output: output, workspace: workspace, parallel: parallel, epilogue: epilogue)
        case .depthwiseChannelsLast:
            let packedFloats = weightsPrepacked ? 0 : DepthwiseConv.packedFloats(g)
            let scratch = workspace.bindMemory(
                to: Float.self, capacity: packedFloats + DepthwiseConv.channelsLastScratchFloats(g, layout: layout))
            if !weightsPrepacked { DepthwiseConv.pack(g, weight: weight, into: scratch) }
            DepthwiseConv.runChannelsLast(g, input: input, packedWeight: weightsPrepacked ? weight : UnsafePointer(scratch),
                                          bias: bias, output: output, scratch: scratch + packedFloats,
                                          parallel: parallel, epilogue: epilogue, layout: layout)
        case .depthwise:
            DepthwiseConv.run(g, input: input, weight: weight, bias: bias, output: output, parallel: parallel)
            epilogue.apply(elements: g.batch * g.outChannels * g.outHeight * g.outWidth, output: output, parallel: parallel)
        case .blas(let plan):
            plan.run(input: input, weight: weight, bias: bias, output: output, workspace: workspace, parallel: parallel,
                     epilogue: epilogue)
        }
    }
}

/// How the OpenBLAS path (Conv2DPlan) cuts one call into independent items (batch x group x column tile).
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
    /// OIHW weight floats: what the OpenBLAS path reads.
    static func weightFloats(_ g: ConvGeometry) -> Int {
        g.outChannels * g.inChannels / max(g.group, 1) * g.kernelHeight * g.kernelWidth
    }

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

    /// NCHW im2col panel per tile (none for pointwise), OpenBLAS sgemm straight into the output.
    func run(
        input: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
        output: UnsafeMutablePointer<Float>, workspace: UnsafeMutableRawPointer, parallel: Parallel,
        epilogue: ConvEpilogue
    ) {
        if items == 0 { return }
        if k == 0 {
            ConvBias.fill(g, bias: bias, output: output)
            epilogue.apply(elements: g.batch * g.outChannels * outPixels, output: output, parallel: parallel)
            return
        }
        let panels = workspace.bindMemory(to: Float.self, capacity: workers * panelFloats)
        parallel.forEachRange(items) { worker, items in
            let panel = panels + worker * panelFloats
            for item in items {
                runItem(item, input: input, weight: weight, bias: bias, output: output, panel: panel, epilogue: epilogue)
            }
        }
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
