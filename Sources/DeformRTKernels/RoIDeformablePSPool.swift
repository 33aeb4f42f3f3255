/// Deformable position-sensitive RoI pooling (DCNv1 section 2.2, R-FCN), NCHW float32.
///
///   input   [batch, channels >= outputDim * groupSize^2, height, width]: score maps; output
///           channel c of bin group (gh, gw) reads input channel (c * groupSize + gh) * groupSize + gw
///   rois    [roiCount, 5]  (batch_index, x1, y1, x2, y2) in input-image coordinates
///   trans   [roiCount, 2 * transClasses, partSize, partSize] normalised offsets (x, y per class);
///           optional (absent = no_trans)
///   output  [roiCount, outputDim, pooledSize, pooledSize]
/// Output channel c uses the offsets of class c / (outputDim / transClasses).
public struct DeformablePSROIPoolParams: Sendable, Equatable {
    public var batch: Int
    public var channels: Int
    public var height: Int
    public var width: Int
    public var roiCount: Int
    public var outputDim: Int
    public var groupSize: Int
    public var pooledSize: Int
    public var partSize: Int
    public var samplePerPart: Int
    public var spatialScale: Float
    public var transStd: Float
    /// trans.shape[1] / 2; ignored when no trans is given.
    public var transClasses: Int

    /// `partSize` 0 means `pooledSize`, as in MXNet; `pooledSize` nil means `groupSize`
    /// (OpenVINO's DeformablePSROIPooling-1 has no separate pooled size).
    public init(
        batch: Int, channels: Int, height: Int, width: Int, roiCount: Int,
        outputDim: Int, groupSize: Int, pooledSize: Int? = nil, partSize: Int = 0,
        samplePerPart: Int = 1, spatialScale: Float, transStd: Float = 0, transClasses: Int = 1
    ) {
        self.batch = batch
        self.channels = channels
        self.height = height
        self.width = width
        self.roiCount = roiCount
        self.outputDim = outputDim
        self.groupSize = groupSize
        self.pooledSize = pooledSize ?? groupSize
        self.partSize = partSize == 0 ? (pooledSize ?? groupSize) : partSize
        self.samplePerPart = samplePerPart
        self.spatialScale = spatialScale
        self.transStd = transStd
        self.transClasses = transClasses
    }

    /// Why these parameters cannot run, or nil (callers report it; the kernels trap on it).
    public var invalidReason: String? {
        if let reason = RoIParameterCheck.dimensions(
            "DeformablePSROIPool", batch, channels, height, width, roiCount, outputDim)
        {
            return reason
        }
        if groupSize < 1 || pooledSize < 1 || partSize < 1 {
            return "DeformablePSROIPool: group_size, pooled_size and part_size must be >= 1"
        }
        if channels < outputDim * groupSize * groupSize {
            return "DeformablePSROIPool: input has \(channels) channels, "
                + "needs output_dim * group_size^2 = \(outputDim * groupSize * groupSize)"
        }
        if let reason = RoIParameterCheck.samplingRatio(
            "DeformablePSROIPool", "sample_per_part", samplePerPart, lowest: 1)
        {
            return reason
        }
        if transClasses < 1 || outputDim % transClasses != 0 {
            return "DeformablePSROIPool: output_dim must be a multiple of the offset classes (trans channels / 2)"
        }
        if !spatialScale.isFinite || !transStd.isFinite {
            return "DeformablePSROIPool: spatial_scale and trans_std must be finite"
        }
        return nil
    }
}

/// The map copy holds, per batch item, one set of `outputDim` channels per bin group.
extension DeformablePSROIPoolParams: RoIPoolingShape {
    var mapChannels: Int { groupSize * groupSize * outputDim }
    var pooledChannels: Int { outputDim }
    var bins: Int { pooledSize * pooledSize }
}

