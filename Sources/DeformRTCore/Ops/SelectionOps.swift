import DeformRTKernels

// Detection post-processing: TopK, and the operators whose output shapes depend on the data
// (NonZero, Compress, NonMaxSuppression), which run with `runDynamic` (ExecutionPlan plans
// the rest of the graph once their outputs are known).

/// Whether element `i` of a tensor is not zero (NaN is not zero; -0.0 is zero).
private func isNonZero(_ t: Tensor, _ i: Int) -> Bool {
    switch t.elementType {
    case .float: return t.floats[i] != 0
    case .double: return t.pointer(Double.self)[i] != 0
    case .float16: return t.pointer(Float16.self)[i] != 0
    default:
        let size = t.elementType.byteSize
        let bytes = (t.rawPointer + i * size).assumingMemoryBound(to: UInt8.self)
        for b in 0..<size where bytes[b] != 0 { return true }
        return false
    }
}

private func checkNotString(_ value: PlanValue, _ name: String) throws {
    if value.elementType == .string { throw DeformRTError.unsupported("input \(name): strings are not supported") }
}

/// NonZero: the indices of the non-zero elements, [rank, count] int64 in row-major order
/// (numpy.nonzero). A scalar is taken as shape [1], as onnxruntime does: output [1, 0 or 1].
final class NonZeroOperator: Operator {
    var outputShapesDependOnData: Bool { true }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] { try planByRunning(inputs) }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        throw DeformRTError(.internal, "NonZero runs with runDynamic")
    }

    func runDynamic(_ inputs: [Tensor?], _ context: RunContext) throws -> [Tensor] {
        guard let x = inputs.first ?? nil else { throw DeformRTError.invalidModel("missing required input 0 (X)") }
        if x.elementType == .string { throw DeformRTError.unsupported("input X: strings are not supported") }
        let shape = x.rank == 0 ? [1] : x.shape
        let n = x.elementCount
        var count = 0
        for i in 0..<n where isNonZero(x, i) { count += 1 }
        let out = try Tensor(zeros: .int64, shape: [shape.count, count])
        let p = out.pointer(Int64.self)
        var column = 0
        var index = [Int](repeating: 0, count: shape.count)
        for i in 0..<n {
            if isNonZero(x, i) {
                for d in 0..<shape.count { p[d * count + column] = Int64(index[d]) }
                column += 1
            }
            var d = shape.count - 1
            while d >= 0 {
                index[d] += 1
                if index[d] < shape[d] { break }
                index[d] = 0
                d -= 1
            }
        }
        return [out]
    }
}

/// Compress: the slices along `axis` (or the elements of the flattened input) whose condition
/// is true. A condition shorter than the axis drops the slices past its end; entries past the
/// end of the axis are ignored, as onnxruntime does (onnx.reference fails on a true one).
final class CompressOperator: Operator {
    let axis: Int?
    init(_ spec: OperatorSpec) throws { axis = try spec.attributes.int("axis") }

    var outputShapesDependOnData: Bool { true }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] { try planByRunning(inputs) }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        throw DeformRTError(.internal, "Compress runs with runDynamic")
    }

    func runDynamic(_ inputs: [Tensor?], _ context: RunContext) throws -> [Tensor] {
        let planned = PlanValue.constants(inputs)
        let x = try PlanCheck.input(planned, 0, "input").constant!, condition = try PlanCheck.input(planned, 1, "condition").constant!
        if x.elementType == .string { throw DeformRTError.unsupported("input input: strings are not supported") }
        if condition.elementType != .bool { throw DeformRTError.invalidModel("condition must be bool, got \(condition.elementType.onnxName)") }
        if condition.rank != 1 { throw DeformRTError.invalidModel("condition must have rank 1, got shape \(condition.shape)") }
        let source = axis == nil ? x.reshaped([x.elementCount]) : x
        let a = try PlanCheck.axis(axis ?? 0, rank: source.rank)
        let dim = source.shape[a]
        let used = min(condition.elementCount, dim)
        let flags = condition.pointer(UInt8.self)
        var kept = 0
        for i in 0..<used where flags[i] != 0 { kept += 1 }
        var shape = source.shape
        shape[a] = kept
        let out = try Tensor(zeros: x.elementType, shape: shape)
        let outer = source.shape[..<a].reduce(1, *)
        let innerBytes = source.shape[(a + 1)...].reduce(1, *) * x.elementType.byteSize
        if innerBytes == 0 || kept == 0 { return [out] }
        for o in 0..<outer {
            var j = 0
            for i in 0..<used where flags[i] != 0 {
                (out.rawPointer + (o * kept + j) * innerBytes).copyMemory(from: source.rawPointer + (o * dim + i) * innerBytes,
                                                                         byteCount: innerBytes)
                j += 1
            }
        }
        return [out]
    }
}

