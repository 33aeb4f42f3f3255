#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import DeformRTKernels
import Glibc
import ONNXProto
import SwiftProtobuf

/// Turns ONNX protobuf bytes into a `Graph`, checking every size against the data it describes.
public enum Importer {
    /// Parses `bytes`. `baseDirectory` is the model's folder (external data is read from it and
    /// must stay inside it); nil for models loaded from memory, which may not use external data.
    public static func importModel(bytes: [UInt8], baseDirectory: String?) throws -> Graph {
        try CPUDispatch.check()
        return try build(decode(bytes), baseDirectory: baseDirectory)
    }

    /// Reads a model file and imports it; external data is resolved next to it. The file's bytes
    /// are freed once decoded, and each initializer's protobuf payload once it is a tensor, so a
    /// load holds about two copies of the weights at its peak, not four.
    public static func importModel(path: String) throws -> Graph {
        try CPUDispatch.check()
        return try build(decode(FileAccess.readWholeFile(path)), baseDirectory: FileAccess.directory(of: path))
    }

    private static func decode(_ bytes: [UInt8]) throws -> Onnx_ModelProto {
        do {
            var options = BinaryDecodingOptions()
            options.messageDepthLimit = 64
            return try Onnx_ModelProto(serializedBytes: bytes, options: options)
        } catch {
            throw DeformRTError.invalidModel("not a valid ONNX model: protobuf decoding failed (\(error))")
        }
    }

    private static func build(_ proto: consuming Onnx_ModelProto, baseDirectory: String?) throws -> Graph {
        guard proto.hasGraph else { throw DeformRTError.invalidModel("the model has no graph") }

        var opsets: [String: Int] = [:]
        for entry in proto.opsetImport {
            opsets[normalizedDomain(entry.domain)] = Int(clamping: entry.version)
        }
        if proto.opsetImport.isEmpty { opsets[""] = 1 }  // IR v2 models imply the default domain
        if !proto.functions.isEmpty {
            // Model-local functions would need inlining; only refuse if a node actually uses one.
        }
        var builder = GraphBuilder(baseDirectory: baseDirectory, opsets: opsets,
                                   localFunctions: Set(proto.functions.map { "\(normalizedDomain($0.domain))::\($0.name)" }))
        var metadata = ModelMetadata()
        metadata.producerName = proto.producerName
        metadata.producerVersion = proto.producerVersion
        metadata.domain = proto.domain
        metadata.description = proto.docString
        // onnxruntime reports INT64_MAX (its kNoVersion) for a file without model_version.
        metadata.version = proto.hasModelVersion ? proto.modelVersion : Int64.max
        metadata.graphName = proto.graph.name
        metadata.graphDescription = proto.graph.docString
        // A key the file repeats keeps its first place and its last value, as onnxruntime reads it.
        var place: [String: Int] = [:]
        for entry in proto.metadataProps {
            if let index = place[entry.key] {
                metadata.custom[index].value = entry.value
            } else {
                place[entry.key] = metadata.custom.count
                metadata.custom.append((entry.key, entry.value))
            }
        }
        // The graph's only owner from here on, so that build can free initializers as it goes.
        var graph = proto.graph
        proto = Onnx_ModelProto()
        var built = try builder.build(&graph)
        built.metadata = metadata
        return built
    }

    static func normalizedDomain(_ domain: String) -> String {
        domain == "ai.onnx" ? "" : domain
    }
}

private struct GraphBuilder {
    let baseDirectory: String?
    let opsets: [String: Int]
    let localFunctions: Set<String>
    /// How many subgraphs this graph is nested in (0: the main graph).
    let depth: Int
    var valueIds: [String: Int] = [:]
    var valueNames: [String] = []

    init(baseDirectory: String?, opsets: [String: Int], localFunctions: Set<String>, depth: Int = 0) {
        self.baseDirectory = baseDirectory
        self.opsets = opsets
        self.localFunctions = localFunctions
        self.depth = depth
    }

