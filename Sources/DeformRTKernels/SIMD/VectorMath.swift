/// Float functions on 16 lanes at once: exp, expm1, log, log1p, tanh, erf, floor, ceil.
///
/// exp and log are Cephes' single-precision algorithms (range reduction by ln 2 in two parts, then
/// a polynomial; the constants of Julien Pommier's sse_mathfun and Eigen), tanh is Cephes' tanhf,
/// erf is Eigen's rational approximation on [-4, 4]. All are within a few ulp of libm, and follow it
/// on the special values: NaN stays NaN, exp overflows to +Inf and underflows through the
/// subnormals to 0, log(0) = -Inf, log(x < 0) = NaN.
///
/// Lane masks are Int32 bit patterns combined with `&`, and float <-> integer conversions go through
/// the 1.5 * 2^23 trick, for the reasons given in DeformableSampling (whose helpers are used here):
/// the stdlib's mask operators and conversions are lane loops.
enum VectorMath {
    typealias V = SIMD16<Float>
    typealias I = SIMD16<Int32>

    @inline(__always) static func bits(_ v: V) -> I { unsafeBitCast(v, to: I.self) }
    @inline(__always) static func float(_ i: I) -> V { unsafeBitCast(i, to: V.self) }
    @inline(__always) static func lanes(_ m: SIMDMask<I>) -> I { DeformableSampling.lanes(m) }
    @inline(__always) static func select(_ m: I, _ a: V, _ b: V) -> V { DeformableSampling.select(m, a, b) }
    @inline(__always) static func splat(_ v: Float) -> V { V(repeating: v) }

    /// x with NaN kept: lanes above `high` become `high`, then lanes below `low` become `low`
    /// (np.clip's order, so low > high gives high everywhere).
    @inline(__always)
    static func clamp(_ x: V, _ low: V, _ high: V) -> V {
        let raised = select(lanes(x .< low), low, x)
        return select(lanes(raised .> high), high, raised)
    }

    @inline(__always)
    static func abs(_ x: V) -> V { float(bits(x) & I(repeating: 0x7FFF_FFFF)) }

    /// |magnitude| with the sign bit of `sign`.
    @inline(__always)
    static func withSign(_ magnitude: V, of sign: V) -> V {
        float(bits(magnitude) | (bits(sign) & I(repeating: Int32(bitPattern: 0x8000_0000))))
    }

    /// Int32 lanes below 2^22 in magnitude to floats, exactly.
    @inline(__always)
    static func real(_ i: I) -> V { float(i &+ I(repeating: 0x4B40_0000)) - splat(12_582_912) }

    /// x rounded to the nearest whole number, for |x| < 2^23 (|x| + 2^23 lies where floats are the
    /// integers), with x's sign.
    @inline(__always)
    static func nearestWhole(_ x: V) -> V {
        let magic = splat(8_388_608)
        return withSign((abs(x) + magic) - magic, of: x)
    }

    /// floor(x) for every float: from 2^23 on floats are whole (NaN and Inf pass too); the sign
    /// bit is x's, as libm gives floor(-0) = -0.
    @inline(__always)
    static func floor(_ x: V) -> V {
        let n = nearestWhole(x)
        let down = n - select(lanes(n .> x), splat(1), V())
        return withSign(select(lanes(abs(x) .< splat(8_388_608)), down, x), of: x)
    }

    /// ceil(x) for every float; ceil(-0.5) = -0 as in libm.
    @inline(__always)
    static func ceil(_ x: V) -> V {
        let n = nearestWhole(x)
        let up = n + select(lanes(n .< x), splat(1), V())
        return withSign(select(lanes(abs(x) .< splat(8_388_608)), up, x), of: x)
    }

    /// Square root. Float.squareRoot() lowers to libm's sqrtf, inlined as one sqrtss per lane
    /// but with a call (for errno) on lanes that are negative or NaN; those lanes are fed 0 and
    /// get NaN afterwards, so the calls never happen.
    @inline(__always)
    static func sqrt(_ x: V) -> V {
        let valid = lanes(x .>= V())
        return select(valid, select(valid, x, V()).squareRoot(), splat(.nan))
    }

    /// x = n ln2 + r with |r| <= ln2 / 2: returns n and q = e^r - 1 (Cephes' expf polynomial).
    /// x is clamped to [-104, 89] first, where e^x is already 0 or +Inf in float.
    @inline(__always)
    static func reduce(_ x: V) -> (n: I, q: V) {
        let clamped = clamp(x, splat(-104), splat(89))
        // Round x / ln2 to the nearest whole number with the 1.5 * 2^23 trick.
        let shifted = clamped * splat(1.44269504088896341) + splat(12_582_912)
        let n = bits(shifted) &- I(repeating: 0x4B40_0000)
        let nf = shifted - splat(12_582_912)
        // ln2 = 0.693359375 - 2.12194440e-4; the first part has 9 bits, so nf * it is exact.
        var r = clamped - nf * splat(0.693359375)
        r = r - nf * splat(-2.12194440e-4)
        var p = splat(1.9875691500e-4)
        p = p * r + splat(1.3981999507e-3)
        p = p * r + splat(8.3334519073e-3)
        p = p * r + splat(4.1665795894e-2)
        p = p * r + splat(1.6666665459e-1)
        p = p * r + splat(5.0000001201e-1)
        return (n, p * (r * r) + r)
    }

