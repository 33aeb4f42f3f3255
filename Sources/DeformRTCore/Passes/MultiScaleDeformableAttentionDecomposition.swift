/// Runs the grid_sample decomposition of multi-scale deformable attention on the fused kernel.
/// mmcv's `multi_scale_deformable_attn_pytorch` and Hugging Face transformers' copy of it, as
/// torch.onnx.export writes them (dynamo and TorchScript exporters, static shapes):
///   V_0..V_{L-1} = Split(value, [s_0, ...], axis 1)      (or one Slice of value per level)
///   G = Sub(Mul(sampling_locations, 2), 1)                 (or Add(..., -1); Mul either way round)
///   per level l:
///     image_l = Reshape(Transpose(Reshape(V_l, flatten from axis 2), [0, 2, 1]), [bs*heads, dim, H_l, W_l])
///     grid_l  = Reshape(Transpose(Gather(G, l, axis 3), [0, 2, 1, 3, 4]), [bs*heads, q, P, 2])
///     S_l = Unsqueeze(GridSample(image_l, grid_l, bilinear, zeros, align_corners 0), axis 3)
///   samples = Reshape(Concat(S_0..S_{L-1}, axis 3), [bs*heads, dim, q, L*P])
///   weights = Reshape(Transpose(attention_weights, [0, 2, 1, 3, 4]), [bs*heads, 1, q, L*P])
///   output  = Transpose(Reshape(ReduceSum(Mul(samples, weights), axis -1, keepdims 0), [bs, heads*dim, q]), [0, 2, 1])
/// becomes ai.deformrt MultiScaleDeformableAttention(value, spatial_shapes, level_start_index,
/// sampling_locations, attention_weights) with the level sizes as constant inputs.
///
/// What decides the result is checked: the level sizes agree (split sizes or slice bounds =
/// H_l * W_l of the image reshapes, in level order, Gather index l feeding level l's GridSample
/// and position l of the Concat), GridSample's mode, padding and align_corners, the constants 2
/// and 1, every Transpose's perm, the Unsqueeze / Concat / ReduceSum axes and keepdims, and every
/// Reshape: (bs, heads, dim, q, L, P) are read from the constant image, weight and output
/// reshapes, and each Reshape of the chain, whether its shape is a constant or computed from
/// Shape -> Slice -> Concat (the TorchScript exporter's flatten), must give the shape the
/// function gives for value [bs, keys, heads, dim] and sampling_locations [bs, q, heads, L, P, 2].
/// The fused node carries those two shapes (`expected_value_shape`,
/// `expected_sampling_locations_shape`): the operator refuses, by name, inputs of any other shape
/// when the plan is made (the pass runs before shapes are known; an input of another shape with
/// the same element count would make the decomposition compute something else).
/// Intermediate values must be read only inside the pattern (the 2 * x - 1 and the weights'
/// Transpose may have other readers: they stay). Anything else is left as it is and runs
/// through GridSample.
struct MultiScaleDeformableAttentionDecomposition: GraphPass {
    let name = "multi-scale deformable attention decomposition"
    let level = GraphOptimizationLevel.extended

    static let fusedDomain = "ai.deformrt"
    static let fusedOp = "MultiScaleDeformableAttention"

    func apply(to graph: inout Graph) throws -> Bool {
        var changed = false
        // Each rewrite removes one ReduceSum, so this ends; the indices change after a rewrite.
        while let match = Matcher(graph).firstMatch() {
            rewrite(&graph, match)
            changed = true
        }
        return changed
    }