    /// A subgraph and the names it reads from outer scopes (used, but not defined inside), in
    /// the order of first use.
    mutating func buildSubgraph(_ proto: inout Onnx_GraphProto) throws -> (Graph, [String]) {
        let graph = try build(&proto)
        var defined = Set(graph.inputs.map(\.id))
        defined.formUnion(graph.initializers.keys)
        for node in graph.nodes { defined.formUnion(node.outputs) }
        var free: [String] = []
        var seen = Set<Int>()
        let used = graph.nodes.flatMap { $0.inputs.compactMap { $0 } } + graph.outputs.map(\.id)
        for id in used where !defined.contains(id) && seen.insert(id).inserted { free.append(graph.valueNames[id]) }
        return (graph, free)
    }

    mutating func id(for name: String) -> Int {
        if let id = valueIds[name] { return id }
        let id = valueNames.count
        valueNames.append(name)
        valueIds[name] = id
        return id
    }

    mutating func build(_ graph: inout Onnx_GraphProto) throws -> Graph {
        if graph.node.count > Limits.maxNodes {
            throw DeformRTError.invalidModel("the graph has \(graph.node.count) nodes, more than the limit of \(Limits.maxNodes)")
        }
        var initializers: [Int: Tensor] = [:]
        for index in graph.initializer.indices {
            // Taken out of the graph: its payload is freed at the end of this iteration.
            var proto = Onnx_TensorProto()
            swap(&proto, &graph.initializer[index])
            if proto.name.isEmpty { throw DeformRTError.invalidModel("an initializer has no name") }
            let tensor = try TensorDecoder.decode(proto, baseDirectory: baseDirectory, what: "initializer '\(proto.name)'")
            let id = id(for: proto.name)
            if initializers[id] != nil {
                throw DeformRTError.invalidModel("duplicate initializer name '\(proto.name)'")
            }
            initializers[id] = tensor
        }
        if !graph.sparseInitializer.isEmpty {
            throw DeformRTError.unsupported("sparse initializers are not supported")
        }

        var inputs: [ValueDeclaration] = []
        var seenInputs = Set<String>()
        for info in graph.input {
            if !seenInputs.insert(info.name).inserted {
                throw DeformRTError.invalidModel("duplicate graph input name '\(info.name)'")
            }
            let id = id(for: info.name)
            // Old exporters list initializers as inputs too; those are constants, not feeds.
            if initializers[id] != nil { continue }
            inputs.append(try declaration(info, id: id))
        }
        var outputs: [ValueDeclaration] = []
        for info in graph.output {
            outputs.append(try declaration(info, id: id(for: info.name)))
        }

        var nodes: [Node] = []
        nodes.reserveCapacity(graph.node.count)
        var anonymous = 0
        for (index, proto) in graph.node.enumerated() {
            let label = proto.name.isEmpty ? "#\(index) \(proto.opType)" : proto.name
            let domain = Importer.normalizedDomain(proto.domain)
            if localFunctions.contains("\(domain)::\(proto.opType)") {
                throw DeformRTError.unsupported("node \(label): model-local functions (\(proto.opType)) are not supported")
            }
            var nodeInputs: [Int?] = []
            for name in proto.input {
                nodeInputs.append(name.isEmpty ? nil : id(for: name))
            }
            var nodeOutputs: [Int] = []
            for name in proto.output {
                if name.isEmpty {
                    anonymous += 1
                    nodeOutputs.append(id(for: "\u{1}unnamed output \(anonymous) of \(label)"))
                } else {
                    nodeOutputs.append(id(for: name))
                }
            }
            var attributes: [String: AttributeValue] = [:]
            var subgraphs: [(name: String, graph: Graph, outer: [String])] = []
            for attribute in proto.attribute {
                if attributes[attribute.name] != nil || subgraphs.contains(where: { $0.name == attribute.name }) {
                    throw DeformRTError.invalidModel("node \(label): duplicate attribute '\(attribute.name)'")
                }
                if attribute.type == .graph && attribute.refAttrName.isEmpty {
                    if depth >= Limits.maxSubgraphDepth {
                        throw DeformRTError.invalidModel("node \(label): subgraphs are nested more than \(Limits.maxSubgraphDepth) levels deep")
                    }
                    var builder = GraphBuilder(baseDirectory: baseDirectory, opsets: opsets, localFunctions: localFunctions,
                                               depth: depth + 1)
                    var body = attribute.g
                    do {
                        let (graph, outer) = try builder.buildSubgraph(&body)
                        subgraphs.append((attribute.name, graph, outer))
                    } catch let error as DeformRTError {
                        throw DeformRTError(error.code, "node \(label): subgraph '\(attribute.name)': \(error.message)")
                    }
                    continue
                }
                attributes[attribute.name] = try decodeAttribute(attribute, node: label)
            }
            // Outer-scope values the subgraphs read become the node's last inputs and every
            // subgraph's last inputs, in one order, so the node's producer order and the liveness
            // of those values see them.
            var implicit: [String] = []
            for subgraph in subgraphs {
                for name in subgraph.outer where !implicit.contains(name) { implicit.append(name) }
            }
            for var subgraph in subgraphs {
                for name in implicit {
                    let id: Int
                    if let known = subgraph.graph.valueNames.firstIndex(of: name) {
                        id = known
                    } else {
                        id = subgraph.graph.valueNames.count
                        subgraph.graph.valueNames.append(name)
                    }
                    subgraph.graph.inputs.append(ValueDeclaration(name: name, id: id, elementType: nil, shape: nil))
                }
                subgraph.graph.implicitInputCount = implicit.count
                attributes[subgraph.name] = .graph(subgraph.graph)
            }
            for name in implicit { nodeInputs.append(id(for: name)) }
            nodes.append(Node(name: proto.name, opType: proto.opType, domain: domain, inputs: nodeInputs,
                              outputs: nodeOutputs, attributes: attributes, label: label, implicitInputCount: implicit.count))
        }
        return Graph(valueNames: valueNames, nodes: nodes, inputs: inputs, outputs: outputs,
                     initializers: initializers, opsets: opsets)
    }

