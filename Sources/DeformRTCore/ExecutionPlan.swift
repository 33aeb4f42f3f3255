import DeformRTKernels

/// The plan for one set of input shapes, made in stages (ShapeInference -> MemoryPlan -> bind,
/// here) and then run as often as the shapes repeat: every step with its tensors and its
/// operator's run state, in an arena where every intermediate has a fixed place, so a
/// steady-state run plans nothing and allocates nothing but the handles it returns.
final class ExecutionPlan {
    let inputTypes: [ValueType]

    /// One operator run with its tensors bound. Graph inputs and outputs are bound per run.
    private struct Step {
        let node: Int
        let op: Operator
        var inputs: [Tensor?]
        var outputs: [Tensor]
        /// Names, shapes and FLOPs for the profiler; nil when the session does not profile.
        let profiled: ProfiledNode?
        /// The operator's runState for this plan.
        let state: AnyObject?
    }

    /// Where a per-run tensor must be bound: step, position, and whether it is an output slot.
    private struct Binding {
        let step: Int
        let position: Int
        let isOutput: Bool
    }

    private enum OutputSource {
        case computed(value: Int, type: ValueType)
        case fixed(Tensor)  // a graph input, constant or folded value: copied out
        case input(Int)
        case elsewhere  // computed by the plan before this one's start or after its barrier
    }

    /// Where a value handed on at the barrier is found once the steps ran.
    private enum CrossingSource {
        case fed(Int)
        case bound(Tensor)
        case output(slot: Int)
        case constant(Tensor)
    }

    /// Graph outputs of one run, by output slot, filled by the plans of the run.
    final class RunResults {
        var tensors: [Tensor?]
        /// The tensor was made for this run and may be handed to the caller without a copy.
        var fresh: [Bool]
        /// Per slot: the caller's tensor to compute it into, if any.
        var targets: [Tensor?]
        var termination: RunTermination?
        init(count: Int) {
            tensors = [Tensor?](repeating: nil, count: count)
            fresh = [Bool](repeating: false, count: count)
            targets = [Tensor?](repeating: nil, count: count)
        }
        func clear() {
            for i in tensors.indices { tensors[i] = nil; fresh[i] = false; targets[i] = nil }
            termination = nil
        }
    }

    private var steps: [Step] = []
    private let inputBindings: [[Binding]]
    private var outputBindings: [Int: [Binding]] = [:]
    private let outputSources: [OutputSource]
    private let outputNames: [String]
    /// For an output slot whose value an earlier slot also is: that earlier slot.
    private let firstSlot: [Int?]
    private let arena: TensorStorage
    private let workspace: TensorStorage
    private let parallel: Parallel
    /// Bound where a per-run tensor goes between runs (an empty view of the arena).
    private let placeholder: Tensor
    private unowned let session: SessionCore
    private let results: RunResults

    /// Where this plan stops because the rest depends on run-time data (ShapeInference).
    private let barrier: PlanBarrier?
    private let crossingSources: [CrossingSource]
    /// Per input of the barrier node: where its tensor is found at the barrier.
    private enum BarrierInput {
        case crossing(Int)
        case constant(Tensor)
        case absent
    }
    private let barrierInputs: [BarrierInput]
    /// Per shape value of the barrier: its index among the crossing values.
    private let shapeValueIndices: [Int]
    /// Per output of a dynamic barrier node: the graph output slots it fills.
    private let dynamicOutputSlots: [[Int]]
    /// The plans of the rest of the graph, keyed by what was decided at the barrier (the
    /// dynamic node's output shapes, or the shape values' contents).
    private var continuations: [[Int64]: ExecutionPlan] = [:]
    /// At most this many continuations are kept per plan; the cache starts over when full.
    static let maxContinuations = 16
    /// Shape inputs with more elements than this are refused (they key the continuations).
    static let maxShapeValueElements = 4096
    // Per-run scratch at the barrier, reused so that a repeated run allocates no array.
    private var continuationKey: [Int64] = []
    private var handedOn: [Tensor?] = []

