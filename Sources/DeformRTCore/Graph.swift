/// An attribute value of a node, as ONNX defines them (subgraphs are refused at import).
public enum AttributeValue: Sendable {
    case float(Float)
    case int(Int)
    case string(String)
    case tensor(Tensor)
    case floats([Float])
    case ints([Int])
    case strings([String])
    case tensors([Tensor])
    /// A subgraph (If's branches, Loop's body), with its outer-scope values as implicit inputs.
    indirect case graph(Graph)
}

/// One operator application. Inputs and outputs are value ids; `nil` is an omitted optional input
/// (an empty name in ONNX). Outputs with empty names are given private names at import.
public struct Node: Sendable {
    public var name: String
    public var opType: String
    /// "" for the default ONNX domain ("ai.onnx" is normalised to "").
    public var domain: String
    public var inputs: [Int?]
    public var outputs: [Int]
    public var attributes: [String: AttributeValue]

    /// "Name" (or "#index op_type" when the node has no name), for error messages.
    public var label: String
    /// The last this many inputs are outer-scope values its subgraphs read (If, Loop): the
    /// subgraphs' implicit inputs, in the same order.
    public var implicitInputCount: Int = 0
}

extension Node {
    /// `body`'s result; a DeformRTError it throws is prefixed with this node's label and op type.
    func naming<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as DeformRTError {
            throw DeformRTError(error.code, "node \(label) (\(opType)): \(error.message)")
        }
    }
}

/// Declared information about a graph input or output.
public struct ValueDeclaration: Sendable {
    public var name: String
    public var id: Int
    /// nil when the model does not declare the element type.
    public var elementType: ElementType?
    /// nil when the model declares no shape; -1 for a dynamic dim.
    public var shape: [Int]?
    /// The symbolic name (ONNX dim_param) of each dim of `shape`, "" where the dim is fixed or
    /// unnamed; empty when the model declares no shape.
    public var dimNames: [String] = []
}

/// What the model file says about itself (ModelProto and GraphProto fields), as onnxruntime's
/// ModelMetadata: read-only, for the caller; nothing here changes how the model runs.
public struct ModelMetadata: Sendable, Equatable {
    public var producerName = ""
    public var producerVersion = ""
    public var domain = ""
    /// ModelProto.doc_string.
    public var description = ""
    public var graphName = ""
    /// GraphProto.doc_string.
    public var graphDescription = ""
    /// ModelProto.model_version; Int64.max when the file does not set it (onnxruntime's kNoVersion).
    public var version: Int64 = .max
    /// ModelProto.metadata_props in file order, each key once (a repeated key keeps its last value).
    public var custom: [(key: String, value: String)] = []

    public init() {}

    public func value(forKey key: String) -> String? { custom.first { $0.key == key }?.value }

    public static func == (a: ModelMetadata, b: ModelMetadata) -> Bool {
        a.producerName == b.producerName && a.producerVersion == b.producerVersion && a.domain == b.domain
            && a.description == b.description && a.graphName == b.graphName
            && a.graphDescription == b.graphDescription && a.version == b.version
            && a.custom.elementsEqual(b.custom) { $0.key == $1.key && $0.value == $1.value }
    }
}

/// A model's main graph after import: values are numbered, names resolved.
public struct Graph: Sendable {
    /// Value names, indexed by value id.
    public var valueNames: [String]
    public var nodes: [Node]
    public var inputs: [ValueDeclaration]
    public var outputs: [ValueDeclaration]
    /// Initializers and Constant-free constants, by value id.
    public var initializers: [Int: Tensor]
    /// Opset version per domain ("" for ai.onnx).
    public var opsets: [String: Int]
    /// The model's self-description (not used to run it; kept through the passes).
    public var metadata = ModelMetadata()
    /// For a subgraph: its last this many inputs are outer-scope values it reads (by name in
    /// ONNX), fed by its node's implicit inputs.
    public var implicitInputCount: Int = 0

    public func opset(for domain: String) -> Int? { opsets[domain] }
}

extension AttributeValue {
    var typeName: String {
        switch self {
        case .float: return "float"
        case .int: return "int"
        case .string: return "string"
        case .tensor: return "tensor"
        case .floats: return "floats"
        case .ints: return "ints"
        case .strings: return "strings"
        case .tensors: return "tensors"
        case .graph: return "graph"
        }
    }
}

/// Typed attribute access with errors that name the node.
public struct Attributes {
    let node: Node

    init(_ node: Node) { self.node = node }

    func has(_ name: String) -> Bool { node.attributes[name] != nil }

    private func wrongType(_ name: String, _ expected: String, _ got: AttributeValue) -> DeformRTError {
        .invalidModel("node \(node.label) (\(node.opType)): attribute '\(name)' must be \(expected), got \(got.typeName)")
    }

    func int(_ name: String) throws -> Int? {
        guard let value = node.attributes[name] else { return nil }
        switch value {
        case .int(let v): return v
        default: throw wrongType(name, "an int", value)
        }
    }

    func int(_ name: String, default fallback: Int) throws -> Int { try int(name) ?? fallback }

    func float(_ name: String) throws -> Float? {
        guard let value = node.attributes[name] else { return nil }
        switch value {
        case .float(let v): return v
        case .int(let v): return Float(v)
        default: throw wrongType(name, "a float", value)
        }
    }

    func float(_ name: String, default fallback: Float) throws -> Float { try float(name) ?? fallback }

    func ints(_ name: String) throws -> [Int]? {
        guard let value = node.attributes[name] else { return nil }
        switch value {
        case .ints(let v): return v
        case .int(let v): return [v]
        default: throw wrongType(name, "a list of ints", value)
        }
    }

    func floats(_ name: String) throws -> [Float]? {
        guard let value = node.attributes[name] else { return nil }
        switch value {
        case .floats(let v): return v
        case .float(let v): return [v]
        default: throw wrongType(name, "a list of floats", value)
        }
    }

    func string(_ name: String) throws -> String? {
        guard let value = node.attributes[name] else { return nil }
        switch value {
        case .string(let v): return v
        default: throw wrongType(name, "a string", value)
        }
    }

    func graph(_ name: String) throws -> Graph? {
        guard let value = node.attributes[name] else { return nil }
        switch value {
        case .graph(let v): return v
        default: throw wrongType(name, "a graph", value)
        }
    }

    func tensor(_ name: String) throws -> Tensor? {
        guard let value = node.attributes[name] else { return nil }
        switch value {
        case .tensor(let v): return v
        default: throw wrongType(name, "a tensor", value)
        }
    }
}
