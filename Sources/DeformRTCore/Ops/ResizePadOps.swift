import DeformRTKernels

/// One source-index table per output axis, back to back in storage of their own (made once per
/// plan by Pad and nearest Resize): `entry(axis, position)` fills axis d's shape[d] entries.
/// The storage starts with `headerBytes` for the caller (Pad's constant).
struct AxisIndexTables {
    let storage: TensorStorage
    let tables: [UnsafePointer<Int>]

    init(_ shape: [Int], headerBytes: Int = 0, _ entry: (_ axis: Int, _ position: Int) -> Int) {
        storage = TensorStorage(zeroedByteCount: max(1, headerBytes + shape.reduce(0, +) * MemoryLayout<Int>.size))
        var tables: [UnsafePointer<Int>] = []
        var next = (storage.bytes + headerBytes).assumingMemoryBound(to: Int.self)
        for d in shape.indices {
            for o in 0..<shape[d] { next[o] = entry(d, o) }
            tables.append(UnsafePointer(next))
            next += shape[d]
        }
        self.tables = tables
    }
}

/// Pad in modes constant, edge and reflect. Pads come from the `paddings` (opset 1) or `pads`
/// (opset 2) attribute, or from the pads input (opset >= 11) restricted to the axes input
/// (opset >= 18). Negative pads crop (constant mode only); reflect pads must be smaller than the
/// axis. Any element type but string.
final class PadOperator: Operator {
    enum Mode: String { case constant, edge, reflect }
    let mode: Mode
    let padsAreInputs: Bool
    let attributePads: [Int]?
    let attributeValue: Float
    var shapeInputs: [Int] { [1, 3] }

    init(_ spec: OperatorSpec) throws {
        let name = try spec.attributes.string("mode") ?? "constant"
        guard let mode = Mode(rawValue: name) else {
            throw DeformRTError.unsupported("node \(spec.node.label) (Pad): mode '\(name)' is not supported (constant, edge, reflect)")
        }
        self.mode = mode
        padsAreInputs = spec.opset >= 11
        attributePads = try spec.attributes.ints("pads") ?? spec.attributes.ints("paddings")
        attributeValue = try spec.attributes.float("value", default: 0)
        if !padsAreInputs && attributePads == nil { throw spec.fail("missing attribute pads") }
    }

    /// Begin / end pads per axis and the output shape.
    private func geometry(_ inputs: [PlanValue?]) throws -> (begin: [Int], shape: [Int]) {
        let x = try PlanCheck.input(inputs, 0, "data")
        let rank = x.shape.count
        var raw = attributePads ?? []
        var axes = Array(0..<rank)
        if padsAreInputs {
            raw = try PlanCheck.constantInts(try PlanCheck.input(inputs, 1, "pads"), "pads")
            if let given = PlanCheck.optionalInput(inputs, 3) {
                axes = try PlanCheck.constantInts(given, "axes").map { try PlanCheck.axis($0, rank: rank) }
                if Set(axes).count != axes.count { throw DeformRTError.invalidModel("repeated axes \(axes)") }
            }
        }
        if raw.count != 2 * axes.count {
            throw DeformRTError.invalidModel("pads \(raw) must have 2 entries per padded axis (\(axes.count) axes)")
        }
        var begin = [Int](repeating: 0, count: rank), end = begin
        for (i, a) in axes.enumerated() {
            begin[a] = raw[i]
            end[a] = raw[axes.count + i]
        }
        let shape = try x.shape.indices.map { d -> Int in
            let dim = x.shape[d]
            // No useful pad exceeds the element limit; bounding them keeps index arithmetic exact.
            if max(begin[d].magnitude, end[d].magnitude) > UInt(Limits.maxElements) {
                throw DeformRTError.invalidModel("pads \(begin[d]) and \(end[d]) of axis \(d) are out of range")
            }
            let (partial, overflow1) = dim.addingReportingOverflow(begin[d])
            let (size, overflow2) = partial.addingReportingOverflow(end[d])
            if overflow1 || overflow2 || size < 0 {
                throw DeformRTError.invalidModel("pads \(begin[d]) and \(end[d]) do not fit axis \(d) of size \(dim)")
            }
            if mode != .constant && (begin[d] != 0 || end[d] != 0) {
                if begin[d] < 0 || end[d] < 0 {
                    throw DeformRTError.unsupported("negative pads (\(begin[d]), \(end[d])) are only supported in constant mode, not \(mode.rawValue)")
                }
                if dim == 0 { throw DeformRTError.invalidModel("axis \(d) is empty; \(mode.rawValue) padding needs values to copy") }
                if mode == .reflect && max(begin[d], end[d]) >= dim {
                    throw DeformRTError.unsupported("reflect pads (\(begin[d]), \(end[d])) must be smaller than axis \(d) of size \(dim)")
                }
            }
            return size
        }
        return (begin, shape)
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let x = try PlanCheck.input(inputs, 0, "data")
        if x.elementType == .string { throw DeformRTError.unsupported("strings are not supported") }
        if let value = PlanCheck.optionalInput(inputs, 2) {
            if value.elementType != x.elementType {
                throw DeformRTError.invalidModel("constant_value is \(value.elementType.onnxName), data \(x.elementType.onnxName)")
            }
            if value.shape.reduce(1, *) > 1 { throw DeformRTError.invalidModel("constant_value must be a scalar, got shape \(value.shape)") }
        }
        return [PlanValue(ValueType(x.elementType, try geometry(inputs).shape))]
    }

