/// Runs InternImage's `dcnv3_core_pytorch` (the grid_sample decomposition users export instead of
/// the `mmdeploy::TRTDCNv3` custom op) on the fused DCNv3 kernel. torch.onnx.export (dynamo)
/// writes it, with the sampling base folded to a constant, as
///
///   padded = Pad(input, [0, ph, pw, 0, 0, ph, pw, 0])                     (absent when no pad)
///   image  = Reshape(Transpose(Reshape(padded, [N, Hp*Wp, C]), [0, 2, 1]), [N*G, Gc, Hp, Wp])
///   loc    = affine chain of offset: Add/Sub/Mul/Div, each with one constant operand
///            (base + offset * scale / norm, then * 2 - 1)
///   grid   = Reshape(Transpose(Reshape(loc, [N, Ho*Wo, G, P, 2]), [0, 2, 1, 3, 4]), [N*G, Ho*Wo, P, 2])
///   m      = Reshape(Transpose(Reshape(mask, [N, Ho*Wo, G, P]), [0, 2, 1, 3]), [N*G, 1, Ho*Wo, P])
///   out    = Reshape(Transpose(Reshape(ReduceSum(Mul(GridSample(image, grid), m), [-1]),
///                              [N, C, Ho*Wo]), [0, 2, 1]), [N, Ho, Wo, C])
///
/// (a Reshape to the shape its input already has may be missing, as the exporter drops them when
/// G = 1) and becomes ai.deformrt DCNv3(input, Expand(offset, [N, Ho, Wo, G*P*2]),
/// Reshape(mask, [N, Ho, Wo, G*P])). It fires only when what the fused op computes is what the
/// graph computes:
///   - GridSample bilinear / linear, padding zeros, align_corners 0;
///   - every Reshape and Transpose as above, with constant sizes that agree with each other;
///   - the Pad: constant mode, value 0, the same pad before and after each of H and W, none on N
///     and C. The fused node pads H and W by what the Pad does, whatever the PyTorch call's
///     pad_h / pad_w were (the function pads W by pad_h; the kernel's attributes pad H by pad_h);
///   - the affine chain, evaluated in Double over [N, Ho, Wo, G*P*2]: its offset coefficient is
///     2 * offset_scale / Wp (x) and / Hp (y) everywhere, and its constant term is, in pixels,
///     the fused kernel's sampling position for one (kernel, stride, dilation, offset_scale,
///     remove_center) within 1e-4 px + 1e-6 * max(Hp, Wp) px (float32 rounding of the export).
/// The kernel (kh x kw with kh * kw = P, or an odd square with the centre removed), strides and
/// dilations are read off the constant and then checked on all of it, with the output size
/// formula. Anything else is left as it is and runs through GridSample.
///
/// The fused op reads `input` as [N, H, W, C] with H = Hp - 2 ph, W = Wp - 2 pw; when the input
/// is a graph input with a declared shape, that shape must be it. The TorchScript exporter
/// computes the base from Shape nodes at run time: when the graph inputs declare static shapes,
/// StaticShapeFolding and ConstantFolding (level basic, before this pass) fold it to the same
/// constant and explicit Reshape sizes, and the export is matched like the dynamo one; with
/// symbolic dims it is not.
struct DCNv3Decomposition: GraphPass {
    let name = "DCNv3 decomposition fusion"
    let level = GraphOptimizationLevel.extended

    /// The decomposition's pieces and the DCNv3 attributes that reproduce it.
    private struct Match {
        var input: Int
        var offset: Int
        var mask: Int
        var output: Int
        var finalNode: Int
        var matchedNodes: [Int]
        var batch = 0, height = 0, width = 0, outHeight = 0, outWidth = 0, group = 0, groupChannels = 0, points = 0
        var kernelHeight = 0, kernelWidth = 0, strideHeight = 1, strideWidth = 1, padHeight = 0, padWidth = 0
        var dilationHeight = 1, dilationWidth = 1, removeCenter = false
        var offsetScale: Double = 1
    }

