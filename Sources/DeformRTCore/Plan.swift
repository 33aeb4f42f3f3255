import DeformRTKernels

/// Everything needed to run the graph for one set of input shapes: output shapes, folded
/// constants, and a liveness-planned arena in which every intermediate has a fixed place, so a
/// steady-state run allocates nothing but the tensors it returns.
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
    }

    private var steps: [Step] = []
    private let inputBindings: [[Binding]]
    private var outputBindings: [Int: [Binding]] = [:]
    private let outputSources: [OutputSource]
    /// For an output slot whose value an earlier slot also is: that earlier slot.
    private let firstSlot: [Int?]
    private let arena: TensorStorage
    private let workspace: TensorStorage
    private let parallel: Parallel
    /// Bound where a per-run tensor goes between runs (an empty view of the arena).
    private let placeholder: Tensor

    init(session: SessionCore, inputTypes: [ValueType]) throws {
        self.inputTypes = inputTypes
        let graph = session.graph
        parallel = session.parallel
        let valueCount = graph.valueNames.count
        var known = [PlanValue?](repeating: nil, count: valueCount)
        var budget = MemoryBudget(limit: session.options.memoryLimit)
        for (id, tensor) in graph.initializers { known[id] = PlanValue(ValueType(tensor.elementType, tensor.shape), constant: tensor) }
        var isGraphInput = [Int?](repeating: nil, count: valueCount)
        for (index, input) in graph.inputs.enumerated() {
            // Declared shapes are untrusted: bound them before any operator multiplies their dims.
            _ = try Limits.elementCount(inputTypes[index].shape, what: "graph input '\(input.name)'")
            known[input.id] = PlanValue(inputTypes[index])
            isGraphInput[input.id] = index
        }
        var isGraphOutput = [Bool](repeating: false, count: valueCount)
        for output in graph.outputs { isGraphOutput[output.id] = true }

        // Pass 1: types, shapes and folding, in execution order.
        var runtimeNodes: [Int] = []
        for (position, nodeIndex) in session.order.enumerated() {
            let node = graph.nodes[nodeIndex]
            let op = session.operators[position]
            let inputs = node.inputs.map { $0.flatMap { known[$0] } }
            var outputs: [PlanValue]
            do {
                outputs = try op.plan(inputs)
            } catch let error as DeformRTError {
                throw DeformRTError(error.code, "node \(node.label) (\(node.opType)): \(error.message)")
            }
            // A node without outputs computes nothing anyone reads; otherwise the operator's
            // outputs must match the node's one to one (run writes each of them).
            if node.outputs.isEmpty { continue }
            if outputs.count != node.outputs.count {
                throw DeformRTError.unsupported("node \(node.label) (\(node.opType)): produces \(outputs.count) outputs, the model asks for \(node.outputs.count)")
            }
            for value in outputs {
                _ = try Limits.elementCount(value.shape, what: "node \(node.label) (\(node.opType)) output")
            }
            let allConstant = node.inputs.allSatisfy { $0 == nil || known[$0!]?.constant != nil }
            let small = outputs.allSatisfy { $0.type.shape.reduce(1, *) <= ExecutionPlan.foldLimit }
            if outputs.allSatisfy({ $0.constant != nil }) {
                // Outputs fixed by shapes alone (Shape, Size): nothing to run.
            } else if allConstant && small {
                let inputTensors = node.inputs.map { $0.flatMap { known[$0]?.constant } }
                let folded: [Tensor]
                do {
                    folded = try op.compute(inputTensors, planned: outputs)
                } catch let error as DeformRTError {
                    throw DeformRTError(error.code, "node \(node.label) (\(node.opType)): \(error.message)")
                }
                for i in outputs.indices { outputs[i].constant = folded[i] }
                try budget.add(folded.reduce(0) { $0 + $1.byteCount })
            } else {
                for i in outputs.indices { outputs[i].constant = nil }
                runtimeNodes.append(position)
            }
            for (i, id) in node.outputs.enumerated() { known[id] = outputs[i] }
        }

        // Reshape-like nodes on intermediates run as views: their output is the input's memory
        // under another shape (aliasOf: the value that owns the memory), and no step runs.
        var aliasOf = [Int?](repeating: nil, count: valueCount)
        var producedAtRunTime = [Bool](repeating: false, count: valueCount)
        runtimeNodes = runtimeNodes.filter { position in
            let node = graph.nodes[session.order[position]]
            if ExecutionPlan.isView(node), let input = node.inputs.first ?? nil, producedAtRunTime[input],
               let output = node.outputs.first, !isGraphOutput[output] {
                let owner = aliasOf[input] ?? input
                if !isGraphOutput[owner] {
                    aliasOf[output] = owner
                    producedAtRunTime[output] = true
                    return false
                }
            }
            for id in node.outputs { producedAtRunTime[id] = true }
            return true
        }

        // Pass 2: lifetimes of the intermediates that live in the arena (a view's readers keep
        // its owner alive).
        var firstStep = [Int](repeating: -1, count: valueCount)
        var lastStep = [Int](repeating: -1, count: valueCount)
        for (stepIndex, position) in runtimeNodes.enumerated() {
            let node = graph.nodes[session.order[position]]
            for id in node.outputs where firstStep[id] < 0 { firstStep[id] = stepIndex; lastStep[id] = stepIndex }
            for case let read? in node.inputs {
                let id = aliasOf[read] ?? read
                if firstStep[id] >= 0 { lastStep[id] = stepIndex }
            }
        }
        var blocks: [ArenaBlock] = []
        for id in 0..<valueCount where firstStep[id] >= 0 && !isGraphOutput[id] {
            let type = known[id]!.type
            let bytes = try Limits.byteCount(type.shape.reduce(1, *), elementSize: type.elementType.byteSize, what: graph.valueNames[id])
            blocks.append(ArenaBlock(value: id, bytes: bytes, first: firstStep[id], last: lastStep[id]))
        }
        let arenaBytes = ArenaBlock.assignOffsets(&blocks)
        try budget.add(arenaBytes)
        var workspaceBytes = 0
        for position in runtimeNodes {
            let node = graph.nodes[session.order[position]]
            let inputs = node.inputs.map { $0.flatMap { known[$0]?.type } }
            let outputs = node.outputs.map { known[$0]!.type }
            workspaceBytes = max(workspaceBytes, session.operators[position].workspaceByteCount(inputs, outputs, threads: parallel.threads))
        }
        try budget.add(workspaceBytes)
        for output in graph.outputs {
            let type = known[output.id]!.type
            try budget.add(try Limits.byteCount(type.shape.reduce(1, *), elementSize: type.elementType.byteSize, what: output.name))
        }

        arena = TensorStorage(zeroedByteCount: arenaBytes)
        workspace = TensorStorage(zeroedByteCount: workspaceBytes)
        var bound = [Tensor?](repeating: nil, count: valueCount)
        for block in blocks {
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

        // Pass 3: steps with their tensors; graph inputs and outputs get bindings instead.
        var inputBindings = [[Binding]](repeating: [], count: graph.inputs.count)
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
            let state: AnyObject?
            do {
                state = try session.operators[position].runState(node.inputs.map { $0.flatMap { known[$0] } },
                                                                 node.outputs.map { known[$0]!.type })
            } catch let error as DeformRTError {
                throw DeformRTError(error.code, "node \(node.label) (\(node.opType)): \(error.message)")
            }
            steps.append(Step(node: nodeIndex, op: session.operators[position], inputs: inputs, outputs: outputs,
                              profiled: profiled, state: state))
        }
        self.inputBindings = inputBindings
        self.placeholder = placeholder
        outputPools = graph.outputs.map { _ in [] }
        outputSources = graph.outputs.map { output in
            if let index = isGraphInput[output.id] { return .input(index) }
            if firstStep[output.id] >= 0 { return .computed(value: output.id, type: known[output.id]!.type) }
            return .fixed(known[output.id]!.constant!)
        }
        firstSlot = graph.outputs.indices.map { slot in
            graph.outputs[..<slot].firstIndex { $0.id == graph.outputs[slot].id }
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

    /// Nodes whose output is their first input's elements in the same order (ai.onnx Reshape,
    /// Flatten, Squeeze, Unsqueeze, Identity): run as views of an intermediate input.
    static func isView(_ node: Node) -> Bool {
        guard node.domain.isEmpty, node.outputs.count == 1 else { return false }
        switch node.opType {
        case "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity": return true
        default: return false
        }
    }

    /// Outputs up to this many elements are computed while planning when their inputs are constant.
    static let foldLimit = 1 << 16

    /// Whether this plan was made for the element types and shapes of `inputs` (all fed).
    func accepts(_ inputs: [Tensor?]) -> Bool {
        for (index, tensor) in inputs.enumerated() {
            guard let tensor, tensor.elementType == inputTypes[index].elementType,
                  tensor.shape == inputTypes[index].shape else { return false }
        }
        return true
    }

    /// Per-run scratch: each computed output's tensor by output slot, and which were handed out.
    private var runOutputs: [Tensor?] = []
    private var handedOut: [Bool] = []

    /// Runs the steps on `inputs` (every graph input fed) and hands output `wanted[i]` to
    /// `emit(i, tensor)`.
    func execute(inputs: [Tensor?], wanted: [Int], profiler: Profiler?, emit: (Int, Tensor) -> Void) throws {
        for (index, bindings) in inputBindings.enumerated() {
            for binding in bindings { steps[binding.step].inputs[binding.position] = inputs[index] }
        }
        // Drop references to the caller's tensors, also when an operator throws, so that memory
        // a caller lent (drt_tensor_create_borrowed) is never reachable after the call.
        defer {
            for bindings in inputBindings {
                for binding in bindings { steps[binding.step].inputs[binding.position] = nil }
            }
        }
        if runOutputs.count != outputSources.count {
            runOutputs = [Tensor?](repeating: nil, count: outputSources.count)
            handedOut = [Bool](repeating: false, count: outputSources.count)
        }
        for (slot, source) in outputSources.enumerated() {
            guard case .computed(let value, let type) = source else { continue }
            // A value that is several graph outputs is computed once, into the first slot's tensor.
            if let first = firstSlot[slot] {
                runOutputs[slot] = runOutputs[first]
                continue
            }
            let tensor = Tensor(elementType: type.elementType, shape: type.shape,
                                storage: outputStorage(slot: slot, byteCount: type.shape.reduce(1, *) * type.elementType.byteSize))
            runOutputs[slot] = tensor
            bindOutput(value, to: tensor)
        }
        // The steps let go of the outputs once the run ends, so a released output can be reused.
        defer {
            for (slot, source) in outputSources.enumerated() {
                if case .computed(let value, _) = source, firstSlot[slot] == nil { bindOutput(value, to: placeholder) }
                runOutputs[slot] = nil
                handedOut[slot] = false
            }
        }
        var context = RunContext(parallel: parallel, workspace: workspace.bytes, workspaceByteCount: workspace.byteCount)
        if let profiler, profiler.isRecording {
            let runStart = Profiler.now()
            for step in steps {
                let start = Profiler.now()
                context.state = step.state
                try step.op.run(step.inputs, step.outputs, context)
                profiler.record(step.profiled, from: start, to: Profiler.now())
            }
            profiler.record(nil, from: runStart, to: Profiler.now())
        } else {
            for step in steps {
                context.state = step.state
                try step.op.run(step.inputs, step.outputs, context)
            }
        }
        for (position, index) in wanted.enumerated() {
            switch outputSources[index] {
            case .computed:
                // The same value asked for twice gets its own copy the second time.
                let slot = firstSlot[index] ?? index
                emit(position, handedOut[slot] ? runOutputs[index]!.copy() : runOutputs[index]!)
                handedOut[slot] = true
            case .fixed(let tensor): emit(position, tensor.copy())
            case .input(let i): emit(position, inputs[i]!.copy())
            }
        }
    }
}

/// Keeps the bytes a plan holds under the session's memory limit, checked before allocating.
struct MemoryBudget {
    let limit: UInt64
    var used: UInt64 = 0

    mutating func add(_ bytes: Int) throws {
        let (total, overflow) = used.addingReportingOverflow(UInt64(max(0, bytes)))
        if overflow || total > limit {
            throw DeformRTError(.outOfMemory, "planning needs more than the session's memory limit of \(limit) bytes")
        }
        used = total
    }
}

/// An intermediate value's place in the arena and the steps during which it is alive.
struct ArenaBlock {
    let value: Int
    let bytes: Int
    let first: Int
    let last: Int
    var offset = 0

    static let alignment = 64

    /// Greedy by size (largest first): each block takes the lowest offset that does not overlap a
    /// block already placed whose lifetime intersects its own. Returns the arena size.
    static func assignOffsets(_ blocks: inout [ArenaBlock]) -> Int {
        let order = blocks.indices.sorted { blocks[$0].bytes != blocks[$1].bytes ? blocks[$0].bytes > blocks[$1].bytes : $0 < $1 }
        var placed: [Int] = []
        var total = 0
        for index in order {
            let size = (blocks[index].bytes + alignment - 1) / alignment * alignment
            let conflicts = placed.filter { blocks[$0].first <= blocks[index].last && blocks[index].first <= blocks[$0].last }
                .sorted { blocks[$0].offset < blocks[$1].offset }
            var offset = 0
            for other in conflicts {
                let otherEnd = blocks[other].offset + (blocks[other].bytes + alignment - 1) / alignment * alignment
                if offset + size <= blocks[other].offset { break }
                offset = max(offset, otherEnd)
            }
            blocks[index].offset = offset
            total = max(total, offset + size)
            placed.append(index)
        }
        return total
    }
}
