import DeformRTKernels
#if canImport(Glibc)
import Glibc
#endif

/// ReduceMean, ReduceSum, ReduceMax, ReduceMin, ReduceL1, ReduceL2, ReduceLogSum,
/// ReduceLogSumExp, ReduceProd, ReduceSumSquare over float and double tensors. Axes come from the attribute
/// (older opsets) or the second input (ReduceSum >= 13, the others >= 18); values are accumulated
/// in the element type, in order.
final class ReduceOperator: Operator {
    enum Kind { case mean, sum, max, min, l1, l2, logSum, logSumExp, prod, sumSquare }
    let kind: Kind
    let keepDims: Bool
    let noopWithEmptyAxes: Bool
    let attributeAxes: [Int]?
    var shapeInputs: [Int] { [1] }

    init(_ spec: OperatorSpec, kind: Kind) throws {
        self.kind = kind
        keepDims = try spec.attributes.int("keepdims", default: 1) != 0
        noopWithEmptyAxes = try spec.attributes.int("noop_with_empty_axes", default: 0) != 0
        attributeAxes = try spec.attributes.ints("axes")
    }

    /// Reduced axes (sorted, normalised); empty means "copy through" (noop_with_empty_axes).
    private func axes(_ inputs: [PlanValue?], rank: Int) throws -> [Int] {
        var axes = attributeAxes
        if let given = PlanCheck.optionalInput(inputs, 1) { axes = try PlanCheck.constantInts(given, "axes") }
        guard let axes, !axes.isEmpty else { return noopWithEmptyAxes ? [] : Array(0..<rank) }
        let normalized = try axes.map { try PlanCheck.axis($0, rank: rank) }
        if Set(normalized).count != normalized.count { throw DeformRTError.invalidModel("repeated axes \(axes)") }
        return normalized.sorted()
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let x = try PlanCheck.input(inputs, 0, "data")
        if x.elementType != .float && x.elementType != .double {
            throw DeformRTError.unsupported("input data is \(x.elementType.onnxName); float and double are supported")
        }
        let reduced = Set(try axes(inputs, rank: x.shape.count))
        var shape: [Int] = []
        for (axis, dim) in x.shape.enumerated() {
            if !reduced.contains(axis) { shape.append(dim) } else if keepDims { shape.append(1) }
        }
        return [PlanValue(ValueType(x.elementType, shape))]
    }

    /// How the reduction walks its input, made once per plan: the kept axes (outer), the reduced
    /// ones (inner) and the input's strides; trailing reduced axes are one contiguous block.
    final class RunState {
        let shape: [Int]
        let strides: [Int]
        let kept: [Int]
        let innerAxes: [Int]
        let outerCount: Int
        let innerCount: Int
        let trailing: Bool

        init(shape: [Int], reduced: Set<Int>) {
            self.shape = shape
            var strides = [Int](repeating: 1, count: shape.count)
            for i in stride(from: shape.count - 2, through: 0, by: -1) { strides[i] = strides[i + 1] * shape[i + 1] }
            self.strides = strides
            kept = shape.indices.filter { !reduced.contains($0) }
            innerAxes = shape.indices.filter { reduced.contains($0) }
            outerCount = kept.reduce(1) { $0 * shape[$1] }
            innerCount = innerAxes.reduce(1) { $0 * shape[$1] }
            trailing = reduced == Set((shape.count - reduced.count)..<shape.count)
        }
    }

    func runState(_ inputs: [PlanValue?], _ outputs: [ValueType], threads: Int) throws -> AnyObject? {
        let x = try PlanCheck.input(inputs, 0, "data")
        return RunState(shape: x.shape, reduced: Set(try axes(inputs, rank: x.shape.count)))
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let x = inputs[0]!
        let walk = try state(context, inputs, as: RunState.self)!
        if x.elementType == .double {
            run(Double.self, x, outputs[0], walk, context, exp: { Glibc.exp($0) }, log: { Glibc.log($0) })
        } else if let mode = accumulation, walk.trailing, x.elementCount > 0 {
            // Trailing reduced axes (global pooling written as ReduceMean, LayerNorm statistics):
            // each output sums one contiguous block, in SIMD16 lanes.
            let inner = walk.innerCount, outer = x.elementCount / inner
            let px = x.floats, py = outputs[0].floats, kind = kind
            context.parallel.forEachRange(outer, totalWork: x.elementCount) { _, range in
                for o in range {
                    let s = ElementwiseMath.sum(px + o * inner, inner, mode)
                    switch kind {
                    case .mean: py[o] = s / Float(inner)
                    case .l2: py[o] = s.squareRoot()
                    case .logSum: py[o] = logf(s)
                    default: py[o] = s
                    }
                }
            }
        } else {
            run(Float.self, x, outputs[0], walk, context, exp: { expf($0) }, log: { logf($0) })
        }
    }

