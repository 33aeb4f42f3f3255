import DeformRTKernels

/// Softmax, LogSoftmax and Hardmax: opset >= 13 over one axis; earlier opsets over the flattened
/// dims from `axis` on. LogSoftmax is x - max - log(sum(e^(x - max))) (as onnxruntime; onnx's
/// reference takes the log of the softmax, which underflows to -Inf far from the maximum).
/// Hardmax puts 1 at the first maximum of each row (NaN counts as the maximum, as numpy's argmax).
final class SoftmaxOperator: Operator {
    enum Kind { case softmax, logSoftmax, hardmax }
    let kind: Kind
    let axis: Int
    let legacy: Bool

    init(_ spec: OperatorSpec, kind: Kind = .softmax) throws {
        self.kind = kind
        legacy = spec.opset < 13
        axis = try spec.attributes.int("axis", default: legacy ? 1 : -1)
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let x = try PlanCheck.input(inputs, 0, "input")
        try PlanCheck.float(x, "input")
        _ = try PlanCheck.axis(axis, rank: x.shape.count)
        return [PlanValue(x.type)]
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let x = inputs[0]!
        let a = try PlanCheck.axis(axis, rank: x.shape.count)
        let outer = x.shape[..<a].reduce(1, *)
        let length = legacy ? x.shape[a...].reduce(1, *) : x.shape[a]
        let inner = legacy ? 1 : x.shape[(a + 1)...].reduce(1, *)
        let px = x.floats, py = outputs[0].floats
        let kind = kind
        if inner == 1 && kind != .hardmax {
            context.parallel.forEach(outer) { o in
                SoftmaxKernels.row(px + o * length, py + o * length, length, log: kind == .logSoftmax)
            }
            return
        }
        context.parallel.forEach(outer) { o in
            for i in 0..<inner {
                let base = o * length * inner + i
                if kind == .hardmax {
                    var best = 0
                    for k in 1..<max(length, 1) {
                        let v = px[base + k * inner], b = px[base + best * inner]
                        if !b.isNaN && (v.isNaN || v > b) { best = k }
                    }
                    for k in 0..<length { py[base + k * inner] = k == best ? 1 : 0 }
                    continue
                }
                var m = -Float.infinity
                for k in 0..<length { m = Swift.max(m, px[base + k * inner]) }
                var sum: Float = 0
                for k in 0..<length {
                    let e = expf(px[base + k * inner] - m)
                    py[base + k * inner] = e
                    sum += e
                }
                if kind == .logSoftmax {
                    let shift = m + logf(sum)
                    for k in 0..<length { py[base + k * inner] = px[base + k * inner] - shift }
                    continue
                }
                let r = 1 / sum
                for k in 0..<length { py[base + k * inner] *= r }
            }
        }
    }
}

import Glibc