    func apply(to graph: inout Graph) throws -> Bool {
        let producers = graph.producers()
        var matches: [Match] = []
        for index in graph.nodes.indices {
            if let match = self.match(finalReshape: index, graph, producers) { matches.append(match) }
        }
        if matches.isEmpty { return false }
        for match in matches {
            let final = graph.nodes[match.finalNode]
            let offsetShape = graph.addInitializer(
                Tensor(int64s: [match.batch, match.outHeight, match.outWidth, match.group * match.points * 2].map(Int64.init), shape: [4]),
                named: final.name + "_dcnv3_offset_shape")
            let maskShape = graph.addInitializer(
                Tensor(int64s: [match.batch, match.outHeight, match.outWidth, match.group * match.points].map(Int64.init), shape: [4]),
                named: final.name + "_dcnv3_mask_shape")
            // The fused op takes exactly these shapes. The graph is looser: offset broadcasts
            // against the constants ([N, Ho, Wo, G*P*2] or broadcastable to it: Expand), and mask
            // may have any shape with the element count its Reshape accepts (Reshape).
            let offset = graph.addValue(named: final.name + "_dcnv3_offset")
            let mask = graph.addValue(named: final.name + "_dcnv3_mask")
            for (op, source, shape, result) in [("Expand", match.offset, offsetShape, offset), ("Reshape", match.mask, maskShape, mask)] {
                let name = graph.valueNames[result]
                graph.nodes.append(Node(name: name, opType: op, domain: "", inputs: [source, shape], outputs: [result],
                                        attributes: [:], label: name))
            }
            let attributes: [String: AttributeValue] = [
                "kernel_h": .int(match.kernelHeight), "kernel_w": .int(match.kernelWidth),
                "stride_h": .int(match.strideHeight), "stride_w": .int(match.strideWidth),
                "pad_h": .int(match.padHeight), "pad_w": .int(match.padWidth),
                "dilation_h": .int(match.dilationHeight), "dilation_w": .int(match.dilationWidth),
                "group": .int(match.group), "group_channels": .int(match.groupChannels),
                "offset_scale": .float(Float(match.offsetScale)), "remove_center": .int(match.removeCenter ? 1 : 0),
                "fused_nodes": .strings(match.matchedNodes.map { graph.nodes[$0].name }),
            ]
            graph.nodes[match.finalNode] = Node(name: final.name, opType: "DCNv3", domain: ConvNodeSlots.fusedDomain,
                                                inputs: [match.input, offset, mask], outputs: [match.output],
                                                attributes: attributes, label: final.label)
        }
        // The decomposition's nodes that nothing else reads.
        _ = try DeadCodeElimination().apply(to: &graph)
        return true
    }

    // MARK: - Matching

    private func match(finalReshape index: Int, _ graph: Graph, _ producers: [Int?]) -> Match? {
        let final = graph.nodes[index]
        guard final.domain.isEmpty, final.opType == "Reshape", final.outputs.count == 1 else { return nil }
        // out: ReduceSum -> [Reshape] -> Transpose [0, 2, 1] -> Reshape [N, Ho, Wo, C]
        guard let outChain = layoutChain(ending: final.outputs[0], perm: [0, 2, 1], graph, producers),
              let outShape = outChain.post, outShape.count == 4,
              let reduce = node(producing: outChain.source, "ReduceSum", graph, producers),
              isLastAxisSum(graph.nodes[reduce], graph),
              let product = node(producing: graph.nodes[reduce].inputs[0], "Mul", graph, producers),
              graph.nodes[product].inputs.count == 2 else { return nil }
        let (n, ho, wo, c) = (outShape[0], outShape[1], outShape[2], outShape[3])
        // One factor of the Mul is GridSample's output, the other the mask chain.
        for (sampledSlot, maskSlot) in [(0, 1), (1, 0)] {
            guard let sampledId = graph.nodes[product].inputs[sampledSlot], let maskId = graph.nodes[product].inputs[maskSlot],
                  let sampler = node(producing: sampledId, "GridSample", graph, producers),
                  var match = self.match(sampler: sampler, maskChainEnd: maskId, n: n, ho: ho, wo: wo, c: c, graph, producers)
            else { continue }
            // The reduced shape is [N*G, Gc, Ho*Wo]; without the pre-transpose Reshape it must already be [N, C, Ho*Wo].
            let outPre = outChain.pre ?? [n * match.group, match.groupChannels, ho * wo]
            guard outPre == [n, c, ho * wo] else { return nil }
            match.output = final.outputs[0]
            match.finalNode = index
            // The output chain ends at `index` when it has nodes; listed once (fused_nodes).
            match.matchedNodes += outChain.nodes + [reduce, product] + (outChain.nodes.contains(index) ? [] : [index])
            return match
        }
        return nil
    }

