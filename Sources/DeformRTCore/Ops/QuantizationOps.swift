import DeformRTKernels

/// Quantized operators as onnxruntime.quantization writes them: QuantizeLinear, DequantizeLinear,
/// DynamicQuantizeLinear, MatMulInteger, QLinearMatMul, ConvInteger, QLinearConv. Quantized data
/// is int8 or uint8 (QuantizeLinear / DequantizeLinear also int16 and uint16, and DequantizeLinear
/// reads int32, the type of quantized biases); scales are float32. Rounding and saturation are onnxruntime's (see Quantization in DeformRTKernels), so
/// results are bit-exact with it. Refused with a clear error: blocked quantization (block_size),
/// float16 / bfloat16 scales, float8 / int4 / int2 data.

/// Checks shared by the quantized operators.
enum QuantCheck {
    /// Quantized data: int8 / uint8, and for QuantizeLinear / DequantizeLinear also int16 / uint16
    /// (`allow16`) and, for DequantizeLinear's biases, int32.
    static func quantized(_ value: PlanValue, _ name: String, allowInt32: Bool = false, allow16: Bool = false) throws {
        switch value.elementType {
        case .int8, .uint8: return
        case .int16 where allow16, .uint16 where allow16: return
        case .int32 where allowInt32: return
        default:
            let allowed = "int8, uint8" + (allow16 ? ", int16, uint16" : "") + (allowInt32 ? ", int32" : "")
            throw DeformRTError.unsupported("input \(name) is \(value.elementType.onnxName); only \(allowed) are supported")
        }
    }

    /// A scale: float32, and either one value or `channels` values along an axis (channels nil: one value only).
    /// Returns the number of values.
    static func scale(_ value: PlanValue, _ name: String, channels: Int?) throws -> Int {
        if value.elementType != .float {
            throw DeformRTError.unsupported("\(name) is \(value.elementType.onnxName); only float scales are supported")
        }
        return try parameterCount(value, name, channels: channels)
    }

    /// A zero point: the data's type, with the scale's shape.
    static func zeroPoint(_ value: PlanValue?, _ name: String, dataType: ElementType, dataName: String, count: Int, channels: Int?) throws {
        guard let value else { return }
        if value.elementType != dataType {
            throw DeformRTError.invalidModel("\(name) is \(value.elementType.onnxName) but \(dataName) is \(dataType.onnxName); they must have the same type")
        }
        let n = try parameterCount(value, name, channels: channels)
        if n != count {
            throw DeformRTError.invalidModel("\(name) shape \(value.shape) does not match its scale (\(count) value\(count == 1 ? "" : "s"))")
        }
    }

    private static func parameterCount(_ value: PlanValue, _ name: String, channels: Int?) throws -> Int {
        let count = value.shape.reduce(1, *)
        if value.shape.count <= 1 && count == 1 { return 1 }
        if let channels, value.shape == [channels] { return channels }
        if let channels {
            throw DeformRTError.invalidModel("\(name) shape \(value.shape) must be a scalar or [\(channels)]")
        }
        throw DeformRTError.invalidModel("\(name) shape \(value.shape) must be a scalar")
    }

    /// Zero point `index` of `tensor` (nil: 0) as Int32.
    @inline(__always)
    static func zeroPoint(_ tensor: Tensor?, _ index: Int) -> Int32 {
        guard let tensor else { return 0 }
        switch tensor.elementType {
        case .int8: return Int32(tensor.pointer(Int8.self)[index])
        case .uint8: return Int32(tensor.pointer(UInt8.self)[index])
        case .int16: return Int32(tensor.pointer(Int16.self)[index])
        case .uint16: return Int32(tensor.pointer(UInt16.self)[index])
        case .int32: return tensor.pointer(Int32.self)[index]
        default: return 0
        }
    }

    /// `count` zero points as Int32 into `out` (a single one repeated).
    static func zeroPoints(_ tensor: Tensor?, count: Int, into out: UnsafeMutablePointer<Int32>) {
        let n = tensor?.elementCount ?? 1
        for i in 0..<count { out[i] = zeroPoint(tensor, n == 1 ? 0 : i) }
    }

    static func blockSize(_ spec: OperatorSpec) throws {
        let block = try spec.attributes.int("block_size", default: 0)
        if block != 0 {
            throw DeformRTError.unsupported("node \(spec.node.label) (\(spec.node.opType)): block_size \(block) (blocked quantization) is not supported")
        }
    }

    /// (outer, channels, inner) of `shape` around `axis` (per tensor: everything is inner).
    static func split(_ shape: [Int], axis: Int?) -> (Int, Int, Int) {
        guard let axis else { return (1, 1, shape.reduce(1, *)) }
        return (shape[..<axis].reduce(1, *), shape[axis], shape[(axis + 1)...].reduce(1, *))
    }

    static func storage(_ type: ElementType) -> Quantization.Storage {
        switch type {
        case .int8: return .int8
        case .int16: return .int16
        case .uint16: return .uint16
        case .int32: return .int32
        default: return .uint8
        }
    }
}