/// One RoI's geometry, as MXNet's DeformablePSROIPoolForwardKernel computes it: corners rounded
/// half away from zero, the end +1, scaled, shifted by -0.5 (the end in double, as there), size at
/// least 0.1.
struct PSROIBox {
    var startX: Float
    var startY: Float
    var width: Float
    var height: Float

    /// nil (the RoI outputs zeros) when a corner is not finite or the size overflows.
    init?(_ roi: UnsafePointer<Float>, spatialScale: Float) {
        let x1 = roi[1].rounded(.toNearestOrAwayFromZero), y1 = roi[2].rounded(.toNearestOrAwayFromZero)
        let x2 = roi[3].rounded(.toNearestOrAwayFromZero), y2 = roi[4].rounded(.toNearestOrAwayFromZero)
        startX = Float(Double(x1 * spatialScale) - 0.5)
        startY = Float(Double(y1 * spatialScale) - 0.5)
        let endX = Float((Double(x2) + 1) * Double(spatialScale) - 0.5)
        let endY = Float((Double(y2) + 1) * Double(spatialScale) - 0.5)
        let w = endX - startX, h = endY - startY
        guard startX.isFinite, startY.isFinite, w.isFinite, h.isFinite else { return nil }
        width = Float(max(Double(w), 0.1))
        height = Float(max(Double(h), 0.1))
    }
}

/// Where one output bin of one offset class samples: per axis the start of the bin and the step
/// between samples. The same for every channel of the class.
struct PSROIBin {
    var group: Int
    var startX: Float
    var startY: Float
    var stepX: Float
    var stepY: Float

    init(
        _ params: DeformablePSROIPoolParams, _ box: PSROIBox, trans: UnsafePointer<Float>?, roi: Int,
        transClass: Int, ph: Int, pw: Int
    ) {
        let pooled = Float(params.pooledSize)
        let binHeight = box.height / pooled
        let binWidth = box.width / pooled
        stepY = binHeight / Float(params.samplePerPart)
        stepX = binWidth / Float(params.samplePerPart)
        var transX: Float = 0
        var transY: Float = 0
        if let trans {
            // MXNet's float expression floor(ph / pooled * part); OpenVINO uses integer division,
            // which differs for some pooled sizes >= 22. The clamp only guards the array bound.
            let part = params.partSize
            let partH = min(Int((Float(ph) / pooled * Float(part)).rounded(.down)), part - 1)
            let partW = min(Int((Float(pw) / pooled * Float(part)).rounded(.down)), part - 1)
            let x = trans + ((roi * params.transClasses + transClass) * 2 * part + partH) * part + partW
            transX = x[0] * params.transStd
            transY = x[part * part] * params.transStd
        }
        startX = (Float(pw) * binWidth + box.startX) + transX * box.width
        startY = (Float(ph) * binHeight + box.startY) + transY * box.height
        let g = params.groupSize
        let gw = min(max(pw * g / params.pooledSize, 0), g - 1)
        let gh = min(max(ph * g / params.pooledSize, 0), g - 1)
        group = gh * g + gw
    }
}

/// MXNet DeformablePSROIPooling, the DCN authors' operator (msracver/Deformable-ConvNets,
/// rfcn/operator_cxx/deformable_psroi_pooling.cu), which OpenVINO's DeformablePSROIPooling-1
/// reproduces when group_size == pooled_size: samples at bin start + i * bin / sample_per_part,
/// those outside [-0.5, size - 0.5] skipped, the rest clamped and bilinearly interpolated, the
/// bin the average over the samples kept (0 if none).
///
/// Defined results: a batch index outside the batch or a non-finite corner gives zeros for that
/// RoI; a NaN sample position is skipped like one off the map (MXNet would cast it to an int).
public enum DeformablePSROIPool {
    public static func workspaceByteCount(_ params: DeformablePSROIPoolParams, threads: Int) -> Int {
        params.workspaceByteCount(threads: threads)
    }

