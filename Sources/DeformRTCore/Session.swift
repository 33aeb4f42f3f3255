import DeformRTKernels
import Glibc
import Synchronization

/// A request to stop runs, set from any thread (onnxruntime's RunOptions.terminate): the executor
/// reads it once before each node with one relaxed atomic load, and a run that sees it set stops
/// with DeformRTError.Code.cancelled. It stays set until cleared, so every run given it while it
/// is set stops before its first node.
public final class RunTermination: Sendable {
    private let flag = Atomic<Bool>(false)

    public init() {}

    public var isRequested: Bool { flag.load(ordering: .relaxed) }

    public func set(_ requested: Bool) { flag.store(requested, ordering: .relaxed) }

    static var cancelled: DeformRTError {
        DeformRTError(.cancelled, "the run was cancelled: its run options' terminate flag is set")
    }
}

/// Options fixed when a session is made.
public struct SessionOptions: Sendable, Equatable {
    /// Threads one run may use.
    public var threads: Int
    /// Cap on the tensor bytes a plan may hold (arena, workspace, folded constants, outputs).
    public var memoryLimit: UInt64
    /// Which graph passes run when the session is made (Passes/GraphOptimizer).
    public var graphOptimizationLevel: GraphOptimizationLevel
    /// Per-node profiling (Profiler): nil is off; otherwise the profile is written to
    /// "<prefix>_<date>_<time>.json" when the session's profiling ends.
    public var profileFilePrefix: String?
    /// Intermediate values (by name) the session also offers as outputs, after the model's own:
    /// the graph passes keep them (no fusion or layout change removes or hides a graph output).
    public var extraOutputs: [String]
    /// Operators the caller supplies; a node matching one runs it (checked before the built-ins).
    public var customOperators: [CustomOperatorDefinition]

    public init(threads: Int? = nil, memoryLimit: UInt64? = nil, graphOptimizationLevel: GraphOptimizationLevel = .all,
                profileFilePrefix: String? = nil, extraOutputs: [String] = [],
                customOperators: [CustomOperatorDefinition] = []) {
        self.threads = threads ?? SessionOptions.defaultThreads
        self.memoryLimit = memoryLimit ?? Limits.defaultMemoryLimit
        self.graphOptimizationLevel = graphOptimizationLevel
        self.profileFilePrefix = profileFilePrefix
        self.extraOutputs = extraOutputs
        self.customOperators = customOperators
    }

    public static func == (a: SessionOptions, b: SessionOptions) -> Bool {
        a.threads == b.threads && a.memoryLimit == b.memoryLimit && a.graphOptimizationLevel == b.graphOptimizationLevel
            && a.profileFilePrefix == b.profileFilePrefix && a.extraOutputs == b.extraOutputs
            && a.customOperators.elementsEqual(b.customOperators) { $0 === $1 }
    }

    public static var defaultThreads: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }
}

/// A checked, optimised, sorted graph with one operator per node, ready to be planned for input
/// shapes. A session runs one call at a time (callers are serialised by a lock).
public final class SessionCore: @unchecked Sendable {
    /// The graph after the passes of the session's optimisation level (the model's inputs; its
    /// outputs followed by the options' extra outputs).
    public let graph: Graph
    /// How many of graph.outputs are the model's own (the rest are SessionOptions.extraOutputs).
    public let modelOutputCount: Int
    public let options: SessionOptions
    let order: [Int]
    let operators: [Operator]
    /// Per value id: the position in `order` of the node that produces it (nil: graph inputs,
    /// initializers).
    let producerPosition: [Int?]
    /// The session's worker threads, kept across plans.
    let parallel: Parallel
    /// Set when the options ask for profiling; kept after profiling ends (then it records nothing).
    let profiler: Profiler?
    private var plan: ExecutionPlan?
    private let lock = Mutex()

