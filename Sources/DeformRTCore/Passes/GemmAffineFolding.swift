/// Folds an inference BatchNormalization that follows a Gemm into the Gemm's weights and bias
/// (a BatchNorm1d after a Linear layer). With s = gamma / sqrt(var + eps), per output column n:
///   Y = alpha A op(B) + beta C  ->  B'[., n] = B[., n] s[n],  C'[n] = beta C[n] s[n] + beta_bn[n] - mean[n] s[n],  beta' = 1
/// Only when B (and C) are constants, C broadcasts per column (or is absent), and the Gemm's
/// output has no other reader. (A MatMul's output rank is not known here, so a BatchNormalization
/// after it, which normalises axis 1, is left as it is.)
struct GemmAffineFolding: GraphPass {
    let name = "gemm batch-normalization folding"
    let level = GraphOptimizationLevel.extended

    func apply(to graph: inout Graph) throws -> Bool {
        let consumers = graph.consumers()
        let isGraphOutput = graph.graphOutputFlags()
        var removed = [Bool](repeating: false, count: graph.nodes.count)
        var changed = false
        for index in graph.nodes.indices {
            let gemm = graph.nodes[index]
            guard gemm.domain.isEmpty, gemm.opType == "Gemm", gemm.outputs.count == 1, gemm.inputs.count >= 2,
                  let weight = graph.floatConstant(gemm.inputs[1]), weight.shape.count == 2 else { continue }
            let attributes = Attributes(gemm)
            guard let transB = try? attributes.int("transB", default: 0), let beta = try? attributes.float("beta", default: 1)
            else { continue }
            let columns = transB != 0 ? weight.shape[0] : weight.shape[1]
            let output = gemm.outputs[0]
            guard !isGraphOutput[output], consumers[output].count == 1, !removed[consumers[output][0]] else { continue }
            let follower = consumers[output][0]
            guard let (scale, shift) = graph.batchNormalizationAffine(graph.nodes[follower], of: output, channels: columns)
            else { continue }
            // C as one value per column (absent: 0).
            var bias = [Float](repeating: 0, count: columns)
            if gemm.inputs.count > 2, let cId = gemm.inputs[2] {
                guard let c = graph.floatConstant(cId), let values = perColumn(c, columns: columns) else { continue }
                bias = values
            }

            let folded = Tensor(elementType: .float, shape: weight.shape,
                                storage: TensorStorage(uninitializedByteCount: weight.byteCount))
            let w = weight.floats, out = folded.floats
            let rows = weight.shape[0], width = weight.shape[1]
            for r in 0..<rows {
                for j in 0..<width { out[r * width + j] = w[r * width + j] * scale[transB != 0 ? r : j] }
            }
            let newBias = (0..<columns).map { beta * bias[$0] * scale[$0] + shift[$0] }
            var node = gemm
            node.inputs[1] = graph.addInitializer(folded, named: graph.valueNames[gemm.inputs[1]!] + "_folded")
            let biasId = graph.addInitializer(Tensor(floats: newBias, shape: [columns]), named: gemm.name + "_bias_folded")
            if node.inputs.count > 2 { node.inputs[2] = biasId } else { node.inputs.append(biasId) }
            node.attributes["beta"] = .float(1)
            node.attributes["fused_nodes"] = .strings(ConvNodeSlots.fusedNames(gemm) + [graph.nodes[follower].name])
            node.outputs = [graph.nodes[follower].outputs[0]]
            graph.nodes[index] = node
            removed[follower] = true
            changed = true
        }
        graph.removeNodes(removed)
        return changed
    }

    /// C's value for each output column when C broadcasts along the rows ([N], [1, N], [1], [1, 1] or scalar).
    private func perColumn(_ c: Tensor, columns: Int) -> [Float]? {
        let shape = c.shape
        guard shape.count <= 2, shape.dropLast().allSatisfy({ $0 == 1 }) else { return nil }
        let last = shape.last ?? 1
        guard last == 1 || last == columns else { return nil }
        let p = c.floats
        return (0..<columns).map { last == 1 ? p[0] : p[$0] }
    }
}