/// Weights packed once when the plan is made, owned by the operator's run state.
final class PackedBuffer<Element> {
    let pointer: UnsafeMutablePointer<Element>
    let count: Int
    init(count: Int) {
        self.count = count
        pointer = UnsafeMutablePointer<Element>.allocate(capacity: max(1, count))
    }
    deinit { pointer.deallocate() }
}

/// QuantizeLinear (10, 13, 19, 21, 23) and DequantizeLinear: per tensor or per axis.
final class LinearQuantizeOperator: Operator {
    let dequantize: Bool
    let axisAttribute: Int
    let perAxisAllowed: Bool
    /// QuantizeLinear-21's output_dtype (0: from the zero point, else uint8).
    let outputType: ElementType?

    init(_ spec: OperatorSpec, dequantize: Bool) throws {
        self.dequantize = dequantize
        axisAttribute = try spec.attributes.int("axis", default: 1)
        perAxisAllowed = spec.opset >= 13
        try QuantCheck.blockSize(spec)
        let dtype = try spec.attributes.int("output_dtype", default: 0)
        if dequantize {
            if dtype != 0 && dtype != Int(ElementType.float.rawValue) {
                throw DeformRTError.unsupported("node \(spec.node.label) (DequantizeLinear): output_dtype \(dtype) is not supported (only float)")
            }
            outputType = nil
        } else {
            switch dtype {
            case 0: outputType = nil
            case Int(ElementType.uint8.rawValue): outputType = .uint8
            case Int(ElementType.int8.rawValue): outputType = .int8
            case Int(ElementType.uint16.rawValue): outputType = .uint16
            case Int(ElementType.int16.rawValue): outputType = .int16
            default:
                throw DeformRTError.unsupported("node \(spec.node.label) (QuantizeLinear): output_dtype \(dtype) is not supported (only uint8 = 2, int8 = 3, uint16 = 4, int16 = 5)")
            }
        }
        if let precision = try spec.attributes.int("precision"), precision != 0 && precision != Int(ElementType.float.rawValue) {
            throw DeformRTError.unsupported("node \(spec.node.label) (\(spec.node.opType)): precision \(precision) is not supported")
        }
    }

    private struct Layout {
        var outer: Int, channels: Int, inner: Int
        var perAxis: Bool
    }

    private func layout(_ inputs: [PlanValue?]) throws -> (Layout, ElementType) {
        let x = try PlanCheck.input(inputs, 0, "x"), scale = try PlanCheck.input(inputs, 1, dequantize ? "x_scale" : "y_scale")
        let zp = PlanCheck.optionalInput(inputs, 2)
        let dataType: ElementType
        if dequantize {
            try QuantCheck.quantized(x, "x", allowInt32: true, allow16: true)
            dataType = x.elementType
        } else {
            try PlanCheck.float(x, "x")
            if let zp {
                try QuantCheck.quantized(zp, "y_zero_point", allow16: true)
                if let outputType, outputType != zp.elementType {
                    throw DeformRTError.invalidModel("output_dtype \(outputType.onnxName) disagrees with y_zero_point's type \(zp.elementType.onnxName)")
                }
                dataType = zp.elementType
            } else {
                dataType = outputType ?? .uint8
            }
        }
        let single = scale.shape.reduce(1, *) == 1 && scale.shape.count <= 1
        var axis: Int? = nil
        if !single {
            if !perAxisAllowed {
                throw DeformRTError.invalidModel("\(dequantize ? "x_scale" : "y_scale") shape \(scale.shape) must be a scalar before opset 13 (per-axis quantization needs opset 13)")
            }
            axis = try PlanCheck.axis(axisAttribute, rank: x.shape.count)
        }
        let channels = axis.map { x.shape[$0] }
        let count = try QuantCheck.scale(scale, dequantize ? "x_scale" : "y_scale", channels: channels)
        try QuantCheck.zeroPoint(zp, dequantize ? "x_zero_point" : "y_zero_point", dataType: dataType,
                                 dataName: dequantize ? "x" : "y", count: count, channels: channels)
        let (outer, c, inner) = QuantCheck.split(x.shape, axis: axis)
        return (Layout(outer: outer, channels: c, inner: inner, perAxis: axis != nil), dataType)
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let (_, dataType) = try layout(inputs)
        return [PlanValue(ValueType(dequantize ? .float : dataType, inputs[0]!.shape))]
    }

    func workspaceByteCount(_ inputs: [ValueType?], _ outputs: [ValueType], threads: Int) -> Int {
        guard let planned = try? layout(inputs.map { $0.map { PlanValue($0) } }) else { return 0 }
        return planned.0.channels * 4
    }

