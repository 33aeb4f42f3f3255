/// Element-wise float kernels: SIMD16 bodies with scalar tails.
public enum ElementwiseKernels {
    public enum Binary: Sendable { case add, sub, mul, div }

    /// out[i] = a[i * aStride] (op) b[i * bStride], strides 0 or 1.
    public static func binary(_ op: Binary, _ a: UnsafePointer<Float>, _ aStride: Int,
                              _ b: UnsafePointer<Float>, _ bStride: Int,
                              _ out: UnsafeMutablePointer<Float>, _ count: Int) {
        switch op {
        case .add: binaryLoop(a, aStride, b, bStride, out, count, { $0 + $1 }, { $0 + $1 })
        case .sub: binaryLoop(a, aStride, b, bStride, out, count, { $0 - $1 }, { $0 - $1 })
        case .mul: binaryLoop(a, aStride, b, bStride, out, count, { $0 * $1 }, { $0 * $1 })
        case .div: binaryLoop(a, aStride, b, bStride, out, count, { $0 / $1 }, { $0 / $1 })
        }
    }

    @inline(__always)
    private static func binaryLoop(_ a: UnsafePointer<Float>, _ aStride: Int, _ b: UnsafePointer<Float>, _ bStride: Int,
                                   _ out: UnsafeMutablePointer<Float>, _ count: Int,
                                   _ vector: (SIMD16<Float>, SIMD16<Float>) -> SIMD16<Float>,
                                   _ scalar: (Float, Float) -> Float) {
        var i = 0
        if aStride == 1 && bStride == 1 {
            while i + 16 <= count {
                let r = vector(load16(a + i), load16(b + i))
                store16(r, out + i)
                i += 16
            }
        } else if aStride == 1 {
            let vb = SIMD16<Float>(repeating: b[0])
            while i + 16 <= count {
                store16(vector(load16(a + i), vb), out + i)
                i += 16
            }
        } else if bStride == 1 {
            let va = SIMD16<Float>(repeating: a[0])
            while i + 16 <= count {
                store16(vector(va, load16(b + i)), out + i)
                i += 16
            }
        }
        while i < count {
            out[i] = scalar(a[i * aStride], b[i * bStride])
            i += 1
        }
    }

    @inline(__always)
    public static func load16(_ p: UnsafePointer<Float>) -> SIMD16<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self)
    }

    @inline(__always)
    public static func store16(_ v: SIMD16<Float>, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD16<Float>.self)
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// y = x * scale + shift over a contiguous run (batch norm, folded affine maps).
public enum ScaleShift {
    public static func apply(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ count: Int, scale: Float, shift: Float) {
        var i = 0
        let vs = SIMD16<Float>(repeating: scale), vb = SIMD16<Float>(repeating: shift)
        while i + 16 <= count {
            ElementwiseKernels.store16(ElementwiseKernels.load16(x + i) * vs + vb, y + i)
            i += 16
        }
        while i < count {
            y[i] = x[i] * scale + shift
            i += 1
        }
    }
}