    func declaration(_ info: Onnx_ValueInfoProto, id: Int) throws -> ValueDeclaration {
        if info.name.isEmpty { throw DeformRTError.invalidModel("a graph input or output has no name") }
        var elementType: ElementType?
        var shape: [Int]?
        var dimNames: [String] = []
        if info.hasType {
            guard case .tensorType(let tensorType)? = info.type.value else {
                throw DeformRTError.unsupported("value '\(info.name)': only tensor types are supported (not sequences, maps or optionals)")
            }
            if tensorType.elemType != 0 {
                guard let type = ElementType(rawValue: tensorType.elemType) else {
                    throw DeformRTError.unsupported("value '\(info.name)': element type \(tensorType.elemType) is not supported")
                }
                elementType = type
            }
            if tensorType.hasShape {
                if tensorType.shape.dim.count > Limits.maxRank {
                    throw DeformRTError.invalidModel("value '\(info.name)': rank \(tensorType.shape.dim.count) exceeds the limit of \(Limits.maxRank)")
                }
                shape = tensorType.shape.dim.map { dim in
                    if case .dimValue(let v)? = dim.value, v >= 0, v <= Int64(Limits.maxElements) { return Int(v) }
                    return -1
                }
                dimNames = tensorType.shape.dim.map { dim in
                    if case .dimParam(let name)? = dim.value { return name }
                    return ""
                }
            }
        }
        return ValueDeclaration(name: info.name, id: id, elementType: elementType, shape: shape, dimNames: dimNames)
    }

