/// One-layer recurrent networks (ONNX RNN, GRU and LSTM) on float32.
///
/// Each direction projects the inputs of every time step with one GEMM (X [rows, I] times W^T,
/// biases folded in), then walks the steps: one recurrent GEMM (H_{t-1} times R^T) added onto the
/// step's projections, then the gate math row by row with the SIMD activations of
/// ElementwiseMath. The gate order, equations and the treatment of sequence_lens follow the ONNX
/// operator definitions and onnxruntime's CPU kernels (deep_cpu_lstm, deep_cpu_gru, rnn):
/// - clip bounds each gate's input to the activation, after the biases and peepholes are added;
/// - a batch row with sequence length L < T computes L steps (reverse: x[L-1] down to x[0]); Y
///   is 0 at t >= L, and Y_h / Y_c hold the state after its last step, or 0 when L == 0.
public enum RecurrentCell: Sendable, Equatable {
    /// Ht = f(Xt Wi^T + Ht-1 Ri^T + Wbi + Rbi)
    case rnn
    /// gates z, r, h (ONNX order); linear_before_reset applies r after the recurrent product.
    case gru(linearBeforeReset: Bool)
    /// gates i, o, f, c (ONNX order); inputForget couples f = 1 - i.
    case lstm(inputForget: Bool)

    public var gateCount: Int {
        switch self {
        case .rnn: return 1
        case .gru: return 3
        case .lstm: return 4
        }
    }

    /// Activations per direction (f; f, g; f, g, h).
    public var activationCount: Int {
        switch self {
        case .rnn: return 1
        case .gru: return 2
        case .lstm: return 3
        }
    }
}

/// The activation functions the ONNX recurrent operators accept, with their alpha / beta.
public enum RecurrentActivation: Sendable, Equatable {
    case relu, tanh, sigmoid, softsign, softplus
    case affine(alpha: Float, beta: Float)
    case leakyRelu(alpha: Float)
    case thresholdedRelu(alpha: Float)
    case scaledTanh(alpha: Float, beta: Float)
    case hardSigmoid(alpha: Float, beta: Float)
    case elu(alpha: Float)

    /// x = activation(x) for `count` floats, SIMD16 bodies.
    public func apply(_ x: UnsafeMutablePointer<Float>, _ count: Int) {
        typealias M = VectorMath
        switch self {
        case .relu: ElementwiseMath.apply(.relu, x, x, count)
        case .tanh: ElementwiseMath.apply(.tanh, x, x, count)
        case .sigmoid: ElementwiseMath.apply(.sigmoid, x, x, count)
        case .softplus: ElementwiseMath.apply(.softplus, x, x, count)
        case .leakyRelu(let alpha): ElementwiseMath.apply(.leakyRelu(alpha: alpha), x, x, count)
        case .hardSigmoid(let alpha, let beta): ElementwiseMath.apply(.hardSigmoid(alpha: alpha, beta: beta), x, x, count)
        case .elu(let alpha): ElementwiseMath.apply(.elu(alpha: alpha), x, x, count)
        case .softsign:
            let one = M.splat(1)
            ElementwiseMath.map(x, x, count) { $0 / (one + M.abs($0)) }
        case .affine(let alpha, let beta):
            let a = M.splat(alpha), b = M.splat(beta)
            ElementwiseMath.map(x, x, count) { $0 * a + b }
        case .thresholdedRelu(let alpha):
            let a = M.splat(alpha), zero = M.V()
            // x > alpha ? x : 0 (a NaN lane fails the comparison and gives 0, as onnxruntime's loop does).
            ElementwiseMath.map(x, x, count) { M.select(M.lanes($0 .> a), $0, zero) }
        case .scaledTanh(let alpha, let beta):
            let a = M.splat(alpha), b = M.splat(beta)
            ElementwiseMath.map(x, x, count) { a * M.tanh(b * $0) }
        }
    }
}

/// Sizes of one recurrent layer.
public struct RecurrentGeometry: Sendable {
    public var sequenceLength: Int     // T
    public var batch: Int              // B
    public var inputSize: Int          // I
    public var hiddenSize: Int         // H
    public var directions: Int         // 1 or 2
    /// layout 1: X [B, T, I], Y [B, T, D, H], states [B, D, H]; layout 0: X [T, B, I], Y [T, D, B, H], states [D, B, H].
    public var batchFirst: Bool