    convenience init(session: SessionCore, inputTypes: [ValueType]) throws {
        let graph = session.graph
        for (index, input) in graph.inputs.enumerated() {
            // Declared shapes are untrusted: bound them before any operator multiplies their dims.
            _ = try Limits.elementCount(inputTypes[index].shape, what: "graph input '\(input.name)'")
        }
        let fed = graph.inputs.enumerated().map { (id: $0.element.id, value: PlanValue(inputTypes[$0.offset])) }
        try self.init(session: session, start: 0, fed: fed, isFirst: true)
    }

    /// The plan of the nodes from position `start` on (ShapeInference), for the values fed to it.
    init(session: SessionCore, start: Int, fed: [(id: Int, value: PlanValue)], isFirst: Bool) throws {
        self.inputTypes = fed.map(\.value.type)
        self.session = session
        let graph = session.graph
        parallel = session.parallel
        let valueCount = graph.valueNames.count
        var budget = MemoryBudget(limit: session.options.memoryLimit)
        let shapes = try ShapeInference(session: session, start: start, fed: fed, budget: &budget)
        let memory = try MemoryPlan(session: session, shapes: shapes, budget: &budget)
        let known = shapes.known, isGraphInput = shapes.isGraphInput, isGraphOutput = shapes.isGraphOutput
        let firstStep = memory.firstStep, aliasOf = memory.aliasOf, runtimeNodes = memory.steps
        barrier = shapes.barrier
        let stop = barrier?.position ?? session.order.count
        // Stage 3, bind: every intermediate's tensor in the arena (views share their owner's),
        // every step's tensors; graph inputs and outputs get bindings filled per run.
        arena = TensorStorage(zeroedByteCount: memory.arenaBytes)
        workspace = TensorStorage(zeroedByteCount: memory.workspaceBytes)
        var bound = [Tensor?](repeating: nil, count: valueCount)
        for block in memory.blocks {
            let type = known[block.value]!.type
            bound[block.value] = Tensor(elementType: type.elementType, shape: type.shape,
                                        storage: TensorStorage(borrowing: arena.bytes + block.offset, byteCount: block.bytes, keepAlive: arena))
        }
        for id in 0..<valueCount {
            if let owner = aliasOf[id], let memory = bound[owner] {
                let type = known[id]!.type
                bound[id] = Tensor(elementType: type.elementType, shape: type.shape, storage: memory.storage)
            }
        }
        for id in 0..<valueCount where bound[id] == nil { bound[id] = known[id]?.constant }

        var inputBindings = [[Binding]](repeating: [], count: fed.count)
        let placeholder = Tensor(elementType: .float, shape: [0], storage: arena)
        for position in runtimeNodes {
            let nodeIndex = session.order[position]
            let node = graph.nodes[nodeIndex]
            let stepIndex = steps.count
            var inputs: [Tensor?] = []
            for (slot, id) in node.inputs.enumerated() {
                guard let id else { inputs.append(nil); continue }
                if let graphInput = isGraphInput[id] {
                    inputBindings[graphInput].append(Binding(step: stepIndex, position: slot, isOutput: false))
                    inputs.append(placeholder)
                } else if isGraphOutput[id] && firstStep[id] >= 0 {
                    outputBindings[id, default: []].append(Binding(step: stepIndex, position: slot, isOutput: false))
                    inputs.append(placeholder)
                } else {
                    inputs.append(bound[id])
                }
            }
            var outputs: [Tensor] = []
            for (slot, id) in node.outputs.enumerated() {
                if isGraphOutput[id] {
                    outputBindings[id, default: []].append(Binding(step: stepIndex, position: slot, isOutput: true))
                    outputs.append(placeholder)
                } else {
                    outputs.append(bound[id]!)
                }
            }
            var profiled: ProfiledNode?
            if session.profiler != nil {
                let inputShapes = node.inputs.map { $0.flatMap { known[$0]?.type.shape } }
                let outputShapes = node.outputs.map { known[$0]!.type.shape }
                profiled = ProfiledNode(name: node.name.isEmpty ? node.label : node.name,
                                        opType: node.domain.isEmpty ? node.opType : node.domain + "::" + node.opType,
                                        fusedNodes: ConvNodeSlots.fusedNames(node),
                                        inputShapes: inputShapes.map { $0 ?? [] }, outputShapes: outputShapes,
                                        flops: ProfiledNode.estimatedFLOPs(node, inputs: inputShapes, outputs: outputShapes))
            }
            let state = try node.naming {
                try session.operators[position].runState(node.inputs.map { $0.flatMap { known[$0] } },
                                                         node.outputs.map { known[$0]!.type },
                                                         threads: session.parallel.threads)
            }
            steps.append(Step(node: nodeIndex, op: session.operators[position], inputs: inputs, outputs: outputs,
                              profiled: profiled, state: state))
        }
        self.inputBindings = inputBindings
        self.placeholder = placeholder
        outputNames = graph.outputs.map(\.name)
        outputPools = graph.outputs.map { _ in [] }
        results = RunResults(count: graph.outputs.count)
        outputSources = graph.outputs.map { output in
            let id = output.id
            if let position = session.producerPosition[id] {
                // Computed by this plan's nodes, or by another plan of the run.
                guard position >= start && position < stop else { return .elsewhere }
                if firstStep[id] >= 0 { return .computed(value: id, type: known[id]!.type) }
                return .fixed(known[id]!.constant!)
            }
            // Graph inputs and initializers: the first plan's.
            guard isFirst else { return .elsewhere }
            if let index = isGraphInput[id] { return .input(index) }
            return .fixed(known[id]!.constant!)
        }
        firstSlot = graph.outputs.indices.map { slot in
            graph.outputs[..<slot].firstIndex { $0.id == graph.outputs[slot].id }
        }
        var crossingSources: [CrossingSource] = []
        for id in barrier?.crossing ?? [] {
            if let index = isGraphInput[id] {
                crossingSources.append(.fed(index))
            } else if let constant = known[id]?.constant {
                crossingSources.append(.constant(constant))
            } else if isGraphOutput[id] && firstStep[id] >= 0 {
                crossingSources.append(.output(slot: graph.outputs.firstIndex { $0.id == id }!))
            } else if let tensor = bound[id] {
                crossingSources.append(.bound(tensor))
            } else {
                throw DeformRTError(.internal, "value '\(graph.valueNames[id])' is read after a barrier but has no tensor")
            }
        }
        self.crossingSources = crossingSources
        let crossingIndex = Dictionary(uniqueKeysWithValues: (barrier?.crossing ?? []).enumerated().map { ($0.element, $0.offset) })
        let firstSlot = self.firstSlot
        if let barrier {
            let node = graph.nodes[session.order[barrier.position]]
            barrierInputs = node.inputs.map { id in
                guard let id else { return .absent }
                if let index = crossingIndex[id] { return .crossing(index) }
                return known[id]?.constant.map { .constant($0) } ?? .absent  // initializers
            }
            shapeValueIndices = barrier.shapeValues.map { crossingIndex[$0]! }
            dynamicOutputSlots = barrier.dynamic
                ? node.outputs.map { id in graph.outputs.indices.filter { graph.outputs[$0].id == id && firstSlot[$0] == nil } }
                : []
        } else {
            barrierInputs = []
            shapeValueIndices = []
            dynamicOutputSlots = []
        }
    }