    func decodeAttribute(_ attribute: Onnx_AttributeProto, node: String) throws -> AttributeValue {
        let what = "node \(node): attribute '\(attribute.name)'"
        if !attribute.refAttrName.isEmpty {
            throw DeformRTError.unsupported("\(what) refers to a function attribute, which is not supported")
        }
        func checkCount(_ n: Int) throws {
            if n > Limits.maxAttributeValues { throw DeformRTError.invalidModel("\(what) has too many values") }
        }
        switch attribute.type {
        case .float: return .float(attribute.f)
        case .int: return .int(Int(attribute.i))
        case .string: return .string(String(decoding: attribute.s, as: UTF8.self))
        case .tensor:
            return .tensor(try TensorDecoder.decode(attribute.t, baseDirectory: baseDirectory, what: what))
        case .floats: try checkCount(attribute.floats.count); return .floats(attribute.floats)
        case .ints: try checkCount(attribute.ints.count); return .ints(attribute.ints.map { Int($0) })
        case .strings:
            try checkCount(attribute.strings.count)
            return .strings(attribute.strings.map { String(decoding: $0, as: UTF8.self) })
        case .tensors:
            try checkCount(attribute.tensors.count)
            return .tensors(try attribute.tensors.map { try TensorDecoder.decode($0, baseDirectory: baseDirectory, what: what) })
        case .graph:
            throw DeformRTError.unsupported("\(what) is a subgraph given by reference, which is not supported")
        case .graphs:
            throw DeformRTError.unsupported("\(what) is a list of subgraphs, which is not supported")
        case .sparseTensor, .sparseTensors:
            throw DeformRTError.unsupported("\(what) is a sparse tensor, which is not supported")
        case .typeProto, .typeProtos:
            throw DeformRTError.unsupported("\(what) is a type attribute, which is not supported")
        case .undefined:
            // Producers that predate the type field set exactly one value field; infer it.
            if attribute.hasF { return .float(attribute.f) }
            if attribute.hasI { return .int(Int(attribute.i)) }
            if attribute.hasS { return .string(String(decoding: attribute.s, as: UTF8.self)) }
            if attribute.hasT { return .tensor(try TensorDecoder.decode(attribute.t, baseDirectory: baseDirectory, what: what)) }
            if !attribute.ints.isEmpty { return .ints(attribute.ints.map { Int($0) }) }
            if !attribute.floats.isEmpty { return .floats(attribute.floats) }
            if !attribute.strings.isEmpty { return .strings(attribute.strings.map { String(decoding: $0, as: UTF8.self) }) }
            throw DeformRTError.invalidModel("\(what) has no type and no value")
        }
    }
}

/// Decodes TensorProto payloads: raw_data, the typed repeated fields, or external data.
enum TensorDecoder {
    static func decode(_ proto: Onnx_TensorProto, baseDirectory: String?, what: String) throws -> Tensor {
        guard let type = ElementType(rawValue: proto.dataType) else {
            throw DeformRTError.unsupported("\(what): element type \(proto.dataType) is not supported")
        }
        if type == .string {
            throw DeformRTError.unsupported("\(what): string tensors are not supported")
        }
        if proto.hasSegment { throw DeformRTError.unsupported("\(what): segmented tensors are not supported") }
        if proto.dims.count > Limits.maxRank {
            throw DeformRTError.invalidModel("\(what): rank \(proto.dims.count) exceeds the limit of \(Limits.maxRank)")
        }
        var shape: [Int] = []
        for dim in proto.dims {
            if dim < 0 || dim > Int64(Limits.maxElements) {
                throw DeformRTError.invalidModel("\(what): invalid dimension \(dim)")
            }
            shape.append(Int(dim))
        }
        let count = try Limits.elementCount(shape, what: what)
        let byteCount = try Limits.byteCount(count, elementSize: type.byteSize, what: what)

        if proto.dataLocation == .external {
            let bytes = try ExternalData.read(proto.externalData, baseDirectory: baseDirectory, expectedLength: byteCount, what: what)
            let storage = bytes.withUnsafeBytes { TensorStorage(copying: $0.baseAddress, byteCount: byteCount) }
            return Tensor(elementType: type, shape: shape, storage: storage)
        }
        if proto.hasRawData {
            let raw = proto.rawData
            if raw.count != byteCount {
                throw DeformRTError.invalidModel("\(what): raw_data holds \(raw.count) bytes but shape \(shape) of \(type.onnxName) needs \(byteCount)")
            }
            return Tensor(elementType: type, shape: shape, storage: RawDataStorage.storage(for: raw, byteCount: byteCount))
        }
        func checkCount(_ n: Int, _ field: String) throws {
            if n != count {
                throw DeformRTError.invalidModel("\(what): \(field) holds \(n) values but shape \(shape) needs \(count)")
            }
        }
        // The count is checked before allocating: dims may promise terabytes that no field holds.
        switch type {
        case .float: try checkCount(proto.floatData.count, "float_data")
        case .double: try checkCount(proto.doubleData.count, "double_data")
        case .int64: try checkCount(proto.int64Data.count, "int64_data")
        case .uint32, .uint64: try checkCount(proto.uint64Data.count, "uint64_data")
        case .int32, .int16, .int8, .uint16, .uint8, .bool, .float16: try checkCount(proto.int32Data.count, "int32_data")
        case .string: break  // refused above
        }
        let storage = TensorStorage(zeroedByteCount: byteCount)
        let out = storage.bytes
        func copy(_ source: UnsafeRawBufferPointer) {
            if let base = source.baseAddress, byteCount > 0 { out.copyMemory(from: base, byteCount: byteCount) }
        }
        switch type {
        case .float: proto.floatData.withUnsafeBytes(copy)
        case .double: proto.doubleData.withUnsafeBytes(copy)
        case .int64: proto.int64Data.withUnsafeBytes(copy)
        case .uint32, .uint64:
            for (i, v) in proto.uint64Data.enumerated() {
                if type == .uint32 { out.storeBytes(of: UInt32(truncatingIfNeeded: v), toByteOffset: i * 4, as: UInt32.self) }
                else { out.storeBytes(of: v, toByteOffset: i * 8, as: UInt64.self) }
            }
        case .int32, .int16, .int8, .uint16, .uint8, .bool, .float16:
            // These types travel in int32_data, one element (or float16 bit pattern) per entry.
            for (i, v) in proto.int32Data.enumerated() {
                switch type {
                case .int32: out.storeBytes(of: v, toByteOffset: i * 4, as: Int32.self)
                case .int16: out.storeBytes(of: Int16(truncatingIfNeeded: v), toByteOffset: i * 2, as: Int16.self)
                case .uint16, .float16: out.storeBytes(of: UInt16(truncatingIfNeeded: v), toByteOffset: i * 2, as: UInt16.self)
                case .int8: out.storeBytes(of: Int8(truncatingIfNeeded: v), toByteOffset: i, as: Int8.self)
                case .bool: out.storeBytes(of: UInt8(v != 0 ? 1 : 0), toByteOffset: i, as: UInt8.self)
                default: out.storeBytes(of: UInt8(truncatingIfNeeded: v), toByteOffset: i, as: UInt8.self)
                }
            }
        case .string:
            break  // refused above
        }
        return Tensor(elementType: type, shape: shape, storage: storage)
    }
}