    public init(graph imported: Graph, options: SessionOptions) throws {
        try CPUDispatch.check()
        // Errors name the model's own nodes: checks first, then the passes.
        // Making the operators validates every node's inputs and attributes, so the passes only
        // ever see well-formed nodes.
        for (index, definition) in options.customOperators.enumerated() {
            if OperatorRegistry.isBuiltIn(domain: definition.domain, opType: definition.opType) {
                throw DeformRTError.invalidArgument("custom operator \(definition.label) has the name of a built-in operator (the graph passes rewrite those); give it another name")
            }
            if options.customOperators[..<index].contains(where: {
                $0.domain == definition.domain && $0.opType == definition.opType && $0.opsets.overlaps(definition.opsets)
            }) {
                throw DeformRTError.invalidArgument("custom operator \(definition.label) is registered twice for overlapping opsets")
            }
        }
        _ = try OperatorRegistry.makeOperators(imported, order: GraphCheck.topologicalOrder(imported),
                                               custom: options.customOperators)
        var withExtras = imported
        modelOutputCount = imported.outputs.count
        for name in options.extraOutputs {
            guard let id = imported.valueNames.firstIndex(of: name),
                  imported.inputs.contains(where: { $0.id == id }) || imported.initializers[id] != nil
                    || imported.nodes.contains(where: { $0.outputs.contains(id) }) else {
                throw DeformRTError.invalidArgument("extra output '\(name)' is not a value of the model (no node, input or initializer has that name)")
            }
            if withExtras.outputs.contains(where: { $0.name == name }) {
                throw DeformRTError.invalidArgument("extra output '\(name)' is already an output of the session")
            }
            withExtras.outputs.append(ValueDeclaration(name: name, id: id, elementType: nil, shape: nil))
        }
        graph = try GraphOptimizer.optimize(withExtras, level: options.graphOptimizationLevel)
        self.options = options
        parallel = Parallel(threads: options.threads)
        profiler = options.profileFilePrefix.map { Profiler(filePrefix: $0) }
        order = try GraphCheck.topologicalOrder(graph)
        operators = try OperatorRegistry.makeOperators(graph, order: order, custom: options.customOperators)
        var producerPosition = [Int?](repeating: nil, count: graph.valueNames.count)
        for (position, index) in order.enumerated() {
            for id in graph.nodes[index].outputs { producerPosition[id] = position }
        }
        self.producerPosition = producerPosition
        // With fully static inputs, plan now so shape errors surface at creation.
        let staticShapes = graph.inputs.compactMap { input -> [Int]? in
            guard let shape = input.shape, !shape.contains(-1), input.elementType != nil else { return nil }
            return shape
        }
        if staticShapes.count == graph.inputs.count {
            let types = graph.inputs.map { ValueType($0.elementType!, $0.shape!) }
            plan = try ExecutionPlan(session: self, inputTypes: types)
        }
    }

    /// Runs the graph. `feeds` are matched to graph inputs by name; `outputNames` nil means the
    /// model's outputs. A `termination` set (from any thread) stops the run between nodes.
    public func run(feeds: [(name: String, tensor: Tensor)], outputNames: [String]?,
                    termination: RunTermination? = nil) throws -> [Tensor] {
        var results: [Tensor] = []
        try run(feedCount: feeds.count, feed: { position in
            let name = feeds[position].name
            guard let index = graph.inputs.firstIndex(where: { $0.name == name }) else {
                throw unknownInput(name)
            }
            return (index, feeds[position].tensor)
        }, outputCount: outputNames?.count, output: { position in
            let name = outputNames![position]
            guard let index = graph.outputs.firstIndex(where: { $0.name == name }) else {
                throw unknownOutput(name)
            }
            return index
        }, termination: termination, emit: { _, tensor in results.append(tensor) })
        return results
    }

    public func unknownInput(_ name: String) -> DeformRTError {
        let known = graph.inputs.map { "'\($0.name)'" }.joined(separator: ", ")
        return DeformRTError.invalidArgument("unknown input name '\(name)' (the model's inputs are \(known))")
    }