    public init(sequenceLength: Int, batch: Int, inputSize: Int, hiddenSize: Int, directions: Int, batchFirst: Bool) {
        self.sequenceLength = sequenceLength
        self.batch = batch
        self.inputSize = inputSize
        self.hiddenSize = hiddenSize
        self.directions = directions
        self.batchFirst = batchFirst
    }

    /// Workspace floats one direction needs: all projections, one step's gates, and four [B, H]
    /// buffers (hidden state, cell state, scratch, GRU's reset product).
    func directionFloats(_ cell: RecurrentCell) -> Int {
        let gh = cell.gateCount * hiddenSize
        return sequenceLength * batch * gh + batch * gh + 4 * batch * hiddenSize
    }

    public func workspaceFloats(_ cell: RecurrentCell) -> Int { directions * directionFloats(cell) }

    @inline(__always) func inputRow(_ t: Int, _ b: Int) -> Int { batchFirst ? b * sequenceLength + t : t * batch + b }

    @inline(__always) func outputOffset(_ t: Int, _ d: Int, _ b: Int) -> Int {
        (batchFirst ? (b * sequenceLength + t) * directions + d : (t * directions + d) * batch + b) * hiddenSize
    }

    @inline(__always) func stateOffset(_ d: Int, _ b: Int) -> Int {
        (batchFirst ? b * directions + d : d * batch + b) * hiddenSize
    }
}

/// The tensors of one run; optional ones are nil when the node does not have them.
public struct RecurrentTensors {
    public var x: UnsafePointer<Float>
    public var w: UnsafePointer<Float>          // [D, G*H, I]
    public var r: UnsafePointer<Float>          // [D, G*H, H]
    public var bias: UnsafePointer<Float>?      // [D, 2*G*H]: Wb then Rb
    public var peephole: UnsafePointer<Float>?  // [D, 3*H]: i, o, f
    public var sequenceLengths: UnsafePointer<Int32>?  // [B], each in 0...T (checked by the caller)
    public var initialH: UnsafePointer<Float>?
    public var initialC: UnsafePointer<Float>?
    public var y: UnsafeMutablePointer<Float>?
    public var yH: UnsafeMutablePointer<Float>?
    public var yC: UnsafeMutablePointer<Float>?

    public init(x: UnsafePointer<Float>, w: UnsafePointer<Float>, r: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                peephole: UnsafePointer<Float>?, sequenceLengths: UnsafePointer<Int32>?, initialH: UnsafePointer<Float>?,
                initialC: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>?, yH: UnsafeMutablePointer<Float>?,
                yC: UnsafeMutablePointer<Float>?) {
        self.x = x; self.w = w; self.r = r; self.bias = bias; self.peephole = peephole
        self.sequenceLengths = sequenceLengths; self.initialH = initialH; self.initialC = initialC
        self.y = y; self.yH = yH; self.yC = yC
    }
}

public enum Recurrent {
    /// Runs every direction. `activations[d]` holds direction d's functions (f[, g[, h]]);
    /// `reverse[d]` says whether it walks the sequence backwards; `clip` (> 0) bounds the gate inputs.
    public static func run(_ cell: RecurrentCell, _ geometry: RecurrentGeometry, activations: [[RecurrentActivation]],
                           reverse: [Bool], clip: Float?, _ tensors: RecurrentTensors,
                           workspace: UnsafeMutablePointer<Float>, parallel: Parallel) {
        // Every GEMM here is one OpenBLAS call on the calling thread (Gemm.sgemm), and the
        // directions run one after the other. Running the two directions on two threads, or
        // splitting the projection GEMM with MatrixMultiply, gave a wrong Y (a whole direction) in
        // about 1 fresh 2-thread session in 10 inside a CRNN (conv stack, then this op). The cause
        // is not established: concurrent sgemm calls in a C program and a Gemm op in the same
        // place did not fail. With single calls, 0 of 480 such sessions failed.
        let perDirection = geometry.directionFloats(cell)
        for d in 0..<geometry.directions {
            runDirection(d, cell, geometry, activations[d], reverse[d], clip, tensors, workspace + d * perDirection, parallel)
        }
    }

