import DeformRTKernels

/// Plan stage 1: the type and shape of every value for one set of input shapes, in execution
/// order, with constants folded (initializers, Constant nodes, Shape outputs and what is
/// computable from them). What is left to run are `runtimeNodes`.
struct ShapeInference {
    /// Per value id: its type, and its contents when fixed for the plan.
    var known: [PlanValue?]
    /// Positions in the session's order of the nodes that run (not folded away).
    var runtimeNodes: [Int] = []
    /// Per value id: the graph input index it is, if any.
    let isGraphInput: [Int?]
    let isGraphOutput: [Bool]

    /// Outputs up to this many elements are computed while planning when their inputs are constant.
    static let foldLimit = 1 << 16

    init(session: SessionCore, inputTypes: [ValueType], budget: inout MemoryBudget) throws {
        let graph = session.graph
        let valueCount = graph.valueNames.count
        var known = [PlanValue?](repeating: nil, count: valueCount)
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
        self.isGraphInput = isGraphInput
        self.isGraphOutput = isGraphOutput

        // Pass 1: types, shapes and folding, in execution order.
        for (position, nodeIndex) in session.order.enumerated() {
            let node = graph.nodes[nodeIndex]
            let op = session.operators[position]
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
            let allConstant = node.inputs.allSatisfy { $0 == nil || known[$0!]?.constant != nil }
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
}