    func workspaceByteCount(_ inputs: [ValueType?], _ outputs: [ValueType], threads: Int) -> Int {
        // The constant element, when it comes from the value input.
        MemoryLayout<Int>.size
    }

    /// What `run` reads, made once per plan: one source-index table per axis (-1: the constant),
    /// after the constant of the `value` attribute (older opsets) in the tables' header.
    struct RunState {
        let index: AxisIndexTables
        let outShape: [Int]
        /// The attribute's constant, as the element type's bytes.
        var attributeConstant: UnsafeRawPointer { UnsafeRawPointer(index.storage.bytes) }
    }

    func runState(_ inputs: [PlanValue?], _ outputs: [ValueType], threads: Int) throws -> AnyObject? {
        let x = try PlanCheck.input(inputs, 0, "data")
        let (begin, shape) = try geometry(inputs)
        let mode = mode
        let index = AxisIndexTables(shape, headerBytes: MemoryLayout<Int>.size) { d, o in
            let dim = x.shape[d], i = o - begin[d]
            if i >= 0 && i < dim { return i }
            switch mode {
            case .constant: return -1
            case .edge: return i < 0 ? 0 : dim - 1
            case .reflect: return i < 0 ? -i : 2 * (dim - 1) - i
            }
        }
        let cell = Tensor(elementType: x.elementType, shape: [],
                          storage: TensorStorage(borrowing: index.storage.bytes, byteCount: MemoryLayout<Int>.size))
        Scalar.store(.real(Double(attributeValue)), cell, 0)
        return Planned(RunState(index: index, outShape: shape))
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let x = inputs[0]!, out = outputs[0]
        if out.elementCount == 0 { return }
        let state = try state(context, inputs, as: Planned<RunState>.self)!.value
        var constant = state.attributeConstant
        if let value = inputs.count > 2 ? inputs[2] : nil, value.elementCount == 1 {
            context.workspace.copyMemory(from: value.rawPointer, byteCount: value.elementType.byteSize)
            constant = UnsafeRawPointer(context.workspace)
        }
        PadKernels.pad(elementSize: x.elementType.byteSize, source: x.rawPointer, inShape: x.shape,
                       destination: out.rawPointer, outShape: state.outShape, index: state.index.tables, constant: constant,
                       parallel: context.parallel)
    }
}