/// External tensor data: files next to the model, never outside its folder.
enum ExternalData {
    static func read(_ entries: [Onnx_StringStringEntryProto], baseDirectory: String?, expectedLength: Int,
                     what: String) throws -> [UInt8] {
        guard let baseDirectory else {
            throw DeformRTError.invalidModel("\(what) uses external data, which needs the model to be loaded from a file")
        }
        var location: String?
        var offset = 0
        var length: Int?
        for entry in entries {
            switch entry.key {
            case "location": location = entry.value
            case "offset":
                guard let v = Int(entry.value), v >= 0 else {
                    throw DeformRTError.invalidModel("\(what): external data offset '\(entry.value)' is not a valid number")
                }
                offset = v
            case "length":
                guard let v = Int(entry.value), v >= 0 else {
                    throw DeformRTError.invalidModel("\(what): external data length '\(entry.value)' is not a valid number")
                }
                length = v
            case "checksum": break
            default: break
            }
        }
        guard let location, !location.isEmpty else {
            throw DeformRTError.invalidModel("\(what): external data has no location")
        }
        let path = try FileAccess.resolveInside(baseDirectory: baseDirectory, relativePath: location, what: what)
        if let length, length != expectedLength {
            throw DeformRTError.invalidModel("\(what): external data length \(length) does not match the \(expectedLength) bytes its shape needs")
        }
        return try FileAccess.readRange(path, offset: offset, length: expectedLength, what: what)
    }
}