    private func bindOutput(_ value: Int, to tensor: Tensor) {
        for binding in outputBindings[value] ?? [] {
            if binding.isOutput { steps[binding.step].outputs[binding.position] = tensor }
            else { steps[binding.step].inputs[binding.position] = tensor }
        }
    }

    /// Output buffers kept for reuse, per graph output: a run takes one the caller has released,
    /// so steady-state runs neither allocate nor fault in fresh pages. Two per output let a caller
    /// hold the previous result while the next run fills the other.
    private var outputPools: [[TensorStorage]]
    private static let outputPoolDepth = 2

    private func outputStorage(slot: Int, byteCount: Int) -> TensorStorage {
        for i in outputPools[slot].indices where isKnownUniquelyReferenced(&outputPools[slot][i]) {
            return outputPools[slot][i]
        }
        let storage = TensorStorage(uninitializedByteCount: byteCount)
        if outputPools[slot].count < ExecutionPlan.outputPoolDepth { outputPools[slot].append(storage) }
        return storage
    }

    /// Whether this plan was made for the element types and shapes of `inputs` (all fed).
    func accepts(_ inputs: [Tensor?]) -> Bool {
        for (index, tensor) in inputs.enumerated() {
            guard let tensor, tensor.elementType == inputTypes[index].elementType,
                  tensor.shape == inputTypes[index].shape else { return false }
        }
        return true
    }

