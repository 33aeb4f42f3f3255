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

    init(session: SessionCore, inputTypes: [ValueType]) throws {
        self.inputTypes = inputTypes
        let graph = session.graph
        parallel = session.parallel
        let valueCount = graph.valueNames.count
        var budget = MemoryBudget(limit: session.options.memoryLimit)
        let shapes = try ShapeInference(session: session, inputTypes: inputTypes, budget: &budget)
        let memory = try MemoryPlan(session: session, shapes: shapes, budget: &budget)
        let known = shapes.known, isGraphInput = shapes.isGraphInput, isGraphOutput = shapes.isGraphOutput
        let firstStep = memory.firstStep, aliasOf = memory.aliasOf, runtimeNodes = memory.steps

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
            let state = try node.naming {
                try session.operators[position].runState(node.inputs.map { $0.flatMap { known[$0] } },
                                                         node.outputs.map { known[$0]!.type })
            }
            steps.append(Step(node: nodeIndex, op: session.operators[position], inputs: inputs, outputs: outputs,
                              profiled: profiled, state: state))
        }
        self.inputBindings = inputBindings
        self.placeholder = placeholder
        outputNames = graph.outputs.map(\.name)
        outputPools = graph.outputs.map { _ in [] }
        runOutputs = [Tensor?](repeating: nil, count: graph.outputs.count)
        handedOut = [Bool](repeating: false, count: graph.outputs.count)
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

    /// Whether this plan was made for the element types and shapes of `inputs` (all fed).
    func accepts(_ inputs: [Tensor?]) -> Bool {
        for (index, tensor) in inputs.enumerated() {
            guard let tensor, tensor.elementType == inputTypes[index].elementType,
                  tensor.shape == inputTypes[index].shape else { return false }
        }
        return true
    }

    /// Per-run scratch: each computed output's tensor by output slot, and which were handed out.
    private var runOutputs: [Tensor?]
    private var handedOut: [Bool]

    /// Runs the steps on `inputs` (every graph input fed) and hands output `wanted[i]` to
    /// `emit(i, tensor)`.
    ///
    /// `provided` is empty, or holds for each wanted output the caller's tensor to write it into
    /// (nil: a tensor from the output pool). A caller's tensor must have the output's element type
    /// and shape, and must not share memory with an input; a computed output is written straight
    /// into it, any other (an input or constant passed through, or a value wanted twice) is copied.
    /// `termination` is read once before each step.
    func execute(inputs: [Tensor?], wanted: [Int], provided: [Tensor?], profiler: Profiler?,
                 termination: RunTermination?, emit: (Int, Tensor) -> Void) throws {
        // Checked before anything runs, so a refused call writes nothing.
        for (position, tensor) in provided.enumerated() {
            guard let tensor else { continue }
            let slot = wanted[position]
            let type: ValueType
            switch outputSources[slot] {
            case .computed(_, let t): type = t
            case .fixed(let t): type = ValueType(t.elementType, t.shape)
            case .input(let i): type = ValueType(inputs[i]!.elementType, inputs[i]!.shape)
            }
            let name = outputNames[slot]
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
        for (slot, source) in outputSources.enumerated() {
            guard case .computed(let value, let type) = source else { continue }
            // A value that is several graph outputs is computed once, into the first slot's tensor.
            if let first = firstSlot[slot] {
                runOutputs[slot] = runOutputs[first]
                continue
            }
            // The first caller tensor given for this slot, if any, is computed into directly.
            var storage: TensorStorage?
            for (position, tensor) in provided.enumerated() where wanted[position] == slot && tensor != nil {
                storage = tensor!.storage
                handedOut[slot] = true  // so that a position wanting it without a tensor gets a copy
                break
            }
            let tensor = Tensor(elementType: type.elementType, shape: type.shape,
                                storage: storage ?? outputStorage(slot: slot, byteCount: type.shape.reduce(1, *) * type.elementType.byteSize))
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
                if let termination, termination.isRequested { throw RunTermination.cancelled }
                let start = Profiler.now()
                context.state = step.state
                try step.op.run(step.inputs, step.outputs, context)
                profiler.record(step.profiled, from: start, to: Profiler.now())
            }
            profiler.record(nil, from: runStart, to: Profiler.now())
        } else {
            for step in steps {
                if let termination, termination.isRequested { throw RunTermination.cancelled }
                context.state = step.state
                try step.op.run(step.inputs, step.outputs, context)
            }
        }
        for (position, index) in wanted.enumerated() {
            if position < provided.count, let target = provided[position] {
                let result: Tensor
                switch outputSources[index] {
                case .computed: result = runOutputs[index]!
                case .fixed(let tensor): result = tensor
                case .input(let i): result = inputs[i]!
                }
                if result.storage !== target.storage, target.byteCount > 0 {
                    target.rawPointer.copyMemory(from: result.rawPointer, byteCount: target.byteCount)
                }
                emit(position, target)
                continue
            }
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
