import DeformRTKernels

/// RNN, GRU and LSTM (opsets 7 to 22): float32, every direction, layout 0 and 1, sequence_lens,
/// initial states, peepholes, clip, input_forget, linear_before_reset and all the activation
/// functions ONNX lists. Where the ONNX text leaves a choice open, onnxruntime's CPU kernels decide:
/// - alpha / beta are consumed in the order of the activations (all directions) by the functions
///   that take them; when the list runs out, LeakyRelu gets 0.01, HardSigmoid 0.2 / 0.5, Elu 1
///   and Affine, ThresholdedRelu and ScaledTanh get 0 (onnxruntime's defaults);
/// - activation names are matched without regard to case;
/// - a bidirectional node may give one direction's activations, used for both;
/// - sequence_lens entries must lie in 0...seq_length (a run with others fails, naming the entry);
///   a row of length 0 gets Y_h = Y_c = 0, as onnxruntime gives.
final class RecurrentOperator: Operator {
    enum Kind: String { case rnn = "RNN", gru = "GRU", lstm = "LSTM" }

    let kind: Kind
    let cell: RecurrentCell
    let label: String
    let hiddenSize: Int?
    let directions: Int
    let reverse: [Bool]
    let activations: [[RecurrentActivation]]
    let clip: Float?
    let batchFirst: Bool
    let outputCount: Int

    init(_ spec: OperatorSpec, kind: Kind) throws {
        self.kind = kind
        label = "node \(spec.node.label) (\(spec.node.opType))"
        let a = spec.attributes
        switch kind {
        case .rnn: cell = .rnn
        case .gru: cell = .gru(linearBeforeReset: try a.int("linear_before_reset", default: 0) != 0)
        case .lstm: cell = .lstm(inputForget: try a.int("input_forget", default: 0) != 0)
        }
        let direction = try a.string("direction") ?? "forward"
        switch direction {
        case "forward": reverse = [false]
        case "reverse": reverse = [true]
        case "bidirectional": reverse = [false, true]
        default: throw spec.fail("direction '\(direction)' is not one of forward, reverse, bidirectional")
        }
        directions = reverse.count
        if let h = try a.int("hidden_size"), h <= 0 || h > Limits.maxElements {
            throw spec.fail("hidden_size \(h) must be positive")
        }
        hiddenSize = try a.int("hidden_size")
        if let c = try a.float("clip") {
            if !(c > 0) { throw spec.fail("clip \(c) must be greater than 0") }
            clip = c.isInfinite ? nil : c
        } else {
            clip = nil
        }
        let layout = try a.int("layout", default: 0)
        if layout != 0 && layout != 1 { throw spec.fail("layout \(layout) must be 0 or 1") }
        batchFirst = layout == 1
        if let sequenceOutput = try a.int("output_sequence"), sequenceOutput != 0 {
            throw DeformRTError.unsupported("\(label): output_sequence 1 (opset 1) is not supported")
        }
        outputCount = spec.node.outputs.count
        let maxOutputs = kind == .lstm ? 3 : 2
        if outputCount > maxOutputs { throw spec.fail("\(kind.rawValue) has at most \(maxOutputs) outputs, the node has \(outputCount)") }
        activations = try Self.activations(spec, cell: cell, directions: reverse.count)
    }

