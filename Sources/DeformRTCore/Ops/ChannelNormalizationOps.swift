#if canImport(Glibc)
import Glibc
#endif
import DeformRTKernels

/// GroupNormalization (opsets 18 and 21): each image's channels in `num_groups` groups, every group
/// (C/G channels x spatial, contiguous) standardised over itself, then scaled and shifted.
///   opset 18: scale and bias have one value per group ([G]);
///   opset 21: one value per channel ([C]); stash_type 1 (float statistics) only.
/// The opset is the model's: an opset-18 model with [C]-shaped scale is refused, as onnx's checker does.
final class GroupNormOperator: Operator {
    let epsilon: Float
    let groups: Int
    let perChannel: Bool

    init(_ spec: OperatorSpec) throws {
        epsilon = try spec.attributes.float("epsilon", default: 1e-5)
        guard let groups = try spec.attributes.int("num_groups") else { throw spec.fail("missing attribute num_groups") }
        if groups < 1 { throw spec.fail("num_groups must be >= 1, got \(groups)") }
        self.groups = groups
        perChannel = spec.opset >= 21
        let stash = try spec.attributes.int("stash_type", default: 1)
        if stash != 1 {
            throw DeformRTError.unsupported("node \(spec.node.label) (GroupNormalization): stash_type \(stash) is not supported (only 1, float)")
        }
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let x = try PlanCheck.input(inputs, 0, "X")
        let scale = try PlanCheck.input(inputs, 1, "scale"), bias = try PlanCheck.input(inputs, 2, "bias")
        for (value, name) in [(x, "X"), (scale, "scale"), (bias, "bias")] { try PlanCheck.float(value, name) }
        if x.shape.count < 2 { throw DeformRTError.invalidModel("X must have rank >= 2 (N, C, ...), got shape \(x.shape)") }
        let channels = x.shape[1]
        if channels % groups != 0 {
            throw DeformRTError.invalidModel("num_groups \(groups) does not divide the \(channels) channels")
        }
        let expected = perChannel ? channels : groups
        for (value, name) in [(scale, "scale"), (bias, "bias")] where value.shape != [expected] {
            throw DeformRTError.invalidModel("\(name) must have shape [\(expected)] (\(perChannel ? "per channel, opset 21" : "per group, opset 18")), got \(value.shape)")
        }
        return [PlanValue(x.type)]
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let x = inputs[0]!, scale = inputs[1]!.floats, bias = inputs[2]!.floats
        let channels = x.shape[1], spatial = x.shape.dropFirst(2).reduce(1, *)
        let perGroup = channels / groups, groupSize = perGroup * spatial
        let px = x.floats, py = outputs[0].floats, epsilon = epsilon, groups = groups, perChannel = perChannel
        let count = x.shape[0] * groups
        context.parallel.forEachRange(count, totalWork: count * groupSize * 3) { _, range in
            for item in range {
                let grp = item % groups
                let source = px + item * groupSize, target = py + item * groupSize
                let (mean, variance) = NormalizationKernels.moments(source, groupSize)
                let invStd = 1 / (variance + epsilon).squareRoot()
                for j in 0..<perGroup {
                    let p = perChannel ? grp * perGroup + j : grp
                    NormalizationKernels.standardize(source + j * spatial, target + j * spatial, spatial, mean: mean,
                                                     factor: scale[p] * invStd, shift: bias[p])
                }
            }
        }
    }
}

/// LpNormalization: x / ||x||_p along `axis` (p 1 or 2). A zero norm gives 0, as onnxruntime
/// (onnx.reference divides and gives NaN).
final class LpNormOperator: Operator {
    let axis: Int
    let p: Int

    init(_ spec: OperatorSpec) throws {
        axis = try spec.attributes.int("axis", default: -1)
        p = try spec.attributes.int("p", default: 2)
        if p != 1 && p != 2 { throw spec.fail("p must be 1 or 2, got \(p)") }
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let x = try PlanCheck.input(inputs, 0, "input")
        try PlanCheck.float(x, "input")
        _ = try PlanCheck.axis(axis, rank: x.shape.count)
        return [PlanValue(x.type)]
    }

