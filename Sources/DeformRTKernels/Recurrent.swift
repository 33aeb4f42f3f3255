/// One-layer recurrent networks (ONNX RNN, GRU and LSTM) on float32.
///
/// The inputs of every time step are projected with one GEMM (X [rows, I] times W^T, biases
/// folded in), then each direction walks its steps: one recurrent GEMM (H_{t-1} times R^T) added
/// onto the step's projections, then the gate math row by row with the SIMD activations of
/// ElementwiseMath (LSTM's default activations in one fused SIMD16 pass).
///
/// Two engines, as the convolutions have (ConvEngine.preferred): on the wide-SIMD tiers W and R
/// are packed for PackedGemm's kernels (RecurrentPacking; once per plan when they are constants),
/// the projection of all directions is one product over the session's threads and the two
/// directions of a bidirectional layer run on two threads. Elsewhere every product is one
/// OpenBLAS call on the calling thread and the directions run in turn (the serial OpenBLAS is not
/// safe to call from two threads; Gemm.swift). The gate order, equations and the treatment of sequence_lens follow the ONNX
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
        switch self {
        case .relu: ElementwiseMath.apply(.relu, x, x, count)
        case .tanh: ElementwiseMath.apply(.tanh, x, x, count)
        case .sigmoid: ElementwiseMath.apply(.sigmoid, x, x, count)
        case .softplus: ElementwiseMath.apply(.softplus, x, x, count)
        case .leakyRelu(let alpha): ElementwiseMath.apply(.leakyRelu(alpha: alpha), x, x, count)
        case .hardSigmoid(let alpha, let beta): ElementwiseMath.apply(.hardSigmoid(alpha: alpha, beta: beta), x, x, count)
        case .elu(let alpha): ElementwiseMath.apply(.elu(alpha: alpha), x, x, count)
        case .softsign: ElementwiseMath.apply(.softsign, x, x, count)
        case .affine(let alpha, let beta): ElementwiseMath.map(x, x, count, Affine(alpha: alpha, beta: beta))
        // x > alpha ? x : 0 (a NaN lane fails the comparison and gives 0, as onnxruntime's loop does).
        case .thresholdedRelu(let alpha): ElementwiseMath.apply(.thresholdedRelu(alpha: alpha), x, x, count)
        case .scaledTanh(let alpha, let beta): ElementwiseMath.map(x, x, count, ScaledTanh(alpha: alpha, beta: beta))
        }
    }

    private struct Affine: LaneFunction {
        let alpha: Float, beta: Float
        @inline(__always) func callAsFunction(_ v: SIMD16<Float>) -> SIMD16<Float> {
            v * VectorMath.splat(alpha) + VectorMath.splat(beta)
        }
    }

    private struct ScaledTanh: LaneFunction {
        let alpha: Float, beta: Float
        @inline(__always) func callAsFunction(_ v: SIMD16<Float>) -> SIMD16<Float> {
            VectorMath.splat(alpha) * VectorMath.tanh(VectorMath.splat(beta) * v)
        }
    }
}

/// Sizes of one recurrent layer.
public struct RecurrentGeometry: Sendable, Equatable {
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

    /// Workspace floats one direction needs on the OpenBLAS engine: all projections, one step's
    /// gates, and four [B, H] buffers (hidden state, cell state, scratch, GRU's reset product).
    func directionFloats(_ cell: RecurrentCell) -> Int {
        let gh = cell.gateCount * hiddenSize
        return sequenceLength * batch * gh + stepFloats(cell)
    }

    /// One step's gates and the four [B, H] buffers.
    func stepFloats(_ cell: RecurrentCell) -> Int {
        let gh = cell.gateCount * hiddenSize
        return batch * gh + 4 * batch * hiddenSize
    }

    /// Workspace floats of `Recurrent.run` on `engine` with `threads` threads.
    public func workspaceFloats(_ cell: RecurrentCell, engine: ConvEngine = .preferred, threads: Int = 1) -> Int {
        switch engine {
        case .blas: return directions * directionFloats(cell)
        case .packedSIMD:
            let packing = RecurrentPacking(cell, self)
            return packing.projectionFloats + packing.projection.scratchFloats(threads: threads)
                + directions * packing.directionFloats(threads: threads)
        }
    }

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

/// Where the packed weights of one layer lie (RecurrentPacking.pack), and the products' tilings:
/// W of every direction as one B of the projection (k = I, n = D * G * H), then per direction R
/// (GRU: the z and r rows, then the h rows, since the h product takes another left operand),
/// then the bias of the projection (Wb + Rb; GRU with linear_before_reset: Wbh alone).
public struct RecurrentPacking: Sendable {
    public let cell: RecurrentCell
    public let geometry: RecurrentGeometry
    let projectionShape: PackedMatrixShape
    let projection: PackedLinearPlan
    /// Per direction: (columns, offset from the direction's R block) of each R part.
    let recurrentParts: [(rows: Int, shape: PackedMatrixShape, plan: PackedLinearPlan)]
    let recurrentFloats: Int       // one direction's packed R parts
    let recurrentAt: Int           // first direction's packed R, after W
    let biasAt: Int
    public let floatCount: Int

