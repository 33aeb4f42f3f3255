/// Removes nodes whose outputs no graph output depends on, and initializers nothing reads.
struct DeadCodeElimination: GraphPass {
    let name = "dead code elimination"
    let level = GraphOptimizationLevel.basic

    func apply(to graph: inout Graph) throws -> Bool {
        let producers = graph.producers()
        var liveNode = [Bool](repeating: false, count: graph.nodes.count)
        var liveValue = [Bool](repeating: false, count: graph.valueNames.count)
        var pending = graph.outputs.map(\.id)
        while let id = pending.popLast() {
            if liveValue[id] { continue }
            liveValue[id] = true
            guard let producer = producers[id], !liveNode[producer] else { continue }
            liveNode[producer] = true
            pending.append(contentsOf: graph.nodes[producer].inputs.compactMap { $0 })
        }
        let deadNodes = liveNode.map { !$0 }
        let deadInitializers = graph.initializers.keys.filter { !liveValue[$0] }
        for id in deadInitializers { graph.initializers[id] = nil }
        graph.removeNodes(deadNodes)
        return deadNodes.contains(true) || !deadInitializers.isEmpty
    }
}
