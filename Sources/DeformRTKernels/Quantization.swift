/// Linear (de)quantization and integer GEMM, with onnxruntime's rounding:
/// - quantize: q = saturate(round_half_to_even(x / scale) + zero_point) (a true division, as MLAS
///   does, not a multiply by 1 / scale); NaN gives the type's lowest value (MLAS clamps with
///   max(x, low) first, which takes `low` for NaN);
/// - dequantize: x = Float(q - zero_point) * scale;
/// - requantize (QLinearConv / QLinearMatMul): q = saturate(round_half_to_even(Float(acc) * multiplier) + zero_point).
/// Integer GEMMs (QuantizedGemm) accumulate (a - a_zero) * (b - b_zero) in wrapping Int32, which is
/// exact up to about 33,000 products of 8-bit values, as onnxruntime's VNNI kernels.
public enum Quantization {
    typealias V = SIMD16<Float>
    typealias I = SIMD16<Int32>

    /// The element type of quantized data.
    public enum Storage: Sendable { case int8, uint8, int16, uint16, int32 }

    /// The range of an 8-bit quantized type: int8 [-128, 127], uint8 [0, 255].
    public static func range(signed: Bool) -> (low: Int32, high: Int32) { signed ? (-128, 127) : (0, 255) }

    /// The range of a quantized type (int32 is only ever dequantized).
    public static func range(_ storage: Storage) -> (low: Int32, high: Int32) {
        switch storage {
        case .int8: return (-128, 127)
        case .uint8: return (0, 255)
        case .int16: return (-32768, 32767)
        case .uint16: return (0, 65535)
        case .int32: return (Int32.min, Int32.max)
        }
    }

    /// Rounds lanes already clamped to |v| < 2^22, half to even (the 1.5 * 2^23 trick), to Int32.
    @inline(__always)
    static func roundClamped(_ v: V) -> I {
        let shifted = v + V(repeating: 12_582_912)
        return unsafeBitCast(shifted, to: I.self) &- I(repeating: 0x4B40_0000)
    }

    /// Clamps to [low, high] with NaN going to `low`.
    @inline(__always)
    static func clampNaNLow(_ v: V, _ low: V, _ high: V) -> V {
        let raised = VectorMath.select(VectorMath.lanes(v .>= low), v, low)
        return VectorMath.select(VectorMath.lanes(raised .<= high), raised, high)
    }

    @inline(__always)
    static func store16(_ q: I, _ y: UnsafeMutableRawPointer, _ count: Int) {
        let halves = SIMD16<UInt16>(truncatingIfNeeded: q)
        if count == 16 {
            y.storeBytes(of: halves, as: SIMD16<UInt16>.self)
        } else {
            for j in 0..<count { y.storeBytes(of: halves[j], toByteOffset: 2 * j, as: UInt16.self) }
        }
    }

    @inline(__always)
    static func store(_ q: I, _ y: UnsafeMutablePointer<UInt8>, _ count: Int) {
        let bytes = SIMD16<UInt8>(truncatingIfNeeded: q)
        if count == 16 {
            UnsafeMutableRawPointer(y).storeBytes(of: bytes, as: SIMD16<UInt8>.self)
        } else {
            for j in 0..<count { y[j] = bytes[j] }
        }
    }

    /// y[i] = saturate(rint(x[i] / scale) + zeroPoint) for `count` elements of `storage`
    /// (8-bit types written as their byte patterns, 16-bit as their 2-byte patterns).
    public static func quantize(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer, count: Int,
                                scale: Float, zeroPoint: Int32, storage: Storage) {
        let (low, high) = range(storage)
        let lo = V(repeating: Float(low - zeroPoint)), hi = V(repeating: Float(high - zeroPoint))
        let s = V(repeating: scale), zp = I(repeating: zeroPoint)
        let wide = storage == .int16 || storage == .uint16
        var i = 0
        while i < count {
            let n = min(16, count - i)
            var v: V
            if n == 16 {
                v = ElementwiseKernels.load16(x + i)
            } else {
                v = V(repeating: 0)
                for j in 0..<n { v[j] = x[i + j] }
            }
            let q = roundClamped(clampNaNLow(v / s, lo, hi)) &+ zp
            if wide { store16(q, y + 2 * i, n) } else { store(q, y.assumingMemoryBound(to: UInt8.self) + i, n) }
            i += n
        }
    }