    /// v * 2^n for n in [-150, 129]: two normal powers of two, so only the last product rounds
    /// (once, into the subnormals where the result is that small).
    @inline(__always)
    static func scale(_ v: V, _ n: I) -> V {
        let half = n &>> 1
        let rest = n &- half
        let p1 = float((half &+ I(repeating: 127)) &<< 23)
        let p2 = float((rest &+ I(repeating: 127)) &<< 23)
        return (v * p1) * p2
    }

    @inline(__always)
    static func exp(_ x: V) -> V {
        let (n, q) = reduce(x)
        return scale(q + splat(1), n)
    }

    /// e^x - 1 without the cancellation near 0: where |x| <= ln2 / 2 it is q itself.
    @inline(__always)
    static func expm1(_ x: V) -> V {
        let (n, q) = reduce(x)
        let full = scale(q + splat(1), n) - splat(1)
        return select(lanes(n .== I()), q, full)
    }

    /// Natural logarithm (Cephes' logf): x = m 2^e with m in [sqrt(1/2), sqrt(2)), log(m) by a
    /// polynomial in m - 1. Subnormal x are scaled by 2^23 first.
    @inline(__always)
    static func log(_ x: V) -> V {
        let tiny = lanes(x .< splat(.leastNormalMagnitude))
        let normal = select(tiny, x * splat(8_388_608), x)
        let b = bits(normal)
        // Exponent with the mantissa taken in [0.5, 1): 2^(e + 1) * m.
        var e = ((b &>> 23) & I(repeating: 0xFF)) &- I(repeating: 126) &- (tiny & I(repeating: 23))
        var m = float((b & I(repeating: 0x007F_FFFF)) | I(repeating: 0x3F00_0000))
        let below = lanes(m .< splat(0.707106781186547524))
        e = e &- (below & I(repeating: 1))
        m = m + select(below, m, V()) - splat(1)
        let ef = real(e)
        let z = m * m
        var y = logPolynomial(m)
        y = y * m * z
        y = y + ef * splat(-2.12194440e-4)
        y = y - z * splat(0.5)
        var result = m + y + ef * splat(0.693359375)
        result = select(lanes(x .== splat(.infinity)), x, result)
        result = select(lanes(x .== V()), splat(-.infinity), result)
        // Negative x and NaN (x != x) give NaN.
        result = select(lanes(x .< V()) | lanes(x .!= x), splat(.nan), result)
        return result
    }

    /// Cephes' logf polynomial. Kept out of line: inlined into log, LLVM re-vectorises only part
    /// of it and evaluates the other lanes one by one (Swift's SIMD arithmetic is lane loops).
    @inline(never)
    static func logPolynomial(_ m: V) -> V {
        var y = splat(7.0376836292e-2)
        y = y * m + splat(-1.1514610310e-1)
        y = y * m + splat(1.1676998740e-1)
        y = y * m + splat(-1.2420140846e-1)
        y = y * m + splat(1.4249322787e-1)
        y = y * m + splat(-1.6668057665e-1)
        y = y * m + splat(2.0000714765e-1)
        y = y * m + splat(-2.4999993993e-1)
        y = y * m + splat(3.3333331174e-1)
        return y
    }

    /// log(1 + t) for t >= 0 (or NaN): log(u) * t / (u - 1) with u = 1 + t cancels the rounding
    /// of u (Goldberg's trick); where u rounds to 1 the answer is t.
    @inline(__always)
    static func log1p(_ t: V) -> V {
        let u = t + splat(1)
        let d = u - splat(1)
        return select(lanes(d .== V()), t, log(u) * (t / d))
    }

    /// Cephes' tanhf: an odd polynomial below 0.625, else 1 - 2 / (e^2|x| + 1) with x's sign.
    @inline(__always)
    static func tanh(_ x: V) -> V {
        let a = abs(x)
        let s = x * x
        var p = splat(-5.70498872745e-3)
        p = p * s + splat(2.06390887954e-2)
        p = p * s + splat(-5.37397155531e-2)
        p = p * s + splat(1.33314422036e-1)
        p = p * s + splat(-3.33332819422e-1)
        let small = p * s * x + x
        let large = withSign(splat(1) - splat(2) / (exp(a + a) + splat(1)), of: x)
        return select(lanes(a .< splat(0.625)), small, large)
    }

    /// Eigen's erf: x P(x^2) / Q(x^2) on x clamped to [-4, 4] (erf is +-1 in float beyond).
    @inline(__always)
    static func erf(_ x: V) -> V {
        let c = clamp(x, splat(-4), splat(4))
        let x2 = c * c
        var p = splat(-2.72614225801306e-10)
        p = p * x2 + splat(2.77068142495902e-08)
        p = p * x2 + splat(-2.10102402082508e-06)
        p = p * x2 + splat(-5.69250639462346e-05)
        p = p * x2 + splat(-7.34990630326855e-04)
        p = p * x2 + splat(-2.95459980854025e-03)
        p = p * x2 + splat(-1.60960333262415e-02)
        var q = splat(-1.45660718464996e-05)
        q = q * x2 + splat(-2.13374055278905e-04)
        q = q * x2 + splat(-1.68282697438203e-03)
        q = q * x2 + splat(-7.37332916720468e-03)
        q = q * x2 + splat(-1.42647390514189e-02)
        return c * p / q
    }
}