    private func match(sampler: Int, maskChainEnd: Int, n: Int, ho: Int, wo: Int, c: Int, _ graph: Graph,
                       _ producers: [Int?]) -> Match? {
        let gridSample = graph.nodes[sampler]
        guard gridSample.inputs.count == 2, let imageId = gridSample.inputs[0], let gridId = gridSample.inputs[1],
              isBilinearZerosCentred(gridSample) else { return nil }
        // grid: loc -> Reshape [N, Ho*Wo, G, P, 2] -> Transpose [0, 2, 1, 3, 4] -> Reshape [N*G, Ho*Wo, P, 2]
        guard let gridChain = layoutChain(ending: gridId, perm: [0, 2, 1, 3, 4], graph, producers),
              let gridPre = gridChain.pre, gridPre.count == 5, gridPre[0] == n, gridPre[1] == ho * wo, gridPre[4] == 2
        else { return nil }
        let (g, p) = (gridPre[2], gridPre[3])
        guard c % g == 0, gridChain.post == [n * g, ho * wo, p, 2] else { return nil }
        let gc = c / g
        // mask -> Reshape [N, Ho*Wo, G, P] -> Transpose [0, 2, 1, 3] -> [Reshape [N*G, 1, Ho*Wo, P]]
        guard let maskChain = layoutChain(ending: maskChainEnd, perm: [0, 2, 1, 3], graph, producers),
              maskChain.pre == [n, ho * wo, g, p], (maskChain.post ?? [n, g, ho * wo, p]) == [n * g, 1, ho * wo, p]
        else { return nil }
        // image: padded -> Reshape [N, Hp*Wp, C] -> Transpose [0, 2, 1] -> Reshape [N*G, Gc, Hp, Wp]
        guard let imageChain = layoutChain(ending: imageId, perm: [0, 2, 1], graph, producers),
              let imagePost = imageChain.post, imagePost.count == 4, imagePost[0] == n * g, imagePost[1] == gc
        else { return nil }
        let (hp, wp) = (imagePost[2], imagePost[3])
        guard imageChain.pre == [n, hp * wp, c] else { return nil }
        var padNodes: [Int] = []
        var input = imageChain.source
        var pads = (height: 0, width: 0)
        if let pad = node(producing: imageChain.source, "Pad", graph, producers) {
            guard let amounts = symmetricPads(graph.nodes[pad], graph), let source = graph.nodes[pad].inputs[0] else { return nil }
            pads = amounts
            input = source
            padNodes = [pad]
        }
        let (h, w) = (hp - 2 * pads.height, wp - 2 * pads.width)
        // Sizes the fused op accepts (DCNv3Operator, DCNv3Params.invalidReason); the graph may run
        // others through GridSample.
        let limit = Limits.maxWindowValue
        guard h >= 1, w >= 1, h < 1 << 22, w < 1 << 22, h * w < 1 << 30, g <= limit, gc <= limit else { return nil }
        if let declared = graph.inputs.first(where: { $0.id == input }), let shape = declared.shape,
           !shape.contains(-1), shape != [n, h, w, c] { return nil }
        // The sampling positions: loc = a + b * offset, elementwise over [N, Ho, Wo, G*P*2]. Where the
        // chain starts is not marked (offset's own maker may end in an Add of a bias): the longest
        // chain that gives the fused op's grid is taken.
        let chain = affineSteps(ending: gridChain.source, shape: [n, ho, wo, g * p * 2], graph, producers)
        var match = Match(input: input, offset: 0, mask: maskChain.source, output: 0, finalNode: 0, matchedNodes: [])
        (match.batch, match.height, match.width, match.outHeight, match.outWidth) = (n, h, w, ho, wo)
        (match.group, match.groupChannels, match.points, match.padHeight, match.padWidth) = (g, gc, p, pads.height, pads.width)
        for length in stride(from: chain.count, through: 1, by: -1) {
            let steps = Array(chain.prefix(length))
            guard let map = AffineMap(steps, shape: [n, ho, wo, g * p * 2]),
                  inferWindow(&match, map, paddedHeight: hp, paddedWidth: wp) else { continue }
            match.offset = steps.last!.source
            match.matchedNodes = padNodes + imageChain.nodes + steps.map(\.node) + gridChain.nodes + maskChain.nodes + [sampler]
            return match
        }
        return nil
    }