    func workspaceByteCount(_ inputs: [ValueType?], _ outputs: [ValueType], threads: Int) -> Int {
        guard let x = inputs.first??.shape, let a = try? PlanCheck.axis(axis, rank: x.count) else { return 0 }
        return threads * x[(a + 1)...].reduce(1, *) * MemoryLayout<Float>.stride
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let x = inputs[0]!
        let a = try PlanCheck.axis(axis, rank: x.rank)
        let outer = x.shape[..<a].reduce(1, *), length = x.shape[a], inner = x.shape[(a + 1)...].reduce(1, *)
        let px = x.floats, py = outputs[0].floats, p = p
        let norms = context.workspace.bindMemory(to: Float.self, capacity: max(1, context.parallel.threads * inner))
        // Per outer index: the norms of its `inner` columns accumulated row by row (contiguous),
        // then every row scaled by their inverses.
        context.parallel.forEachRange(outer, totalWork: outer * length * inner * 2) { worker, range in
            let norm = norms + worker * inner
            for o in range {
                let base = o * length * inner
                norm.update(repeating: 0, count: inner)
                for j in 0..<length {
                    let row = px + base + j * inner
                    if p == 1 {
                        for i in 0..<inner { norm[i] += abs(row[i]) }
                    } else {
                        for i in 0..<inner { norm[i] += row[i] * row[i] }
                    }
                }
                for i in 0..<inner {
                    let n = p == 1 ? norm[i] : norm[i].squareRoot()
                    norm[i] = n == 0 ? 0 : 1 / n
                }
                for j in 0..<length {
                    let row = px + base + j * inner, out = py + base + j * inner
                    for i in 0..<inner { out[i] = row[i] * norm[i] }
                }
            }
        }
    }
}

/// LRN across channels: y = x / (bias + alpha / size * sum of x² over channels
/// [c - floor((size - 1) / 2), c + ceil((size - 1) / 2)])^beta. Float, rank >= 3.
final class LRNOperator: Operator {
    let alpha: Float, beta: Float, bias: Float
    let size: Int

    init(_ spec: OperatorSpec) throws {
        alpha = try spec.attributes.float("alpha", default: 1e-4)
        beta = try spec.attributes.float("beta", default: 0.75)
        bias = try spec.attributes.float("bias", default: 1)
        guard let size = try spec.attributes.int("size") else { throw spec.fail("missing attribute size") }
        if size < 1 || size > Limits.maxWindowValue { throw spec.fail("size must be in 1...\(Limits.maxWindowValue), got \(size)") }
        self.size = size
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let x = try PlanCheck.input(inputs, 0, "X")
        try PlanCheck.float(x, "X")
        if x.shape.count < 3 { throw DeformRTError.invalidModel("X must have rank >= 3 (N, C, D1, ...), got shape \(x.shape)") }
        return [PlanValue(x.type)]
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let x = inputs[0]!
        let batch = x.shape[0], channels = x.shape[1], pixels = x.shape.dropFirst(2).reduce(1, *)
        let px = x.floats, py = outputs[0].floats
        let before = (size - 1) / 2, after = size - 1 - before
        let scale = alpha / Float(size), bias = bias, beta = beta
        let chunk = 256
        let chunks = (pixels + chunk - 1) / chunk
        // Items: (image, run of pixels); each output pixel sums `size` squares.
        context.parallel.forEachRange(batch * chunks, totalWork: batch * channels * pixels * (size + 4)) { _, range in
            for item in range {
                let n = item / chunks, p0 = item % chunks * chunk, count = min(chunk, pixels - p0)
                let image = px + n * channels * pixels + p0, out = py + n * channels * pixels + p0
                for c in 0..<channels {
                    let lo = max(0, c - before), hi = min(channels - 1, c + after)
                    for i in 0..<count {
                        var sum: Float = 0
                        var k = lo
                        while k <= hi {
                            let v = image[k * pixels + i]
                            sum += v * v
                            k += 1
                        }
                        out[c * pixels + i] = image[c * pixels + i] / powf(bias + scale * sum, beta)
                    }
                }
            }
        }
    }
}

/// MeanVarianceNormalization: (x - mean) / (sqrt(variance) + 1e-9) over `axes` (default
/// [0, 2, 3]), the ONNX function's definition (its variance is E[x²] - E[x]²; here the two-pass
/// variance, equal within float rounding and never negative).
/// The reduced axes are gathered into contiguous rows in the workspace (a strided copy), each row
/// standardised there, and the rows copied back through the inverse view.
final class MeanVarianceNormOperator: Operator {
    let axes: [Int]