    /// Runs the steps on `inputs` (every graph input fed) and hands output `wanted[i]` to
    /// `emit(i, tensor)`.
    ///
    /// `provided` is empty, or holds for each wanted output the caller's tensor to write it into
    /// (nil: a tensor from the output pool). A caller's tensor must have the output's element type
    /// and shape, and must not share memory with an input; a computed output is written straight
    /// into it, any other (an input or constant passed through, a value wanted twice, an output
    /// computed after a barrier) is copied. `termination` is read once before each step.
    func execute(inputs: [Tensor?], wanted: [Int], provided: [Tensor?], profiler: Profiler?,
                 termination: RunTermination?, emit: (Int, Tensor) -> Void) throws {
        // Checked before anything runs, so a refused call writes nothing (outputs computed past
        // a barrier have no type yet: checked once known, before any copy into a caller's tensor).
        for (position, tensor) in provided.enumerated() {
            guard let tensor else { continue }
            let slot = wanted[position]
            let name = outputNames[slot]
            let type: ValueType
            switch outputSources[slot] {
            case .computed(_, let t): type = t
            case .fixed(let t): type = ValueType(t.elementType, t.shape)
            case .input(let i): type = ValueType(inputs[i]!.elementType, inputs[i]!.shape)
            case .elsewhere: type = ValueType(tensor.elementType, tensor.shape)
            }
            if tensor.elementType != type.elementType || tensor.shape != type.shape {
                throw DeformRTError.invalidArgument("output '\(name)' is tensor(\(type.elementType.onnxName)) of shape \(type.shape), but the tensor given for it is tensor(\(tensor.elementType.onnxName)) of shape \(tensor.shape)")
            }
            let start = UInt(bitPattern: tensor.rawPointer), end = start + UInt(tensor.byteCount)
            for case let input? in inputs where tensor.byteCount > 0 && input.byteCount > 0 {
                let inputStart = UInt(bitPattern: input.rawPointer)
                if start < inputStart + UInt(input.byteCount) && inputStart < end {
                    throw DeformRTError.invalidArgument("the tensor given for output '\(name)' shares memory with an input")
                }
            }
            for (other, otherTensor) in provided.enumerated() where other < position {
                if let otherTensor, otherTensor.byteCount > 0, tensor.byteCount > 0 {
                    let otherStart = UInt(bitPattern: otherTensor.rawPointer)
                    if start < otherStart + UInt(otherTensor.byteCount) && otherStart < end {
                        throw DeformRTError.invalidArgument("the tensors given for outputs '\(outputNames[wanted[other]])' and '\(name)' share memory")
                    }
                }
            }
        }
        defer { results.clear() }
        // The first caller tensor given for a computed slot is computed into directly.
        for (position, tensor) in provided.enumerated() where tensor != nil {
            let slot = firstSlot[wanted[position]] ?? wanted[position]
            if case .computed = outputSources[slot], results.targets[slot] == nil { results.targets[slot] = tensor }
        }
        results.termination = termination
        if let profiler, profiler.isRecording {
            let runStart = Profiler.now()
            try run(fed: inputs, into: results, profiler: profiler)
            profiler.record(nil, from: runStart, to: Profiler.now())
        } else {
            try run(fed: inputs, into: results, profiler: nil)
        }
        for (position, index) in wanted.enumerated() where position < provided.count {
            guard let target = provided[position], case .elsewhere = outputSources[index] else { continue }
            let result = results.tensors[firstSlot[index] ?? index]!
            if target.elementType != result.elementType || target.shape != result.shape {
                throw DeformRTError.invalidArgument("output '\(outputNames[index])' is tensor(\(result.elementType.onnxName)) of shape \(result.shape), but the tensor given for it is tensor(\(target.elementType.onnxName)) of shape \(target.shape)")
            }
        }
        for (position, index) in wanted.enumerated() {
            let slot = firstSlot[index] ?? index
            let result = results.tensors[slot]!
            if position < provided.count, let target = provided[position] {
                if result.storage !== target.storage, target.byteCount > 0 {
                    target.rawPointer.copyMemory(from: result.rawPointer, byteCount: target.byteCount)
                }
                emit(position, target)
                continue
            }
            // The same value asked for twice gets its own copy the second time; values the run
            // did not make (inputs, constants) are always copied.
            if results.fresh[slot] {
                emit(position, result)
                results.fresh[slot] = false
            } else {
                emit(position, result.copy())
            }
        }
    }