    // MARK: - The sampling grid

    /// Finds kernel, stride, dilation and offset_scale for which the fused kernel samples exactly
    /// where `constant + coefficient * offset` (grid_sample coordinates) points, or returns false.
    private func inferWindow(_ match: inout Match, _ map: AffineMap, paddedHeight hp: Int, paddedWidth wp: Int) -> Bool {
        let (ho, wo, g, p) = (match.outHeight, match.outWidth, match.group, match.points)
        let (fhp, fwp) = (Double(hp), Double(wp))
        // offset_scale from the coefficient, then the coefficient checked everywhere.
        let scale = map.terms(at: 0).coefficient * fwp / 2
        guard scale.isFinite, scale != 0, abs(scale) < 1e6, Float(scale).isFinite else { return false }
        let (xCoefficient, yCoefficient) = (2 * scale / fwp, 2 * scale / fhp)
        guard map.allSatisfy({ index, _, coefficient in
            let expected = index % 2 == 0 ? xCoefficient : yCoefficient
            return abs(coefficient - expected) <= 1e-5 * abs(expected)
        }) else { return false }
        // Pixel position in the padded image of the constant term (grid_sample, align_corners 0).
        func pixel(_ oy: Int, _ ox: Int, _ group: Int, _ point: Int, _ axis: Int) -> Double {
            let index = ((oy * wo) + ox) * g * p * 2 + (group * p + point) * 2 + axis
            return ((map.terms(at: index).constant + 1) * (axis == 0 ? fwp : fhp) - 1) / 2
        }
        let tolerance = 1e-4 + 1e-6 * Double(max(hp, wp))
        var candidates: [(kh: Int, kw: Int, removeCenter: Bool)] = []
        for kh in 1...p where p % kh == 0 { candidates.append((kh, p / kh, false)) }
        for k in stride(from: 3, through: p + 1, by: 2) where k * k == p + 1 { candidates.append((k, k, true)) }
        for (kh, kw, removeCenter) in candidates where kh <= Limits.maxWindowValue && kw <= Limits.maxWindowValue {
            // Point k = (i, j), i along x: `for i < kw: for j < kh`, minus the centre.
            var taps = (0..<kw).flatMap { i in (0..<kh).map { j in (i, j) } }
            if removeCenter { taps.removeAll { $0 == (kw / 2, kh / 2) } }
            // Dilation from the second tap along each axis (i = 1 is tap kh; j = 1 is tap 1).
            func dilation(_ tap: Int, _ axis: Int, _ kernel: Int) -> Int? {
                if kernel == 1 { return 1 }
                let d = (pixel(0, 0, 0, tap, axis) - pixel(0, 0, 0, 0, axis)) / scale
                let rounded = d.rounded()
                return abs(d - rounded) <= 1e-3 && rounded >= 1 && rounded <= Double(Limits.maxWindowValue) ? Int(rounded) : nil
            }
            guard let dw = dilation(kh, 0, kw), let dh = dilation(1, 1, kh) else { continue }
            let (halfH, halfW) = (dh * (kh - 1) / 2, dw * (kw - 1) / 2)
            let (extentH, extentW) = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
            guard hp >= extentH, wp >= extentW else { continue }
            // Stride from the second output row / column, or, for one output, the smallest that gives one.
            func strideAlong(_ outCount: Int, _ padded: Int, _ extent: Int, _ axis: Int) -> Int? {
                if outCount == 1 { return padded == extent ? 1 : padded - extent + 1 }
                let s = axis == 0 ? pixel(0, 1, 0, 0, 0) - pixel(0, 0, 0, 0, 0) : pixel(1, 0, 0, 0, 1) - pixel(0, 0, 0, 0, 1)
                let rounded = s.rounded()
                return abs(s - rounded) <= 1e-3 && rounded >= 1 && rounded <= Double(Limits.maxWindowValue) ? Int(rounded) : nil
            }
            guard let sw = strideAlong(wo, wp, extentW, 0), let sh = strideAlong(ho, hp, extentH, 1),
                  sw <= Limits.maxWindowValue, sh <= Limits.maxWindowValue,
                  (hp - extentH) / sh + 1 == ho, (wp - extentW) / sw + 1 == wo else { continue }
            // Every position, every batch entry: half + o * stride + (tap * dilation - half) * scale.
            let agrees = map.allSatisfy { index, constant, _ in
                let axis = index % 2
                let point = (index / 2) % p
                let pixelIndex = index / (g * p * 2)
                let ox = pixelIndex % wo, oy = (pixelIndex / wo) % ho
                let (i, j) = taps[point]
                let expected = axis == 0
                    ? Double(halfW + ox * sw) + Double(i * dw - halfW) * scale
                    : Double(halfH + oy * sh) + Double(j * dh - halfH) * scale
                let actual = ((constant + 1) * (axis == 0 ? fwp : fhp) - 1) / 2
                return abs(actual - expected) <= tolerance
            }
            guard agrees else { continue }
            (match.kernelHeight, match.kernelWidth, match.removeCenter) = (kh, kw, removeCenter)
            (match.strideHeight, match.strideWidth, match.dilationHeight, match.dilationWidth) = (sh, sw, dh, dw)
            match.offsetScale = scale
            return true
        }
        return false
    }

