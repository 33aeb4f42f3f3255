import DeformRTKernels

/// Where a plan stops because what follows depends on run-time data: the node at `position`
/// either has a shape input computed at run time (Reshape with a shape from data), or output
/// shapes that depend on its data (NonZero).
struct PlanBarrier {
    /// Position in the session's order of the node the plan stops at.
    let position: Int
    /// The node runs in the plan (`runDynamic`), and the rest is planned after it; otherwise the
    /// rest, this node included, is planned with `shapeValues` as constants.
    let dynamic: Bool
    /// Value ids of the node's shape inputs that are computed at run time (not dynamic).
    let shapeValues: [Int]
    /// Value ids the rest of the graph reads from this plan (graph inputs, intermediates,
    /// constants), in id order.
    let crossing: [Int]
}

/// Plan stage 1: the type and shape of every value for one set of input shapes, in execution
/// order, with constants folded (initializers, Constant nodes, Shape outputs and what is
/// computable from them). What is left to run are `runtimeNodes`.
///
/// A plan covers the nodes from `start` (0, or where an earlier plan stopped) up to the first
/// node whose output shapes depend on run-time data (`barrier`), or to the end.
struct ShapeInference {
    /// Per value id: its type, and its contents when fixed for the plan.
    var known: [PlanValue?]
    /// Positions in the session's order of the nodes that run (not folded away).
    var runtimeNodes: [Int] = []
    /// Per value id: the index of the fed value it is, if it is fed per run (graph inputs for
    /// a session's first plan; values computed by an earlier plan for the others).
    let isGraphInput: [Int?]
    let isGraphOutput: [Bool]
    /// Where this plan stops, if before the end.
    var barrier: PlanBarrier?

    /// Outputs up to this many elements are computed while planning when their inputs are constant.
    static let foldLimit = 1 << 16

    init(session: SessionCore, inputTypes: [ValueType], budget: inout MemoryBudget) throws {
        let graph = session.graph
        for (index, input) in graph.inputs.enumerated() {
            // Declared shapes are untrusted: bound them before any operator multiplies their dims.
            _ = try Limits.elementCount(inputTypes[index].shape, what: "graph input '\(input.name)'")
        }
        let fed = graph.inputs.enumerated().map { (id: $0.element.id, value: PlanValue(inputTypes[$0.offset])) }
        try self.init(session: session, start: 0, fed: fed, budget: &budget)
    }

    /// Plans the nodes from position `start` on, given the values fed to them: a fed value with
    /// a constant is fixed for the plan, the others are bound per run by fed index.
    init(session: SessionCore, start: Int, fed: [(id: Int, value: PlanValue)], budget: inout MemoryBudget) throws {
        let graph = session.graph
        let valueCount = graph.valueNames.count
        var known = [PlanValue?](repeating: nil, count: valueCount)
        for (id, tensor) in graph.initializers { known[id] = PlanValue(ValueType(tensor.elementType, tensor.shape), constant: tensor) }
        var isGraphInput = [Int?](repeating: nil, count: valueCount)
        for (index, value) in fed.enumerated() {
            known[value.id] = value.value
            if value.value.constant == nil { isGraphInput[value.id] = index }
        }
        var isGraphOutput = [Bool](repeating: false, count: valueCount)
        for output in graph.outputs { isGraphOutput[output.id] = true }
        self.isGraphInput = isGraphInput
        self.isGraphOutput = isGraphOutput

        // Pass 1: types, shapes and folding, in execution order.
        for position in start..<session.order.count {
            let node = graph.nodes[session.order[position]]
            let op = session.operators[position]
            let allConstant = node.inputs.allSatisfy { $0 == nil || known[$0!]?.constant != nil }
            if op.outputShapesDependOnData && !allConstant && !node.outputs.isEmpty {
                barrier = ShapeInference.barrier(session, at: position, dynamic: true, shapeValues: [], known: known)
                break
            }
            let pending = op.shapeInputs.compactMap { i -> Int? in
                guard i < node.inputs.count, let id = node.inputs[i], known[id]?.constant == nil else { return nil }
                return id
            }
            if !pending.isEmpty && !node.outputs.isEmpty {
                barrier = ShapeInference.barrier(session, at: position, dynamic: false, shapeValues: pending, known: known)
                break
            }
            let inputs = node.inputs.map { $0.flatMap { known[$0] } }
            var outputs = try node.naming { try op.plan(inputs) }
            // A node without outputs computes nothing anyone reads; otherwise the operator's
            // outputs must match the node's one to one (run writes each of them).
            if node.outputs.isEmpty { continue }
            if outputs.count != node.outputs.count {
                throw DeformRTError.unsupported("node \(node.label) (\(node.opType)): produces \(outputs.count) outputs, the model asks for \(node.outputs.count)")
            }
            for value in outputs {
                _ = try Limits.elementCount(value.shape, what: "node \(node.label) (\(node.opType)) output")
            }
            let small = outputs.allSatisfy { $0.type.shape.reduce(1, *) <= ShapeInference.foldLimit }
            if outputs.allSatisfy({ $0.constant != nil }) {
                // Outputs fixed by shapes alone (Shape, Size): nothing to run.
            } else if allConstant && small {
                let inputTensors = node.inputs.map { $0.flatMap { known[$0]?.constant } }
                let folded = try node.naming { try op.compute(inputTensors, planned: outputs) }
                for i in outputs.indices { outputs[i].constant = folded[i] }
                try budget.add(folded.reduce(0) { $0 + $1.byteCount })
            } else {
                for i in outputs.indices { outputs[i].constant = nil }
                runtimeNodes.append(position)
            }
            for (i, id) in node.outputs.enumerated() { known[id] = outputs[i] }
        }
        self.known = known
    }

    /// The barrier at `position`: which known values the nodes from there on read.
    private static func barrier(_ session: SessionCore, at position: Int, dynamic: Bool, shapeValues: [Int],
                                known: [PlanValue?]) -> PlanBarrier {
        let graph = session.graph
        var read = [Bool](repeating: false, count: graph.valueNames.count)
        for later in position..<session.order.count {
            for case let id? in graph.nodes[session.order[later]].inputs { read[id] = true }
        }
        // Graph outputs computed from here on may be values this plan knows (an Identity of one).
        let crossing = read.indices.filter { read[$0] && known[$0] != nil && graph.initializers[$0] == nil }
        return PlanBarrier(position: position, dynamic: dynamic, shapeValues: shapeValues, crossing: crossing)
    }
}
