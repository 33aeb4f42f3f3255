/// When the graph inputs declare fixed shapes (no symbolic dims), the shapes of the values computed
/// from them are fixed too, and a session only ever runs feeds of those shapes (Session checks
/// each fed dim against the declared one). This pass works those shapes out with the operators'
/// own `plan` functions, as the planner does (ShapeInference), and writes what follows from
/// shapes alone into the graph:
///   - the outputs of nodes that `plan` gives as constants from shapes alone (Shape, with start /
///     end, Size) become initializers, so that ConstantFolding (run again after this pass) folds
///     the chains the TorchScript exporter computes from them (Gather -> Cast -> Range -> Expand);
///   - a Reshape's target sizes become the explicit output shape (no 0 or -1), so that later
///     passes read its sizes without shapes.
/// A value is known only when every value it is computed from is: an input with a symbolic or
/// undeclared dim, a node `plan` rejects, an operator DeformRT does not run (custom operators)
/// or whose output shapes depend on run-time data leave everything computed from them as it is.
struct StaticShapeFolding: GraphPass {
    let name = "static shape folding"
    let level = GraphOptimizationLevel.basic

    func apply(to graph: inout Graph) throws -> Bool {
        let order = try GraphCheck.topologicalOrder(graph)
        var known = [PlanValue?](repeating: nil, count: graph.valueNames.count)
        for input in graph.inputs {
            guard let elementType = input.elementType, let shape = input.shape, !shape.contains(where: { $0 < 0 }),
                  (try? Limits.elementCount(shape, what: "graph input '\(input.name)'")) != nil else { continue }
            known[input.id] = PlanValue(ValueType(elementType, shape))
        }
        // As ConstantFolding and the planner: an initializer is a constant.
        for (id, tensor) in graph.initializers { known[id] = PlanValue(ValueType(tensor.elementType, tensor.shape), constant: tensor) }

        var replaced = [Bool](repeating: false, count: graph.nodes.count)
        var explicitReshapes: [(node: Int, shape: [Int])] = []
        for index in order {
            let node = graph.nodes[index]
            guard !node.outputs.isEmpty, let outputs = plan(node, known, graph) else { continue }
            let inputsConstant = node.inputs.allSatisfy { $0 == nil || known[$0!]?.constant != nil }
            if outputs.allSatisfy({ $0.constant != nil }) && !inputsConstant {
                replaced[index] = true
            }
            if node.domain.isEmpty, node.opType == "Reshape", !inputsConstant, let output = outputs.first,
               !output.shape.contains(0), node.inputs.count == 2, let shapeId = node.inputs[1],
               (try? known[shapeId]?.constant?.integerValues())?.map({ Int($0) }) != output.shape {
                explicitReshapes.append((index, output.shape))
            }
            for (id, value) in zip(node.outputs, outputs) { known[id] = value }
        }
        for (index, shape) in explicitReshapes {
            let sizes = graph.addInitializer(Tensor(int64s: shape.map(Int64.init), shape: [shape.count]),
                                             named: graph.nodes[index].name + "_static_shape")
            graph.nodes[index].inputs[1] = sizes
        }
        for index in graph.nodes.indices where replaced[index] {
            for id in graph.nodes[index].outputs { graph.initializers[id] = known[id]!.constant! }
        }
        graph.removeNodes(replaced)
        return replaced.contains(true) || !explicitReshapes.isEmpty
    }

    /// The node's planned outputs, with their contents when fixed (from shapes alone, or computed
    /// when all inputs are small constants), or nil when they are not known.
    private func plan(_ node: Node, _ known: [PlanValue?], _ graph: Graph) -> [PlanValue]? {
        var inputs: [PlanValue?] = []
        for id in node.inputs {
            guard let id else { inputs.append(nil); continue }
            guard let value = known[id] else { return nil }
            inputs.append(value)
        }
        let inputsConstant = inputs.allSatisfy { $0 == nil || $0!.constant != nil }
        guard let op = try? OperatorRegistry.makeOperator(for: node, in: graph),
              !op.outputShapesDependOnData || inputsConstant,
              // Sizes read from contents computed at run time: not known.
              !op.shapeInputs.contains(where: { $0 < inputs.count && inputs[$0] != nil && inputs[$0]!.constant == nil }),
              var outputs = try? op.plan(inputs), outputs.count == node.outputs.count,
              outputs.allSatisfy({ (try? Limits.elementCount($0.shape, what: "planned value")) != nil })
        else { return nil }
        if outputs.allSatisfy({ $0.constant != nil }) { return outputs }
        let small = outputs.allSatisfy { $0.shape.reduce(1, *) <= ShapeInference.foldLimit }
        if inputsConstant && small, let computed = try? op.compute(inputs.map { $0?.constant }, planned: outputs) {
            for i in outputs.indices { outputs[i].constant = computed[i] }
        } else {
            for i in outputs.indices { outputs[i].constant = nil }
        }
        return outputs
    }
}