    private struct AffineStep {
        var node: Int
        var op: String
        /// The constant operand (an initializer, alive as long as the graph) and its strides
        /// over the chain's shape (0 along broadcast axes).
        var constant: Tensor
        var strides: [Int]
        var constantFirst: Bool
        /// The other operand.
        var source: Int
    }

    /// The Add, Sub, Mul and Div nodes ending at `value`, nearest first, each with one float
    /// constant operand that broadcasts to `shape` (c / x is not affine in x: the walk stops there).
    private func affineSteps(ending value: Int, shape: [Int], _ graph: Graph, _ producers: [Int?]) -> [AffineStep] {
        var steps: [AffineStep] = []
        var current = value
        while let producer = producers[current], steps.count < 16 {
            let node = graph.nodes[producer]
            guard node.domain.isEmpty, ["Add", "Sub", "Mul", "Div"].contains(node.opType), node.inputs.count == 2,
                  node.outputs == [current], let left = node.inputs[0], let right = node.inputs[1] else { break }
            let leftConstant = graph.floatConstant(left), rightConstant = graph.floatConstant(right)
            guard (leftConstant == nil) != (rightConstant == nil), let tensor = leftConstant ?? rightConstant,
                  !(node.opType == "Div" && leftConstant != nil),
                  let strides = broadcastStrides(tensor.shape, to: shape) else { break }
            current = leftConstant == nil ? left : right
            steps.append(AffineStep(node: producer, op: node.opType, constant: tensor, strides: strides,
                                    constantFirst: leftConstant != nil, source: current))
        }
        return steps
    }