    init(_ spec: OperatorSpec) throws {
        axes = try spec.attributes.ints("axes") ?? [0, 2, 3]
    }

    private struct Layout {
        let gather: StridedView, scatter: StridedView
        let rows: Int, width: Int
    }

    private func layout(_ shape: [Int]) throws -> Layout {
        let reduced = try axes.map { try PlanCheck.axis($0, rank: shape.count, "axis") }
        if Set(reduced).count != reduced.count { throw DeformRTError.invalidModel("repeated axes \(axes)") }
        let kept = shape.indices.filter { !reduced.contains($0) }
        let order = kept + reduced.sorted()
        var strides = [Int](repeating: 1, count: shape.count)
        for i in stride(from: shape.count - 2, through: 0, by: -1) { strides[i] = strides[i + 1] * shape[i + 1] }
        // Dense strides of the gathered [kept..., reduced...] array, read back per original axis.
        let permuted = order.map { shape[$0] }
        var dense = [Int](repeating: 1, count: shape.count)
        for i in stride(from: shape.count - 2, through: 0, by: -1) { dense[i] = dense[i + 1] * permuted[i + 1] }
        var back = [Int](repeating: 0, count: shape.count)
        for (position, axis) in order.enumerated() { back[axis] = dense[position] }
        return Layout(gather: StridedView(shape: permuted, strides: order.map { strides[$0] }, startOffset: 0),
                      scatter: StridedView(shape: shape, strides: back, startOffset: 0),
                      rows: kept.reduce(1) { $0 * shape[$1] }, width: reduced.reduce(1) { $0 * shape[$1] })
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let x = try PlanCheck.input(inputs, 0, "X")
        try PlanCheck.float(x, "X")
        if x.shape.isEmpty { throw DeformRTError.invalidModel("X must have rank >= 1") }
        _ = try layout(x.shape)
        return [PlanValue(x.type)]
    }

    func workspaceByteCount(_ inputs: [ValueType?], _ outputs: [ValueType], threads: Int) -> Int {
        guard let x = inputs.first ?? nil else { return 0 }
        return x.shape.reduce(1, *) * MemoryLayout<Float>.stride
    }

    func runState(_ inputs: [PlanValue?], _ outputs: [ValueType], threads: Int) throws -> AnyObject? {
        Planned(try layout(PlanCheck.input(inputs, 0, "X").shape))
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let x = inputs[0]!
        let layout = try state(context, inputs, as: Planned<Layout>.self)!.value
        let count = x.elementCount
        if count == 0 { return }
        let gathered = Tensor(elementType: .float, shape: [count],
                              storage: TensorStorage(borrowing: context.workspace, byteCount: count * MemoryLayout<Float>.stride))
        layout.gather.copy(x, into: gathered, parallel: context.parallel)
        let rows = gathered.floats, width = layout.width
        context.parallel.forEachRange(layout.rows, totalWork: count * 4) { _, range in
            for r in range {
                let row = rows + r * width
                let (mean, variance) = NormalizationKernels.moments(row, width)
                NormalizationKernels.standardize(row, row, width, mean: mean, factor: 1 / (variance.squareRoot() + 1e-9), shift: 0)
            }
        }
        layout.scatter.copy(gathered, into: outputs[0], parallel: context.parallel)
    }
}

/// GlobalMaxPool: max over every spatial dim, kept as size 1; NaN in a plane gives NaN.
final class GlobalMaxPoolOperator: Operator {
    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let x = try PlanCheck.input(inputs, 0, "X")
        try PlanCheck.float(x, "X")
        if x.shape.count < 3 { throw DeformRTError.invalidModel("input must have rank >= 3, got shape \(x.shape)") }
        if x.shape.dropFirst(2).contains(0) && x.shape[0] * x.shape[1] > 0 {
            throw DeformRTError.invalidModel("cannot take the max of an empty plane (shape \(x.shape))")
        }
        return [PlanValue(ValueType(.float, [x.shape[0], x.shape[1]] + [Int](repeating: 1, count: x.shape.count - 2)))]
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let x = inputs[0]!
        Pooling.globalMax(planes: x.shape[0] * x.shape[1], size: x.shape.dropFirst(2).reduce(1, *),
                          input: x.floats, output: outputs[0].floats, parallel: context.parallel)
    }
}
