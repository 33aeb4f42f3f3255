import DeformRTKernels

/// Takes the residual Add and the activation that follow a convolution into its epilogue:
///   Conv -> [Add(·, r)] -> [activation]   becomes   FusedConv(X, W, B, r) with `activation`
/// (ResNet's relu(bn(conv(y)) + shortcut) once BatchNormalization is folded). The activations are
/// FusedActivation's, including x * Sigmoid(x) (SiLU) as two nodes. Deformable convolutions
/// become FusedDeformConv. Each step needs the convolution's output to have no other reader.
struct ConvEpilogueFusion: GraphPass {
    let name = "convolution epilogue fusion"
    let level = GraphOptimizationLevel.extended

    func apply(to graph: inout Graph) throws -> Bool {
        var state = Fusion(graph: graph)
        for index in graph.nodes.indices where !state.removed[index] {
            let node = graph.nodes[index]
            guard node.domain != ConvNodeSlots.fusedDomain, let slots = ConvNodeSlots(node), node.outputs.count == 1 else { continue }
            state.fuse(index, slots: slots)
        }
        let changed = state.removed.contains(true)
        graph = state.graph
        graph.removeNodes(state.removed)
        return changed
    }

    /// The graph being rewritten, with the readers of each value kept current (removed nodes
    /// read nothing), so that a node taken over by one convolution is not offered to another.
    private struct Fusion {
        var graph: Graph
        var consumers: [[Int]]
        var removed: [Bool]
        let isGraphOutput: [Bool]

        init(graph: Graph) {
            self.graph = graph
            consumers = graph.consumers()
            removed = [Bool](repeating: false, count: graph.nodes.count)
            isGraphOutput = graph.graphOutputFlags()
        }

        mutating func fuse(_ index: Int, slots: ConvNodeSlots) {
            var node = graph.nodes[index]
            var names = ConvNodeSlots.fusedNames(node)
            var residual: Int?
            var activation: UnaryFunction?
            while activation == nil, !isGraphOutput[node.outputs[0]] {
                let output = node.outputs[0]
                let readers = consumers[output]
                if readers.count == 2, let silu = siluPattern(readers, of: output) {
                    activation = .silu
                    absorb([silu.sigmoid, silu.mul], into: &node, names: &names)
                    break
                }
                guard readers.count == 1 else { break }
                let next = graph.nodes[readers[0]]
                if residual == nil, next.domain.isEmpty, next.opType == "Add", next.inputs.count == 2, next.outputs.count == 1,
                   let other = next.inputs[0] == output ? next.inputs[1] : next.inputs[0], other != output {
                    residual = other
                    absorb([readers[0]], into: &node, names: &names)
                    consumers[other].append(index)
                } else if next.inputs.first == output, let function = FusedActivation.of(next, in: graph) {
                    activation = function
                    absorb([readers[0]], into: &node, names: &names)
                } else {
                    break
                }
            }
            if names.count == ConvNodeSlots.fusedNames(graph.nodes[index]).count { return }
            let base = ConvNodeSlots.base(node)
            node.attributes["base_domain"] = .string(base.domain)
            node.attributes["base_op"] = .string(base.opType)
            node.domain = ConvNodeSlots.fusedDomain
            node.opType = ConvNodeSlots.fusedOpType(base: base.opType)
            node.attributes["fused_nodes"] = .strings(names)
            if let activation, let encoded = FusedActivation.encode(activation) {
                node.attributes["activation"] = .string(encoded.name)
                node.attributes["activation_params"] = .floats(encoded.parameters)
            }
            if let residual {
                while node.inputs.count <= slots.residual { node.inputs.append(nil) }
                node.inputs[slots.residual] = residual
            }
            graph.nodes[index] = node
        }

        /// The convolution takes over the output of `followers` (the last one's).
        private mutating func absorb(_ followers: [Int], into node: inout Node, names: inout [String]) {
            for follower in followers {
                removed[follower] = true
                names.append(graph.nodes[follower].name)
                for case let input? in graph.nodes[follower].inputs {
                    if let at = consumers[input].firstIndex(of: follower) { consumers[input].remove(at: at) }
                }
            }
            node.outputs = [graph.nodes[followers.last!].outputs[0]]
        }

        /// y read by s = Sigmoid(y) and by Mul(y, s) (either order), s read by nothing else.
        private func siluPattern(_ readers: [Int], of y: Int) -> (sigmoid: Int, mul: Int)? {
            for (s, m) in [(readers[0], readers[1]), (readers[1], readers[0])] {
                let sigmoid = graph.nodes[s], mul = graph.nodes[m]
                guard sigmoid.domain.isEmpty, sigmoid.opType == "Sigmoid", sigmoid.outputs.count == 1,
                      mul.domain.isEmpty, mul.opType == "Mul", mul.inputs.count == 2, mul.outputs.count == 1 else { continue }
                let sOut = sigmoid.outputs[0]
                guard !isGraphOutput[sOut], consumers[sOut] == [m],
                      Set(mul.inputs.compactMap { $0 }) == [y, sOut] else { continue }
                return (s, m)
            }
            return nil
        }
    }
}