    /// Strides reading a tensor of shape `own` at each index of `shape` by ONNX broadcasting
    /// (exactly to `shape`), or nil.
    private func broadcastStrides(_ own: [Int], to shape: [Int]) -> [Int]? {
        let rank = shape.count
        guard own.count <= rank else { return nil }
        let padded = [Int](repeating: 1, count: rank - own.count) + own
        var strides = [Int](repeating: 0, count: rank)
        var step = 1
        for axis in (0..<rank).reversed() {
            guard padded[axis] == shape[axis] || padded[axis] == 1 else { return nil }
            strides[axis] = padded[axis] == 1 ? 0 : step
            step *= padded[axis]
        }
        return strides
    }

    /// chain output = constant + coefficient * source, per element of `shape`, computed from the
    /// steps' constants when asked (nothing of the output's size is stored).
    private struct AffineMap {
        let steps: [AffineStep]  // nearest to the output first
        let shape: [Int]
        let count: Int
        private let values: [UnsafeMutablePointer<Float>]

        init?(_ steps: [AffineStep], shape: [Int]) {
            let (count, overflow) = shape.reduce((1, false)) { partial, dim in
                let (product, o) = partial.0.multipliedReportingOverflow(by: dim)
                return (product, partial.1 || o)
            }
            guard !steps.isEmpty, !overflow, count > 0, count <= 1 << 26 else { return nil }
            (self.steps, self.shape, self.count) = (steps, shape, count)
            values = steps.map(\.constant.floats)
        }

        /// The terms at offsets `offsets[s]` into each step's constant, applied from the source out.
        private func terms(_ offsets: [Int]) -> (constant: Double, coefficient: Double) {
            var constant = 0.0, coefficient = 1.0
            for s in steps.indices.reversed() {
                let v = Double(values[s][offsets[s]])
                switch steps[s].op {
                case "Add": constant += v
                case "Sub":
                    if steps[s].constantFirst { constant = v - constant; coefficient = -coefficient } else { constant -= v }
                case "Mul": constant *= v; coefficient *= v
                default: constant /= v; coefficient /= v
                }
            }
            return (constant, coefficient)
        }

        func terms(at index: Int) -> (constant: Double, coefficient: Double) {
            var offsets = [Int](repeating: 0, count: steps.count)
            var rest = index
            for axis in shape.indices.reversed() {
                let position = rest % shape[axis]
                rest /= shape[axis]
                for s in steps.indices { offsets[s] += position * steps[s].strides[axis] }
            }
            return terms(offsets)
        }

        /// Whether `body(index, constant, coefficient)` holds for every element, in order.
        func allSatisfy(_ body: (Int, Double, Double) -> Bool) -> Bool {
            var index = [Int](repeating: 0, count: shape.count)
            var offsets = [Int](repeating: 0, count: steps.count)
            for k in 0..<count {
                let (constant, coefficient) = terms(offsets)
                if !body(k, constant, coefficient) { return false }
                var axis = shape.count - 1  // next index, last axis fastest
                while axis >= 0 {
                    index[axis] += 1
                    for s in steps.indices { offsets[s] += steps[s].strides[axis] }
                    if index[axis] < shape[axis] { break }
                    for s in steps.indices { offsets[s] -= steps[s].strides[axis] * index[axis] }
                    index[axis] = 0
                    axis -= 1
                }
            }
            return true
        }
    }

    // MARK: - Node checks

    /// [Reshape(pre)] -> Transpose(perm) -> [Reshape(post)] ending at `value`.
    private func layoutChain(ending value: Int, perm: [Int], _ graph: Graph, _ producers: [Int?])
        -> (source: Int, pre: [Int]?, post: [Int]?, nodes: [Int])? {
        var nodes: [Int] = []
        var current = value
        var post: [Int]?
        if let reshape = node(producing: current, "Reshape", graph, producers) {
            guard let shape = reshapeSizes(graph.nodes[reshape], graph), let input = graph.nodes[reshape].inputs[0] else { return nil }
            post = shape
            nodes.append(reshape)
            current = input
        }
        guard let transpose = node(producing: current, "Transpose", graph, producers),
              case .ints(let order)? = graph.nodes[transpose].attributes["perm"], order == perm,
              let transposed = graph.nodes[transpose].inputs[0] else { return nil }
        nodes.append(transpose)
        current = transposed
        var pre: [Int]?
        if let reshape = node(producing: current, "Reshape", graph, producers) {
            guard let shape = reshapeSizes(graph.nodes[reshape], graph), shape.count == perm.count,
                  let input = graph.nodes[reshape].inputs[0] else { return nil }
            pre = shape
            nodes.append(reshape)
            current = input
        }
        // Without `post` the transposed shape is the result: `pre` permuted.
        if post == nil, let pre { post = perm.map { pre[$0] } }
        return (current, pre, post, nodes)
    }

