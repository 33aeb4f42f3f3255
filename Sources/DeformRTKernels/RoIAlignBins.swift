/// RoIAlign-style bins, shared by ONNX RoiAlign and mmcv's (modulated) deformable RoI pooling:
/// each bin averages (or, for RoiAlign max mode, maxes) a grid of bilinear samples with
/// RoIAlign's border rule (a sample with y < -1, y > H, x < -1 or x > W reads 0; otherwise it is
/// clamped to the map).

/// Geometry of one RoI, computed as onnxruntime's RoiAlign, torchvision.ops.roi_align and mmcv's
/// deform_roi_pool_forward_cuda_kernel compute it, in Float.
struct RoIAlignBox {
    var startX: Float
    var startY: Float
    var width: Float
    var height: Float
    var binWidth: Float
    var binHeight: Float
    var gridHeight: Int
    var gridWidth: Int
    /// The divisor of an average: max(gridHeight * gridWidth, 1).
    var samples: Float

    /// nil when a corner is not finite or the scaled extent overflows: the RoI outputs zeros.
    /// `pixelShift` is 0.5 for half-pixel coordinates (RoiAlign half_pixel, mmcv), else 0;
    /// `minimumSize` is RoiAlign output_half_pixel's "force malformed RoIs to be 1x1".
    init?(
        x1: Float, y1: Float, x2: Float, y2: Float, spatialScale: Float, pixelShift: Float,
        minimumSize: Float?, pooledHeight: Int, pooledWidth: Int, samplingRatio: Int
    ) {
        startX = x1 * spatialScale - pixelShift
        startY = y1 * spatialScale - pixelShift
        width = (x2 * spatialScale - pixelShift) - startX
        height = (y2 * spatialScale - pixelShift) - startY
        guard startX.isFinite, startY.isFinite, width.isFinite, height.isFinite else { return nil }
        if let minimumSize {
            width = max(width, minimumSize)
            height = max(height, minimumSize)
        }
        binHeight = height / Float(pooledHeight)
        binWidth = width / Float(pooledWidth)
        gridHeight = roiSampleGrid(samplingRatio: samplingRatio, binExtent: binHeight)
        gridWidth = roiSampleGrid(samplingRatio: samplingRatio, binExtent: binWidth)
        samples = Float(max(Double(gridHeight) * Double(gridWidth), 1))
    }
}

enum RoIAlignBins {
    /// Pools bin (ph, pw) of one RoI over every channel of a channels-last image into
    /// `pooled`: the average of the samples (mode average) or onnxruntime's max
    /// (`maximum`: the largest weighted corner over all samples, 0 standing for samples off the
    /// map). `shiftX`/`shiftY` move the bin (mmcv's offsets; 0 for RoiAlign).
    static func pool(
        _ box: RoIAlignBox, ph: Int, pw: Int, shiftX: Float, shiftY: Float, maximum: Bool,
        image: UnsafePointer<Float>, height: Int, width: Int, channels: Int,
        into pooled: UnsafeMutablePointer<Float>, table: inout RoISampleTable
    ) {
        let originY = (box.startY + shiftY) + Float(ph) * box.binHeight
        let originX = (box.startX + shiftX) + Float(pw) * box.binWidth
        let rows = roiValidSamples(
            origin: originY, bin: box.binHeight, grid: box.gridHeight, lower: -1, upper: Float(height))
        let columns = roiValidSamples(
            origin: originX, bin: box.binWidth, grid: box.gridWidth, lower: -1, upper: Float(width))
        pooled.update(repeating: maximum ? -.infinity : 0, count: channels)
        table.count = 0
        for iy in rows {
            let y = roiAlignTap(
                roiSamplePosition(origin: originY, bin: box.binHeight, grid: box.gridHeight, iy), size: height)
            let rowLow = y.low * width
            let rowHigh = y.high * width
            for ix in columns {
                let x = roiAlignTap(
                    roiSamplePosition(origin: originX, bin: box.binWidth, grid: box.gridWidth, ix), size: width)
                table.append(
                    (rowLow + x.low) * channels, y.lowWeight * x.lowWeight,
                    (rowLow + x.high) * channels, y.lowWeight * x.highWeight,
                    (rowHigh + x.low) * channels, y.highWeight * x.lowWeight,
                    (rowHigh + x.high) * channels, y.highWeight * x.highWeight)
                if table.isFull { flush(&table, maximum: maximum, image, channels, pooled) }
            }
        }
        flush(&table, maximum: maximum, image, channels, pooled)
        if maximum {
            let total = box.gridHeight * box.gridWidth
            if total == 0 {
                pooled.update(repeating: 0, count: channels)
            } else if rows.count * columns.count < total {
                // Samples off the map have zero weights and count as 0 in the max.
                for c in 0..<channels where pooled[c] < 0 { pooled[c] = 0 }
            }
        } else {
            for c in 0..<channels { pooled[c] /= box.samples }
        }
    }

    @inline(__always)
    private static func flush(
        _ table: inout RoISampleTable, maximum: Bool, _ image: UnsafePointer<Float>, _ channels: Int,
        _ pooled: UnsafeMutablePointer<Float>
    ) {
        guard table.count > 0 else { return }
        if maximum {
            RoIChannelsLast.accumulateMax(table, base: image, channels: channels, into: pooled)
        } else {
            RoIChannelsLast.accumulate(table, base: image, channels: channels, into: pooled)
        }
        table.count = 0
    }
}