    /// The attribute's activations per direction, with alpha / beta consumed as onnxruntime does.
    private static func activations(_ spec: OperatorSpec, cell: RecurrentCell, directions: Int) throws -> [[RecurrentActivation]] {
        let a = spec.attributes
        var names: [String]
        switch spec.node.attributes["activations"] {
        case nil: names = []
        case .strings(let list)?: names = list
        case .string(let one)?: names = [one]
        case let other?: throw spec.fail("attribute 'activations' must be a list of strings, got \(other.typeName)")
        }
        let perDirection = cell.activationCount
        if names.isEmpty {
            switch cell {
            case .rnn: names = ["Tanh"]
            case .gru: names = ["Sigmoid", "Tanh"]
            case .lstm: names = ["Sigmoid", "Tanh", "Tanh"]
            }
        }
        // RNN's documented default lists Tanh twice; one direction then uses the first.
        if case .rnn = cell, directions == 1, names.count == 2 { names = [names[0]] }
        var alphas = (try a.floats("activation_alpha") ?? [])[...]
        var betas = (try a.floats("activation_beta") ?? [])[...]
        var parsed: [RecurrentActivation] = []
        for name in names {
            func alpha(_ fallback: Float) -> Float { alphas.popFirst() ?? fallback }
            func beta(_ fallback: Float) -> Float { betas.popFirst() ?? fallback }
            switch name.lowercased() {
            case "relu": parsed.append(.relu)
            case "tanh": parsed.append(.tanh)
            case "sigmoid": parsed.append(.sigmoid)
            case "softsign": parsed.append(.softsign)
            case "softplus": parsed.append(.softplus)
            case "affine": let al = alpha(0); parsed.append(.affine(alpha: al, beta: beta(0)))
            case "leakyrelu": parsed.append(.leakyRelu(alpha: alpha(0.01)))
            case "thresholdedrelu": parsed.append(.thresholdedRelu(alpha: alpha(0)))
            case "scaledtanh": let al = alpha(0); parsed.append(.scaledTanh(alpha: al, beta: beta(0)))
            case "hardsigmoid": let al = alpha(0.2); parsed.append(.hardSigmoid(alpha: al, beta: beta(0.5)))
            case "elu": parsed.append(.elu(alpha: alpha(1)))
            default:
                throw DeformRTError.unsupported("node \(spec.node.label) (\(spec.node.opType)): activation '\(name)' is not "
                    + "one of Relu, Tanh, Sigmoid, Affine, LeakyRelu, ThresholdedRelu, ScaledTanh, HardSigmoid, Elu, Softsign, Softplus")
            }
        }
        if parsed.count == perDirection && directions == 2 { parsed += parsed }
        if parsed.count != perDirection * directions {
            throw spec.fail("activations lists \(parsed.count) functions; \(spec.node.opType) with \(directions) direction(s) needs \(perDirection * directions)")
        }
        return (0..<directions).map { Array(parsed[($0 * perDirection)..<(($0 + 1) * perDirection)]) }
    }

    private struct Shapes {
        var geometry: RecurrentGeometry
        var outputs: [ValueType]
    }