/// Resize (opset 10, 11, 13, 18, 19) and the legacy Upsample (opset 7, 9).
///
/// Modes: nearest (any rank, any element type; every nearest_mode) and linear (float; only the
/// last two axes may change, so NCHW images, 2-D maps and 1-D rows). Coordinates: half_pixel,
/// pytorch_half_pixel, align_corners, asymmetric, half_pixel_symmetric and tf_half_pixel_for_nn
/// (nearest). Output size from scales (floor(scale * size)) or sizes, optionally on `axes`.
/// Resize-10 and Upsample use asymmetric coordinates and ONNX Runtime's rounding for nearest
/// (down when enlarging, up when shrinking; Upsample only enlarges). Refused: cubic,
/// tf_crop_and_resize, antialias, exclude_outside, keep_aspect_ratio_policy other than stretch.
/// Scales and sizes must be known when planning.
final class ResizeOperator: Operator {
    enum Mode: String { case nearest, linear }
    enum Coordinates: String {
        case halfPixel = "half_pixel", pytorchHalfPixel = "pytorch_half_pixel", alignCorners = "align_corners"
        case asymmetric, halfPixelSymmetric = "half_pixel_symmetric", tfHalfPixelForNN = "tf_half_pixel_for_nn"
    }
    enum Rounding: String {
        case roundPreferFloor = "round_prefer_floor", roundPreferCeil = "round_prefer_ceil", floor, ceil
        /// Resize-10 and Upsample: floor when the axis grows, ceil when it shrinks.
        case legacy
    }

    let mode: Mode
    let coordinates: Coordinates
    let rounding: Rounding
    /// Upsample and Resize-10: inputs (X, scales), or the scales attribute (Upsample-7).
    let legacy: Bool
    let isUpsample: Bool
    let attributeScales: [Float]?
    let axes: [Int]?
    /// ai.deformrt ChannelsLastResize (the layout pass's form of a Resize of opset 11 or later):
    /// X and the output are [N, H, W, C]; roi, scales, sizes and axes keep the NCHW order.
    let channelsLast: Bool
    var shapeInputs: [Int] { legacy ? [1] : [2, 3] }

    init(_ spec: OperatorSpec, upsample: Bool, channelsLast: Bool = false) throws {
        let a = spec.attributes, op = "node \(spec.node.label) (\(spec.node.opType))"
        isUpsample = upsample
        self.channelsLast = channelsLast
        legacy = !channelsLast && (upsample || spec.opset < 11)
        let modeName = try a.string("mode") ?? "nearest"
        guard let mode = Mode(rawValue: modeName) else { throw DeformRTError.unsupported("\(op): mode '\(modeName)' is not supported (nearest, linear)") }
        self.mode = mode
        attributeScales = upsample ? try a.floats("scales") : nil
        axes = try a.ints("axes")
        if legacy {
            coordinates = .asymmetric
            rounding = .legacy
        } else {
            let coordinateName = try a.string("coordinate_transformation_mode") ?? "half_pixel"
            guard let coordinates = Coordinates(rawValue: coordinateName) else {
                throw DeformRTError.unsupported("\(op): coordinate_transformation_mode '\(coordinateName)' is not supported")
            }
            if coordinates == .tfHalfPixelForNN && mode == .linear {
                throw DeformRTError.unsupported("\(op): coordinate_transformation_mode 'tf_half_pixel_for_nn' is only supported with mode nearest")
            }
            self.coordinates = coordinates
            let roundingName = try a.string("nearest_mode") ?? "round_prefer_floor"
            guard let rounding = Rounding(rawValue: roundingName), rounding != .legacy else {
                throw DeformRTError.unsupported("\(op): nearest_mode '\(roundingName)' is not supported")
            }
            self.rounding = rounding
        }
        if let v = try a.int("exclude_outside"), v != 0 { throw DeformRTError.unsupported("\(op): exclude_outside \(v) is not supported") }
        if let v = try a.int("antialias"), v != 0 { throw DeformRTError.unsupported("\(op): antialias \(v) is not supported") }
        if let policy = try a.string("keep_aspect_ratio_policy"), policy != "stretch" {
            throw DeformRTError.unsupported("\(op): keep_aspect_ratio_policy '\(policy)' is not supported (stretch)")
        }
        if upsample && spec.opset < 9 && attributeScales == nil { throw spec.fail("missing attribute scales") }
    }