    private static func runDirection(_ d: Int, _ cell: RecurrentCell, _ g: RecurrentGeometry, _ act: [RecurrentActivation],
                                     _ reverse: Bool, _ clip: Float?, _ t: RecurrentTensors,
                                     _ ws: UnsafeMutablePointer<Float>, _ parallel: Parallel) {
        let (T, B, I, H) = (g.sequenceLength, g.batch, g.inputSize, g.hiddenSize)
        let gh = cell.gateCount * H
        let projections = ws                       // [rows, gh], row = g.inputRow(t, b)
        let gates = projections + T * B * gh       // [B, gh]
        let hidden = gates + B * gh                // [B, H]
        let cellState = hidden + B * H             // [B, H]
        let scratch = cellState + B * H            // [B, H]
        let reset = scratch + B * H                // [B, H]
        let w = t.w + d * gh * I, r = t.r + d * gh * H
        let wb = t.bias.map { $0 + d * 2 * gh }
        let peephole = t.peephole.map { $0 + d * 3 * H }
        var gruRecurrentBias: UnsafePointer<Float>? = nil   // Rbh, added inside r * (...) when linear_before_reset

        // Projections of all steps, biases first (the GEMM accumulates onto them).
        if T * B > 0 && gh > 0 {
            if let wb {
                let rb = wb + gh
                var linearBeforeReset = false
                if case .gru(let lbr) = cell { linearBeforeReset = lbr }
                for j in 0..<gh { projections[j] = wb[j] + rb[j] }
                if linearBeforeReset {
                    for j in 2 * H..<3 * H { projections[j] = wb[j] }
                    gruRecurrentBias = rb + 2 * H
                }
                for row in 1..<(T * B) { (projections + row * gh).update(from: projections, count: gh) }
            }
            product(m: T * B, n: gh, k: I, a: t.x, lda: I, b: w, ldb: I,
                               beta: wb == nil ? 0 : 1, c: projections, ldc: gh)
        }

        // Initial states and sequence lengths.
        var maxLength = 0
        for b in 0..<B {
            let length = t.sequenceLengths.map { Int($0[b]) } ?? T
            maxLength = max(maxLength, length)
            if let h0 = t.initialH { (hidden + b * H).update(from: h0 + g.stateOffset(d, b), count: H) }
            else { (hidden + b * H).update(repeating: 0, count: H) }
            if let c0 = t.initialC { (cellState + b * H).update(from: c0 + g.stateOffset(d, b), count: H) }
            else { (cellState + b * H).update(repeating: 0, count: H) }
        }
        @inline(__always) func length(_ b: Int) -> Int { t.sequenceLengths.map { Int($0[b]) } ?? T }
        let f = act[0]
        let gAct = act.count > 1 ? act[1] : f
        let hAct = act.count > 2 ? act[2] : f

        for step in 0..<maxLength {
            // This step's projections (each row at its own time: reverse walks from its length down).
            for b in 0..<B {
                let len = length(b)
                if step >= len { continue }
                let time = reverse ? len - 1 - step : step
                (gates + b * gh).update(from: projections + g.inputRow(time, b) * gh, count: gh)
            }
            switch cell {
            case .rnn, .lstm:
                product(m: B, n: gh, k: H, a: hidden, lda: H, b: r, ldb: H,
                                   beta: 1, c: gates, ldc: gh)
            case .gru(let linearBeforeReset):
                product(m: B, n: 2 * H, k: H, a: hidden, lda: H, b: r, ldb: H,
                                   beta: 1, c: gates, ldc: gh)
                if linearBeforeReset {
                    product(m: B, n: H, k: H, a: hidden, lda: H, b: r + 2 * H * H, ldb: H,
                                       beta: 0, c: scratch, ldc: H)
                }
            }
            switch cell {
            case .rnn:
                for b in 0..<B where step < length(b) {
                    let row = gates + b * gh
                    clipValues(row, H, clip)
                    f.apply(row, H)
                    (hidden + b * H).update(from: row, count: H)
                }
            case .lstm(let inputForget):
                for b in 0..<B where step < length(b) {
                    lstmRow(gates + b * gh, cellState + b * H, hidden + b * H, scratch + b * H, H, peephole,
                            inputForget, clip, f, gAct, hAct)
                }
            case .gru(let linearBeforeReset):
                // z and r for every active row.
                for b in 0..<B where step < length(b) {
                    let row = gates + b * gh
                    clipValues(row, 2 * H, clip)
                    f.apply(row, 2 * H)
                    let rGate = row + H, h = hidden + b * H
                    if linearBeforeReset {
                        let linear = scratch + b * H, candidate = row + 2 * H
                        if let rbh = gruRecurrentBias {
                            for j in 0..<H { candidate[j] += rGate[j] * (linear[j] + rbh[j]) }
                        } else {
                            for j in 0..<H { candidate[j] += rGate[j] * linear[j] }
                        }
                    } else {
                        let rh = reset + b * H
                        for j in 0..<H { rh[j] = rGate[j] * h[j] }
                    }
                }
                if !linearBeforeReset {
                    // Rows past their length hold stale values here; their results are never used.
                    product(m: B, n: H, k: H, a: reset, lda: H, b: r + 2 * H * H, ldb: H,
                                       beta: 1, c: gates + 2 * H, ldc: gh)
                }
                for b in 0..<B where step < length(b) {
                    let row = gates + b * gh, candidate = row + 2 * H, h = hidden + b * H
                    clipValues(candidate, H, clip)
                    gAct.apply(candidate, H)
                    for j in 0..<H { h[j] = (1 - row[j]) * candidate[j] + row[j] * h[j] }
                }
            }
            if let y = t.y {
                for b in 0..<B where step < length(b) {
                    let time = reverse ? length(b) - 1 - step : step
                    (y + g.outputOffset(time, d, b)).update(from: hidden + b * H, count: H)
                }
            }
        }

        for b in 0..<B {
            let len = length(b)
            if let y = t.y {
                for time in len..<T { (y + g.outputOffset(time, d, b)).update(repeating: 0, count: H) }
            }
            if let yH = t.yH {
                if len == 0 { (yH + g.stateOffset(d, b)).update(repeating: 0, count: H) }
                else { (yH + g.stateOffset(d, b)).update(from: hidden + b * H, count: H) }
            }
            if let yC = t.yC {
                if len == 0 { (yC + g.stateOffset(d, b)).update(repeating: 0, count: H) }
                else { (yC + g.stateOffset(d, b)).update(from: cellState + b * H, count: H) }
            }
        }
    }