    private func rewrite(_ graph: inout Graph, _ match: Match) {
        let shapes = graph.addInitializer(Tensor(int64s: match.levels.flatMap { [Int64($0.height), Int64($0.width)] },
                                                 shape: [match.levels.count, 2]), named: "msda_spatial_shapes")
        var starts: [Int64] = []
        var start = 0
        for level in match.levels {
            starts.append(Int64(start))
            start += level.height * level.width
        }
        let startIndex = graph.addInitializer(Tensor(int64s: starts, shape: [starts.count]), named: "msda_level_start_index")
        let last = graph.nodes[match.outputNode]
        let fused = Node(
            name: last.name.isEmpty ? "msda_fused" : last.name, opType: Self.fusedOp, domain: Self.fusedDomain,
            inputs: [match.value, shapes, startIndex, match.locations, match.weights], outputs: last.outputs,
            attributes: [
                "expected_value_shape": .ints(match.valueShape),
                "expected_sampling_locations_shape": .ints(match.locationsShape),
                "fused_nodes": .strings(match.nodes.sorted().map { graph.nodes[$0].name }),
            ],
            label: last.label)
        var removed = [Bool](repeating: false, count: graph.nodes.count)
        for index in match.nodes where index != match.outputNode { removed[index] = true }
        graph.nodes[match.outputNode] = fused
        graph.removeNodes(removed)
    }
}

/// One decomposition found: the nodes it replaces and what the fused node reads.
private struct Match {
    var nodes: [Int]
    var outputNode: Int
    var value: Int
    var locations: Int
    var weights: Int
    var levels: [(height: Int, width: Int)]
    var valueShape: [Int]
    var locationsShape: [Int]
}

private struct Matcher {
    let graph: Graph
    let consumers: [[Int]]
    let producers: [Int?]
    let isGraphOutput: [Bool]

    init(_ graph: Graph) {
        self.graph = graph
        consumers = graph.consumers()
        producers = graph.producers()
        isGraphOutput = graph.graphOutputFlags()
    }

    func firstMatch() -> Match? {
        for index in graph.nodes.indices where isStandard(graph.nodes[index], "ReduceSum") {
            if let match = match(reduceSum: index) { return match }
        }
        return nil
    }

    // MARK: the pattern, from the ReduceSum outwards

    private func match(reduceSum: Int) -> Match? {
        let reduce = graph.nodes[reduceSum]
        // ReduceSum(M, last axis, keepdims 0) -> Reshape [bs, C, q] -> Transpose [0, 2, 1].
        guard reduce.outputs.count == 1, let product = input(reduce, 0),
              (try? Attributes(reduce).int("keepdims", default: 1)) == 0,
              let axes = ints(reduce, slot: 1, attribute: "axes"), axes == [3] || axes == [-1],
              let outputReshape = onlyReader(reduce.outputs[0]), isStandard(graph.nodes[outputReshape], "Reshape"),
              let outputShape = constantInts(input(graph.nodes[outputReshape], 1)), outputShape.count == 3,
              let transposeIndex = onlyReader(graph.nodes[outputReshape].outputs[0]),
              isTranspose(graph.nodes[transposeIndex], [0, 2, 1]),
              let mulIndex = producers[product], isStandard(graph.nodes[mulIndex], "Mul"),
              graph.nodes[mulIndex].inputs.count == 2 else { return nil }

        // Mul(samples, weights), either order.
        let mul = graph.nodes[mulIndex]
        let sides = [input(mul, 0), input(mul, 1)]
        for (samplesSide, weightsSide) in [(0, 1), (1, 0)] {
            guard let samples = sides[samplesSide], let weighted = sides[weightsSide],
                  let samplesReshape = producers[samples], isStandard(graph.nodes[samplesReshape], "Reshape"),
                  let concat = producer(graph.nodes[samplesReshape], 0),
                  isStandard(graph.nodes[concat], "Concat"),
                  let weightsReshape = producers[weighted], isStandard(graph.nodes[weightsReshape], "Reshape")
            else { continue }
            if let found = match(reduceSum: reduceSum, outputReshape: outputReshape, outputShape: outputShape,
                                 transpose: transposeIndex, mul: mulIndex, samplesReshape: samplesReshape,
                                 concat: concat, weightsReshape: weightsReshape) {
                return found
            }
        }
        return nil
    }