    /// `shape` in NCHW order: X's own, or the NCHW order of a channels-last X.
    private func logicalShape(_ shape: [Int]) throws -> [Int] {
        guard channelsLast else { return shape }
        guard shape.count == 4 else {
            throw DeformRTError.invalidModel("a channels-last Resize input must have rank 4, got shape \(shape)")
        }
        return [shape[0], shape[3], shape[1], shape[2]]
    }

    /// The output shape (NCHW order) and the scale of every axis (given, or output / input for sizes).
    private func geometry(_ inputs: [PlanValue?]) throws -> (shape: [Int], scales: [Double]) {
        let stored = try PlanCheck.input(inputs, 0, "X")
        let x = ValueType(stored.elementType, try logicalShape(stored.shape))
        let rank = x.shape.count
        if rank == 0 { throw DeformRTError.invalidModel("X must have rank >= 1") }
        var given: [Double]?
        var sizes: [Int]?
        if legacy {
            if let attributeScales {
                given = attributeScales.map(Double.init)
            } else {
                given = try ResizeOperator.floats(try PlanCheck.input(inputs, 1, "scales"), "scales")
            }
        } else {
            if let s = PlanCheck.optionalInput(inputs, 2) {
                let v = try ResizeOperator.floats(s, "scales")
                if !v.isEmpty { given = v }
            }
            if let s = PlanCheck.optionalInput(inputs, 3) {
                let v = try PlanCheck.constantInts(s, "sizes")
                if !v.isEmpty { sizes = v }
            }
            if (given == nil) == (sizes == nil) {
                throw DeformRTError.invalidModel("exactly one of scales and sizes must be given (and non-empty)")
            }
        }
        let axisList = try (axes ?? Array(0..<rank)).map { try PlanCheck.axis($0, rank: rank) }
        if Set(axisList).count != axisList.count { throw DeformRTError.invalidModel("repeated axes \(axisList)") }
        let count = given?.count ?? sizes!.count
        if count != axisList.count {
            throw DeformRTError.invalidModel("\(given != nil ? "scales" : "sizes") has \(count) entries for \(axisList.count) axes (X has shape \(x.shape))")
        }
        var shape = x.shape
        var scales = [Double](repeating: 1, count: rank)
        for (i, a) in axisList.enumerated() {
            let dim = x.shape[a]
            if let given {
                let scale = given[i]
                if !(scale > 0) || !scale.isFinite { throw DeformRTError.invalidModel("scale \(scale) must be finite and positive") }
                if isUpsample && scale < 1 { throw DeformRTError.invalidModel("Upsample scale \(scale) must be >= 1") }
                let size = (scale * Double(dim)).rounded(.down)
                if !(size < Double(Limits.maxElements)) { throw DeformRTError.invalidModel("scale \(scale) makes axis \(a) too large") }
                shape[a] = Int(size)
                scales[a] = scale
            } else {
                let size = sizes![i]
                if size < 0 { throw DeformRTError.invalidModel("sizes \(sizes!) has a negative entry") }
                if dim == 0 && size > 0 { throw DeformRTError.invalidModel("axis \(a) is empty and cannot be resized to \(size)") }
                shape[a] = size
                scales[a] = dim == 0 ? 1 : Double(size) / Double(dim)
            }
        }
        if mode == .linear {
            for a in 0..<max(0, rank - 2) where scales[a] != 1 || shape[a] != x.shape[a] {
                throw DeformRTError.unsupported("linear resize of axis \(a) is not supported (only the last two axes; X has shape \(x.shape))")
            }
        }
        return (shape, scales)
    }

