/// What a convolution does to its outputs after the bias, taken over from the nodes that followed
/// it in the graph: y = activation(conv + bias + residual). The tiled kernels apply it tile by
/// tile while the tile is still in cache, so a fused Add or activation costs no pass over memory.
public struct ConvEpilogue {
    /// Same shape and layout as the output (the other operand of a fused residual Add).
    public var residual: UnsafePointer<Float>?
    public var activation: UnaryFunction?

    public init(residual: UnsafePointer<Float>? = nil, activation: UnaryFunction? = nil) {
        self.residual = residual
        self.activation = activation
    }

    public static let none = ConvEpilogue()

    public var isEmpty: Bool { residual == nil && activation == nil }

    /// The epilogue of the part of the output that starts `elements` floats further on.
    public func shifted(by elements: Int) -> ConvEpilogue {
        ConvEpilogue(residual: residual.map { $0 + elements }, activation: activation)
    }

    /// `rows` runs of `count` floats, `stride` apart, from the output's first element (the
    /// residual read at the same offsets).
    func apply(rows: Int, count: Int, stride: Int, output: UnsafeMutablePointer<Float>) {
        if isEmpty { return }
        if stride == count && rows > 1 {
            // Rows end to end (a tile of every channel, channels-last): one run, not a call per
            // row of 24 or 72 floats.
            apply(rows: 1, count: rows * count, stride: 0, output: output)
            return
        }
        for r in 0..<rows {
            let y = output + r * stride
            if let residual { Self.add(residual + r * stride, into: y, count) }
            if let activation { ElementwiseMath.apply(activation, y, y, count) }
        }
    }

    /// A whole output of `elements` floats, spread over the threads (paths without tiles).
    public func apply(elements: Int, output: UnsafeMutablePointer<Float>, parallel: Parallel) {
        if isEmpty || elements == 0 { return }
        let chunk = 1 << 14
        parallel.forEachRange((elements + chunk - 1) / chunk) { _, chunks in
            let start = chunks.lowerBound * chunk
            let end = min(elements, chunks.upperBound * chunk)
            shifted(by: start).apply(rows: 1, count: end - start, stride: 0, output: output + start)
        }
    }

    private static func add(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, _ count: Int) {
        var i = 0
        while i + 16 <= count {
            ElementwiseKernels.store16(ElementwiseKernels.load16(y + i) + ElementwiseKernels.load16(x + i), y + i)
            i += 16
        }
        while i < count {
            y[i] += x[i]
            i += 1
        }
    }
}
