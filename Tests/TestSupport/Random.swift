/// Deterministic pseudo-random numbers for tests (SplitMix64), so failures reproduce.
public struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// `count` floats uniform in `range`.
    public mutating func floats(_ count: Int, in range: ClosedRange<Float> = -1...1) -> [Float] {
        (0..<count).map { _ in Float.random(in: range, using: &self) }
    }
}

/// Largest |a - b| / (1 + |b|) over two equal-length arrays (mixed absolute/relative error).
public func maxMixedError(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count, "length mismatch \(a.count) vs \(b.count)")
    var worst: Float = 0
    for i in 0..<a.count {
        let e = abs(a[i] - b[i]) / (1 + abs(b[i]))
        if e.isNaN { return .infinity }
        worst = max(worst, e)
    }
    return worst
}