    @inline(__always)
    private func run<T: BinaryFloatingPoint>(_: T.Type, _ x: Tensor, _ y: Tensor, _ walk: RunState, _ context: RunContext,
                                             exp: @escaping (T) -> T, log: @escaping (T) -> T) {
        let px = x.pointer(T.self), py = y.pointer(T.self)
        // out[o] reduces the block of `innerCount` values the reduced axes span.
        let shape = walk.shape, strides = walk.strides, kept = walk.kept, innerAxes = walk.innerAxes
        let innerCount = walk.innerCount, trailing = walk.trailing
        let kind = kind
        context.parallel.forEach(walk.outerCount) { o in
            var base = o * innerCount
            if !trailing {
                var rest = o
                base = 0
                for axis in kept.reversed() {
                    base += (rest % shape[axis]) * strides[axis]
                    rest /= shape[axis]
                }
            }
            @inline(__always) func value(_ i: Int) -> T {
                if trailing { return px[base + i] }
                var r = i, offset = base
                for axis in innerAxes.reversed() {
                    offset += (r % shape[axis]) * strides[axis]
                    r /= shape[axis]
                }
                return px[offset]
            }
            py[o] = ReduceOperator.reduce(kind, innerCount, value, exp: exp, log: log)
        }
    }

    /// The SIMD sum a kind reduces with (nil: max, min, prod, logSumExp).
    private var accumulation: ElementwiseMath.Accumulation? {
        switch kind {
        case .sum, .mean, .logSum: return .plain
        case .l1: return .absolute
        case .l2, .sumSquare: return .square
        case .max, .min, .prod, .logSumExp: return nil
        }
    }

    /// One reduction of `count` values. Empty sets give the identity (0 for the sums, 1 for the
    /// product, -Inf for max and the log-sums, +Inf for min) and NaN for the mean.
    @inline(__always)
    static func reduce<T: BinaryFloatingPoint>(_ kind: Kind, _ count: Int, _ value: (Int) -> T,
                                               exp: (T) -> T, log: (T) -> T) -> T {
        switch kind {
        case .max, .min:
            var accumulator: T = kind == .max ? -.infinity : .infinity
            for i in 0..<count {
                let v = value(i)
                if v.isNaN || (kind == .max ? v > accumulator : v < accumulator) { accumulator = v }
                if accumulator.isNaN { break }
            }
            return accumulator
        case .logSumExp:
            // Shifted by the largest finite value (onnx.reference's order); with none, unshifted.
            var m = -T.infinity
            for i in 0..<count {
                let v = value(i)
                if v.isNaN { return .nan }
                if v.isFinite && v > m { m = v }
            }
            if m == -.infinity { m = 0 }
            var sum: T = 0
            for i in 0..<count { sum += exp(value(i) - m) }
            return log(sum) + m
        case .prod:
            var accumulator: T = 1
            for i in 0..<count { accumulator *= value(i) }
            return accumulator
        case .mean, .sum, .l1, .l2, .logSum, .sumSquare:
            var accumulator: T = 0
            switch kind {
            case .l1: for i in 0..<count { accumulator += abs(value(i)) }
            case .l2, .sumSquare: for i in 0..<count { let v = value(i); accumulator += v * v }
            default: for i in 0..<count { accumulator += value(i) }
            }
            switch kind {
            case .mean: return count > 0 ? accumulator / T(count) : .nan
            case .l2: return accumulator.squareRoot()
            case .logSum: return log(accumulator)
            default: return accumulator
            }
        }
    }
}