    private static func floats(_ value: PlanValue, _ name: String) throws -> [Double] {
        guard let constant = value.constant else {
            throw DeformRTError.unsupported("input \(name) must be computable from shapes and constants when planning; it depends on run-time data")
        }
        return try constant.floatValues().map(Double.init)
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let x = try PlanCheck.input(inputs, 0, "X")
        if mode == .linear { try PlanCheck.float(x, "X") }
        if x.elementType == .string { throw DeformRTError.unsupported("strings are not supported") }
        let shape = try geometry(inputs).shape
        return [PlanValue(ValueType(x.elementType, channelsLast ? [shape[0], shape[2], shape[3], shape[1]] : shape))]
    }

    func workspaceByteCount(_ inputs: [ValueType?], _ outputs: [ValueType], threads: Int) -> Int {
        let shape = outputs[0].shape
        if shape.contains(0) || mode == .nearest { return 0 }
        // Per thread: the two interpolated rows (of C channels-last).
        if channelsLast { return threads * 2 * shape[3] * MemoryLayout<Float>.size }
        return threads * ResizeKernels.linearScratchCount(outWidth: shape[shape.count - 1]) * MemoryLayout<Float>.size
    }

    /// What `run` reads, made once per plan: the index tables of every axis (nearest) or the taps
    /// of the output rows and columns (linear), in storage of their own, and the NCHW shapes.
    struct RunState {
        /// What the tables and taps point into.
        let storage: TensorStorage
        /// Nearest: one table per axis, in the order the axes are stored.
        let index: [UnsafePointer<Int>]
        let rows: LinearAxisTaps?
        let columns: LinearAxisTaps?
        let inShape: [Int]
        let outShape: [Int]
    }

    func runState(_ inputs: [PlanValue?], _ outputs: [ValueType], threads: Int) throws -> AnyObject? {
        let x = try PlanCheck.input(inputs, 0, "X")
        let (shape, scales) = try geometry(inputs)
        let inShape = try logicalShape(x.shape)
        let rank = shape.count
        switch mode {
        case .nearest:
            let tables = AxisIndexTables(shape) { d, o in
                nearestIndex(sourceCoordinate(o, inSize: inShape[d], outSize: shape[d], scale: scales[d]),
                             inSize: inShape[d], scale: scales[d])
            }
            // Channels-last: the same tables, in the stored order of the axes.
            let stored = channelsLast ? [0, 2, 3, 1] : Array(0..<rank)
            return Planned(RunState(storage: tables.storage, index: stored.map { tables.tables[$0] }, rows: nil,
                                    columns: nil, inShape: inShape, outShape: shape))
        case .linear:
            // Rows and columns: the last two axes (a 1-D row's height is not resized: nil).
            let rowAxis: Int? = rank >= 2 ? rank - 2 : nil, columnAxis = rank - 1
            let inHeight = rowAxis.map { inShape[$0] } ?? 1, outHeight = rowAxis.map { shape[$0] } ?? 1
            let storage = TensorStorage(zeroedByteCount: max(1, (outHeight + shape[columnAxis]) * 2
                                                              * (MemoryLayout<Int>.size + MemoryLayout<Float>.size)))
            var cursor = storage.bytes
            let rows = linearTaps(axis: rowAxis, inSize: inHeight, outSize: outHeight, scales: scales, cursor: &cursor)
            let columns = linearTaps(axis: columnAxis, inSize: inShape[columnAxis], outSize: shape[columnAxis],
                                     scales: scales, cursor: &cursor)
            return Planned(RunState(storage: storage, index: [], rows: rows, columns: columns, inShape: inShape,
                                    outShape: shape))
        }
    }

    /// Where output position `o` of an axis lies in the input's coordinates.
    private func sourceCoordinate(_ o: Int, inSize: Int, outSize: Int, scale: Double) -> Double {
        let x = Double(o)
        switch coordinates {
        case .halfPixel: return (x + 0.5) / scale - 0.5
        case .pytorchHalfPixel: return outSize > 1 ? (x + 0.5) / scale - 0.5 : 0
        case .alignCorners: return outSize > 1 ? x * Double(inSize - 1) / Double(outSize - 1) : 0
        case .asymmetric: return x / scale
        case .tfHalfPixelForNN: return (x + 0.5) / scale
        case .halfPixelSymmetric:
            let adjustment = Double(outSize) / (scale * Double(inSize))
            return Double(inSize) / 2 * (1 - adjustment) + (x + 0.5) / scale - 0.5
        }
    }

