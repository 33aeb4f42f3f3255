#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import CDeformRT
import DeformRTCore
import DeformRTKernels

/// Every failure: `code` mirrors the C API's drt_status, `message` says what went wrong.
public typealias DeformRTError = DeformRTCore.DeformRTError
/// Element types, numbered as ONNX's TensorProto.DataType.
public typealias ElementType = DeformRTCore.ElementType

/// How far a session rewrites the graph before planning (onnxruntime's levels; default `.all`).
public typealias GraphOptimizationLevel = DeformRTCore.GraphOptimizationLevel

/// One timed node run, or a whole run when `node` is nil.
public typealias ProfileEvent = DeformRTCore.ProfileEvent

/// What the model file says about itself (producer, graph name, domain, description, version,
/// custom metadata), as onnxruntime's ModelMetadata.
public typealias ModelMetadata = DeformRTCore.ModelMetadata

/// Options for runs (onnxruntime's RunOptions): setting `terminate` from any thread stops every
/// run using them before its next node, with DeformRTError code `.cancelled`. It stays set until
/// set back to false. One instance may serve any number of concurrent runs.
public final class RunOptions: Sendable {
    let termination = RunTermination()

    public init() {}

    public var terminate: Bool {
        get { termination.isRequested }
        set { termination.set(newValue) }
    }
}

/// An operator supplied by the program: nodes of (domain, opType) in models whose opset for the
/// domain (1 if the model does not import it) is in `opsets` run `compute`. The ONNX domain,
/// ai.deformrt and names DeformRT runs itself are refused. Node attributes are not passed.
/// `outputTypes` is called when a plan is made, `compute` on the thread calling `Session.run`
/// (one call at a time per session; sessions may call it concurrently), and possibly once while
/// planning when all the node's inputs are constants.
public struct CustomOperator: Sendable {
    let definition: CustomOperatorDefinition

    /// - Parameters:
    ///   - outputTypes: the outputs' element types and shapes for the inputs' (nil: an omitted
    ///     optional input) and the node's number of outputs.
    ///   - compute: reads the inputs and writes every element of each output.
    public init(domain: String, opType: String, opsets: ClosedRange<Int> = 1...Int.max,
                outputTypes: @escaping @Sendable (_ inputs: [(elementType: ElementType, shape: [Int])?], _ outputCount: Int) throws
                    -> [(elementType: ElementType, shape: [Int])],
                compute: @escaping @Sendable (_ inputs: [Tensor?], _ outputs: [CustomOperatorOutput]) throws -> Void) throws {
        definition = try CustomOperatorDefinition(
            domain: domain, opType: opType, opsets: opsets,
            outputTypes: { inputs, count in
                try outputTypes(inputs.map { $0.map { (elementType: $0.elementType, shape: $0.shape) } }, count)
                    .map { ValueType($0.elementType, $0.shape) }
            },
            compute: { inputs, outputs in
                try compute(inputs.map { $0.map(Tensor.init) }, outputs.map(CustomOperatorOutput.init))
            })
    }
}

/// An output of a custom operator: memory the operator writes in place (valid during `compute`).
public struct CustomOperatorOutput {
    fileprivate let core: DeformRTCore.Tensor
    public var shape: [Int] { core.shape }
    public var elementType: ElementType { core.elementType }

    public func withUnsafeMutableBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeMutableRawBufferPointer(start: core.rawPointer, count: core.byteCount))
    }
}

/// The instruction-set tier this code was compiled for and the widest the CPU supports
/// (README, "How the library is built").
public typealias CPUTier = DeformRTKernels.CPUTier

/// The library version, as the C API's drt_version() reports it: the header's DRT_VERSION_*
/// macros, the one place the version is kept (the Python package reads them too).
public let deformRTVersion = "\(DRT_VERSION_MAJOR).\(DRT_VERSION_MINOR).\(DRT_VERSION_PATCH)"

/// A graph input or output as the model declares it.
public struct ValueInfo: Sendable, Equatable {
    public let name: String
    /// nil when the model does not declare it.
    public let elementType: ElementType?
    /// -1 marks a dynamic dim; nil when the model declares no shape.
    public let shape: [Int]?
}

/// A loaded ONNX model: immutable, shareable by any number of sessions and threads.
public final class Model: Sendable {
    let graph: Graph

    /// Loads a model file; external data is read from the file's folder and must stay inside it.
    public convenience init(contentsOf url: URL) throws {
        guard url.isFileURL else { throw DeformRTError(.invalidArgument, "only file URLs can be loaded, got \(url)") }
        try self.init(path: url.path)
    }

    /// Loads a model file; external data is read from the file's folder and must stay inside it.
    public init(path: String) throws {
        graph = try Importer.importModel(path: path)
    }

    /// Loads a model from serialized ONNX bytes (external data is not allowed).
    public init(bytes: [UInt8]) throws {
        graph = try Importer.importModel(bytes: bytes, baseDirectory: nil)
    }

    public var inputs: [ValueInfo] { graph.inputs.map(ValueInfo.init) }
    public var outputs: [ValueInfo] { graph.outputs.map(ValueInfo.init) }

