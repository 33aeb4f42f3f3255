import DeformRTKernels

/// Cast between the numeric types (float <-> int saturates; NaN -> 0 for integer targets).
final class CastOperator: Operator {
    let to: ElementType
    init(_ spec: OperatorSpec) throws {
        guard let code = try spec.attributes.int("to") else { throw spec.fail("missing attribute 'to'") }
        guard let type = ElementType(rawValue: Int32(clamping: code)), type != .string else {
            throw DeformRTError.unsupported("node \(spec.node.label) (Cast): target type \(code) is not supported")
        }
        to = type
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let x = try PlanCheck.input(inputs, 0, "input")
        if x.elementType == .string { throw DeformRTError.unsupported("casting strings is not supported") }
        return [PlanValue(ValueType(to, x.shape))]
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        let x = inputs[0]!, y = outputs[0]
        if castsDirectly(x, y, context.parallel) { return }
        let n = x.elementCount
        for i in 0..<n { Scalar.store(Scalar.load(x, i), y, i) }
    }

    /// The casts exporters write on whole feature maps (bool masks to float, float <-> int64 /
    /// int32, float <-> double / float16), as typed threaded loops that give what Scalar's
    /// element-by-element path gives (the tests compare the two through onnx's cases and
    /// onnxruntime). False: the pair takes the general path. Each case is its own loop: a
    /// conversion passed as a closure would be called per element.
    private func castsDirectly(_ x: Tensor, _ y: Tensor, _ parallel: Parallel) -> Bool {
        let n = x.elementCount, from = x.elementType, to = y.elementType
        let source = x.rawPointer, destination = y.rawPointer
        switch (from, to) {
        case (.float, .float), (.bool, .float), (.uint8, .float), (.int32, .float), (.int64, .float), (.float, .int64),
             (.float, .int32), (.float, .bool), (.int64, .int32), (.int32, .int64), (.float, .double), (.double, .float),
             (.float, .float16), (.float16, .float):
            break
        default:
            return false
        }
        parallel.forEachRange((n + 4095) / 4096, totalWork: n) { _, blocks in
            let range = (blocks.lowerBound * 4096)..<min(n, blocks.upperBound * 4096)
            func pair<S, D>(_: S.Type, _: D.Type) -> (UnsafePointer<S>, UnsafeMutablePointer<D>) {
                (UnsafePointer(source.assumingMemoryBound(to: S.self)), destination.assumingMemoryBound(to: D.self))
            }
            switch (from, to) {
            case (.float, .float):
                let (s, d) = pair(Float.self, Float.self); for i in range { d[i] = s[i] }
            case (.bool, .float), (.uint8, .float):
                let (s, d) = pair(UInt8.self, Float.self); for i in range { d[i] = Float(s[i]) }
            case (.int32, .float):
                let (s, d) = pair(Int32.self, Float.self); for i in range { d[i] = Float(s[i]) }
            case (.int64, .float):
                let (s, d) = pair(Int64.self, Float.self); for i in range { d[i] = Float(s[i]) }
            case (.float, .int64):
                let (s, d) = pair(Float.self, Int64.self); for i in range { d[i] = Scalar.truncated(Double(s[i])) }
            case (.float, .int32):
                let (s, d) = pair(Float.self, Int32.self)
                for i in range { d[i] = Int32(truncatingIfNeeded: Scalar.truncated(Double(s[i]))) }
            case (.float, .bool):
                let (s, d) = pair(Float.self, UInt8.self); for i in range { d[i] = s[i] != 0 ? 1 : 0 }
            case (.int64, .int32):
                let (s, d) = pair(Int64.self, Int32.self); for i in range { d[i] = Int32(truncatingIfNeeded: s[i]) }
            case (.int32, .int64):
                let (s, d) = pair(Int32.self, Int64.self); for i in range { d[i] = Int64(s[i]) }
            case (.float, .double):
                let (s, d) = pair(Float.self, Double.self); for i in range { d[i] = Double(s[i]) }
            case (.double, .float):
                let (s, d) = pair(Double.self, Float.self); for i in range { d[i] = Float(s[i]) }
            case (.float, .float16):
                let (s, d) = pair(Float.self, Float16.self); for i in range { d[i] = Float16(s[i]) }
            default:
                let (s, d) = pair(Float16.self, Float.self); for i in range { d[i] = Float(s[i]) }
            }
        }
        return true
    }
}

