/// Deformable convolution (DCNv1, and modulated DCNv2 when a mask is given), NCHW float32:
/// output[m][p] = bias[m] + sum over c, tap of weight[m][c][tap] * mask * bilinear(input[c], p + tap + offset).
/// Offset / mask channel order and the border rules are described on ConvGeometry and
/// DeformableBorder; `reference` (Reference/DeformConvReference.swift) is the test oracle.
///
/// `run`: input transposed once to channels-last rows; per tile of output pixels and per k block,
/// a sampling plan per (offset group, tap, pixel) -- four corner rows and four weights with the
/// mask folded in, computed 16 pixels at a time -- then a SIMD gather of 16 channels at a time
/// into a pixel-major panel that goes straight to the GEMM while it is in cache. Tiles are
/// spread over threads; nothing is allocated.
public enum DeformConv {
    public static func workspaceByteCount(_ g: ConvGeometry, _ d: DeformableOptions, threads: Int) -> Int {
        workspaceByteCount(g, d, threads: threads, engine: .preferred)
    }

    public static func run(
        _ g: ConvGeometry, _ d: DeformableOptions, input: UnsafePointer<Float>,
        weight: UnsafePointer<Float>, offset: UnsafePointer<Float>, mask: UnsafePointer<Float>?,
        bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>,
        workspace: UnsafeMutableRawPointer, parallel: Parallel
    ) {
        run(g, d, input: input, weight: weight, offset: offset, mask: mask, bias: bias, output: output,
            workspace: workspace, parallel: parallel, engine: .preferred)
    }

    /// Scratch bytes of `run(..., engine:)`.
    public static func workspaceByteCount(
        _ g: ConvGeometry, _ d: DeformableOptions, threads: Int, engine: ConvEngine
    ) -> Int {
        ChannelsLastConvPlan(g, engine: engine, threads: threads).byteCount
    }

    /// `run` with a chosen GEMM engine (the sampling is the same).
    public static func run(
        _ g: ConvGeometry, _ d: DeformableOptions, input: UnsafePointer<Float>,
        weight: UnsafePointer<Float>, offset: UnsafePointer<Float>, mask: UnsafePointer<Float>?,
        bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>,
        workspace: UnsafeMutableRawPointer, parallel: Parallel, engine: ConvEngine
    ) {
        // Sampling plans hold input rows as Int32 and convert coordinates below 2^22 exactly; inputs
        // beyond that (a 4M-pixel-wide plane) take the scalar path rather than a wrong one.
        if g.inHeight >= 1 << 22 || g.inWidth >= 1 << 22 || g.inHeight * g.inWidth >= 1 << 30 {
            reference(g, d, input: input, weight: weight, offset: offset, mask: mask, bias: bias, output: output)
            return
        }
        let plan = ChannelsLastConvPlan(g, engine: engine, threads: parallel.threads)
        let taps = g.kernelHeight * g.kernelWidth
        let offsetPerImage = d.offsetGroup * 2 * taps * plan.outPixels
        let maskPerImage = d.offsetGroup * taps * plan.outPixels
        let usedMask = d.hasMask ? mask : nil
        plan.run({ n in .deformable(d, offset: offset + n * offsetPerImage, mask: usedMask.map { $0 + n * maskPerImage }) },
                 input: input, weight: weight, bias: bias, output: output, workspace: workspace, parallel: parallel)
    }
}