    func runState(_ inputs: [PlanValue?], _ outputs: [ValueType], threads: Int) throws -> AnyObject? {
        Planned(try layout(inputs).0)
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let l = try state(context, inputs, as: Planned<Layout>.self)!.value
        let zp = inputs.count > 2 ? inputs[2] : nil
        let zeroPoints = context.workspace.assumingMemoryBound(to: Int32.self)
        QuantCheck.zeroPoints(zp, count: l.channels, into: zeroPoints)
        let scales = inputs[1]!.floats
        // A per-tensor scale is repeated by reading index 0 for every channel: channels is 1 then.
        if dequantize {
            Quantization.dequantize(inputs[0]!.rawPointer, QuantCheck.storage(inputs[0]!.elementType), outputs[0].floats,
                                    outer: l.outer, channels: l.channels, inner: l.inner, scales: scales, zeroPoints: zeroPoints,
                                    parallel: context.parallel)
        } else {
            Quantization.quantize(inputs[0]!.floats, outputs[0].rawPointer, outer: l.outer, channels: l.channels, inner: l.inner,
                                  scales: scales, zeroPoints: zeroPoints, storage: QuantCheck.storage(outputs[0].elementType),
                                  parallel: context.parallel)
        }
    }
}

/// DynamicQuantizeLinear (11): uint8 with a scale and zero point from the data's range (0 included),
/// computed as onnxruntime does. NaNs are left out of the range and quantize to 0.
final class DynamicQuantizeLinearOperator: Operator {
    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let x = try PlanCheck.input(inputs, 0, "x")
        try PlanCheck.float(x, "x")
        return [PlanValue(ValueType(.uint8, x.shape)), PlanValue(ValueType(.float, [])), PlanValue(ValueType(.uint8, []))]
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let x = inputs[0]!
        let n = x.elementCount, p = x.floats
        var low: Float = 0, high: Float = 0
        for i in 0..<n {
            let v = p[i]
            if v < low { low = v }
            if v > high { high = v }
        }
        let scale: Float = high == low ? 1 : (high - low) / 255
        let initial = 0 - low / scale
        let clamped = max(Float(0), min(Float(255), initial))
        let zeroPoint = clamped.isNaN ? Int32(0) : Int32(clamped.rounded(.toNearestOrEven))
        var s = scale, z = zeroPoint
        Quantization.quantize(p, outputs[0].rawPointer, outer: 1, channels: 1, inner: n, scales: &s, zeroPoints: &z,
                              storage: .uint8, parallel: context.parallel)
        outputs[1].floats[0] = scale
        outputs[2].pointer(UInt8.self)[0] = UInt8(zeroPoint)
    }
}

/// MatMulInteger (10) and QLinearMatMul (10, 21): numpy MatMul on 8-bit data. MatMulInteger writes
/// the int32 sums of (a - a_zero_point)(b - b_zero_point); QLinearMatMul requantizes them with
/// a_scale * b_scale / y_scale. a's zero point and scale are per tensor; b's may be per column [N].
final class QuantizedMatMulOperator: Operator {
    let requantize: Bool
    init(requantize: Bool) { self.requantize = requantize }

    private struct Layout {
        var m: Int, n: Int, k: Int
        var batchShape: [Int], aStrides: [Int], bStrides: [Int]
        var outShape: [Int]
        var batches: Int
    }

    private var slots: (a: Int, aZero: Int, b: Int, bZero: Int) { requantize ? (0, 2, 3, 5) : (0, 2, 1, 3) }