    /// Optimised path: the score maps copied to [batch][group][pixel][outputDim] so that the
    /// channels one bin reads are contiguous; samples built once per bin and offset class.
    public static func run(
        _ params: DeformablePSROIPoolParams, input: UnsafePointer<Float>, rois: UnsafePointer<Float>,
        trans: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>,
        workspace: UnsafeMutableRawBufferPointer, parallel: Parallel
    ) {
        let pixels = params.pixels
        let outputDim = params.outputDim, groups = params.groupSize * params.groupSize
        let classes = trans == nil ? 1 : params.transClasses
        let channelsPerClass = outputDim / classes
        RoIWorkspace.forEachRoI(
            params, output: output, workspace: workspace, parallel: parallel,
            copyMap: { map in
                // Input channel c * groups + group becomes channel c of plane set (n, group).
                RoIChannelsLast.copy(
                    groups: params.batch * groups, channels: outputDim, pixels: pixels,
                    channelStride: groups * pixels,
                    source: { input + (($0 / groups) * params.channels + $0 % groups) * pixels },
                    destination: map, parallel: parallel)
            },
            poolRoI: { r, map, scratch in
                guard let n = roiBatch(rois[5 * r], batch: params.batch),
                    let box = PSROIBox(rois + 5 * r, spatialScale: params.spatialScale)
                else { return false }
                for ph in 0..<params.pooledSize {
                    for pw in 0..<params.pooledSize {
                        for k in 0..<classes {
                            let bin = PSROIBin(params, box, trans: trans, roi: r, transClass: k, ph: ph, pw: pw)
                            let image = map + ((n * groups + bin.group) * pixels) * outputDim + k * channelsPerClass
                            let pooled = scratch.roi + (ph * params.pooledSize + pw) * outputDim + k * channelsPerClass
                            pool(
                                bin, params, image: image, channels: channelsPerClass, into: pooled,
                                table: &scratch.table)
                        }
                    }
                }
                return true
            })
    }

    /// Averages the kept samples of one bin over `channels` channels of a channels-last image into
    /// `pooled` (0 when no sample is kept).
    private static func pool(
        _ bin: PSROIBin, _ params: DeformablePSROIPoolParams, image: UnsafePointer<Float>, channels: Int,
        into pooled: UnsafeMutablePointer<Float>, table: inout RoISampleTable
    ) {
        let height = params.height, width = params.width, stride = params.outputDim
        pooled.update(repeating: 0, count: channels)
        table.count = 0
        var kept = 0
        for ih in 0..<params.samplePerPart {
            guard let y = psroiTap(bin.startY + Float(ih) * bin.stepY, size: height) else { continue }
            for iw in 0..<params.samplePerPart {
                guard let x = psroiTap(bin.startX + Float(iw) * bin.stepX, size: width) else { continue }
                // MXNet's order: (y1, x1), (y2, x1), (y1, x2), (y2, x2).
                table.append(
                    (y.low * width + x.low) * stride, x.lowWeight * y.lowWeight,
                    (y.high * width + x.low) * stride, x.lowWeight * y.highWeight,
                    (y.low * width + x.high) * stride, x.highWeight * y.lowWeight,
                    (y.high * width + x.high) * stride, x.highWeight * y.highWeight)
                kept += 1
                if table.isFull { flush(&table, image, channels, pooled) }
            }
        }
        flush(&table, image, channels, pooled)
        if kept > 0 {
            let count = Float(kept)
            for c in 0..<channels { pooled[c] /= count }
        }
    }

    @inline(__always)
    private static func flush(
        _ table: inout RoISampleTable, _ image: UnsafePointer<Float>, _ channels: Int,
        _ pooled: UnsafeMutablePointer<Float>
    ) {
        guard table.count > 0 else { return }
        RoIChannelsLast.accumulate(table, base: image, channels: channels, into: pooled)
        table.count = 0
    }
}
