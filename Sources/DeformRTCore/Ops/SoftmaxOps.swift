import DeformRTKernels

/// Softmax: opset >= 13 over one axis; earlier opsets over the flattened dims from `axis` on.
final class SoftmaxOperator: Operator {
    let axis: Int
    let legacy: Bool

    init(_ spec: OperatorSpec) throws {
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
        context.parallel.forEach(outer) { o in
            for i in 0..<inner {
                let base = o * length * inner + i
                var m = -Float.infinity
                for k in 0..<length { m = Swift.max(m, px[base + k * inner]) }
                var sum: Float = 0
                for k in 0..<length {
                    let e = expf(px[base + k * inner] - m)
                    py[base + k * inner] = e
                    sum += e
                }
                let r = 1 / sum
                for k in 0..<length { py[base + k * inner] *= r }
            }
        }
    }
}

import Glibc