/// TopK: the k largest (or smallest) elements along an axis and their int64 indices, sorted
/// (also for sorted = 0, whose order ONNX leaves open). Equal values: the lower index first, as
/// onnxruntime. NaN counts as larger than every number (first when largest, last when smallest).
/// k comes from the attribute (opset 1) or the K input (opset 10), which may be computed at
/// run time; k above the axis size or negative is an error naming the node.
final class TopKOperator: Operator {
    let axis: Int
    let largest: Bool
    let attributeK: Int?

    init(_ spec: OperatorSpec) throws {
        axis = try spec.attributes.int("axis", default: -1)
        largest = try spec.attributes.int("largest", default: 1) != 0
        // sorted = 0 lets the order be any; sorted output is one of them.
        _ = try spec.attributes.int("sorted", default: 1)
        attributeK = spec.opset < 10 ? try spec.attributes.int("k") : nil
        if spec.opset < 10 && attributeK == nil { throw spec.fail("missing attribute k") }
    }

    var shapeInputs: [Int] { attributeK == nil ? [1] : [] }

    private func geometry(_ inputs: [PlanValue?]) throws -> (axis: Int, k: Int, shape: [Int]) {
        let x = try PlanCheck.input(inputs, 0, "X")
        switch x.elementType {
        case .float, .double, .float16, .int8, .int16, .int32, .int64, .uint8, .uint16, .uint32, .uint64: break
        default: throw DeformRTError.unsupported("input X is \(x.elementType.onnxName); TopK takes numbers")
        }
        if x.shape.isEmpty { throw DeformRTError.invalidModel("X must have rank >= 1") }
        let a = try PlanCheck.axis(axis, rank: x.shape.count)
        var k: Int
        if let attributeK {
            k = attributeK
        } else {
            let kInput = try PlanCheck.input(inputs, 1, "K")
            if kInput.elementType != .int64 { throw DeformRTError.invalidModel("K must be int64, got \(kInput.elementType.onnxName)") }
            let values = try PlanCheck.constantInts(kInput, "K")
            if values.count != 1 { throw DeformRTError.invalidModel("K must hold one value, got shape \(kInput.shape)") }
            k = values[0]
        }
        if k < 0 || k > x.shape[a] {
            throw DeformRTError.invalidModel("k = \(k) is out of range for axis \(a) of size \(x.shape[a]) (X has shape \(x.shape))")
        }
        var shape = x.shape
        shape[a] = k
        return (a, k, shape)
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let x = try PlanCheck.input(inputs, 0, "X")
        let shape = try geometry(inputs).shape
        return [PlanValue(ValueType(x.elementType, shape)), PlanValue(ValueType(.int64, shape))]
    }

    func workspaceByteCount(_ inputs: [ValueType?], _ outputs: [ValueType], threads: Int) -> Int {
        guard let x = inputs.first ?? nil, !x.shape.isEmpty, let a = try? PlanCheck.axis(axis, rank: x.shape.count) else { return 0 }
        return threads * x.shape[a] * MemoryLayout<Int>.size
    }

    /// The axis and k, read once per plan (k is a shape input).
    func runState(_ inputs: [PlanValue?], _ outputs: [ValueType], threads: Int) throws -> AnyObject? {
        let (a, k, _) = try geometry(inputs)
        return Planned((axis: a, k: k))
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let x = inputs[0]!
        let (a, k) = try state(context, inputs, as: Planned<(axis: Int, k: Int)>.self)!.value
        if k == 0 || outputs[0].elementCount == 0 { return }
        let n = x.shape[a]
        let outer = x.shape[..<a].reduce(1, *), inner = x.shape[(a + 1)...].reduce(1, *)
        var threads = context.parallel
        if context.workspaceByteCount < threads.threads * n * MemoryLayout<Int>.size { threads = .serial }
        let scratch = context.workspace
        switch x.elementType {
        case .float: select(Float.self, x, outputs, n, outer, inner, k, threads, scratch, isNaN: { $0.isNaN })
        case .double: select(Double.self, x, outputs, n, outer, inner, k, threads, scratch, isNaN: { $0.isNaN })
        case .float16: select(Float16.self, x, outputs, n, outer, inner, k, threads, scratch, isNaN: { $0.isNaN })
        case .int8: select(Int8.self, x, outputs, n, outer, inner, k, threads, scratch, isNaN: { _ in false })
        case .int16: select(Int16.self, x, outputs, n, outer, inner, k, threads, scratch, isNaN: { _ in false })
        case .int32: select(Int32.self, x, outputs, n, outer, inner, k, threads, scratch, isNaN: { _ in false })
        case .int64: select(Int64.self, x, outputs, n, outer, inner, k, threads, scratch, isNaN: { _ in false })
        case .uint8: select(UInt8.self, x, outputs, n, outer, inner, k, threads, scratch, isNaN: { _ in false })
        case .uint16: select(UInt16.self, x, outputs, n, outer, inner, k, threads, scratch, isNaN: { _ in false })
        case .uint32: select(UInt32.self, x, outputs, n, outer, inner, k, threads, scratch, isNaN: { _ in false })
        case .uint64: select(UInt64.self, x, outputs, n, outer, inner, k, threads, scratch, isNaN: { _ in false })
        default: throw DeformRTError.unsupported("TopK of \(x.elementType.onnxName)")
        }
    }