    /// The model's own description of itself.
    public var metadata: ModelMetadata { graph.metadata }
}

/// A deformable convolution of a model and its sampling geometry (`Model.deformableLayers()`).
public typealias DeformableLayer = DeformRTCore.DeformableLayer

extension Model {
    /// The model's deformable convolutions, in graph order, with the names of their input,
    /// offset and mask values (ask a session for those as `extraOutputs` to read them).
    public func deformableLayers() throws -> [DeformableLayer] { try graph.deformableLayers() }
}

/// A model rewritten into standard ONNX: what `Model.standardONNX()` returns.
public struct StandardONNXModel: Sendable {
    /// The serialized model.
    public let bytes: [UInt8]
    /// The deformable nodes rewritten as ONNX DeformConv.
    public let rewrittenNodes: [String]
    /// The ai.onnx opset before the rewrite (after it: at least 19, DeformConv's).
    public let opsetBefore: Int
}

extension Model {
    /// The model with every mmcv / mmdeploy deformable convolution rewritten as the standard ONNX
    /// DeformConv (opset 19; an older model's other nodes are moved to opset 19 too), so that it
    /// runs in other runtimes. Throws for OpenVINO's DeformableConv2D (its border rule differs)
    /// and for nodes whose opset change is not known.
    public func standardONNX() throws -> StandardONNXModel {
        let result = try StandardONNXConversion.convert(graph)
        return StandardONNXModel(bytes: try Exporter.serialize(result.graph, graphName: "converted"),
                                 rewrittenNodes: result.rewritten, opsetBefore: result.opsetBefore)
    }
}

extension ValueInfo {
    init(_ declaration: ValueDeclaration) {
        self.init(name: declaration.name, elementType: declaration.elementType, shape: declaration.shape)
    }
}

/// Runs a model. Calls to `run` on one session are serialised; use one session per thread for
/// parallel runs (sessions share the model).
public final class Session: @unchecked Sendable {
    public let model: Model
    private let core: SessionCore

    /// - Parameters:
    ///   - threads: threads one run may use (default: the number of cores).
    ///   - memoryLimit: cap on the tensor bytes a plan may hold (default 16 GiB).
    ///   - graphOptimizationLevel: which graph passes run first (default: all).
    ///   - profileFilePrefix: per-node profiling on (see `endProfiling`); nil (default) is off.
    ///   - extraOutputs: intermediate values (by name) `run` may also return when named; the graph
    ///     passes keep them.
    ///   - customOperators: operators the model uses that DeformRT does not have.
    public init(model: Model, threads: Int? = nil, memoryLimit: UInt64? = nil,
                graphOptimizationLevel: GraphOptimizationLevel = .all, profileFilePrefix: String? = nil,
                extraOutputs: [String] = [], customOperators: [CustomOperator] = []) throws {
        if let threads, threads < 1 || threads > 256 {
            throw DeformRTError(.invalidArgument, "threads must be between 1 and 256, got \(threads)")
        }
        if let profileFilePrefix, profileFilePrefix.isEmpty {
            throw DeformRTError(.invalidArgument, "profileFilePrefix must not be empty (nil turns profiling off)")
        }
        self.model = model
        core = try SessionCore(graph: model.graph, options: SessionOptions(threads: threads, memoryLimit: memoryLimit,
                                                                        graphOptimizationLevel: graphOptimizationLevel,
                                                                        profileFilePrefix: profileFilePrefix,
                                                                        extraOutputs: extraOutputs,
                                                                        customOperators: customOperators.map(\.definition)))
    }

    /// Writes the profile recorded so far as a Chrome-trace JSON file
    /// ("<prefix>_<date>_<time>.json") and stops profiling; returns its path, or "" when the
    /// session does not profile.
    public func endProfiling() throws -> String { try core.endProfiling() }

    /// The profile events recorded so far, in the order they ended (node runs, then their run).
    public var profileEvents: [ProfileEvent] { core.profileEvents }

    /// The graph this session runs, after its passes.
    public var optimizedGraph: OptimizedGraph { OptimizedGraph(core.graph) }

    /// Runs the model on `feeds` (one per graph input) and returns the outputs named in
    /// `outputs` (the model's or the session's extra outputs), or the model's, by name.
    /// `options.terminate` set from another thread stops the run (`.cancelled`).
    public func run(_ feeds: [String: Tensor], outputs: [String]? = nil, options: RunOptions? = nil) throws -> [String: Tensor] {
        let names = outputs ?? model.graph.outputs.map(\.name)
        let results = try core.run(feeds: feeds.map { ($0.key, $0.value.core) }, outputNames: names,
                                   termination: options?.termination)
        var byName: [String: Tensor] = [:]
        for (name, tensor) in zip(names, results) { byName[name] = Tensor(tensor) }
        return byName
    }
}

/// A dense row-major tensor with value semantics (copy-on-write).
public struct Tensor: @unchecked Sendable {
    fileprivate var core: DeformRTCore.Tensor

    fileprivate init(_ core: DeformRTCore.Tensor) { self.core = core }

