/// Removes nodes that pass their input through unchanged: Identity, inference-mode Dropout and
/// Transpose with the identity permutation. Readers of the output read the input instead.
struct RedundantNodeElimination: GraphPass {
    let name = "redundant node elimination"
    let level = GraphOptimizationLevel.basic

    func apply(to graph: inout Graph) throws -> Bool {
        var removed = [Bool](repeating: false, count: graph.nodes.count)
        for index in graph.nodes.indices where isPassThrough(graph.nodes[index], graph) {
            let node = graph.nodes[index]
            guard let input = node.inputs.first ?? nil else { continue }
            let output = node.outputs[0]
            let isGraphOutput = graph.graphOutputFlags()
            if !isGraphOutput[output] {
                graph.replaceUses(of: output, with: input)
                removed[index] = true
                continue
            }
            // The output is a graph output: the producer of the input can write it directly,
            // if the input is an intermediate nobody else needs under its own name.
            let producers = graph.producers()
            guard let producer = producers[input], !isGraphOutput[input] else { continue }
            guard let slot = graph.nodes[producer].outputs.firstIndex(of: input) else { continue }
            graph.nodes[producer].outputs[slot] = output
            graph.replaceUses(of: input, with: output)
            removed[index] = true
        }
        graph.removeNodes(removed)
        return removed.contains(true)
    }

    private func isPassThrough(_ node: Node, _ graph: Graph) -> Bool {
        guard node.domain.isEmpty, node.inputs.first ?? nil != nil else { return false }
        switch node.opType {
        case "Identity":
            return node.outputs.count == 1
        case "Dropout":
            // The mask output must be unread, and training_mode absent or a constant false.
            if node.outputs.count == 2 {
                let mask = node.outputs[1]
                if graph.graphOutputFlags()[mask] || graph.nodes.contains(where: { $0.inputs.contains(mask) }) { return false }
            }
            if node.inputs.count > 2, let training = node.inputs[2] {
                guard let flags = try? graph.initializers[training]?.integerValues(), !flags.contains(where: { $0 != 0 }) else {
                    return false
                }
            }
            return node.outputs.count >= 1
        case "Transpose":
            guard node.outputs.count == 1, case .ints(let perm)? = node.attributes["perm"] else { return false }
            return perm == Array(0..<perm.count)
        default:
            return false
        }
    }
}