    /// `v` as an index in 0..<size (NaN gives 0).
    private static func clampedIndex(_ v: Double, _ size: Int) -> Int {
        v >= 0 ? (v < Double(size - 1) ? Int(v) : size - 1) : 0
    }

    private func nearestIndex(_ x: Double, inSize: Int, scale: Double) -> Int {
        let f = x.rounded(.down), r = x - f
        let index: Double
        switch rounding {
        case .roundPreferFloor: index = r > 0.5 ? f + 1 : f
        case .roundPreferCeil: index = r >= 0.5 ? f + 1 : f
        case .floor: index = f
        case .ceil: index = r > 0 ? f + 1 : f
        case .legacy: index = scale < 1 ? x.rounded(.up) : x.rounded(.towardZero)
        }
        return ResizeOperator.clampedIndex(index, inSize)
    }

    /// The taps of one axis in the workspace at `cursor` (which moves past them). An axis that is
    /// not resized (nil: the height of a 1-D row) reads itself.
    private func linearTaps(axis d: Int?, inSize: Int, outSize: Int, scales: [Double],
                            cursor: inout UnsafeMutableRawPointer) -> LinearAxisTaps {
        let lower = cursor.assumingMemoryBound(to: Int.self), upper = lower + outSize
        let lowerWeight = UnsafeMutableRawPointer(upper + outSize).assumingMemoryBound(to: Float.self)
        let upperWeight = lowerWeight + outSize
        cursor = UnsafeMutableRawPointer(upperWeight + outSize)
        for o in 0..<outSize {
            let c = d.map { sourceCoordinate(o, inSize: inSize, outSize: outSize, scale: scales[$0]) } ?? Double(o)
            let f = c.rounded(.down), r = c - f
            lower[o] = ResizeOperator.clampedIndex(f, inSize)
            upper[o] = ResizeOperator.clampedIndex(f + 1, inSize)
            lowerWeight[o] = Float(1 - r)
            upperWeight[o] = Float(r)
        }
        return LinearAxisTaps(lower: lower, upper: upper, lowerWeight: lowerWeight, upperWeight: upperWeight)
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let x = inputs[0]!, out = outputs[0]
        if out.elementCount == 0 { return }
        let state = try state(context, inputs, as: Planned<RunState>.self)!.value
        let inShape = state.inShape, shape = state.outShape
        switch mode {
        case .nearest:
            ResizeKernels.nearest(elementSize: x.elementType.byteSize, source: x.rawPointer, inShape: x.shape,
                                  destination: out.rawPointer, outShape: out.shape, index: state.index,
                                  parallel: context.parallel)
        case .linear where channelsLast:
            ResizeKernels.linearChannelsLast(
                source: x.floats, batch: inShape[0], inHeight: inShape[2], inWidth: inShape[3], channels: inShape[1],
                destination: out.floats, outHeight: shape[2], outWidth: shape[3], rows: state.rows!,
                columns: state.columns!, scratch: context.workspace.assumingMemoryBound(to: Float.self),
                parallel: context.parallel)
        case .linear:
            let rank = shape.count
            let inHeight = rank >= 2 ? inShape[rank - 2] : 1, outHeight = rank >= 2 ? shape[rank - 2] : 1
            let planes = inShape.dropLast(min(rank, 2)).reduce(1, *)
            ResizeKernels.linear(source: x.floats, planes: planes, inHeight: inHeight, inWidth: inShape[rank - 1],
                                 destination: out.floats, outHeight: outHeight, outWidth: shape[rank - 1],
                                 rows: state.rows!, columns: state.columns!,
                                 scratch: context.workspace.assumingMemoryBound(to: Float.self), parallel: context.parallel)
        }
    }
}
