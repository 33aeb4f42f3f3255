/// Mean / variance of a contiguous run and the standardising affine map, for InstanceNormalization
/// and LayerNormalization.
public enum NormalizationKernels {
    typealias V = SIMD16<Float>

    /// Sum of x[0..<count]: 16 float lanes, folded into a Double every 4096 elements so long runs
    /// keep their precision.
    @inline(__always)
    static func sum(_ count: Int, _ element: (Int) -> V, _ scalar: (Int) -> Float) -> Double {
        var total = 0.0
        var i = 0
        while i + 16 <= count {
            var lanes = V()
            let blockEnd = min(count - 15, i + 4096)
            while i < blockEnd {
                lanes += element(i)
                i += 16
            }
            total += Double(lanes.sum())
        }
        while i < count {
            total += Double(scalar(i))
            i += 1
        }
        return total
    }

    /// Mean and (biased) variance of x[0..<count], two passes; NaN for an empty run.
    public static func moments(_ x: UnsafePointer<Float>, _ count: Int) -> (mean: Float, variance: Float) {
        let load = ElementwiseKernels.load16
        let mean = Float(sum(count, { load(x + $0) }, { x[$0] }) / Double(count))
        let m = V(repeating: mean)
        let squares = sum(count, { i in
            let d = load(x + i) - m
            return d * d
        }, { i in
            let d = x[i] - mean
            return d * d
        })
        return (mean, Float(squares / Double(count)))
    }

    /// y = (x - mean) * factor + shift over a contiguous run (one instance-norm channel).
    public static func standardize(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ count: Int,
                                   mean: Float, factor: Float, shift: Float) {
        let m = V(repeating: mean), f = V(repeating: factor), s = V(repeating: shift)
        var i = 0
        while i + 16 <= count {
            ElementwiseKernels.store16((ElementwiseKernels.load16(x + i) - m) * f + s, y + i)
            i += 16
        }
        while i < count {
            y[i] = (x[i] - mean) * factor + shift
            i += 1
        }
    }

    /// y = (x - mean) * invStd * scale[i] (+ bias[i]) over a contiguous run (one layer-norm row).
    public static func standardize(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ count: Int,
                                   mean: Float, invStd: Float, scale: UnsafePointer<Float>, bias: UnsafePointer<Float>?) {
        let load = ElementwiseKernels.load16
        let m = V(repeating: mean), f = V(repeating: invStd)
        var i = 0
        if let bias {
            while i + 16 <= count {
                ElementwiseKernels.store16((load(x + i) - m) * f * load(scale + i) + load(bias + i), y + i)
                i += 16
            }
            while i < count {
                y[i] = (x[i] - mean) * invStd * scale[i] + bias[i]
                i += 1
            }
        } else {
            while i + 16 <= count {
                ElementwiseKernels.store16((load(x + i) - m) * f * load(scale + i), y + i)
                i += 16
            }
            while i < count {
                y[i] = (x[i] - mean) * invStd * scale[i]
                i += 1
            }
        }
    }
}