    private func shapes(_ inputs: [PlanValue?]) throws -> Shapes {
        let x = try PlanCheck.input(inputs, 0, "X"), w = try PlanCheck.input(inputs, 1, "W"), r = try PlanCheck.input(inputs, 2, "R")
        try PlanCheck.float(x, "X")
        try PlanCheck.float(w, "W")
        try PlanCheck.float(r, "R")
        try PlanCheck.rank(x, 3, "X")
        try PlanCheck.rank(w, 3, "W")
        try PlanCheck.rank(r, 3, "R")
        let gates = cell.gateCount
        let hidden = r.shape[2]
        if let hiddenSize, hiddenSize != hidden {
            throw DeformRTError.invalidModel("hidden_size \(hiddenSize) does not match R's shape \(r.shape) (R is [num_directions, \(gates) * hidden_size, hidden_size])")
        }
        let (T, B, I) = batchFirst ? (x.shape[1], x.shape[0], x.shape[2]) : (x.shape[0], x.shape[1], x.shape[2])
        let D = directions
        // Bounds the workspace (all projections plus per-step buffers) before any size is multiplied.
        _ = try Limits.elementCount([D, T + 1, B, gates * hidden + 4 * hidden], what: "\(kind.rawValue) workspace")
        if w.shape != [D, gates * hidden, I] {
            throw DeformRTError.invalidModel("W shape \(w.shape) must be [\(D), \(gates * hidden), \(I)] (num_directions, \(gates) * hidden_size, input_size)")
        }
        if r.shape != [D, gates * hidden, hidden] {
            throw DeformRTError.invalidModel("R shape \(r.shape) must be [\(D), \(gates * hidden), \(hidden)] (num_directions, \(gates) * hidden_size, hidden_size)")
        }
        if let b = PlanCheck.optionalInput(inputs, 3) {
            try PlanCheck.float(b, "B")
            if b.shape != [D, 2 * gates * hidden] {
                throw DeformRTError.invalidModel("B shape \(b.shape) must be [\(D), \(2 * gates * hidden)] (num_directions, 2 * \(gates) * hidden_size)")
            }
        }
        if let lengths = PlanCheck.optionalInput(inputs, 4) {
            if lengths.elementType != .int32 {
                throw DeformRTError.invalidModel("sequence_lens must be int32, got \(lengths.elementType.onnxName)")
            }
            if lengths.shape != [B] {
                throw DeformRTError.invalidModel("sequence_lens shape \(lengths.shape) must be [\(B)] (batch_size)")
            }
            if let constant = lengths.constant { try checkLengths(constant, sequenceLength: T) }
        }
        let stateShape = batchFirst ? [B, D, hidden] : [D, B, hidden]
        for (index, name) in [(5, "initial_h"), (6, "initial_c")] where index == 5 || kind == .lstm {
            if let state = PlanCheck.optionalInput(inputs, index) {
                try PlanCheck.float(state, name)
                if state.shape != stateShape {
                    throw DeformRTError.invalidModel("\(name) shape \(state.shape) must be \(stateShape) (\(batchFirst ? "batch_size, num_directions" : "num_directions, batch_size"), hidden_size)")
                }
            }
        }
        if kind == .lstm, let p = PlanCheck.optionalInput(inputs, 7) {
            try PlanCheck.float(p, "P")
            if p.shape != [D, 3 * hidden] {
                throw DeformRTError.invalidModel("P shape \(p.shape) must be [\(D), \(3 * hidden)] (num_directions, 3 * hidden_size)")
            }
        }
        let lastInput = kind == .lstm ? 7 : 5
        if inputs.count > lastInput + 1 {
            throw DeformRTError.invalidModel("\(kind.rawValue) takes at most \(lastInput + 1) inputs, the node has \(inputs.count)")
        }
        let geometry = RecurrentGeometry(sequenceLength: T, batch: B, inputSize: I, hiddenSize: hidden, directions: D, batchFirst: batchFirst)
        let y = ValueType(.float, batchFirst ? [B, T, D, hidden] : [T, D, B, hidden])
        let state = ValueType(.float, stateShape)
        return Shapes(geometry: geometry, outputs: Array([y, state, state].prefix(outputCount)))
    }

    private func checkLengths(_ lengths: Tensor, sequenceLength: Int) throws {
        let values = lengths.pointer(Int32.self)
        for i in 0..<lengths.elementCount where values[i] < 0 || Int(values[i]) > sequenceLength {
            throw DeformRTError.invalidArgument("\(label): sequence_lens[\(i)] = \(values[i]) is outside 0...\(sequenceLength) (the sequence length of X)")
        }
    }

    /// W, R and B packed for the kernels when all three are constants (the packed engine).
    private var packedWeights: (storage: TensorStorage, sources: [TensorStorage?], geometry: RecurrentGeometry)?

    private static var engine: ConvEngine { LinearProductChoice.packedKernelsAvailable ? .packedSIMD : .blas }

    private func preparePackedWeights(_ inputs: [PlanValue?], _ geometry: RecurrentGeometry) {
        let w = inputs[1]?.constant, r = inputs[2]?.constant
        let b = inputs.count > 3 ? inputs[3] : nil
        guard Self.engine == .packedSIMD, let w, let r, b == nil || b?.constant != nil else {
            packedWeights = nil
            return
        }
        let sources = [w.storage, r.storage, b?.constant?.storage]
        if let current = packedWeights, current.geometry == geometry,
           zip(current.sources, sources).allSatisfy({ $0 === $1 }) { return }
        let packing = RecurrentPacking(cell, geometry)
        let storage = TensorStorage(uninitializedByteCount: packing.floatCount * MemoryLayout<Float>.size)
        packing.pack(w: w.floats, r: r.floats, bias: b?.constant.map { UnsafePointer($0.floats) },
                     into: storage.bytes.assumingMemoryBound(to: Float.self), parallel: .serial)
        packedWeights = (storage, sources, geometry)
    }

    private func packedStorage(for geometry: RecurrentGeometry) -> TensorStorage? {
        packedWeights.flatMap { $0.geometry == geometry ? $0.storage : nil }
    }

