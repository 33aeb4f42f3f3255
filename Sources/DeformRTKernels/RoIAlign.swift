/// How ONNX RoiAlign maps RoI corners to the map.
public enum RoiAlignCoordinates: Sendable, Equatable {
    /// Opset 16+ default: corners * spatial_scale - 0.5, no minimum size (torchvision aligned=True).
    case halfPixel
    /// Opset 10 behaviour (no attribute there): corners * spatial_scale, RoIs smaller than 1x1
    /// forced to 1x1 (torchvision aligned=False). onnx.reference's RoiAlign wrongly applies its
    /// half_pixel default to opset-10 models; onnxruntime uses this.
    case outputHalfPixel
}

/// ONNX RoiAlign pooling mode.
public enum RoiAlignMode: Sendable, Equatable {
    case average
    /// As onnxruntime (1.31) and onnx.reference compute it: for each sample the largest of its four
    /// weighted corners w_k * x_k (not the interpolated value), then the largest over the samples;
    /// samples off the map count as 0. onnxruntime itself warns that this "summation for max
    /// mode" is incorrect, but it is what every ONNX consumer checked here returns.
    case max
}

/// ONNX RoiAlign (opsets 10, 16, 22) on NCHW float32.
///
///   input         [batch, channels, height, width]
///   rois          [roiCount, 4]  (x1, y1, x2, y2) in input-image coordinates
///   batchIndices  [roiCount] int64
///   output        [roiCount, channels, outputHeight, outputWidth]
public struct RoiAlignParams: Sendable, Equatable {
    public var batch: Int
    public var channels: Int
    public var height: Int
    public var width: Int
    public var roiCount: Int
    public var outputHeight: Int
    public var outputWidth: Int
    /// Samples per bin along each axis; 0 = adaptive, ceil(roi_extent / output_extent).
    public var samplingRatio: Int
    public var spatialScale: Float
    public var mode: RoiAlignMode
    public var coordinates: RoiAlignCoordinates

    public init(
        batch: Int, channels: Int, height: Int, width: Int, roiCount: Int,
        outputHeight: Int = 1, outputWidth: Int = 1, samplingRatio: Int = 0, spatialScale: Float = 1,
        mode: RoiAlignMode = .average, coordinates: RoiAlignCoordinates = .halfPixel
    ) {
        self.batch = batch
        self.channels = channels
        self.height = height
        self.width = width
        self.roiCount = roiCount
        self.outputHeight = outputHeight
        self.outputWidth = outputWidth
        self.samplingRatio = samplingRatio
        self.spatialScale = spatialScale
        self.mode = mode
        self.coordinates = coordinates
    }

    /// Why these parameters cannot run, or nil. Callers check this and report an error; the
    /// kernels trap on invalid parameters (never on bad data).
    public var invalidReason: String? {
        if let reason = RoIParameterCheck.dimensions("RoiAlign", batch, channels, height, width, roiCount) {
            return reason
        }
        if outputHeight < 1 || outputWidth < 1 { return "RoiAlign: output_height and output_width must be >= 1" }
        if let reason = RoIParameterCheck.samplingRatio("RoiAlign", "sampling_ratio", samplingRatio, lowest: 0) {
            return reason
        }
        if !spatialScale.isFinite { return "RoiAlign: spatial_scale must be finite" }
        return nil
    }
}

extension RoiAlignParams: RoIPoolingShape {
    var mapChannels: Int { channels }
    var pooledChannels: Int { channels }
    var bins: Int { outputHeight * outputWidth }
}

/// ONNX RoiAlign. Matches onnxruntime 1.31 (RoiAlign 10/16) and torchvision.ops.roi_align for
/// average mode, and onnxruntime / onnx.reference for max mode (see `RoiAlignMode.max`).
///
/// Defined results (see RoISampling.swift): a batch index outside 0..<batch or a non-finite
/// corner gives zeros for that RoI (onnxruntime reports an error for the former); a map with no
/// pixels gives zeros; an adaptive grid above 2^22 per axis is clamped to 2^22.
public enum RoiAlign {
    /// Bytes of workspace `run` needs with `threads` threads.
    public static func workspaceByteCount(_ params: RoiAlignParams, threads: Int) -> Int {
        params.workspaceByteCount(threads: threads)
    }

    /// Optimised path: a channels-last copy of the map, each bin's samples and weights computed
    /// once and applied SIMD across channels, RoIs spread over `parallel`'s threads.
    public static func run(
        _ params: RoiAlignParams, input: UnsafePointer<Float>, rois: UnsafePointer<Float>,
        batchIndices: UnsafePointer<Int64>, output: UnsafeMutablePointer<Float>,
        workspace: UnsafeMutableRawBufferPointer, parallel: Parallel
    ) {
        let channels = params.channels, height = params.height, width = params.width
        let pixels = params.pixels
        let maximum = params.mode == .max
        RoIWorkspace.forEachRoI(
            params, images: input, output: output, workspace: workspace, parallel: parallel
        ) { r, map, scratch in
            guard let n = roiBatch(batchIndices[r], batch: params.batch), let box = box(params, rois + 4 * r)
            else { return false }
            let image = map + n * pixels * channels
            for bin in 0..<params.bins {
                RoIAlignBins.pool(
                    box, ph: bin / params.outputWidth, pw: bin % params.outputWidth, shiftX: 0, shiftY: 0,
                    maximum: maximum, image: image, height: height, width: width, channels: channels,
                    into: scratch.roi + bin * channels, table: &scratch.table)
            }
            return true
        }
    }

    static func box(_ params: RoiAlignParams, _ roi: UnsafePointer<Float>) -> RoIAlignBox? {
        let halfPixel = params.coordinates == .halfPixel
        return RoIAlignBox(
            x1: roi[0], y1: roi[1], x2: roi[2], y2: roi[3], spatialScale: params.spatialScale,
            pixelShift: halfPixel ? 0.5 : 0, minimumSize: halfPixel ? nil : 1,
            pooledHeight: params.outputHeight, pooledWidth: params.outputWidth,
            samplingRatio: params.samplingRatio)
    }
}
