/// Tensor element types, numbered as ONNX's TensorProto.DataType.
public enum ElementType: Int32, Sendable, CaseIterable {
    case float = 1
    case uint8 = 2
    case int8 = 3
    case uint16 = 4
    case int16 = 5
    case int32 = 6
    case int64 = 7
    case string = 8
    case bool = 9
    case float16 = 10
    case double = 11
    case uint32 = 12
    case uint64 = 13

    /// Bytes per element; strings have no fixed size and are never stored in a tensor.
    public var byteSize: Int {
        switch self {
        case .bool, .int8, .uint8: return 1
        case .int16, .uint16, .float16: return 2
        case .float, .int32, .uint32: return 4
        case .double, .int64, .uint64: return 8
        case .string: return 0
        }
    }

    /// The ONNX spelling, as in "tensor(float)".
    public var onnxName: String {
        switch self {
        case .float: return "float"
        case .uint8: return "uint8"
        case .int8: return "int8"
        case .uint16: return "uint16"
        case .int16: return "int16"
        case .int32: return "int32"
        case .int64: return "int64"
        case .string: return "string"
        case .bool: return "bool"
        case .float16: return "float16"
        case .double: return "double"
        case .uint32: return "uint32"
        case .uint64: return "uint64"
        }
    }
}