    /// What a run takes from its plan: the sizes, the packed products' tilings and the weights
    /// packed once (nil on the packed engine when they are not constants: packed per run into
    /// the workspace).
    private final class State {
        let geometry: RecurrentGeometry
        let packing: RecurrentPacking?
        let packed: TensorStorage?
        /// The kernel's workspace floats for the session's threads.
        let kernelFloats: Int
        init(_ geometry: RecurrentGeometry, _ packing: RecurrentPacking?, _ packed: TensorStorage?, kernelFloats: Int) {
            self.geometry = geometry
            self.packing = packing
            self.packed = packed
            self.kernelFloats = kernelFloats
        }
    }

    private func workspaceFloats(_ geometry: RecurrentGeometry, threads: Int) -> Int {
        var floats = geometry.workspaceFloats(cell, engine: Self.engine, threads: threads)
        if Self.engine == .packedSIMD && packedStorage(for: geometry) == nil {
            floats += RecurrentPacking(cell, geometry).floatCount
        }
        return floats
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let shapes = try shapes(inputs)
        preparePackedWeights(inputs, shapes.geometry)
        return shapes.outputs.map { PlanValue($0) }
    }

    func workspaceByteCount(_ inputs: [ValueType?], _ outputs: [ValueType], threads: Int) -> Int {
        guard let values = try? shapes(inputs.map { $0.map { PlanValue($0) } }) else { return 0 }
        return workspaceFloats(values.geometry, threads: threads) * MemoryLayout<Float>.size
    }

    func runState(_ inputs: [PlanValue?], _ outputs: [ValueType], threads: Int) throws -> AnyObject? {
        let geometry = try shapes(inputs).geometry
        let packing = Self.engine == .packedSIMD ? RecurrentPacking(cell, geometry) : nil
        return State(geometry, packing, packing == nil ? nil : packedStorage(for: geometry),
                     kernelFloats: geometry.workspaceFloats(cell, engine: Self.engine, threads: threads))
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let state = try state(context, inputs, as: State.self)!
        let geometry = state.geometry
        func input(_ i: Int) -> Tensor? { i < inputs.count ? inputs[i] : nil }
        if let lengths = input(4) { try checkLengths(lengths, sequenceLength: geometry.sequenceLength) }
        let kernelFloats = state.kernelFloats
        let packFloats = state.packing != nil && state.packed == nil ? state.packing!.floatCount : 0
        precondition(context.workspaceByteCount >= (kernelFloats + packFloats) * MemoryLayout<Float>.size,
                     "recurrent workspace too small")
        let workspace = context.workspace.assumingMemoryBound(to: Float.self)
        let bias = input(3).map { UnsafePointer($0.floats) }
        var packed: UnsafePointer<Float>?
        if let packing = state.packing {
            if let storage = state.packed {
                packed = UnsafePointer(storage.bytes.assumingMemoryBound(to: Float.self))
            } else {
                // Run-time weights: packed into the workspace's tail on every run.
                let region = workspace + kernelFloats
                packing.pack(w: inputs[1]!.floats, r: inputs[2]!.floats, bias: bias, into: region, parallel: context.parallel)
                packed = UnsafePointer(region)
            }
        }
        let tensors = RecurrentTensors(
            x: inputs[0]!.floats, w: inputs[1]!.floats, r: inputs[2]!.floats, bias: bias,
            peephole: kind == .lstm ? input(7).map { UnsafePointer($0.floats) } : nil,
            sequenceLengths: input(4).map { UnsafePointer($0.pointer(Int32.self)) },
            initialH: input(5).map { UnsafePointer($0.floats) },
            initialC: kind == .lstm ? input(6).map { UnsafePointer($0.floats) } : nil,
            y: outputs.count > 0 ? outputs[0].floats : nil, yH: outputs.count > 1 ? outputs[1].floats : nil,
            yC: outputs.count > 2 ? outputs[2].floats : nil)
        Recurrent.run(cell, geometry, activations: activations, reverse: reverse, clip: clip, tensors,
                      packing: state.packing, packed: packed, workspace: workspace, parallel: context.parallel)
    }
}
