/// Deformable RoI pooling (DCNv1 section 2.2 with DCNv2's sampling grid) and its modulated form
/// (DCNv2 section 3.2, eq. 2), as mmcv computes them: ONNX ops mmcv::MMCVDeformRoIPool and
/// mmcv::MMCVModulatedDeformRoIPool, NCHW float32.
///
///   input   [batch, channels, height, width]
///   rois    [roiCount, 5]  (batch_index, x1, y1, x2, y2) in input-image coordinates
///   offset  [roiCount, 2, pooledHeight, pooledWidth] normalised (x plane, then y plane); optional
///   mask    [roiCount, 1, pooledHeight, pooledWidth]; optional (modulated form)
///   output  [roiCount, channels, pooledHeight, pooledWidth]
public struct DeformRoIPoolParams: Sendable, Equatable {
    public var batch: Int
    public var channels: Int
    public var height: Int
    public var width: Int
    public var roiCount: Int
    public var pooledHeight: Int
    public var pooledWidth: Int
    public var spatialScale: Float
    /// Samples per bin along each axis; 0 = adaptive, ceil(roi_extent / pooled_extent). mmcv's
    /// exporter writes it as a float attribute; the kernel casts it to int, so callers pass Int(v).
    public var samplingRatio: Int
    /// Scale of the normalised offsets: a bin moves by gamma * offset * (roi width, roi height).
    public var gamma: Float

    public init(
        batch: Int, channels: Int, height: Int, width: Int, roiCount: Int,
        pooledHeight: Int, pooledWidth: Int, spatialScale: Float = 1, samplingRatio: Int = 0,
        gamma: Float = 0.1
    ) {
        self.batch = batch
        self.channels = channels
        self.height = height
        self.width = width
        self.roiCount = roiCount
        self.pooledHeight = pooledHeight
        self.pooledWidth = pooledWidth
        self.spatialScale = spatialScale
        self.samplingRatio = samplingRatio
        self.gamma = gamma
    }

    /// Why these parameters cannot run, or nil (callers report it; the kernels trap on it).
    public var invalidReason: String? {
        if let reason = RoIParameterCheck.dimensions("DeformRoIPool", batch, channels, height, width, roiCount) {
            return reason
        }
        if pooledHeight < 1 || pooledWidth < 1 { return "DeformRoIPool: output size must be >= 1" }
        if let reason = RoIParameterCheck.samplingRatio("DeformRoIPool", "sampling_ratio", samplingRatio, lowest: 0) {
            return reason
        }
        if !spatialScale.isFinite || !gamma.isFinite { return "DeformRoIPool: spatial_scale and gamma must be finite" }
        return nil
    }
}

extension DeformRoIPoolParams: RoIPoolingShape {
    var mapChannels: Int { channels }
    var pooledChannels: Int { channels }
    var bins: Int { pooledHeight * pooledWidth }
}

/// mmcv deform_roi_pool: mmcv/ops/csrc/common/cuda/deform_roi_pool_cuda_kernel.cuh
/// (deform_roi_pool_forward_cuda_kernel) with common_cuda_helper.hpp's bilinear_interpolate; the
/// modulated form multiplies each pooled bin by its mask, as ModulatedDeformRoIPoolPack does.
/// Corners are scaled and shifted by -0.5 without rounding, so zero offsets give exactly
/// `RoiAlign` half_pixel average (tested).
///
/// Defined results (see RoISampling.swift): a batch index outside the batch or a non-finite corner
/// gives zeros for that RoI; a non-finite offset moves its bin off the map (0, times the mask);
/// mask values multiply as they are.
public enum DeformRoIPool {
    public static func workspaceByteCount(_ params: DeformRoIPoolParams, threads: Int) -> Int {
        params.workspaceByteCount(threads: threads)
    }

    /// Optimised path; `offset` nil = zero offsets, `mask` nil = no modulation.
    public static func run(
        _ params: DeformRoIPoolParams, input: UnsafePointer<Float>, rois: UnsafePointer<Float>,
        offset: UnsafePointer<Float>?, mask: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>,
        workspace: UnsafeMutableRawBufferPointer, parallel: Parallel
    ) {
        let channels = params.channels, height = params.height, width = params.width
        let pixels = params.pixels, bins = params.bins
        RoIWorkspace.forEachRoI(
            params, images: input, output: output, workspace: workspace, parallel: parallel
        ) { r, map, scratch in
            guard let n = roiBatch(rois[5 * r], batch: params.batch), let box = box(params, rois + 5 * r)
            else { return false }
            let image = map + n * pixels * channels
            for bin in 0..<bins {
                let (shiftX, shiftY) = shift(params, box, offset, roi: r, bin: bin)
                let pooled = scratch.roi + bin * channels
                RoIAlignBins.pool(
                    box, ph: bin / params.pooledWidth, pw: bin % params.pooledWidth,
                    shiftX: shiftX, shiftY: shiftY, maximum: false, image: image, height: height,
                    width: width, channels: channels, into: pooled, table: &scratch.table)
                if let mask {
                    let m = mask[r * bins + bin]
                    for c in 0..<channels { pooled[c] *= m }
                }
            }
            return true
        }
    }

    static func box(_ params: DeformRoIPoolParams, _ roi: UnsafePointer<Float>) -> RoIAlignBox? {
        RoIAlignBox(
            x1: roi[1], y1: roi[2], x2: roi[3], y2: roi[4], spatialScale: params.spatialScale,
            pixelShift: 0.5, minimumSize: nil, pooledHeight: params.pooledHeight,
            pooledWidth: params.pooledWidth, samplingRatio: params.samplingRatio)
    }

    /// mmcv's offset_roi_w = gamma * roi_width * offset[x], offset_roi_h likewise with the y plane.
    @inline(__always)
    static func shift(
        _ params: DeformRoIPoolParams, _ box: RoIAlignBox, _ offset: UnsafePointer<Float>?, roi: Int, bin: Int
    ) -> (x: Float, y: Float) {
        guard let offset else { return (0, 0) }
        let bins = params.bins
        let o = offset + roi * 2 * bins + bin
        return (params.gamma * box.width * o[0], params.gamma * box.height * o[bins])
    }
}