    private func match(reduceSum: Int, outputReshape: Int, outputShape: [Int], transpose: Int, mul: Int,
                       samplesReshape: Int, concat: Int, weightsReshape: Int) -> Match? {
        // Sizes from the constant reshapes: output [bs, heads * dim, q], weights [bs * heads, 1, q, L * P],
        // images [bs * heads, dim, H_l, W_l].
        let concatNode = graph.nodes[concat]
        let levelCount = concatNode.inputs.count
        guard levelCount >= 1, let concatAxis = try? Attributes(concatNode).int("axis"), concatAxis == 3 || concatAxis == -2,
              let weightsShape = constantInts(input(graph.nodes[weightsReshape], 1)), weightsShape.count == 4,
              outputShape.allSatisfy({ $0 > 0 && $0 < 1 << 31 }), weightsShape.allSatisfy({ $0 > 0 && $0 < 1 << 31 })
        else { return nil }
        let bs = outputShape[0], channels = outputShape[1], queries = outputShape[2]
        let batchHeads = weightsShape[0]
        guard weightsShape[1] == 1, weightsShape[2] == queries, batchHeads % bs == 0,
              weightsShape[3] % levelCount == 0 else { return nil }
        let heads = batchHeads / bs, points = weightsShape[3] / levelCount
        guard channels % heads == 0 else { return nil }
        let dim = channels / heads

        // The weights: Reshape(Transpose(attention_weights, [0, 2, 1, 3, 4])).
        var shapeNodes: [Int] = []
        guard let weightsTranspose = producer(graph.nodes[weightsReshape], 0),
              isTranspose(graph.nodes[weightsTranspose], [0, 2, 1, 3, 4]),
              let weights = input(graph.nodes[weightsTranspose], 0),
              reshapes(weightsReshape, from: [bs, heads, queries, levelCount, points],
                       to: [batchHeads, 1, queries, levelCount * points], &shapeNodes),
              reshapes(samplesReshape, from: [batchHeads, dim, queries, levelCount, points],
                       to: [batchHeads, dim, queries, levelCount * points], &shapeNodes),
              reshapes(outputReshape, from: [batchHeads, dim, queries], to: [bs, channels, queries], &shapeNodes)
        else { return nil }

        // Per level: Unsqueeze(GridSample(image_l, grid_l)) at Concat position l.
        var nodes = [reduceSum, outputReshape, transpose, mul, samplesReshape, concat, weightsReshape]
        var levels: [(height: Int, width: Int)] = []
        var levelValues: [Int] = []   // V_l
        var grids: [Int] = []         // G, once per level
        for (position, stacked) in concatNode.inputs.enumerated() {
            guard let stacked, let unsqueeze = producers[stacked], isStandard(graph.nodes[unsqueeze], "Unsqueeze"),
                  let unsqueezeAxes = ints(graph.nodes[unsqueeze], slot: 1, attribute: "axes"),
                  unsqueezeAxes == [3] || unsqueezeAxes == [-2],
                  let sampled = input(graph.nodes[unsqueeze], 0), let sampler = producers[sampled],
                  isBilinearZerosGridSample(graph.nodes[sampler]),
                  let image = input(graph.nodes[sampler], 0), let grid = input(graph.nodes[sampler], 1),
                  let imageReshape = producers[image], isStandard(graph.nodes[imageReshape], "Reshape"),
                  let imageShape = constantInts(input(graph.nodes[imageReshape], 1)), imageShape.count == 4,
                  imageShape[0] == batchHeads, imageShape[1] == dim,
                  imageShape[2] > 0, imageShape[3] > 0, imageShape[2] < 1 << 22, imageShape[3] < 1 << 22,
                  let valueTranspose = producer(graph.nodes[imageReshape], 0),
                  isTranspose(graph.nodes[valueTranspose], [0, 2, 1]),
                  let flattened = input(graph.nodes[valueTranspose], 0), let flatten = producers[flattened],
                  isStandard(graph.nodes[flatten], "Reshape"), let levelValue = input(graph.nodes[flatten], 0),
                  let gridReshape = producers[grid], isStandard(graph.nodes[gridReshape], "Reshape"),
                  let gridTranspose = producer(graph.nodes[gridReshape], 0),
                  isTranspose(graph.nodes[gridTranspose], [0, 2, 1, 3, 4]),
                  let gathered = input(graph.nodes[gridTranspose], 0), let gather = producers[gathered],
                  isStandard(graph.nodes[gather], "Gather"),
                  let gatherAxis = try? Attributes(graph.nodes[gather]).int("axis", default: 0), gatherAxis == 3 || gatherAxis == -3,
                  let index = graph.nodes[gather].inputs.count == 2 ? graph.nodes[gather].inputs[1] : nil,
                  let indexTensor = graph.initializers[index], indexTensor.shape.isEmpty,
                  let indexValue = try? indexTensor.integerValues(), indexValue == [Int64(position)],
                  let gridSource = input(graph.nodes[gather], 0) else { return nil }
            let (height, width) = (imageShape[2], imageShape[3])
            let area = height * width
            guard reshapes(flatten, from: [bs, area, heads, dim], to: [bs, area, channels], &shapeNodes),
                  reshapes(imageReshape, from: [bs, channels, area], to: [batchHeads, dim, height, width], &shapeNodes),
                  reshapes(gridReshape, from: [bs, heads, queries, points, 2], to: [batchHeads, queries, points, 2],
                           &shapeNodes)
            else { return nil }
            levels.append((height, width))
            levelValues.append(levelValue)
            grids.append(gridSource)
            nodes += [unsqueeze, sampler, imageReshape, valueTranspose, flatten, gridReshape, gridTranspose, gather]
        }

        // value, split into the levels in order.
        guard let (value, splitNodes) = levelSource(levelValues, areas: levels.map { $0.height * $0.width }) else { return nil }
        nodes += splitNodes
        // G = 2 * sampling_locations - 1, one value read by every level's Gather.
        guard let grid = grids.first, grids.allSatisfy({ $0 == grid }), let (locations, gridNodes) = twiceMinusOne(grid)
        else { return nil }

        // Values made inside the pattern are read only inside it (or stay, for G and the weights'
        // Transpose); the TorchScript export's Shape -> Slice -> Concat of a reshape belong to it.
        nodes = Array(Set(nodes + shapeNodes))
        let inside = Set(nodes + gridNodes + [weightsTranspose])
        for index in nodes where index != transpose {
            for output in graph.nodes[index].outputs where isGraphOutput[output] || consumers[output].contains(where: { !inside.contains($0) }) {
                return nil
            }
        }
        var removable = nodes
        for index in gridNodes + [weightsTranspose] {
            let exclusive = graph.nodes[index].outputs.allSatisfy { output in
                !isGraphOutput[output] && consumers[output].allSatisfy { inside.contains($0) } }
            if exclusive { removable.append(index) }
        }
        // Keep G's nodes if the Sub has readers outside while the Mul is only read by it.
        if gridNodes.count == 2, !removable.contains(gridNodes[1]) { removable.removeAll { $0 == gridNodes[0] } }
        let keys = levels.reduce(0) { $0 + $1.height * $1.width }
        return Match(nodes: removable, outputNode: transpose, value: value, locations: locations, weights: weights,
                     levels: levels, valueShape: [bs, keys, heads, dim],
                     locationsShape: [bs, queries, heads, levelCount, points, 2])
    }