    private func layout(_ inputs: [PlanValue?]) throws -> (Layout, ElementType) {
        let s = slots
        let a = try PlanCheck.input(inputs, s.a, "A"), b = try PlanCheck.input(inputs, s.b, "B")
        try QuantCheck.quantized(a, "A")
        try QuantCheck.quantized(b, "B")
        guard !a.shape.isEmpty, !b.shape.isEmpty else { throw DeformRTError.invalidModel("operands must have rank >= 1, got \(a.shape) and \(b.shape)") }
        let a2 = a.shape.count == 1 ? [1, a.shape[0]] : a.shape
        let b2 = b.shape.count == 1 ? [b.shape[0], 1] : b.shape
        let m = a2[a2.count - 2], k = a2[a2.count - 1], kb = b2[b2.count - 2], n = b2[b2.count - 1]
        if k != kb { throw DeformRTError.invalidModel("inner dimensions differ: shapes \(a.shape) and \(b.shape)") }
        let aBatch = Array(a2.dropLast(2)), bBatch = Array(b2.dropLast(2))
        let batchShape = try Broadcast.shape(aBatch, bBatch)
        var outShape = batchShape
        if a.shape.count > 1 { outShape.append(m) }
        if b.shape.count > 1 { outShape.append(n) }
        let outType: ElementType
        if requantize {
            let aScale = try QuantCheck.scale(try PlanCheck.input(inputs, 1, "a_scale"), "a_scale", channels: nil)
            try QuantCheck.zeroPoint(try PlanCheck.input(inputs, 2, "a_zero_point"), "a_zero_point", dataType: a.elementType, dataName: "a", count: aScale, channels: nil)
            let bScale = try QuantCheck.scale(try PlanCheck.input(inputs, 4, "b_scale"), "b_scale", channels: n)
            try QuantCheck.zeroPoint(try PlanCheck.input(inputs, 5, "b_zero_point"), "b_zero_point", dataType: b.elementType, dataName: "b", count: bScale, channels: n)
            let yScale = try PlanCheck.input(inputs, 6, "y_scale"), yZero = try PlanCheck.input(inputs, 7, "y_zero_point")
            _ = try QuantCheck.scale(yScale, "y_scale", channels: nil)
            try QuantCheck.quantized(yZero, "y_zero_point")
            try QuantCheck.zeroPoint(yZero, "y_zero_point", dataType: yZero.elementType, dataName: "y", count: 1, channels: nil)
            outType = yZero.elementType
        } else {
            if let z = PlanCheck.optionalInput(inputs, 2) {
                try QuantCheck.zeroPoint(z, "a_zero_point", dataType: a.elementType, dataName: "A", count: 1, channels: nil)
            }
            if let z = PlanCheck.optionalInput(inputs, 3) {
                let count = z.shape.reduce(1, *)
                try QuantCheck.zeroPoint(z, "b_zero_point", dataType: b.elementType, dataName: "B", count: count == 1 ? 1 : n, channels: n)
            }
            outType = .int32
        }
        _ = try Limits.elementCount([k, n + 1, 2], what: "integer MatMul workspace")
        let layout = Layout(m: m, n: n, k: k, batchShape: batchShape,
                            aStrides: Broadcast.strides(aBatch, into: batchShape), bStrides: Broadcast.strides(bBatch, into: batchShape),
                            outShape: outShape, batches: batchShape.reduce(1, *))
        return (layout, outType)
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let (l, type) = try layout(inputs)
        return [PlanValue(ValueType(type, l.outShape))]
    }

    /// Byte offsets in the workspace: A packed (Int16), A's row sums, B packed (when not made at
    /// plan time), B's unsigned zero points and the multipliers per column, the per-worker blocks.
    private struct Workspace {
        var packedA = 0, rowSums = 0, packedB = 0, columnZeros = 0, multipliers = 0, scratch = 0, total = 0
        init(_ l: Layout, threads: Int) {
            var offset = 0
            func take(_ bytes: Int) -> Int { defer { offset += (bytes + 63) / 64 * 64 }; return offset }
            packedA = take(2 * QuantizedGemm.packedRowsCount(rows: l.m, k: l.k))
            rowSums = take(4 * l.m)
            packedB = take(4 * QuantizedGemm.packedColumnsCount(k: l.k, n: l.n))
            columnZeros = take(4 * l.n)
            multipliers = take(4 * l.n)
            scratch = take(4 * QuantizedGemm.scratchCount(threads: threads))
            total = offset
        }
    }

    func workspaceByteCount(_ inputs: [ValueType?], _ outputs: [ValueType], threads: Int) -> Int {
        guard let planned = try? layout(inputs.map { $0.map { PlanValue($0) } }) else { return 0 }
        return Workspace(planned.0, threads: threads).total
    }

    /// The layout and, when B is one constant matrix, B packed once for QuantizedGemm.
    private final class State {
        let layout: Layout
        let packedB: PackedBuffer<UInt32>?
        init(layout: Layout, packedB: PackedBuffer<UInt32>?) { self.layout = layout; self.packedB = packedB }
    }