    public init(_ cell: RecurrentCell, _ g: RecurrentGeometry) {
        self.cell = cell
        geometry = g
        let H = g.hiddenSize, gh = cell.gateCount * H
        projectionShape = PackedMatrixShape(k: g.inputSize, n: g.directions * gh)
        projection = PackedLinearPlan(m: g.sequenceLength * g.batch, n: g.directions * gh, k: g.inputSize)
        var rows: [Int]
        switch cell {
        case .gru: rows = [2 * H, H]
        case .rnn, .lstm: rows = [gh]
        }
        recurrentParts = rows.map { (rows: $0, shape: PackedMatrixShape(k: H, n: $0), plan: PackedLinearPlan(m: g.batch, n: $0, k: H)) }
        recurrentFloats = recurrentParts.reduce(0) { $0 + Self.aligned($1.shape.floatCount) }
        recurrentAt = Self.aligned(projectionShape.floatCount)
        biasAt = recurrentAt + g.directions * recurrentFloats
        floatCount = biasAt + Self.aligned(g.directions * gh)
    }

    static func aligned(_ n: Int) -> Int { (n + 15) & ~15 }

    var projectionFloats: Int { Self.aligned(geometry.sequenceLength * geometry.batch * geometry.directions * cell.gateCount * geometry.hiddenSize) }

    /// One direction's region: step buffers and the step products' scratch.
    func directionFloats(threads: Int) -> Int {
        var scratch = 0  // the largest part's (a loop: no array per run)
        for part in recurrentParts { scratch = max(scratch, part.plan.scratchFloats(threads: threads)) }
        return Self.aligned(geometry.stepFloats(cell)) + Self.aligned(scratch)
    }

    /// W [D, G*H, I], R [D, G*H, H] and the optional bias [D, 2*G*H] into `packed` (`floatCount` floats).
    public func pack(w: UnsafePointer<Float>, r: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                     into packed: UnsafeMutablePointer<Float>, parallel: Parallel) {
        let g = geometry, H = g.hiddenSize, gh = cell.gateCount * H
        projectionShape.pack(w, ldb: g.inputSize, transposed: true, into: packed, parallel: parallel)
        for d in 0..<g.directions {
            var at = recurrentAt + d * recurrentFloats, row = 0
            for part in recurrentParts {
                part.shape.pack(r + d * gh * H + row * H, ldb: H, transposed: true, into: packed + at, parallel: parallel)
                at += Self.aligned(part.shape.floatCount)
                row += part.rows
            }
        }
        let combined = packed + biasAt
        guard let bias else {
            combined.update(repeating: 0, count: g.directions * gh)
            return
        }
        var linearBeforeReset = false
        if case .gru(let lbr) = cell { linearBeforeReset = lbr }
        for d in 0..<g.directions {
            let wb = bias + d * 2 * gh, rb = wb + gh, out = combined + d * gh
            for j in 0..<gh { out[j] = linearBeforeReset && j >= 2 * H ? wb[j] : wb[j] + rb[j] }
        }
    }
}

public enum Recurrent {
    /// Runs every direction. `activations[d]` holds direction d's functions (f[, g[, h]]);
    /// `reverse[d]` says whether it walks the sequence backwards; `clip` (> 0) bounds the gate inputs.
    /// `packed`: the weights from `packing.pack` (the packedSIMD engine); nil: the OpenBLAS engine.
    /// `workspace`: `geometry.workspaceFloats(cell, engine:, threads: parallel.threads)` floats.
    public static func run(_ cell: RecurrentCell, _ geometry: RecurrentGeometry, activations: [[RecurrentActivation]],
                           reverse: [Bool], clip: Float?, _ tensors: RecurrentTensors, packing: RecurrentPacking?,
                           packed: UnsafePointer<Float>?, workspace: UnsafeMutablePointer<Float>, parallel: Parallel) {
        let g = geometry, gh = cell.gateCount * g.hiddenSize
        guard let packing, let packed else {
            // OpenBLAS: every product one call on this thread, the directions in turn.
            let perDirection = g.directionFloats(cell)
            for d in 0..<g.directions {
                let ws = workspace + d * perDirection
                let projections = ws
                projectOneDirection(d, cell, g, tensors, into: projections)
                runDirection(d, cell, g, activations[d], reverse[d], clip, tensors, projections: projections, ldp: gh,
                             products: .blas(r: tensors.r + d * gh * g.hiddenSize), ws + g.sequenceLength * g.batch * gh)
            }
            return
        }
        let projections = workspace
        let projectionScratch = workspace + packing.projectionFloats
        let directionsAt = projectionScratch + packing.projection.scratchFloats(threads: parallel.threads)
        let directionFloats = packing.directionFloats(threads: parallel.threads)
        // Every direction's projections of every step in one product: [T*B, D*G*H], biases in its epilogue.
        let ldp = g.directions * gh
        let hasBias = tensors.bias != nil
        packing.projection.run(
            a: tensors.x, lda: g.inputSize, packed: packed, c: projections, ldc: ldp,
            epilogue: hasBias ? LinearEpilogue(addend: packed + packing.biasAt, addendRowStride: 0) : .none,
            scratch: projectionScratch, parallel: parallel)
        func direction(_ d: Int, _ parallel: Parallel) {
            let region = directionsAt + d * directionFloats
            let parts = packing.recurrentParts
            var at = packing.recurrentAt + d * packing.recurrentFloats
            let first = packed + at
            at += RecurrentPacking.aligned(parts[0].shape.floatCount)
            let second = parts.count > 1 ? packed + at : first
            let products = StepProducts.packed(first: first, firstPlan: parts[0].plan, second: second,
                                               secondPlan: parts[parts.count - 1].plan,
                                               scratch: region + RecurrentPacking.aligned(g.stepFloats(cell)),
                                               parallel: parallel)
            runDirection(d, cell, g, activations[d], reverse[d], clip, tensors, projections: projections + d * gh,
                         ldp: ldp, products: products, region)
        }
        // Two directions are two independent chains of small steps: one thread each.
        if g.directions == 2 && parallel.threads >= 2 {
            parallel.forEach(2) { d in direction(d, .serial) }
        } else {
            for d in 0..<g.directions { direction(d, parallel) }
        }
    }