    public func unknownOutput(_ name: String) -> DeformRTError {
        let known = graph.outputs.map { "'\($0.name)'" }.joined(separator: ", ")
        if graph.valueNames.contains(name) {
            return DeformRTError.invalidArgument("'\(name)' is an intermediate value of the model, not an output of this session (its outputs are \(known)); name it in the session options' extra outputs (drt_session_options_add_output, SessionOptions.extra_outputs) to read it")
        }
        return DeformRTError.invalidArgument("unknown output name '\(name)' (the model's outputs are \(known))")
    }

    // Per-run scratch, reused under the lock so that a steady-state run builds no array.
    private var fedInputs: [Tensor?] = []
    private var wantedOutputs: [Int] = []
    private var providedOutputs: [Tensor?] = []

    /// Runs the graph with feeds and outputs resolved by the caller: `feed(i)` gives the graph
    /// input index and tensor of feed i, `output(i)` the graph output index of wanted output i
    /// (`outputCount` nil: the model's outputs in graph order), and `emit(i, tensor)` receives the
    /// results in that order. With `providesOutputs`, `provided(i)` is a caller's tensor that
    /// wanted output i is written into (its type and shape must be the output's; nil: a new
    /// tensor), and emit is then handed that tensor. The closures run under the session's lock;
    /// nothing is allocated in steady state but the output tensors the session makes.
    public func run(feedCount: Int, feed: (Int) throws -> (index: Int, tensor: Tensor), outputCount: Int?,
                    output: (Int) throws -> Int, providesOutputs: Bool = false,
                    provided: (Int) throws -> Tensor? = { _ in nil },
                    termination: RunTermination? = nil, emit: (Int, Tensor) -> Void) throws {
        lock.lock()
        defer { lock.unlock() }
        if fedInputs.count != graph.inputs.count { fedInputs = [Tensor?](repeating: nil, count: graph.inputs.count) }
        defer { for i in fedInputs.indices { fedInputs[i] = nil } }
        for position in 0..<feedCount {
            let (index, tensor) = try feed(position)
            if fedInputs[index] != nil {
                throw DeformRTError.invalidArgument("input '\(graph.inputs[index].name)' is fed more than once")
            }
            try checkFeed(tensor, against: graph.inputs[index])
            fedInputs[index] = tensor
        }
        for (index, tensor) in fedInputs.enumerated() where tensor == nil {
            throw DeformRTError.invalidArgument("input '\(graph.inputs[index].name)' is not fed")
        }
        wantedOutputs.removeAll(keepingCapacity: true)
        if let outputCount {
            for position in 0..<outputCount { wantedOutputs.append(try output(position)) }
        } else {
            wantedOutputs.append(contentsOf: 0..<modelOutputCount)
        }
        if let termination, termination.isRequested { throw RunTermination.cancelled }
        if plan == nil || !plan!.accepts(fedInputs) {
            plan = nil  // free the old arena before making the new one
            plan = try ExecutionPlan(session: self, inputTypes: fedInputs.map { ValueType($0!.elementType, $0!.shape) })
        }
        defer { providedOutputs.removeAll(keepingCapacity: true) }
        if providesOutputs {
            for position in wantedOutputs.indices { providedOutputs.append(try provided(position)) }
        }
        try plan!.execute(inputs: fedInputs, wanted: wantedOutputs, provided: providedOutputs, profiler: profiler,
                          termination: termination, emit: emit)
    }

    /// Writes the profile recorded so far (Profiler.finish) and stops profiling; returns the
    /// file's path, or "" when the session does not profile (as onnxruntime's end_profiling).
    public func endProfiling() throws -> String {
        lock.lock()
        defer { lock.unlock() }
        guard let profiler, profiler.isRecording else { return "" }
        return try profiler.finish()
    }

    /// The events recorded so far (for in-process reports such as `deformrt bench --profile`).
    public var profileEvents: [ProfileEvent] {
        lock.lock()
        defer { lock.unlock() }
        return profiler?.events ?? []
    }