    func runState(_ inputs: [PlanValue?], _ outputs: [ValueType], threads: Int) throws -> AnyObject? {
        let l = try layout(inputs).0
        var packed: PackedBuffer<UInt32>? = nil
        if let b = inputs[slots.b]?.constant, b.elementCount == l.k * l.n {
            let buffer = PackedBuffer<UInt32>(count: QuantizedGemm.packedColumnsCount(k: l.k, n: l.n))
            QuantizedGemm.packColumns(b.rawPointer, signed: b.elementType == .int8, k: l.k, n: l.n, rowStride: l.n, into: buffer.pointer)
            packed = buffer
        }
        return State(layout: l, packedB: packed)
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let state = try state(context, inputs, as: State.self)!
        let l = state.layout
        if l.m == 0 || l.n == 0 || l.batches == 0 { return }
        let s = slots
        let a = inputs[s.a]!, b = inputs[s.b]!
        let aZeroTensor = s.aZero < inputs.count ? inputs[s.aZero] : nil
        let bZeroTensor = s.bZero < inputs.count ? inputs[s.bZero] : nil
        let ws = Workspace(l, threads: context.parallel.threads), base = context.workspace
        let packedA = (base + ws.packedA).assumingMemoryBound(to: Int16.self)
        let rowSums = (base + ws.rowSums).assumingMemoryBound(to: Int32.self)
        let columnZeros = (base + ws.columnZeros).assumingMemoryBound(to: Int32.self)
        let multipliers = (base + ws.multipliers).assumingMemoryBound(to: Float.self)
        let scratch = (base + ws.scratch).assumingMemoryBound(to: Int32.self)
        let aSigned = a.elementType == .int8, bSigned = b.elementType == .int8
        QuantCheck.zeroPoints(bZeroTensor, count: l.n, into: columnZeros)
        for j in 0..<l.n { columnZeros[j] = QuantizedGemm.unsignedValue(columnZeros[j], signed: bSigned) }
        var aZero = QuantCheck.zeroPoint(aZeroTensor, 0)
        var yZero: Int32 = 0
        var multiplierStride = 0
        if requantize {
            let aScale = inputs[1]!.floats[0], yScale = inputs[6]!.floats[0], bScales = inputs[4]!
            multiplierStride = bScales.elementCount != 1 ? 1 : 0
            for j in 0..<(multiplierStride == 1 ? l.n : 1) { multipliers[j] = aScale * bScales.floats[j] / yScale }
            yZero = QuantCheck.zeroPoint(inputs[7]!, 0)
        }
        let outSigned = outputs[0].elementType == .int8
        for batch in 0..<l.batches {
            var rest = batch, aIndex = 0, bIndex = 0
            for d in stride(from: l.batchShape.count - 1, through: 0, by: -1) {
                let i = rest % l.batchShape[d]
                rest /= l.batchShape[d]
                aIndex += i * l.aStrides[d]
                bIndex += i * l.bStrides[d]
            }
            QuantizedGemm.packRows(a.rawPointer + aIndex * l.m * l.k, signed: aSigned, rows: l.m, k: l.k, rowStride: l.k,
                                   zeroPoints: &aZero, zeroPointStride: 0, into: packedA, rowSums: rowSums)
            let packedB: UnsafePointer<UInt32>
            if let planned = state.packedB {
                packedB = UnsafePointer(planned.pointer)
            } else {
                let target = (base + ws.packedB).assumingMemoryBound(to: UInt32.self)
                QuantizedGemm.packColumns(b.rawPointer + bIndex * l.k * l.n, signed: bSigned, k: l.k, n: l.n, rowStride: l.n, into: target)
                packedB = UnsafePointer(target)
            }
            let outOffset = batch * l.m * l.n
            let y8 = outputs[0].rawPointer.assumingMemoryBound(to: UInt8.self) + outOffset
            let y32 = outputs[0].rawPointer.assumingMemoryBound(to: Int32.self) + outOffset
            let requantize = requantize, n = l.n
            QuantizedGemm.gemm(rows: l.m, columns: l.n, k: l.k, packedRows: packedA, packedColumns: packedB, scratch: scratch, parallel: context.parallel) { row, rowCount, column, width, sums, sumsStride in
                for r in 0..<rowCount {
                    let line = sums + r * sumsStride, at = (row + r) * n + column
                    QuantizedGemm.correct(line, count: width, rowSum: rowSums[row + r], columnZeros: columnZeros + column)
                    if requantize {
                        Quantization.requantize(line, count: width, multipliers: multipliers + column * multiplierStride,
                                                multiplierStride: multiplierStride, zeroPoint: yZero, signed: outSigned, into: y8 + at)
                    } else {
                        (y32 + at).update(from: line, count: width)
                    }
                }
            }
        }
    }
}

/// ConvInteger (10) and QLinearConv (10): 1-D and 2-D convolution on 8-bit data, im2col of
/// (x - x_zero_point) (padding reads the zero point, so it adds nothing) times the widened
/// weights (w - w_zero_point, per output channel or per tensor) in int32. ConvInteger writes the
/// sums; QLinearConv adds the int32 bias and requantizes with x_scale * w_scale[m] / y_scale.
final class QuantizedConvOperator: Operator {
    let requantize: Bool
    var window: Window2D
    var window1D: Window2D
    let group: Int

    init(_ spec: OperatorSpec, requantize: Bool) throws {
        self.requantize = requantize
        window = try Window2D(spec, kernelRequired: false)
        window1D = try Window2D(spec, kernelRequired: false, spatialRank: 1)
        group = try spec.attributes.int("group", default: 1)
        if group < 1 { throw spec.fail("group must be >= 1, got \(group)") }
    }

    private var slots: (x: Int, xZero: Int, w: Int, wZero: Int) { requantize ? (0, 2, 3, 5) : (0, 2, 1, 3) }

    private func geometry(_ x: [Int], _ w: [Int]) throws -> ConvGeometry {
        guard x.count == 4 || x.count == 3 else {
            throw DeformRTError.unsupported("only 1-D and 2-D convolutions are supported (input shape \(x))")
        }
        guard w.count == x.count else { throw DeformRTError.invalidModel("weight shape \(w) does not match input shape \(x)") }
        let is1D = x.count == 3
        var window = is1D ? window1D : window
        if is1D { window.liftTo2D() }
        if is1D, let pads = window.pads, pads.count == 4, pads[0] != 0 || pads[2] != 0 {
            throw DeformRTError.invalidModel("a 1-D convolution takes 2 pads [begin, end], got \(self.window.pads ?? [])")
        }
        return try window.convGeometry(input: is1D ? [x[0], x[1], 1, x[2]] : x, weight: is1D ? [w[0], w[1], 1, w[2]] : w,
                                       group: group, shapes: (x, w))
    }