    /// The recurrent products of one direction: part 0 is R's first rows (all of them for RNN and
    /// LSTM, z and r for GRU), part 1 GRU's h rows.
    enum StepProducts {
        case blas(r: UnsafePointer<Float>)
        case packed(first: UnsafePointer<Float>, firstPlan: PackedLinearPlan, second: UnsafePointer<Float>,
                    secondPlan: PackedLinearPlan, scratch: UnsafeMutablePointer<Float>, parallel: Parallel)

        /// C (B rows, ldc apart) (+)= A (B x H) * part^T.
        @inline(__always)
        func multiply(part: Int, a: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool,
                      _ g: RecurrentGeometry, columns: Int) {
            let H = g.hiddenSize
            switch self {
            case .blas(let r):
                Recurrent.product(m: g.batch, n: columns, k: H, a: a, lda: H, b: part == 0 ? r : r + 2 * H * H, ldb: H,
                                  beta: accumulate ? 1 : 0, c: c, ldc: ldc)
            case let .packed(first, firstPlan, second, secondPlan, scratch, parallel):
                (part == 0 ? firstPlan : secondPlan).run(
                    a: a, lda: H, packed: part == 0 ? first : second, c: c, ldc: ldc,
                    epilogue: accumulate ? LinearEpilogue(accumulates: true) : .none, scratch: scratch, parallel: parallel)
            }
        }
    }

    /// The OpenBLAS engine's projections of one direction, [T*B, G*H], biases first (the GEMM
    /// accumulates onto them).
    private static func projectOneDirection(_ d: Int, _ cell: RecurrentCell, _ g: RecurrentGeometry, _ t: RecurrentTensors,
                                            into projections: UnsafeMutablePointer<Float>) {
        let (T, B, I, H) = (g.sequenceLength, g.batch, g.inputSize, g.hiddenSize)
        let gh = cell.gateCount * H
        guard T * B > 0 && gh > 0 else { return }
        let w = t.w + d * gh * I
        let wb = t.bias.map { $0 + d * 2 * gh }
        if let wb {
            let rb = wb + gh
            var linearBeforeReset = false
            if case .gru(let lbr) = cell { linearBeforeReset = lbr }
            for j in 0..<gh { projections[j] = wb[j] + rb[j] }
            if linearBeforeReset {
                for j in 2 * H..<3 * H { projections[j] = wb[j] }
            }
            for row in 1..<(T * B) { (projections + row * gh).update(from: projections, count: gh) }
        }
        product(m: T * B, n: gh, k: I, a: t.x, lda: I, b: w, ldb: I, beta: wb == nil ? 0 : 1, c: projections, ldc: gh)
    }