    /// Per line (outer, inner): one pass over the line keeping its k best in a heap with the
    /// worst of them on top, so most elements cost one comparison with that worst (O(n + r log k)
    /// for r replacements; CenterNet's TopK 100 of 80 x 128 x 128 scores: 26 ms -> ~2 ms), then the
    /// heap emptied worst first into the sorted output. Fewer lines than threads and a long line:
    /// each thread keeps the k best of a segment and the line's k best are taken from those.
    private func select<T: Comparable>(_: T.Type, _ x: Tensor, _ outputs: [Tensor], _ n: Int, _ outer: Int, _ inner: Int,
                                       _ k: Int, _ parallel: Parallel, _ scratch: UnsafeMutableRawPointer, isNaN: (T) -> Bool) {
        let values = x.pointer(T.self), outValues = outputs[0].pointer(T.self), outIndices = outputs[1].pointer(Int64.self)
        let largest = self.largest
        let workspace = scratch.assumingMemoryBound(to: Int.self)
        let lines = outer * inner
        // The workspace holds threads * n indices; segments need threads * k + k of them.
        let segments = lines < parallel.threads && n >= 1 << 15 && n >= 4 * k * parallel.threads ? parallel.threads : 1

        /// The line whose first element is `base`: better(p, q) when index p comes before index q.
        @inline(__always) func better(_ base: UnsafePointer<T>, _ p: Int, _ q: Int) -> Bool {
            let u = base[p * inner], v = base[q * inner]
            let un = isNaN(u), vn = isNaN(v)
            if un || vn {
                if un && vn { return p < q }
                return largest ? un : vn
            }
            if u != v { return largest ? u > v : u < v }
            return p < q
        }
        /// Restores the heap (worst on top) below `start`.
        @inline(__always) func siftDown(_ base: UnsafePointer<T>, _ heap: UnsafeMutablePointer<Int>, _ start: Int, _ count: Int) {
            var parent = start
            while true {
                var child = 2 * parent + 1
                if child >= count { return }
                if child + 1 < count && better(base, heap[child], heap[child + 1]) { child += 1 }
                if !better(base, heap[parent], heap[child]) { return }
                let t = heap[parent]; heap[parent] = heap[child]; heap[child] = t
                parent = child
            }
        }
        /// Offers index j to the heap of `count` (at most k) entries; returns the new count.
        @inline(__always) func offer(_ base: UnsafePointer<T>, _ heap: UnsafeMutablePointer<Int>, _ j: Int, _ count: Int) -> Int {
            if count < k {
                var child = count
                heap[child] = j
                while child > 0 {
                    let parent = (child - 1) / 2
                    if !better(base, heap[parent], heap[child]) { break }
                    let t = heap[parent]; heap[parent] = heap[child]; heap[child] = t
                    child = parent
                }
                return count + 1
            }
            if better(base, j, heap[0]) {
                heap[0] = j
                siftDown(base, heap, 0, count)
            }
            return count
        }
        /// The k best of indices `range` (increasing), into `heap`; returns how many.
        @inline(__always) func scan(_ base: UnsafePointer<T>, _ heap: UnsafeMutablePointer<Int>, _ range: Range<Int>) -> Int {
            var count = 0
            var j = range.lowerBound
            while j < range.upperBound && count < k {
                count = offer(base, heap, j, count)
                j += 1
            }
            while j < range.upperBound {
                // Indices rise, so a value equal to the worst kept one never displaces it: one
                // comparison skips it (NaN on either side fails it and takes the full test).
                let v = base[j * inner], worst = base[heap[0] * inner]
                if !(largest ? v <= worst : v >= worst) { _ = offer(base, heap, j, count) }
                j += 1
            }
            return count
        }
        /// Empties the heap worst first into output positions count-1 ... 0 of the line.
        @inline(__always) func emit(_ base: UnsafePointer<T>, _ heap: UnsafeMutablePointer<Int>, _ count: Int, _ outBase: Int) {
            var remaining = count
            while remaining > 0 {
                let worst = heap[0]
                remaining -= 1
                outValues[outBase + remaining * inner] = base[worst * inner]
                outIndices[outBase + remaining * inner] = Int64(worst)
                heap[0] = heap[remaining]
                siftDown(base, heap, 0, remaining)
            }
        }

        if segments == 1 {
            parallel.forEachRange(lines, totalWork: lines * n) { worker, range in
                let heap = workspace + worker * n
                for line in range {
                    let o = line / inner, i = line % inner
                    let base = UnsafePointer(values + o * n * inner + i)
                    emit(base, heap, scan(base, heap, 0..<n), o * k * inner + i)
                }
            }
            return
        }
        let candidates = workspace, merged = workspace + segments * k
        for line in 0..<lines {
            let o = line / inner, i = line % inner
            let base = UnsafePointer(values + o * n * inner + i)
            parallel.forEachRange(segments, totalWork: n) { _, range in
                for segment in range {
                    // Each segment has at least 4k elements, so its heap is full.
                    _ = scan(base, candidates + segment * k, (n * segment / segments)..<(n * (segment + 1) / segments))
                }
            }
            var count = 0
            for c in 0..<(segments * k) { count = offer(base, merged, candidates[c], count) }
            emit(base, merged, count, o * k * inner + i)
        }
    }
}