    /// The value the per-level values are cut from, by one Split with sizes `areas` on axis 1
    /// (outputs in level order) or one Slice per level at the running offsets, and those nodes.
    private func levelSource(_ parts: [Int], areas: [Int]) -> (Int, [Int])? {
        guard let first = parts.first, let maker = producers[first] else { return nil }
        let node = graph.nodes[maker]
        if isStandard(node, "Split") {
            guard node.outputs == parts, let value = input(node, 0),
                  let axis = try? Attributes(node).int("axis", default: 0), axis == 1 || axis == -3,
                  let sizes = ints(node, slot: 1, attribute: "split"), sizes == areas else { return nil }
            return (value, [maker])
        }
        var slices: [Int] = []
        var start = 0
        var source: Int?
        for (level, part) in parts.enumerated() {
            guard let slice = producers[part], isStandard(graph.nodes[slice], "Slice") else { return nil }
            let s = graph.nodes[slice]
            guard let data = input(s, 0), source == nil || source == data,
                  let starts = constantInts(input(s, 1)), let ends = constantInts(input(s, 2)),
                  constantInts(input(s, 3)) == [1] || constantInts(input(s, 3)) == [-3],
                  s.inputs.count < 5 || s.inputs[4] == nil || constantInts(input(s, 4)) == [1],
                  starts == [start] else { return nil }
            let end = start + areas[level]
            // The last level may run "to the end" (a huge end): value's keys are then checked
            // against the levels by the fused operator.
            guard ends == [end] || (level == parts.count - 1 && ends[0] >= Int(Int32.max)) else { return nil }
            source = data
            slices.append(slice)
            start = end
        }
        guard let source else { return nil }
        return (source, slices)
    }