    /// Quantizes [outer, channels, inner] with one scale / zero point per channel (count 1: per tensor).
    public static func quantize(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer, outer: Int, channels: Int, inner: Int,
                                scales: UnsafePointer<Float>, zeroPoints: UnsafePointer<Int32>, storage: Storage, parallel: Parallel) {
        let rows = outer * channels
        let size = storage == .int16 || storage == .uint16 ? 2 : 1
        parallel.forEachRange(rows, totalWork: rows * inner) { _, range in
            for row in range {
                let c = row % channels
                quantize(x + row * inner, y + row * inner * size, count: inner, scale: scales[c], zeroPoint: zeroPoints[c], storage: storage)
            }
        }
    }


    /// y = Float(q - zeroPoint) * scale over [outer, channels, inner].
    public static func dequantize(_ q: UnsafeRawPointer, _ storage: Storage, _ y: UnsafeMutablePointer<Float>, outer: Int,
                                  channels: Int, inner: Int, scales: UnsafePointer<Float>, zeroPoints: UnsafePointer<Int32>,
                                  parallel: Parallel) {
        let rows = outer * channels
        parallel.forEachRange(rows, totalWork: rows * inner) { _, range in
            for row in range {
                let c = row % channels
                let scale = scales[c], zp = zeroPoints[c]
                let out = y + row * inner
                switch storage {
                case .int8:
                    let p = q.assumingMemoryBound(to: Int8.self) + row * inner
                    for j in 0..<inner { out[j] = Float(Int32(p[j]) - zp) * scale }
                case .uint8:
                    let p = q.assumingMemoryBound(to: UInt8.self) + row * inner
                    for j in 0..<inner { out[j] = Float(Int32(p[j]) - zp) * scale }
                case .int16:
                    let p = q.assumingMemoryBound(to: Int16.self) + row * inner
                    for j in 0..<inner { out[j] = Float(Int32(p[j]) - zp) * scale }
                case .uint16:
                    let p = q.assumingMemoryBound(to: UInt16.self) + row * inner
                    for j in 0..<inner { out[j] = Float(Int32(p[j]) - zp) * scale }
                case .int32:
                    let p = q.assumingMemoryBound(to: Int32.self) + row * inner
                    for j in 0..<inner { out[j] = Float(p[j] &- zp) * scale }
                }
            }
        }
    }

    /// y[i] = saturate(rint(Float(acc[i]) * multipliers[i * multiplierStride]) + zeroPoint) for
    /// `count` values (8-bit results as their byte patterns); NaN (a NaN or infinite multiplier)
    /// gives the type's lowest value. The one requantization of QLinearConv and QLinearMatMul: a
    /// multiplier per output channel (stride 0, called per row) or per column (stride 1). Plain
    /// loops without branches, which LLVM vectorises at the tier's width (cvtdq2ps, mulps, blends).
    public static func requantize(_ acc: UnsafePointer<Int32>, count: Int, multipliers: UnsafePointer<Float>,
                                  multiplierStride: Int, zeroPoint: Int32, signed: Bool, into y: UnsafeMutablePointer<UInt8>) {
        let (low, high) = range(signed: signed)
        let lo = Float(low - zeroPoint), hi = Float(high - zeroPoint)
        if multiplierStride == 0 {
            let multiplier = multipliers[0]
            for i in 0..<count { y[i] = requantized(Float(acc[i]) * multiplier, lo, hi, zeroPoint) }
        } else {
            for i in 0..<count { y[i] = requantized(Float(acc[i]) * multipliers[i], lo, hi, zeroPoint) }
        }
    }

    /// Clamps to [lo, hi] (NaN to lo), rounds half to even by the 1.5 * 2^23 trick (|v| < 2^22 after
    /// the clamp) and adds the zero point.
    @inline(__always)
    static func requantized(_ value: Float, _ lo: Float, _ hi: Float, _ zeroPoint: Int32) -> UInt8 {
        let raised = value >= lo ? value : lo
        let clamped = raised <= hi ? raised : hi
        let rounded = Int32(bitPattern: (clamped + 12_582_912).bitPattern) &- 0x4B40_0000
        return UInt8(truncatingIfNeeded: rounded &+ zeroPoint)
    }
}