    /// The index of the default-domain `opType` node writing `value` (one output), if any.
    private func node(producing value: Int?, _ opType: String, _ graph: Graph, _ producers: [Int?]) -> Int? {
        guard let value, let index = producers[value] else { return nil }
        let node = graph.nodes[index]
        guard node.domain.isEmpty, node.opType == opType, node.outputs == [value], !node.inputs.isEmpty, node.inputs[0] != nil
        else { return nil }
        return index
    }

    /// A Reshape's constant target sizes, all explicit (no 0 or -1).
    private func reshapeSizes(_ node: Node, _ graph: Graph) -> [Int]? {
        guard node.inputs.count == 2, let id = node.inputs[1], let tensor = graph.initializers[id], tensor.shape.count == 1,
              let values = try? tensor.integerValues(), values.allSatisfy({ $0 >= 1 && $0 < 1 << 31 }) else { return nil }
        return values.map { Int($0) }
    }

    private func isBilinearZerosCentred(_ node: Node) -> Bool {
        func string(_ name: String) -> String? {
            if case .string(let value)? = node.attributes[name] { return value }
            return nil
        }
        let mode = string("mode") ?? "bilinear"  // the default is bilinear (opset 16) or linear (20): the same
        let padding = string("padding_mode") ?? "zeros"
        var align = 0
        if let attribute = node.attributes["align_corners"] {
            guard case .int(let value) = attribute else { return false }
            align = value
        }
        return (mode == "bilinear" || mode == "linear") && padding == "zeros" && align == 0
    }

    /// ReduceSum over the last of 4 axes, not keeping it.
    private func isLastAxisSum(_ node: Node, _ graph: Graph) -> Bool {
        var keep = 1
        if case .int(let value)? = node.attributes["keepdims"] { keep = value }
        guard keep == 0 else { return false }
        var axes: [Int]?
        if node.inputs.count > 1, let id = node.inputs[1] {
            guard let tensor = graph.initializers[id], let values = try? tensor.integerValues() else { return false }
            axes = values.map { Int(clamping: $0) }
        } else if case .ints(let values)? = node.attributes["axes"] {
            axes = values
        }
        return axes == [-1] || axes == [3]
    }

    /// (H, W) pads of a zero, constant-mode Pad of [N, H, W, C] that pads both ends alike.
    private func symmetricPads(_ node: Node, _ graph: Graph) -> (height: Int, width: Int)? {
        if case .string(let mode)? = node.attributes["mode"], mode != "constant" { return nil }
        var pads: [Int]?
        if node.inputs.count > 1, let id = node.inputs[1] {
            guard let tensor = graph.initializers[id], let values = try? tensor.integerValues() else { return nil }
            pads = values.map { Int(clamping: $0) }
        } else if case .ints(let values)? = node.attributes["pads"] {
            pads = values
        }
        if node.inputs.count > 2, let id = node.inputs[2] {
            guard let value = graph.floatConstant(id), value.elementCount == 1, value.floats[0] == 0 else { return nil }
        } else if case .float(let value)? = node.attributes["value"], value != 0 {
            return nil
        }
        if node.inputs.count > 3, node.inputs[3] != nil { return nil }  // axes
        guard let p = pads, p.count == 8, p[0] == 0, p[3] == 0, p[4] == 0, p[7] == 0, p[1] == p[5], p[2] == p[6],
              p[1] >= 0, p[2] >= 0, p[1] <= Limits.maxWindowValue, p[2] <= Limits.maxWindowValue else { return nil }
        return (p[1], p[2])
    }
}