    /// C (+)= A B^T with one OpenBLAS call on this thread; k == 0 leaves beta * C.
    @inline(__always)
    private static func product(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                                beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        if m == 0 || n == 0 { return }
        if k == 0 {
            if beta == 0 { for i in 0..<m { (c + i * ldc).update(repeating: 0, count: n) } }
            return
        }
        Gemm.sgemm(transposeB: true, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
    }

    /// One LSTM row: gates [i, o, f, c] (projections + recurrent product + biases) become the new
    /// cell state (in `c`) and hidden state (in `h`); `scratch` holds h(C).
    @inline(__always)
    private static func lstmRow(_ row: UnsafeMutablePointer<Float>, _ c: UnsafeMutablePointer<Float>,
                                _ h: UnsafeMutablePointer<Float>, _ scratch: UnsafeMutablePointer<Float>, _ H: Int,
                                _ peephole: UnsafePointer<Float>?, _ inputForget: Bool, _ clip: Float?,
                                _ f: RecurrentActivation, _ g: RecurrentActivation, _ hAct: RecurrentActivation) {
        let i = row, o = row + H, fg = row + 2 * H, cand = row + 3 * H
        if let p = peephole { for j in 0..<H { i[j] += p[j] * c[j] } }
        clipValues(i, H, clip)
        f.apply(i, H)
        if inputForget {
            for j in 0..<H { fg[j] = 1 - i[j] }
        } else {
            if let p = peephole { for j in 0..<H { fg[j] += p[2 * H + j] * c[j] } }
            clipValues(fg, H, clip)
            f.apply(fg, H)
        }
        clipValues(cand, H, clip)
        g.apply(cand, H)
        for j in 0..<H { c[j] = fg[j] * c[j] + i[j] * cand[j] }
        if let p = peephole { for j in 0..<H { o[j] += p[H + j] * c[j] } }
        clipValues(o, H, clip)
        f.apply(o, H)
        scratch.update(from: c, count: H)
        hAct.apply(scratch, H)
        for j in 0..<H { h[j] = o[j] * scratch[j] }
    }

    @inline(__always)
    private static func clipValues(_ x: UnsafeMutablePointer<Float>, _ count: Int, _ clip: Float?) {
        if let clip { ElementwiseMath.apply(.clip(low: -clip, high: clip), x, x, count) }
    }
}