    private func check(_ inputs: [PlanValue?]) throws -> (ConvGeometry, ElementType, [Int]) {
        let s = slots
        let x = try PlanCheck.input(inputs, s.x, "x"), w = try PlanCheck.input(inputs, s.w, "w")
        try QuantCheck.quantized(x, "x")
        try QuantCheck.quantized(w, "w")
        let g = try geometry(x.shape, w.shape)
        let outType: ElementType
        if requantize {
            _ = try QuantCheck.scale(try PlanCheck.input(inputs, 1, "x_scale"), "x_scale", channels: nil)
            try QuantCheck.zeroPoint(try PlanCheck.input(inputs, 2, "x_zero_point"), "x_zero_point", dataType: x.elementType, dataName: "x", count: 1, channels: nil)
            let wCount = try QuantCheck.scale(try PlanCheck.input(inputs, 4, "w_scale"), "w_scale", channels: g.outChannels)
            try QuantCheck.zeroPoint(try PlanCheck.input(inputs, 5, "w_zero_point"), "w_zero_point", dataType: w.elementType, dataName: "w", count: wCount, channels: g.outChannels)
            _ = try QuantCheck.scale(try PlanCheck.input(inputs, 6, "y_scale"), "y_scale", channels: nil)
            let yZero = try PlanCheck.input(inputs, 7, "y_zero_point")
            try QuantCheck.quantized(yZero, "y_zero_point")
            try QuantCheck.zeroPoint(yZero, "y_zero_point", dataType: yZero.elementType, dataName: "y", count: 1, channels: nil)
            if let bias = PlanCheck.optionalInput(inputs, 8) {
                if bias.elementType != .int32 { throw DeformRTError.invalidModel("B is \(bias.elementType.onnxName); QLinearConv's bias must be int32") }
                if bias.shape != [g.outChannels] { throw DeformRTError.invalidModel("B shape \(bias.shape) must be [\(g.outChannels)]") }
            }
            outType = yZero.elementType
        } else {
            if let z = PlanCheck.optionalInput(inputs, 2) {
                try QuantCheck.zeroPoint(z, "x_zero_point", dataType: x.elementType, dataName: "x", count: 1, channels: nil)
            }
            if let z = PlanCheck.optionalInput(inputs, 3) {
                let count = z.shape.reduce(1, *) == 1 ? 1 : g.outChannels
                try QuantCheck.zeroPoint(z, "w_zero_point", dataType: w.elementType, dataName: "w", count: count, channels: g.outChannels)
            }
            outType = .int32
        }
        let shape = x.shape.count == 3 ? [g.batch, g.outChannels, g.outWidth] : [g.batch, g.outChannels, g.outHeight, g.outWidth]
        // Bounds the im2col buffer before its size is multiplied out.
        _ = try Limits.elementCount([g.inChannels / g.group, g.kernelHeight * g.kernelWidth, g.outHeight, g.outWidth], what: "im2col buffer")
        return (g, outType, shape)
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let (_, type, shape) = try check(inputs)
        return [PlanValue(ValueType(type, shape))]
    }

    /// Byte offsets in the workspace: the weights packed per group (when not made at plan time) and
    /// their row sums, w's zero points, the multipliers, per worker a block of the image packed as
    /// unsigned pairs (QuantizedGemm's packBlock), two byte rows of it, and a block of sums.
    private struct Workspace {
        var packedWeights = 0, rowSums = 0, zeroPoints = 0, multipliers = 0, columns = 0, byteRows = 0, scratch = 0, total = 0
        init(_ g: ConvGeometry, threads: Int) {
            let k = g.inChannels / g.group * g.kernelHeight * g.kernelWidth, p = g.outHeight * g.outWidth
            var offset = 0
            func take(_ bytes: Int) -> Int { defer { offset += (bytes + 63) / 64 * 64 }; return offset }
            packedWeights = take(2 * g.group * QuantizedGemm.packedRowsCount(rows: g.outChannels / g.group, k: k))
            rowSums = take(4 * g.outChannels)
            zeroPoints = take(4 * g.outChannels)
            multipliers = take(4 * g.outChannels)
            columns = take(4 * QuantizedGemm.blockBufferCount(k: k) * max(1, threads))
            byteRows = take(2 * QuantizedGemm.blockColumns * max(1, threads))
            scratch = take(4 * QuantizedGemm.scratchCount(threads: threads))
            total = offset
        }
    }

    func workspaceByteCount(_ inputs: [ValueType?], _ outputs: [ValueType], threads: Int) -> Int {
        guard let planned = try? check(inputs.map { $0.map { PlanValue($0) } }) else { return 0 }
        return Workspace(planned.0, threads: threads).total
    }