    /// x for G = Sub(Mul(x, 2), 1) or Add(Mul(x, 2), -1) (Mul's operands either way round), and the nodes [Mul, Sub].
    private func twiceMinusOne(_ grid: Int) -> (Int, [Int])? {
        guard let subtract = producers[grid] else { return nil }
        let sub = graph.nodes[subtract]
        let minusOne: Bool
        if isStandard(sub, "Sub") {
            minusOne = scalar(input(sub, 1)) == 1
        } else if isStandard(sub, "Add") {
            minusOne = scalar(input(sub, 1)) == -1
        } else {
            return nil
        }
        guard minusOne, sub.inputs.count == 2, let twice = input(sub, 0), let multiply = producers[twice],
              isStandard(graph.nodes[multiply], "Mul"), graph.nodes[multiply].inputs.count == 2 else { return nil }
        let mul = graph.nodes[multiply]
        if scalar(input(mul, 1)) == 2, let x = input(mul, 0) { return (x, [multiply, subtract]) }
        if scalar(input(mul, 0)) == 2, let x = input(mul, 1) { return (x, [multiply, subtract]) }
        return nil
    }

    // MARK: node tests

    private func isStandard(_ node: Node, _ op: String) -> Bool { node.domain.isEmpty && node.opType == op }

    private func isTranspose(_ node: Node, _ perm: [Int]) -> Bool {
        isStandard(node, "Transpose") && node.outputs.count == 1 && (try? Attributes(node).ints("perm")) == perm
    }

    private func isBilinearZerosGridSample(_ node: Node) -> Bool {
        guard isStandard(node, "GridSample"), node.inputs.count == 2, node.outputs.count == 1 else { return false }
        let a = Attributes(node)
        guard let mode = try? a.string("mode") ?? "linear", mode == "bilinear" || mode == "linear",
              let padding = try? a.string("padding_mode") ?? "zeros", padding == "zeros",
              let align = try? a.int("align_corners", default: 0), align == 0 else { return false }
        return true
    }

    private func input(_ node: Node, _ slot: Int) -> Int? { slot < node.inputs.count ? node.inputs[slot] : nil }

    /// The node writing input `slot` of `node`.
    private func producer(_ node: Node, _ slot: Int) -> Int? { input(node, slot).flatMap { producers[$0] } }

    /// The product of `dims`, nil on overflow.
    private func product(_ dims: [Int]) -> Int? {
        var total = 1
        for d in dims {
            let (next, overflow) = total.multipliedReportingOverflow(by: d)
            if overflow { return nil }
            total = next
        }
        return total
    }

    private func onlyReader(_ value: Int) -> Int? {
        guard !isGraphOutput[value], consumers[value].count == 1 else { return nil }
        return consumers[value][0]
    }

    /// The one float of a constant holding a single element (rank <= 1, so it broadcasts without
    /// changing the rank), or nil.
    private func scalar(_ id: Int?) -> Float? {
        guard let tensor = graph.floatConstant(id), tensor.elementCount == 1, tensor.rank <= 1 else { return nil }
        return tensor.floats[0]
    }

    private func constantInts(_ id: Int?) -> [Int]? {
        guard let id, let tensor = graph.initializers[id], tensor.rank == 1,
              tensor.elementType == .int64 || tensor.elementType == .int32,
              let values = try? tensor.integerValues() else { return nil }
        return values.map { Int(clamping: $0) }
    }

