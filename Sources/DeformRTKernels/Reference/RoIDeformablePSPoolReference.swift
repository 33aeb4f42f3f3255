extension DeformablePSROIPool {
    /// Scalar oracle: MXNet's DeformablePSROIPoolForwardKernel, one output element at a time on
    /// NCHW, with the defined results of `DeformablePSROIPool` for bad RoIs.
    public static func reference(
        _ params: DeformablePSROIPoolParams, input: UnsafePointer<Float>, rois: UnsafePointer<Float>,
        trans: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>
    ) {
        precondition(params.invalidReason == nil, params.invalidReason ?? "")
        let height = params.height, width = params.width
        let classes = trans == nil ? 1 : params.transClasses
        let channelsPerClass = params.outputDim / classes
        let g = params.groupSize
        var o = 0
        for r in 0..<params.roiCount {
            let n = roiBatch(rois[5 * r], batch: params.batch)
            let box = PSROIBox(rois + 5 * r, spatialScale: params.spatialScale)
            for ctop in 0..<params.outputDim {
                for ph in 0..<params.pooledSize {
                    for pw in 0..<params.pooledSize {
                        defer { o += 1 }
                        guard let n, let box, height > 0, width > 0 else {
                            output[o] = 0
                            continue
                        }
                        let bin = PSROIBin(
                            params, box, trans: trans, roi: r, transClass: ctop / channelsPerClass, ph: ph, pw: pw)
                        let c = ctop * g * g + bin.group
                        let plane = input + (n * params.channels + c) * height * width
                        var sum: Float = 0
                        var count = 0
                        for ih in 0..<params.samplePerPart {
                            for iw in 0..<params.samplePerPart {
                                var w = bin.startX + Float(iw) * bin.stepX
                                var h = bin.startY + Float(ih) * bin.stepY
                                // NaN fails both tests and is skipped too.
                                guard w >= -0.5, w <= Float(width) - 0.5, h >= -0.5, h <= Float(height) - 0.5
                                else { continue }
                                w = min(max(w, 0), Float(width - 1))
                                h = min(max(h, 0), Float(height - 1))
                                let x1 = Int(w.rounded(.down)), x2 = Int(w.rounded(.up))
                                let y1 = Int(h.rounded(.down)), y2 = Int(h.rounded(.up))
                                let dx = w - Float(x1), dy = h - Float(y1)
                                let value = (1 - dx) * (1 - dy) * plane[y1 * width + x1]
                                    + (1 - dx) * dy * plane[y2 * width + x1]
                                    + dx * (1 - dy) * plane[y1 * width + x2]
                                    + dx * dy * plane[y2 * width + x2]
                                sum += value
                                count += 1
                            }
                        }
                        output[o] = count == 0 ? 0 : sum / Float(count)
                    }
                }
            }
        }
    }
}