    /// The geometry and, when w and its zero point are constants, the weights packed once per group
    /// (QuantizedGemm.packRows) with their row sums.
    private final class State {
        let geometry: ConvGeometry
        let packedWeights: PackedBuffer<Int16>?
        let rowSums: PackedBuffer<Int32>?
        init(geometry: ConvGeometry, packedWeights: PackedBuffer<Int16>?, rowSums: PackedBuffer<Int32>?) {
            self.geometry = geometry
            self.packedWeights = packedWeights
            self.rowSums = rowSums
        }
    }

    func runState(_ inputs: [PlanValue?], _ outputs: [ValueType], threads: Int) throws -> AnyObject? {
        let g = try check(inputs).0
        let s = slots
        guard let w = inputs[s.w]?.constant else { return State(geometry: g, packedWeights: nil, rowSums: nil) }
        let zeroInput: PlanValue? = s.wZero < inputs.count ? inputs[s.wZero] : nil
        if let zeroInput, zeroInput.constant == nil { return State(geometry: g, packedWeights: nil, rowSums: nil) }
        let packed = PackedBuffer<Int16>(count: g.group * QuantizedGemm.packedRowsCount(rows: g.outChannels / g.group, k: weightLength(g)))
        let rowSums = PackedBuffer<Int32>(count: g.outChannels)
        let zeroPoints = PackedBuffer<Int32>(count: g.outChannels)
        QuantCheck.zeroPoints(zeroInput?.constant, count: g.outChannels, into: zeroPoints.pointer)
        packWeights(g, w.rawPointer, signed: w.elementType == .int8, zeroPoints: zeroPoints.pointer, into: packed.pointer, rowSums: rowSums.pointer)
        return State(geometry: g, packedWeights: packed, rowSums: rowSums)
    }

    private func weightLength(_ g: ConvGeometry) -> Int { g.inChannels / g.group * g.kernelHeight * g.kernelWidth }

    private func packWeights(_ g: ConvGeometry, _ w: UnsafeRawPointer, signed: Bool, zeroPoints: UnsafePointer<Int32>,
                             into packed: UnsafeMutablePointer<Int16>, rowSums: UnsafeMutablePointer<Int32>) {
        let k = weightLength(g), mg = g.outChannels / g.group
        let groupSize = QuantizedGemm.packedRowsCount(rows: mg, k: k)
        for gi in 0..<g.group {
            QuantizedGemm.packRows(w + gi * mg * k, signed: signed, rows: mg, k: k, rowStride: k, zeroPoints: zeroPoints + gi * mg,
                                   zeroPointStride: 1, into: packed + gi * groupSize, rowSums: rowSums + gi * mg)
        }
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let state = try state(context, inputs, as: State.self)!
        let g = state.geometry
        let s = slots
        let x = inputs[s.x]!, w = inputs[s.w]!
        let xZero = QuantCheck.zeroPoint(s.xZero < inputs.count ? inputs[s.xZero] : nil, 0)
        let M = g.outChannels, Mg = M / g.group, Cg = g.inChannels / g.group
        let K = weightLength(g), P = g.outHeight * g.outWidth
        if M == 0 || P == 0 || g.batch == 0 { return }
        let ws = Workspace(g, threads: context.parallel.threads), base = context.workspace
        let multipliers = (base + ws.multipliers).assumingMemoryBound(to: Float.self)
        let columns = (base + ws.columns).assumingMemoryBound(to: UInt32.self)
        let byteRows = (base + ws.byteRows).assumingMemoryBound(to: UInt8.self)
        let scratch = (base + ws.scratch).assumingMemoryBound(to: Int32.self)
        let packedWeights: UnsafePointer<Int16>, rowSums: UnsafePointer<Int32>
        if let planned = state.packedWeights, let sums = state.rowSums {
            packedWeights = UnsafePointer(planned.pointer)
            rowSums = UnsafePointer(sums.pointer)
        } else {
            let zeroPoints = (base + ws.zeroPoints).assumingMemoryBound(to: Int32.self)
            QuantCheck.zeroPoints(s.wZero < inputs.count ? inputs[s.wZero] : nil, count: M, into: zeroPoints)
            let packed = (base + ws.packedWeights).assumingMemoryBound(to: Int16.self)
            let sums = (base + ws.rowSums).assumingMemoryBound(to: Int32.self)
            packWeights(g, w.rawPointer, signed: w.elementType == .int8, zeroPoints: zeroPoints, into: packed, rowSums: sums)
            packedWeights = UnsafePointer(packed)
            rowSums = UnsafePointer(sums)
        }
        var yZero: Int32 = 0
        var bias: UnsafeMutablePointer<Int32>? = nil
        if requantize {
            let xScale = inputs[1]!.floats[0], yScale = inputs[6]!.floats[0], wScales = inputs[4]!
            let perChannel = wScales.elementCount != 1
            for m in 0..<M { multipliers[m] = xScale * wScales.floats[perChannel ? m : 0] / yScale }
            yZero = QuantCheck.zeroPoint(inputs[7]!, 0)
            bias = inputs.count > 8 ? inputs[8]?.pointer(Int32.self) : nil
        }
        let xSigned = x.elementType == .int8, outSigned = outputs[0].elementType == .int8
        let xZeroUnsigned = QuantizedGemm.unsignedValue(xZero, signed: xSigned)
        let groupSize = QuantizedGemm.packedRowsCount(rows: Mg, k: K)
        let requantize = requantize
        for n in 0..<g.batch {
            for gi in 0..<g.group {
                let image = UnsafeRawPointer(x.rawPointer + (n * g.inChannels + gi * Cg) * g.inHeight * g.inWidth)
                let zeroByte = UInt8(truncatingIfNeeded: xZero), kPairs = QuantizedGemm.pairs(K), blockColumns = QuantizedGemm.blockColumns
                let outBase = (n * M + gi * Mg) * P
                let y8 = outputs[0].rawPointer.assumingMemoryBound(to: UInt8.self) + outBase
                let y32 = outputs[0].rawPointer.assumingMemoryBound(to: Int32.self) + outBase
                // The im2col of 256 pixels, rows 2q and 2q + 1 paired, made by the worker that multiplies it.
                let packBlock = { (worker: Int, column: Int, width: Int, into: UnsafeMutablePointer<UInt32>) in
                    let lo = byteRows + worker * 2 * blockColumns, hi = lo + blockColumns
                    for q in 0..<kPairs {
                        Self.imageSegment(g, image, row: 2 * q, start: column, count: width, zeroByte: zeroByte, into: lo)
                        let hasHigh = 2 * q + 1 < K
                        if hasHigh { Self.imageSegment(g, image, row: 2 * q + 1, start: column, count: width, zeroByte: zeroByte, into: hi) }
                        QuantizedGemm.pairRows(lo, hasHigh ? UnsafePointer(hi) : nil, count: width, signed: xSigned, pair: q, kPairs: kPairs, into: into)
                    }
                }
                QuantizedGemm.gemm(rows: Mg, columns: P, k: K, packedRows: packedWeights + gi * groupSize, packedColumns: nil,
                                   packBlock: packBlock, blockBuffers: columns,
                                   scratch: scratch, parallel: context.parallel) { row, rowCount, column, width, sums, sumsStride in
                    for r in 0..<rowCount {
                        let channel = gi * Mg + row + r
                        let line = sums + r * sumsStride, at = (row + r) * P + column
                        QuantizedGemm.correct(line, count: width, offset: (bias?[channel] ?? 0) &- rowSums[channel] &* xZeroUnsigned)
                        if requantize {
                            Quantization.requantize(line, count: width, multipliers: multipliers + channel, multiplierStride: 0,
                                                    zeroPoint: yZero, signed: outSigned, into: y8 + at)
                        } else {
                            (y32 + at).update(from: line, count: width)
                        }
                    }
                }
            }
        }
    }