    /// An int list from a constant input or, when the input is absent, an attribute (older opsets).
    private func ints(_ node: Node, slot: Int, attribute: String) -> [Int]? {
        if let id = input(node, slot) { return constantInts(id) }
        return try? Attributes(node).ints(attribute)
    }

    // MARK: reshapes

    /// Whether Reshape node `index`, reading a value of shape `from`, writes shape `to`: its shape
    /// is a constant, or computed from the data's own Shape (Shape -> Slice -> Concat with constant
    /// pieces), evaluated on `from` with Reshape's 0 (copy, unless allowzero) and -1 (infer).
    /// The nodes computing the shape (Shape, Slice, Concat) are added to `shapeNodes`.
    private func reshapes(_ index: Int, from: [Int], to: [Int], _ shapeNodes: inout [Int]) -> Bool {
        let node = graph.nodes[index]
        var visited: [Int] = []
        guard isStandard(node, "Reshape"), node.outputs.count == 1, let data = input(node, 0),
              let requested = shapeValue(input(node, 1), data: data, dataShape: from, depth: 0, &visited)
        else { return false }
        let allowZero = (try? Attributes(node).int("allowzero", default: 0)) ?? 1
        var shape: [Int] = []
        var inferAt: Int?
        for (position, d) in requested.enumerated() {
            if d == -1 {
                guard inferAt == nil else { return false }
                inferAt = position
                shape.append(1)
            } else if d == 0 && allowZero == 0 {
                guard position < from.count else { return false }
                shape.append(from[position])
            } else if d < 0 {
                return false
            } else {
                shape.append(d)
            }
        }
        guard let total = product(from), let known = product(shape) else { return false }
        if let inferAt {
            guard known > 0, total % known == 0 else { return false }
            shape[inferAt] = total / known
        }
        guard shape == to else { return false }
        shapeNodes += visited
        return true
    }

    /// The contents of a 1-D int64 value computed from constants and Shape(data) (data of shape
    /// `dataShape`): Shape (with start / end), Slice on axis 0 with step 1, Concat on axis 0.
    private func shapeValue(_ id: Int?, data: Int, dataShape: [Int], depth: Int, _ visited: inout [Int]) -> [Int]? {
        guard let id, depth < 8 else { return nil }
        if let constant = constantInts(id) { return constant }
        guard let maker = producers[id] else { return nil }
        visited.append(maker)
        let node = graph.nodes[maker]
        let rank = dataShape.count
        func clamp(_ i: Int, _ count: Int) -> Int { max(0, min(count, i < 0 ? i + count : i)) }
        switch (node.domain, node.opType) {
        case ("", "Shape"):
            guard input(node, 0) == data, let start = try? Attributes(node).int("start", default: 0),
                  let end = try? Attributes(node).int("end", default: rank) else { return nil }
            let (s, e) = (clamp(start, rank), clamp(end, rank))
            return s < e ? Array(dataShape[s..<e]) : []
        case ("", "Slice"):
            guard let values = shapeValue(input(node, 0), data: data, dataShape: dataShape, depth: depth + 1, &visited),
                  let starts = constantInts(input(node, 1)), let ends = constantInts(input(node, 2)),
                  starts.count == 1, ends.count == 1,
                  input(node, 3) == nil || constantInts(input(node, 3)) == [0] || constantInts(input(node, 3)) == [-1],
                  input(node, 4) == nil || constantInts(input(node, 4)) == [1] else { return nil }
            let (s, e) = (clamp(starts[0], values.count), clamp(ends[0], values.count))
            return s < e ? Array(values[s..<e]) : []
        case ("", "Concat"):
            guard (try? Attributes(node).int("axis")) == 0 || (try? Attributes(node).int("axis")) == -1 else { return nil }
            var values: [Int] = []
            for piece in node.inputs {
                guard let part = shapeValue(piece, data: data, dataShape: dataShape, depth: depth + 1, &visited) else { return nil }
                values += part
            }
            return values
        default:
            return nil
        }
    }
}
