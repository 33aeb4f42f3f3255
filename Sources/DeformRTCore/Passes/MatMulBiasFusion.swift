/// Takes the bias Add of a Linear layer into the MatMul that produces it:
///   MatMul(A, W) -> Add(·, b)   becomes   FusedMatMul(A, W, b)
/// with W a constant [K, N] and b a constant [N] (torch.onnx.export writes nn.Linear on inputs of
/// rank > 2 this way; Gemm takes only 2-D). The bias is then added in the packed GEMM's epilogue
/// while each tile is in cache, instead of in a pass over the whole output. Only when the
/// MatMul's output has no other reader; b of rank 1 only, since an Add with [1, N] could raise
/// the rank of a 1-D MatMul result.
struct MatMulBiasFusion: GraphPass {
    let name = "matmul bias fusion"
    let level = GraphOptimizationLevel.extended

    static let fusedMatMul = "FusedMatMul"

    func apply(to graph: inout Graph) throws -> Bool {
        let consumers = graph.consumers()
        let isGraphOutput = graph.graphOutputFlags()
        var removed = [Bool](repeating: false, count: graph.nodes.count)
        var changed = false
        for index in graph.nodes.indices where !removed[index] {
            let matmul = graph.nodes[index]
            guard matmul.domain.isEmpty, matmul.opType == "MatMul", matmul.inputs.count == 2, matmul.outputs.count == 1,
                  let weight = graph.floatConstant(matmul.inputs[1]), weight.shape.count == 2 else { continue }
            let output = matmul.outputs[0]
            guard !isGraphOutput[output], consumers[output].count == 1 else { continue }
            let follower = consumers[output][0]
            let add = graph.nodes[follower]
            guard !removed[follower], add.domain.isEmpty, add.opType == "Add", add.inputs.count == 2, add.outputs.count == 1,
                  let other = add.inputs[0] == output ? add.inputs[1] : add.inputs[0],
                  let bias = graph.floatConstant(other), bias.shape == [weight.shape[1]] else { continue }
            var node = matmul
            node.domain = ConvNodeSlots.fusedDomain
            node.opType = Self.fusedMatMul
            node.inputs = [matmul.inputs[0], matmul.inputs[1], other]
            node.outputs = add.outputs
            node.attributes["fused_nodes"] = .strings(ConvNodeSlots.fusedNames(matmul) + [add.name])
            graph.nodes[index] = node
            removed[follower] = true
            changed = true
        }
        graph.removeNodes(removed)
        return changed
    }
}