    /// Pixels start ..< start + count (oy * oW + ox) of row (c * kH + i) * kW + j of the im2col
    /// matrix as raw bytes: x[c][iy][ix], the zero point's byte outside the image.
    private static func imageSegment(_ g: ConvGeometry, _ image: UnsafeRawPointer, row: Int, start: Int, count: Int, zeroByte: UInt8,
                                     into out: UnsafeMutablePointer<UInt8>) {
        let kk = g.kernelHeight * g.kernelWidth
        let c = row / kk, i = (row % kk) / g.kernelWidth, j = row % g.kernelWidth
        let plane = (image + c * g.inHeight * g.inWidth).assumingMemoryBound(to: UInt8.self)
        let shift = j * g.dilationWidth - g.padLeft
        // Output columns whose input column is inside the image, for stride 1.
        let first = min(g.outWidth, max(0, -shift)), last = max(first, min(g.outWidth, g.inWidth - shift))
        var oy = start / g.outWidth, ox = start % g.outWidth, done = 0
        while done < count {
            let n = min(g.outWidth - ox, count - done)
            let line = out + done
            let iy = oy * g.strideHeight - g.padTop + i * g.dilationHeight
            if iy < 0 || iy >= g.inHeight {
                line.update(repeating: zeroByte, count: n)
            } else if g.strideWidth == 1 {
                let source = plane + iy * g.inWidth
                let end = ox + n
                let a = min(max(first, ox), end), b = max(a, min(last, end))
                line.update(repeating: zeroByte, count: a - ox)
                (line + (a - ox)).update(from: source + (a + shift), count: b - a)
                (line + (b - ox)).update(repeating: zeroByte, count: end - b)
            } else {
                let source = plane + iy * g.inWidth
                for t in 0..<n {
                    let ix = (ox + t) * g.strideWidth + shift
                    line[t] = ix >= 0 && ix < g.inWidth ? source[ix] : zeroByte
                }
            }
            done += n
            oy += 1
            ox = 0
        }
    }
}