    /// Runs this plan's steps on the fed values and, past a barrier, the plan of the rest;
    /// fills the graph outputs each computes into `results`.
    private func run(fed: [Tensor?], into results: RunResults, profiler: Profiler?) throws {
        for (index, bindings) in inputBindings.enumerated() {
            for binding in bindings { steps[binding.step].inputs[binding.position] = fed[index] }
        }
        // Drop references to the caller's tensors, also when an operator throws, so that memory
        // a caller lent (drt_tensor_create_borrowed) is never reachable after the call.
        defer {
            for bindings in inputBindings {
                for binding in bindings { steps[binding.step].inputs[binding.position] = nil }
            }
        }
        for (slot, source) in outputSources.enumerated() where firstSlot[slot] == nil {
            switch source {
            case .computed(let value, let type):
                // A value that is several graph outputs is computed once, into the first slot's
                // tensor: the caller's, or one from the pool.
                let target = results.targets[slot]
                let tensor = Tensor(elementType: type.elementType, shape: type.shape,
                                    storage: target?.storage ?? outputStorage(slot: slot, byteCount: type.shape.reduce(1, *) * type.elementType.byteSize))
                results.tensors[slot] = tensor
                results.fresh[slot] = target == nil
                bindOutput(value, to: tensor)
            case .fixed(let tensor): results.tensors[slot] = tensor
            case .input(let index): results.tensors[slot] = fed[index]
            case .elsewhere: break
            }
        }
        // The steps let go of the outputs once the run ends, so a released output can be reused.
        defer {
            for (slot, source) in outputSources.enumerated() {
                if case .computed(let value, _) = source, firstSlot[slot] == nil { bindOutput(value, to: placeholder) }
            }
        }
        var context = RunContext(parallel: parallel, workspace: workspace.bytes, workspaceByteCount: workspace.byteCount)
        let termination = results.termination
        if let profiler, profiler.isRecording {
            for step in steps {
                if let termination, termination.isRequested { throw RunTermination.cancelled }
                let start = Profiler.now()
                context.state = step.state
                try step.op.run(step.inputs, step.outputs, context)
                profiler.record(step.profiled, from: start, to: Profiler.now())
            }
        } else {
            for step in steps {
                if let termination, termination.isRequested { throw RunTermination.cancelled }
                context.state = step.state
                try step.op.run(step.inputs, step.outputs, context)
            }
        }
        if let barrier {
            if let termination, termination.isRequested { throw RunTermination.cancelled }
            context.state = nil
            try runRest(after: barrier, fed: fed, into: results, context: context, profiler: profiler)
        }
    }

