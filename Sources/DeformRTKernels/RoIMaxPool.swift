/// ONNX MaxRoiPool (opsets 1, 22) on NCHW float32.
///
///   input   [batch, channels, height, width]
///   rois    [roiCount, 5]  (batch_index, x1, y1, x2, y2) in input-image coordinates
///   output  [roiCount, channels, pooledHeight, pooledWidth]
public struct MaxRoiPoolParams: Sendable, Equatable {
    public var batch: Int
    public var channels: Int
    public var height: Int
    public var width: Int
    public var roiCount: Int
    public var pooledHeight: Int
    public var pooledWidth: Int
    public var spatialScale: Float

    public init(
        batch: Int, channels: Int, height: Int, width: Int, roiCount: Int,
        pooledHeight: Int, pooledWidth: Int, spatialScale: Float = 1
    ) {
        self.batch = batch
        self.channels = channels
        self.height = height
        self.width = width
        self.roiCount = roiCount
        self.pooledHeight = pooledHeight
        self.pooledWidth = pooledWidth
        self.spatialScale = spatialScale
    }

    /// Why these parameters cannot run, or nil (callers report it; the kernels trap on it).
    public var invalidReason: String? {
        if let reason = RoIParameterCheck.dimensions("MaxRoiPool", batch, channels, height, width, roiCount) {
            return reason
        }
        if pooledHeight < 1 || pooledWidth < 1 { return "MaxRoiPool: pooled_shape must be >= 1" }
        if !spatialScale.isFinite { return "MaxRoiPool: spatial_scale must be finite" }
        return nil
    }
}

extension MaxRoiPoolParams: RoIPoolingShape {
    var mapChannels: Int { channels }
    var pooledChannels: Int { channels }
    var bins: Int { pooledHeight * pooledWidth }
}

/// One RoI's integer geometry, as torchvision's roi_pool_forward_kernel_impl (and onnxruntime's
/// MaxRoiPool) compute it: corners scaled and rounded half away from zero, size end - start + 1
/// forced to at least 1, bins floor(p * bin) ..< ceil((p + 1) * bin) clipped to the map.
struct MaxRoiPoolBox {
    var startX: Int
    var startY: Int
    var binWidth: Float
    var binHeight: Float

    /// nil (the RoI outputs zeros) when a rounded corner is not finite or beyond +-2^30.
    init?(_ roi: UnsafePointer<Float>, spatialScale: Float, pooledHeight: Int, pooledWidth: Int) {
        func corner(_ value: Float) -> Int? {
            let rounded = (value * spatialScale).rounded(.toNearestOrAwayFromZero)
            return rounded.magnitude <= RoILimits.roundedCorner ? Int(rounded) : nil  // NaN fails too
        }
        guard let x1 = corner(roi[1]), let y1 = corner(roi[2]), let x2 = corner(roi[3]),
            let y2 = corner(roi[4])
        else { return nil }
        startX = x1
        startY = y1
        let roiWidth = max(x2 - x1 + 1, 1)
        let roiHeight = max(y2 - y1 + 1, 1)
        binHeight = Float(roiHeight) / Float(pooledHeight)
        binWidth = Float(roiWidth) / Float(pooledWidth)
    }

    /// Map rows (or columns) of bin `p`; empty bins pool to 0.
    @inline(__always)
    static func span(_ p: Int, bin: Float, start: Int, size: Int) -> Range<Int> {
        let low = Int((Float(p) * bin).rounded(.down)) + start
        let high = Int((Float(p + 1) * bin).rounded(.up)) + start
        let clippedLow = min(max(low, 0), size)
        let clippedHigh = min(max(high, 0), size)
        return clippedLow..<max(clippedLow, clippedHigh)
    }
}

/// ONNX MaxRoiPool, matching torchvision.ops.roi_pool (and onnxruntime's MaxRoiPool, which
/// computes the same): each bin is the max over its pixels, 0 when the bin is empty; a NaN never
/// replaces the running max (initial -FLT_MAX), as in both.
///
/// Defined results: a batch index outside the batch, or a corner that is not finite or rounds
/// beyond +-2^30 after scaling, gives zeros for that RoI; a map with no pixels gives zeros.
public enum MaxRoiPool {
    public static func workspaceByteCount(_ params: MaxRoiPoolParams, threads: Int) -> Int {
        params.workspaceByteCount(threads: threads)
    }

    public static func run(
        _ params: MaxRoiPoolParams, input: UnsafePointer<Float>, rois: UnsafePointer<Float>,
        output: UnsafeMutablePointer<Float>, workspace: UnsafeMutableRawBufferPointer, parallel: Parallel
    ) {
        let channels = params.channels, height = params.height, width = params.width
        let pixels = params.pixels
        RoIWorkspace.forEachRoI(
            params, images: input, output: output, workspace: workspace, parallel: parallel
        ) { r, map, scratch in
            let roi = rois + 5 * r
            guard let n = roiBatch(roi[0], batch: params.batch),
                let box = MaxRoiPoolBox(
                    roi, spatialScale: params.spatialScale, pooledHeight: params.pooledHeight,
                    pooledWidth: params.pooledWidth)
            else { return false }
            let image = map + n * pixels * channels
            for ph in 0..<params.pooledHeight {
                let rows = MaxRoiPoolBox.span(ph, bin: box.binHeight, start: box.startY, size: height)
                for pw in 0..<params.pooledWidth {
                    let columns = MaxRoiPoolBox.span(pw, bin: box.binWidth, start: box.startX, size: width)
                    let empty = rows.isEmpty || columns.isEmpty
                    let pooled = scratch.roi + (ph * params.pooledWidth + pw) * channels
                    pooled.update(repeating: empty ? 0 : -.greatestFiniteMagnitude, count: channels)
                    if !empty {
                        RoIChannelsLast.maxOverRectangle(
                            base: image, width: width, channels: channels, rows: rows, columns: columns,
                            into: pooled)
                    }
                }
            }
            return true
        }
    }
}
