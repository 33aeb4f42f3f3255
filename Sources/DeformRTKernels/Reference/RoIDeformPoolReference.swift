extension DeformRoIPool {
    /// Scalar oracle: mmcv's deform_roi_pool_forward_cuda_kernel, one output element at a time
    /// on NCHW, then times the mask; the defined results of `DeformRoIPool` for bad RoIs.
    public static func reference(
        _ params: DeformRoIPoolParams, input: UnsafePointer<Float>, rois: UnsafePointer<Float>,
        offset: UnsafePointer<Float>?, mask: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>
    ) {
        precondition(params.invalidReason == nil, params.invalidReason ?? "")
        let height = params.height, width = params.width
        let bins = params.bins
        var o = 0
        for r in 0..<params.roiCount {
            let n = roiBatch(rois[5 * r], batch: params.batch)
            let box = box(params, rois + 5 * r)
            for c in 0..<params.channels {
                for bin in 0..<bins {
                    if let n, let box, height > 0, width > 0 {
                        let (shiftX, shiftY) = shift(params, box, offset, roi: r, bin: bin)
                        let plane = input + (n * params.channels + c) * height * width
                        let pooled = roiAlignBinReference(
                            box, ph: bin / params.pooledWidth, pw: bin % params.pooledWidth,
                            shiftX: shiftX, shiftY: shiftY, maximum: false, plane: plane,
                            height: height, width: width)
                        output[o] = mask.map { pooled * $0[r * bins + bin] } ?? pooled
                    } else {
                        output[o] = 0
                    }
                    o += 1
                }
            }
        }
    }
}
