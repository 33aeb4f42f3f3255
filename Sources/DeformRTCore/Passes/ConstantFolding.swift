/// Computes every node whose inputs are all constants (initializers, Constant nodes and what is
/// folded from them) once, when the session is made, and keeps its outputs as initializers.
/// Shape-dependent subgraphs (Shape -> Gather -> Concat -> Reshape) are folded by the planner,
/// per set of input shapes.
struct ConstantFolding: GraphPass {
    let name = "constant folding"
    let level = GraphOptimizationLevel.basic
    /// Outputs larger than this stay computed at run time, so a hostile model cannot make the
    /// session hold huge folded tensors (64 MiB of floats).
    static let maxElements = 1 << 24

    func apply(to graph: inout Graph) throws -> Bool {
        let order = try GraphCheck.topologicalOrder(graph)
        var folded = [Bool](repeating: false, count: graph.nodes.count)
        for index in order {
            let node = graph.nodes[index]
            if node.outputs.isEmpty { continue }
            let inputs = node.inputs.map { $0.flatMap { graph.initializers[$0] } }
            if zip(node.inputs, inputs).contains(where: { $0.0 != nil && $0.1 == nil }) { continue }
            // A node that fails here fails again when planned, with the planner's message.
            guard let op = try? OperatorRegistry.makeOperator(for: node, in: graph),
                  let outputs = try? op.evaluate(inputs, maxElements: Self.maxElements),
                  outputs.count == node.outputs.count else { continue }
            for (id, tensor) in zip(node.outputs, outputs) { graph.initializers[id] = tensor }
            folded[index] = true
        }
        graph.removeNodes(folded)
        return folded.contains(true)
    }
}