/// NonMaxSuppression as onnxruntime computes it (core/providers/cpu/object_detection): per batch
/// and class, boxes with a score above score_threshold (when given) in descending score order
/// (equal scores: lower box index first), each kept unless its IoU with a kept box of the class
/// exceeds iou_threshold, until max_output_boxes_per_class are kept (0 or absent: none; negative:
/// none, as onnxruntime clamps it to 0). Output [selected, 3] int64 (batch, class, box), batches
/// then classes in order, each in selection order. Boxes [y1, x1, y2, x2] with any two opposite
/// corners (center_point_box 0) or [x_center, y_center, width, height] (1). NaN: a NaN score is
/// never selected; a box with a NaN coordinate neither suppresses nor is suppressed (all of
/// onnxruntime's IoU tests fail on NaN). iou_threshold outside [0, 1] is an error.
final class NonMaxSuppressionOperator: Operator {
    let centerPointBox: Bool

    init(_ spec: OperatorSpec) throws {
        let mode = try spec.attributes.int("center_point_box", default: 0)
        if mode != 0 && mode != 1 {
            throw DeformRTError.unsupported("node \(spec.node.label) (NonMaxSuppression): center_point_box \(mode) is not supported (0 or 1)")
        }
        centerPointBox = mode == 1
    }