    /// A float32 tensor; `scalars.count` must equal the product of `shape`.
    public init(shape: [Int], scalars: [Float]) throws {
        self = try scalars.withUnsafeBytes { try Tensor(shape: shape, elementType: .float, count: scalars.count, bytes: $0) }
    }

    /// An int64 tensor; `scalars.count` must equal the product of `shape`.
    public init(shape: [Int], int64s: [Int64]) throws {
        self = try int64s.withUnsafeBytes { try Tensor(shape: shape, elementType: .int64, count: int64s.count, bytes: $0) }
    }

    /// A tensor of any element type from raw little-endian bytes.
    public init(shape: [Int], elementType: ElementType, bytes: [UInt8]) throws {
        let size = elementType.byteSize
        guard size > 0 else { throw DeformRTError(.invalidArgument, "\(elementType.onnxName) tensors are not supported") }
        guard bytes.count % size == 0 else {
            throw DeformRTError(.invalidArgument, "\(bytes.count) bytes is not a whole number of \(elementType.onnxName) elements")
        }
        self = try bytes.withUnsafeBytes { try Tensor(shape: shape, elementType: elementType, count: bytes.count / size, bytes: $0) }
    }

    /// Copies `count` elements from `bytes`, which is only read during the call.
    private init(shape: [Int], elementType: ElementType, count: Int, bytes buffer: UnsafeRawBufferPointer) throws {
        let expected = try Limits.elementCount(shape, what: "tensor shape")
        guard expected == count else {
            throw DeformRTError(.invalidArgument, "shape \(shape) needs \(expected) elements, got \(count)")
        }
        core = DeformRTCore.Tensor(elementType: elementType, shape: shape,
                                   storage: TensorStorage(copying: buffer.baseAddress, byteCount: count * elementType.byteSize))
    }

    public var shape: [Int] { core.shape }
    public var elementType: ElementType { core.elementType }
    public var elementCount: Int { core.elementCount }

    /// The elements of a float32 tensor.
    public var scalars: [Float] {
        get throws {
            guard core.elementType == .float else {
                throw DeformRTError(.invalidArgument, "tensor is \(core.elementType.onnxName), not float")
            }
            return Array(UnsafeBufferPointer(start: core.floats, count: core.elementCount))
        }
    }

    /// The elements of an int64 tensor.
    public var int64s: [Int64] {
        get throws {
            guard core.elementType == .int64 else {
                throw DeformRTError(.invalidArgument, "tensor is \(core.elementType.onnxName), not int64")
            }
            return Array(UnsafeBufferPointer(start: core.pointer(Int64.self), count: core.elementCount))
        }
    }

    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: core.rawPointer, count: core.byteCount))
    }

    public mutating func withUnsafeMutableBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        if !isKnownUniquelyReferenced(&core.storage) { core = core.copy() }
        return try body(UnsafeMutableRawBufferPointer(start: core.rawPointer, count: core.byteCount))
    }
}

/// What `deformrt info` shows about a model.
public struct ModelSummary: Sendable {
    public let opsets: [(domain: String, version: Int)]
    public let operatorCounts: [(domain: String, opType: String, count: Int)]
    public let parameterCount: Int
    public let initializerCount: Int
}

extension Model {
    public var summary: ModelSummary {
        var counts: [String: (String, String, Int)] = [:]
        for node in graph.nodes {
            let key = node.domain + "::" + node.opType
            counts[key, default: (node.domain, node.opType, 0)].2 += 1
        }
        let sorted = counts.values.sorted { $0.2 != $1.2 ? $0.2 > $1.2 : $0.1 < $1.1 }.map { (domain: $0.0, opType: $0.1, count: $0.2) }
        return ModelSummary(
            opsets: graph.opsets.sorted { $0.key < $1.key }.map { (domain: $0.key, version: $0.value) },
            operatorCounts: sorted,
            parameterCount: graph.initializers.values.reduce(0) { $0 + $1.elementCount },
            initializerCount: graph.initializers.count)
    }
}

/// A session's graph after the passes: its nodes in file order, and the graph as ONNX bytes.
public struct OptimizedGraph: @unchecked Sendable {
    public struct Node: Sendable {
        public let name: String
        public let domain: String
        public let opType: String
        public let inputs: [String]
        public let outputs: [String]
        /// The model's nodes this one stands for (itself, and what the passes fused into it).
        public let fusedNodes: [String]
    }

    private let graph: Graph
    init(_ graph: Graph) { self.graph = graph }

    public var nodes: [Node] {
        graph.nodes.map { node in
            var fused = [node.name]
            if case .strings(let names)? = node.attributes["fused_nodes"] { fused = names }
            return Node(name: node.name, domain: node.domain, opType: node.opType,
                        inputs: node.inputs.map { $0.map { graph.valueNames[$0] } ?? "" },
                        outputs: node.outputs.map { graph.valueNames[$0] }, fusedNodes: fused)
        }
    }

    public var initializerCount: Int { graph.initializers.count }

    /// The graph as an ONNX model (fused nodes in the ai.deformrt domain).
    public func serializedONNX() throws -> [UInt8] { try Exporter.serialize(graph) }
}