    /// Walks one direction's steps. `projections`: its [T*B, G*H] projections, rows `ldp` apart;
    /// `ws`: `geometry.stepFloats(cell)` floats.
    private static func runDirection(_ d: Int, _ cell: RecurrentCell, _ g: RecurrentGeometry, _ act: [RecurrentActivation],
                                     _ reverse: Bool, _ clip: Float?, _ t: RecurrentTensors,
                                     projections: UnsafePointer<Float>, ldp: Int, products: StepProducts,
                                     _ ws: UnsafeMutablePointer<Float>) {
        let (T, B, H) = (g.sequenceLength, g.batch, g.hiddenSize)
        let gh = cell.gateCount * H
        let gates = ws                             // [B, gh]
        let hidden = gates + B * gh                // [B, H]
        let cellState = hidden + B * H             // [B, H]
        let scratch = cellState + B * H            // [B, H]
        let reset = scratch + B * H                // [B, H]
        let peephole = t.peephole.map { $0 + d * 3 * H }
        // Rbh, added inside r * (...) when linear_before_reset (the projections hold Wbh alone).
        var gruRecurrentBias: UnsafePointer<Float>? = nil
        if case .gru(true) = cell, let bias = t.bias { gruRecurrentBias = bias + d * 2 * gh + gh + 2 * H }

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
        var fusedLSTM = false
        if case .lstm(false) = cell, peephole == nil, clip == nil, f == .sigmoid, gAct == .tanh, hAct == .tanh { fusedLSTM = true }

        for step in 0..<maxLength {
            // This step's projections (each row at its own time: reverse walks from its length down).
            for b in 0..<B {
                let len = length(b)
                if step >= len { continue }
                let time = reverse ? len - 1 - step : step
                (gates + b * gh).update(from: projections + g.inputRow(time, b) * ldp, count: gh)
            }
            if H > 0 {
                switch cell {
                case .rnn, .lstm:
                    products.multiply(part: 0, a: hidden, c: gates, ldc: gh, accumulate: true, g, columns: gh)
                case .gru(let linearBeforeReset):
                    products.multiply(part: 0, a: hidden, c: gates, ldc: gh, accumulate: true, g, columns: 2 * H)
                    if linearBeforeReset {
                        products.multiply(part: 1, a: hidden, c: scratch, ldc: H, accumulate: false, g, columns: H)
                    }
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
                    if fusedLSTM {
                        lstmRowSigmoidTanh(gates + b * gh, cellState + b * H, hidden + b * H, H)
                    } else {
                        lstmRow(gates + b * gh, cellState + b * H, hidden + b * H, scratch + b * H, H, peephole,
                                inputForget, clip, f, gAct, hAct)
                    }
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
                if !linearBeforeReset && H > 0 {
                    // Rows past their length hold stale values here; their results are never used.
                    products.multiply(part: 1, a: reset, c: gates + 2 * H, ldc: gh, accumulate: true, g, columns: H)
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
    static func product(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        if m == 0 || n == 0 { return }
        if k == 0 {
            if beta == 0 { for i in 0..<m { (c + i * ldc).update(repeating: 0, count: n) } }
            return
        }
        Gemm.sgemm(transposeB: true, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
    }

    /// lstmRow with the default activations (Sigmoid, Tanh, Tanh), no peepholes, clip or
    /// input_forget, in one SIMD16 pass over the hidden units (the tail on zero-padded copies).
    @inline(__always)
    private static func lstmRowSigmoidTanh(_ row: UnsafeMutablePointer<Float>, _ c: UnsafeMutablePointer<Float>,
                                           _ h: UnsafeMutablePointer<Float>, _ H: Int) {
        typealias V = SIMD16<Float>
        typealias M = VectorMath
        let one = M.splat(1)
        @inline(__always) func sigmoid(_ x: V) -> V { one / (one + M.exp(-x)) }
        @inline(__always) func load(_ p: UnsafePointer<Float>, _ count: Int) -> V {
            if count == 16 { return UnsafeRawPointer(p).loadUnaligned(as: V.self) }
            var v = V()
            withUnsafeMutableBytes(of: &v) { $0.baseAddress!.copyMemory(from: p, byteCount: count * 4) }
            return v
        }
        @inline(__always) func store(_ v: V, _ p: UnsafeMutablePointer<Float>, _ count: Int) {
            if count == 16 { UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self); return }
            withUnsafeBytes(of: v) { UnsafeMutableRawPointer(p).copyMemory(from: $0.baseAddress!, byteCount: count * 4) }
        }
        var j = 0
        while j < H {
            let count = min(16, H - j)
            let i = sigmoid(load(row + j, count)), o = sigmoid(load(row + H + j, count))
            let f = sigmoid(load(row + 2 * H + j, count)), candidate = M.tanh(load(row + 3 * H + j, count))
            let cell = f * load(c + j, count) + i * candidate
            store(cell, c + j, count)
            store(o * M.tanh(cell), h + j, count)
            j += 16
        }
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