    private func checkFeed(_ tensor: Tensor, against declaration: ValueDeclaration) throws {
        let name = declaration.name
        if let type = declaration.elementType, type != tensor.elementType {
            throw DeformRTError.invalidArgument("input '\(name)' must be tensor(\(type.onnxName)), got tensor(\(tensor.elementType.onnxName))")
        }
        if tensor.elementType == .string {
            throw DeformRTError.invalidArgument("input '\(name)': string tensors are not supported")
        }
        if let shape = declaration.shape {
            if shape.count != tensor.shape.count {
                throw DeformRTError.invalidArgument("input '\(name)' must have rank \(shape.count) (shape \(shape.map { $0 < 0 ? "?" : String($0) })), got shape \(tensor.shape)")
            }
            for (axis, dim) in shape.enumerated() where dim >= 0 && dim != tensor.shape[axis] {
                throw DeformRTError.invalidArgument("input '\(name)': dimension \(axis) must be \(dim), got shape \(tensor.shape)")
            }
        }
    }
}

/// A pthread mutex (the core avoids Foundation).
final class Mutex: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    init() { pthread_mutex_init(&mutex, nil) }
    deinit { pthread_mutex_destroy(&mutex) }
    func lock() { pthread_mutex_lock(&mutex) }
    func unlock() { pthread_mutex_unlock(&mutex) }
}

/// Graph checks made when a session is created: every error names the node concerned.
enum GraphCheck {
    /// Nodes in an order where every value is produced before use (Kahn's algorithm), after
    /// checking that each value has exactly one producer and every used value has one.
    static func topologicalOrder(_ graph: Graph) throws -> [Int] {
        var producer = [Int?](repeating: nil, count: graph.valueNames.count)
        var isSource = [Bool](repeating: false, count: graph.valueNames.count)
        for input in graph.inputs { isSource[input.id] = true }
        for id in graph.initializers.keys { isSource[id] = true }
        for (index, node) in graph.nodes.enumerated() {
            for output in node.outputs {
                let name = graph.valueNames[output]
                if isSource[output] {
                    throw DeformRTError.invalidModel("node \(node.label) (\(node.opType)) writes '\(name)', which is already a graph input or initializer")
                }
                if let other = producer[output] {
                    throw DeformRTError.invalidModel("value '\(name)' is produced twice: by node \(graph.nodes[other].label) and by node \(node.label)")
                }
                producer[output] = index
            }
        }
        var pending = [Int](repeating: 0, count: graph.nodes.count)
        var consumers = [[Int]](repeating: [], count: graph.nodes.count)
        for (index, node) in graph.nodes.enumerated() {
            for case let input? in node.inputs {
                if isSource[input] { continue }
                guard let from = producer[input] else {
                    throw DeformRTError.invalidModel("node \(node.label) (\(node.opType)) reads '\(graph.valueNames[input])', which no node, input or initializer provides")
                }
                pending[index] += 1
                consumers[from].append(index)
            }
        }
        for output in graph.outputs where !isSource[output.id] && producer[output.id] == nil {
            throw DeformRTError.invalidModel("graph output '\(output.name)' is not produced by any node")
        }
        // A FIFO queue keeps the file's order for graphs that are already sorted.
        var ready = (0..<graph.nodes.count).filter { pending[$0] == 0 }
        var order: [Int] = []
        order.reserveCapacity(graph.nodes.count)
        var head = 0
        while head < ready.count {
            let index = ready[head]
            head += 1
            order.append(index)
            for consumer in consumers[index] {
                pending[consumer] -= 1
                if pending[consumer] == 0 { ready.append(consumer) }
            }
        }
        if order.count != graph.nodes.count {
            let stuck = (0..<graph.nodes.count).first { pending[$0] > 0 }!
            let node = graph.nodes[stuck]
            throw DeformRTError.invalidModel("the graph has a cycle through node \(node.label) (\(node.opType))")
        }
        return order
    }
}