/// File reading without Foundation, with the containment checks external data needs.
enum FileAccess {
    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        let dir = String(path[..<slash])
        return dir.isEmpty ? "/" : dir
    }

    static func errnoText() -> String { String(cString: strerror(errno)) }

    static func readWholeFile(_ path: String) throws -> [UInt8] {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw DeformRTError(.io, "cannot open '\(path)': \(errnoText())")
        }
        if (info.st_mode & S_IFMT) == S_IFDIR {
            throw DeformRTError(.io, "cannot read '\(path)': it is a directory")
        }
        return try readRange(path, offset: 0, length: nil, what: "model file")
    }

    /// Reads `length` bytes at `offset` (the rest of the file when nil), refusing ranges past its end.
    static func readRange(_ path: String, offset: Int, length: Int?, what: String) throws -> [UInt8] {
        guard let file = fopen(path, "rb") else {
            throw DeformRTError(.io, "\(what): cannot open '\(path)': \(errnoText())")
        }
        defer { fclose(file) }
        guard fseeko(file, 0, SEEK_END) == 0 else { throw DeformRTError(.io, "\(what): cannot seek '\(path)'") }
        let size = Int(ftello(file))
        if size < 0 { throw DeformRTError(.io, "\(what): cannot size '\(path)'") }
        let (end, overflow) = offset.addingReportingOverflow(length ?? max(0, size - offset))
        if overflow || offset > size || end > size {
            throw DeformRTError.invalidModel("\(what): range \(offset)..<\(end) lies outside '\(path)' (\(size) bytes)")
        }
        let count = end - offset
        guard fseeko(file, off_t(offset), SEEK_SET) == 0 else { throw DeformRTError(.io, "\(what): cannot seek '\(path)'") }
        var read = 0
        let bytes = [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            read = count == 0 ? 0 : fread(buffer.baseAddress, 1, count, file)
            initialized = read
        }
        if read != count { throw DeformRTError(.io, "\(what): short read from '\(path)'") }
        return bytes
    }

    /// Resolves `relativePath` against `baseDirectory`, following symlinks, and refuses anything
    /// that ends up outside the directory (absolute paths, "..", links pointing out).
    static func resolveInside(baseDirectory: String, relativePath: String, what: String) throws -> String {
        if relativePath.hasPrefix("/") || relativePath.contains("\\") || relativePath.utf8.contains(0) {
            throw DeformRTError.invalidModel("\(what): external data location '\(relativePath)' must be a relative path inside the model's folder")
        }
        let parts = relativePath.split(separator: "/", omittingEmptySubsequences: true)
        if parts.contains("..") || parts.isEmpty {
            throw DeformRTError.invalidModel("\(what): external data location '\(relativePath)' leaves the model's folder")
        }
        guard let base = realPath(baseDirectory) else {
            throw DeformRTError(.io, "\(what): cannot resolve the model's folder '\(baseDirectory)'")
        }
        let joined = base + "/" + parts.joined(separator: "/")
        guard let resolved = realPath(joined) else {
            throw DeformRTError(.io, "\(what): cannot open external data '\(relativePath)': \(errnoText())")
        }
        let prefix = base.hasSuffix("/") ? base : base + "/"
        if !resolved.hasPrefix(prefix) {
            throw DeformRTError.invalidModel("\(what): external data location '\(relativePath)' resolves outside the model's folder")
        }
        var info = stat()
        if stat(resolved, &info) != 0 || (info.st_mode & S_IFMT) != S_IFREG {
            throw DeformRTError.invalidModel("\(what): external data '\(relativePath)' is not a regular file")
        }
        return resolved
    }

    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}

/// A large raw_data payload becomes the tensor's memory without a copy: the tensor keeps the
/// decoded Data alive (nothing else holds it once the importer has taken the initializer out of
/// the graph, and nothing mutates it, so its bytes stay where they are). Small payloads (which
/// Data may store inline, inside the value) and misaligned ones are copied.
private final class RawDataStorage {
    let data: Data
    init(_ data: Data) { self.data = data }

    static let minimumBorrowedBytes = 4096

    static func storage(for raw: Data, byteCount: Int) -> TensorStorage {
        if byteCount >= minimumBorrowedBytes {
            let owner = RawDataStorage(raw)
            let base = owner.data.withUnsafeBytes { $0.baseAddress }
            if let base, UInt(bitPattern: base) % 16 == 0 {
                return TensorStorage(borrowing: UnsafeMutableRawPointer(mutating: base), byteCount: byteCount, keepAlive: owner)
            }
        }
        return raw.withUnsafeBytes { TensorStorage(copying: $0.baseAddress, byteCount: byteCount) }
    }
}