/// One element of any numeric type, for the few operators that convert between types.
enum Scalar {
    case real(Double)
    case integer(Int64)
    case unsigned(UInt64)

    static func load(_ t: Tensor, _ i: Int) -> Scalar {
        let p = t.rawPointer
        switch t.elementType {
        case .float: return .real(Double(p.load(fromByteOffset: i * 4, as: Float.self)))
        case .double: return .real(p.load(fromByteOffset: i * 8, as: Double.self))
        case .float16: return .real(Double(p.load(fromByteOffset: i * 2, as: Float16.self)))
        case .int64: return .integer(p.load(fromByteOffset: i * 8, as: Int64.self))
        case .int32: return .integer(Int64(p.load(fromByteOffset: i * 4, as: Int32.self)))
        case .int16: return .integer(Int64(p.load(fromByteOffset: i * 2, as: Int16.self)))
        case .int8: return .integer(Int64(p.load(fromByteOffset: i, as: Int8.self)))
        case .uint8: return .integer(Int64(p.load(fromByteOffset: i, as: UInt8.self)))
        case .bool: return .integer(p.load(fromByteOffset: i, as: UInt8.self) != 0 ? 1 : 0)
        case .uint16: return .integer(Int64(p.load(fromByteOffset: i * 2, as: UInt16.self)))
        case .uint32: return .integer(Int64(p.load(fromByteOffset: i * 4, as: UInt32.self)))
        case .uint64: return .unsigned(p.load(fromByteOffset: i * 8, as: UInt64.self))
        case .string: return .integer(0)
        }
    }

    /// Integer value of a real, truncated toward zero and saturated; NaN gives 0.
    static func truncated(_ v: Double) -> Int64 {
        if v.isNaN { return 0 }
        if v >= 9.2233720368547758e18 { return .max }
        if v <= -9.2233720368547758e18 { return .min }
        return Int64(v)
    }

    /// The nearest `T`, rounded once: going through Double would round large integers twice.
    func rounded<T: BinaryFloatingPoint>(_: T.Type) -> T {
        switch self {
        case .real(let v): return T(v)
        case .integer(let v): return T(v)
        case .unsigned(let v): return T(v)
        }
    }

    static func store(_ s: Scalar, _ t: Tensor, _ i: Int) {
        let p = t.rawPointer
        let real: Double, integer: Int64
        switch s {
        case .real(let v): real = v; integer = truncated(v)
        case .integer(let v): real = Double(v); integer = v
        case .unsigned(let v): real = Double(v); integer = Int64(truncatingIfNeeded: v)
        }
        switch t.elementType {
        case .float: p.storeBytes(of: s.rounded(Float.self), toByteOffset: i * 4, as: Float.self)
        case .double: p.storeBytes(of: real, toByteOffset: i * 8, as: Double.self)
        case .float16: p.storeBytes(of: s.rounded(Float16.self), toByteOffset: i * 2, as: Float16.self)
        case .int64: p.storeBytes(of: integer, toByteOffset: i * 8, as: Int64.self)
        case .int32: p.storeBytes(of: Int32(truncatingIfNeeded: integer), toByteOffset: i * 4, as: Int32.self)
        case .int16: p.storeBytes(of: Int16(truncatingIfNeeded: integer), toByteOffset: i * 2, as: Int16.self)
        case .int8: p.storeBytes(of: Int8(truncatingIfNeeded: integer), toByteOffset: i, as: Int8.self)
        case .uint8: p.storeBytes(of: UInt8(truncatingIfNeeded: integer), toByteOffset: i, as: UInt8.self)
        case .bool:
            let nonzero: Bool
            if case .real(let v) = s { nonzero = v != 0 } else { nonzero = integer != 0 }
            p.storeBytes(of: UInt8(nonzero ? 1 : 0), toByteOffset: i, as: UInt8.self)
        case .uint16: p.storeBytes(of: UInt16(truncatingIfNeeded: integer), toByteOffset: i * 2, as: UInt16.self)
        case .uint32: p.storeBytes(of: UInt32(truncatingIfNeeded: integer), toByteOffset: i * 4, as: UInt32.self)
        case .uint64:
            if case .unsigned(let v) = s { p.storeBytes(of: v, toByteOffset: i * 8, as: UInt64.self) }
            else { p.storeBytes(of: UInt64(truncatingIfNeeded: integer), toByteOffset: i * 8, as: UInt64.self) }
        case .string: break
        }
    }
}