    var outputShapesDependOnData: Bool { true }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] { try planByRunning(inputs) }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        throw DeformRTError(.internal, "NonMaxSuppression runs with runDynamic")
    }

    private static func scalar(_ t: Tensor?, _ name: String, _ type: ElementType) throws -> Tensor? {
        guard let t else { return nil }
        if t.elementType != type { throw DeformRTError.invalidModel("\(name) must be \(type.onnxName), got \(t.elementType.onnxName)") }
        if t.elementCount == 0 { return nil }
        if t.elementCount != 1 { throw DeformRTError.invalidModel("\(name) must be a scalar, got shape \(t.shape)") }
        return t
    }

    // std::min / std::max as onnxruntime calls them (NaN handling follows from the comparisons).
    private static func stdMax(_ a: Float, _ b: Float) -> Float { a < b ? b : a }
    private static func stdMin(_ a: Float, _ b: Float) -> Float { b < a ? b : a }
    private static func minMax(_ a: Float, _ b: Float) -> (Float, Float) { a >= b ? (b, a) : (a, b) }

    /// onnxruntime's SuppressByIOU: whether box q overlaps box p by more than the threshold.
    private func suppresses(_ p: UnsafePointer<Float>, _ q: UnsafePointer<Float>, _ threshold: Float) -> Bool {
        let x1min, x1max, y1min, y1max, x2min, x2max, y2min, y2max: Float
        if !centerPointBox {
            (x1min, x1max) = Self.minMax(p[1], p[3])
            (x2min, x2max) = Self.minMax(q[1], q[3])
            (y1min, y1max) = Self.minMax(p[0], p[2])
            (y2min, y2max) = Self.minMax(q[0], q[2])
        } else {
            let w1 = p[2] / 2, h1 = p[3] / 2, w2 = q[2] / 2, h2 = q[3] / 2
            (x1min, x1max) = (p[0] - w1, p[0] + w1)
            (x2min, x2max) = (q[0] - w2, q[0] + w2)
            (y1min, y1max) = (p[1] - h1, p[1] + h1)
            (y2min, y2max) = (q[1] - h2, q[1] + h2)
        }
        let ixmin = Self.stdMax(x1min, x2min), ixmax = Self.stdMin(x1max, x2max)
        if ixmax <= ixmin { return false }
        let iymin = Self.stdMax(y1min, y2min), iymax = Self.stdMin(y1max, y2max)
        if iymax <= iymin { return false }
        let intersection = (ixmax - ixmin) * (iymax - iymin)
        if intersection <= 0 { return false }
        let area1 = (x1max - x1min) * (y1max - y1min), area2 = (x2max - x2min) * (y2max - y2min)
        let union = area1 + area2 - intersection
        if area1 <= 0 || area2 <= 0 || union <= 0 { return false }
        return intersection / union > threshold
    }

    func runDynamic(_ inputs: [Tensor?], _ context: RunContext) throws -> [Tensor] {
        let planned = PlanValue.constants(inputs)
        let boxes = try PlanCheck.input(planned, 0, "boxes").constant!, scores = try PlanCheck.input(planned, 1, "scores").constant!
        if boxes.elementType != .float || scores.elementType != .float {
            throw DeformRTError.unsupported("boxes and scores must be float, got \(boxes.elementType.onnxName) and \(scores.elementType.onnxName)")
        }
        if boxes.rank != 3 || scores.rank != 3 || boxes.shape[2] != 4 || boxes.shape[0] != scores.shape[0] || boxes.shape[1] != scores.shape[2] {
            throw DeformRTError.invalidModel("boxes must be [batches, boxes, 4] and scores [batches, classes, boxes], got \(boxes.shape) and \(scores.shape)")
        }
        let maxOutput = try Self.scalar(inputs.count > 2 ? inputs[2] : nil, "max_output_boxes_per_class", .int64)
            .map { max($0.pointer(Int64.self)[0], 0) } ?? 0
        let iouThreshold = try Self.scalar(inputs.count > 3 ? inputs[3] : nil, "iou_threshold", .float).map { $0.floats[0] } ?? 0
        let scoreThreshold = try Self.scalar(inputs.count > 4 ? inputs[4] : nil, "score_threshold", .float).map { $0.floats[0] }
        if !(iouThreshold >= 0 && iouThreshold <= 1) {
            throw DeformRTError.invalidModel("iou_threshold \(iouThreshold) must be in [0, 1]")
        }
        let batches = boxes.shape[0], classes = scores.shape[1], count = boxes.shape[1]
        var selected: [Int64] = []
        if maxOutput > 0 && count > 0 {
            var order: [Int] = []
            var kept: [Int] = []
            order.reserveCapacity(count)
            for b in 0..<batches {
                let boxBase = UnsafePointer(boxes.floats + b * count * 4)
                for c in 0..<classes {
                    let classScores = scores.floats + (b * classes + c) * count
                    order.removeAll(keepingCapacity: true)
                    for i in 0..<count {
                        let s = classScores[i]
                        if s.isNaN { continue }
                        if let scoreThreshold, !(s > scoreThreshold) { continue }
                        order.append(i)
                    }
                    order.sort { classScores[$0] != classScores[$1] ? classScores[$0] > classScores[$1] : $0 < $1 }
                    kept.removeAll(keepingCapacity: true)
                    for i in order {
                        if Int64(kept.count) >= maxOutput { break }
                        let candidate = boxBase + 4 * i
                        if kept.contains(where: { suppresses(boxBase + 4 * $0, candidate, iouThreshold) }) { continue }
                        kept.append(i)
                        selected += [Int64(b), Int64(c), Int64(i)]
                    }
                }
            }
        }
        let out = try Tensor(zeros: .int64, shape: [selected.count / 3, 3])
        selected.withUnsafeBytes { if let base = $0.baseAddress { out.rawPointer.copyMemory(from: base, byteCount: $0.count) } }
        return [out]
    }
}