    /// At the barrier: runs a dynamic node, then the plan of the rest of the graph for what
    /// was decided (made the first time, then taken from `continuations`).
    private func runRest(after barrier: PlanBarrier, fed: [Tensor?], into results: RunResults, context: RunContext,
                         profiler: Profiler?) throws {
        let graph = session.graph
        let node = graph.nodes[session.order[barrier.position]]
        handedOn.removeAll(keepingCapacity: true)
        defer { handedOn.removeAll(keepingCapacity: true) }
        for source in crossingSources {
            switch source {
            case .fed(let index): handedOn.append(fed[index])
            case .bound(let tensor), .constant(let tensor): handedOn.append(tensor)
            case .output(let slot): handedOn.append(results.tensors[slot])
            }
        }
        continuationKey.removeAll(keepingCapacity: true)
        var dynamicOutputs: [Tensor] = []
        if barrier.dynamic {
            let inputs = barrierInputs.map { input -> Tensor? in
                switch input {
                case .crossing(let index): return handedOn[index]
                case .constant(let tensor): return tensor
                case .absent: return nil
                }
            }
            let start = profiler?.isRecording == true ? Profiler.now() : 0
            dynamicOutputs = try node.naming { try session.operators[barrier.position].runDynamic(inputs, context) }
            if dynamicOutputs.count != node.outputs.count {
                throw DeformRTError.unsupported("node \(node.label) (\(node.opType)): produces \(dynamicOutputs.count) outputs, the model asks for \(node.outputs.count)")
            }
            if let profiler, profiler.isRecording {
                profiler.record(ProfiledNode(name: node.name.isEmpty ? node.label : node.name, opType: node.opType, fusedNodes: [],
                                             inputShapes: inputs.map { $0?.shape ?? [] }, outputShapes: dynamicOutputs.map(\.shape),
                                             flops: nil),
                                from: start, to: Profiler.now())
            }
            for (i, tensor) in dynamicOutputs.enumerated() {
                _ = try Limits.elementCount(tensor.shape, what: "node \(node.label) (\(node.opType)) output")
                handedOn.append(tensor)
                continuationKey.append(Int64(tensor.rank))
                for dim in tensor.shape { continuationKey.append(Int64(dim)) }
                for slot in dynamicOutputSlots[i] {
                    results.tensors[slot] = tensor
                    results.fresh[slot] = true
                }
            }
        } else {
            for index in shapeValueIndices {
                let tensor = handedOn[index]!
                if tensor.elementCount > ExecutionPlan.maxShapeValueElements {
                    throw DeformRTError.invalidModel("node \(node.label) (\(node.opType)): a shape input has \(tensor.elementCount) elements (at most \(ExecutionPlan.maxShapeValueElements))")
                }
                ExecutionPlan.appendContents(tensor, to: &continuationKey)
            }
        }
        let next: ExecutionPlan
        if let cached = continuations[continuationKey] {
            next = cached
        } else {
            var nextFed: [(id: Int, value: PlanValue)] = []
            for (k, id) in barrier.crossing.enumerated() {
                let tensor = handedOn[k]!
                var value = PlanValue(ValueType(tensor.elementType, tensor.shape))
                if case .constant = crossingSources[k] { value.constant = tensor }
                // The shape inputs are fixed for the plan of the rest: copied out of the arena.
                if !barrier.dynamic && barrier.shapeValues.contains(id) { value.constant = tensor.copy() }
                nextFed.append((id, value))
            }
            for (i, id) in (barrier.dynamic ? node.outputs : []).enumerated() {
                nextFed.append((id, PlanValue(ValueType(dynamicOutputs[i].elementType, dynamicOutputs[i].shape))))
            }
            next = try ExecutionPlan(session: session, start: barrier.dynamic ? barrier.position + 1 : barrier.position,
                                     fed: nextFed, isFirst: false)
            if continuations.count >= ExecutionPlan.maxContinuations { continuations.removeAll() }
            continuations[continuationKey] = next
        }
        try next.run(fed: handedOn, into: results, profiler: profiler)
    }

    /// Appends a tensor's element count and contents (as 64-bit patterns) to a continuation key.
    private static func appendContents(_ tensor: Tensor, to key: inout [Int64]) {
        let n = tensor.elementCount
        key.append(Int64(tensor.elementType.rawValue))
        key.append(Int64(n))
        switch tensor.elementType {
        case .int64: for i in 0..<n { key.append(tensor.pointer(Int64.self)[i]) }
        case .int32: for i in 0..<n { key.append(Int64(tensor.pointer(Int32.self)[i])) }
        case .float: for i in 0..<n { key.append(Int64(tensor.floats[i].bitPattern)) }
        case .double: for i in 0..<n { key.append(Int64(bitPattern: tensor.pointer(Double.self)[i].bitPattern)) }
        default:
            let bytes = tensor.rawPointer.assumingMemoryBound(to: UInt8.self)
            for i in 0..<tensor.byteCount { key.append(Int64(bytes[i])) }
        }
    }
}
