extension MaxRoiPool {
    /// Scalar oracle: torchvision's roi_pool_forward_kernel_impl on NCHW, with the defined
    /// results of `MaxRoiPool` for bad RoIs.
    public static func reference(
        _ params: MaxRoiPoolParams, input: UnsafePointer<Float>, rois: UnsafePointer<Float>,
        output: UnsafeMutablePointer<Float>
    ) {
        precondition(params.invalidReason == nil, params.invalidReason ?? "")
        let height = params.height, width = params.width
        var o = 0
        for r in 0..<params.roiCount {
            let roi = rois + 5 * r
            let n = roiBatch(roi[0], batch: params.batch)
            let box = MaxRoiPoolBox(
                roi, spatialScale: params.spatialScale, pooledHeight: params.pooledHeight,
                pooledWidth: params.pooledWidth)
            for c in 0..<params.channels {
                for ph in 0..<params.pooledHeight {
                    for pw in 0..<params.pooledWidth {
                        defer { o += 1 }
                        guard let n, let box else {
                            output[o] = 0
                            continue
                        }
                        let rows = MaxRoiPoolBox.span(ph, bin: box.binHeight, start: box.startY, size: height)
                        let columns = MaxRoiPoolBox.span(pw, bin: box.binWidth, start: box.startX, size: width)
                        let plane = input + (n * params.channels + c) * height * width
                        var best: Float = rows.isEmpty || columns.isEmpty ? 0 : -.greatestFiniteMagnitude
                        for h in rows {
                            for w in columns where plane[h * width + w] > best { best = plane[h * width + w] }
                        }
                        output[o] = best
                    }
                }
            }
        }
    }
}
