import CDeformRT
import DeformRTCore
import Glibc

/// What a drt_model handle holds: the imported graph and C copies of the names it hands out.
final class ModelHandle {
    let graph: Graph
    let inputNames: [UnsafeMutablePointer<CChar>]
    let outputNames: [UnsafeMutablePointer<CChar>]
    /// C copies of the metadata strings, made on first use (most callers never ask).
    private var metadataStrings: [String: UnsafeMutablePointer<CChar>] = [:]
    private let lock = RegistryLock()

    init(graph: Graph) {
        self.graph = graph
        inputNames = graph.inputs.map { strdup($0.name)! }
        outputNames = graph.outputs.map { strdup($0.name)! }
    }

    /// A C copy of `value` kept under `key` for the model's life (the same pointer every call).
    func cString(_ key: String, _ value: String) -> UnsafePointer<CChar> {
        lock.locked {
            if let existing = metadataStrings[key] { return UnsafePointer(existing) }
            let copy = strdup(value)!
            metadataStrings[key] = copy
            return UnsafePointer(copy)
        }
    }

    deinit {
        inputNames.forEach { free($0) }
        outputNames.forEach { free($0) }
        metadataStrings.values.forEach { free($0) }
    }
}

@_cdecl("drt_model_load_file")
public func drt_model_load_file(_ path: UnsafePointer<CChar>?, _ outModel: UnsafeMutablePointer<OpaquePointer?>?) -> drt_status {
    guarded {
        let function = "drt_model_load_file"
        let path = try string(path, "path", in: function)
        let out = try required(outModel, "out_model", in: function)
        let graph = try Importer.importModel(path: path)
        out.pointee = HandleRegistry.register(ModelHandle(graph: graph))
    }
}

@_cdecl("drt_model_load_memory")
public func drt_model_load_memory(_ data: UnsafeRawPointer?, _ size: Int, _ outModel: UnsafeMutablePointer<OpaquePointer?>?) -> drt_status {
    guarded {
        let function = "drt_model_load_memory"
        let data = try required(data, "data", in: function)
        let out = try required(outModel, "out_model", in: function)
        if size <= 0 { throw invalid("\(function): size is 0") }
        let bytes = [UInt8](UnsafeRawBufferPointer(start: data, count: size))
        let graph = try Importer.importModel(bytes: bytes, baseDirectory: nil)
        out.pointee = HandleRegistry.register(ModelHandle(graph: graph))
    }
}

@_cdecl("drt_model_free")
public func drt_model_free(_ model: OpaquePointer?) {
    HandleRegistry.release(model, as: ModelHandle.self)
}

@_cdecl("drt_model_input_count")
public func drt_model_input_count(_ model: OpaquePointer?, _ outCount: UnsafeMutablePointer<Int>?) -> drt_status {
    guarded {
        let m = try object(model, ModelHandle.self, "model", in: "drt_model_input_count")
        try required(outCount, "out_count", in: "drt_model_input_count").pointee = m.graph.inputs.count
    }
}

@_cdecl("drt_model_output_count")
public func drt_model_output_count(_ model: OpaquePointer?, _ outCount: UnsafeMutablePointer<Int>?) -> drt_status {
    guarded {
        let m = try object(model, ModelHandle.self, "model", in: "drt_model_output_count")
        try required(outCount, "out_count", in: "drt_model_output_count").pointee = m.graph.outputs.count
    }
}

/// The declaration of input or output `index`, checked.
private func declaration(_ model: OpaquePointer?, _ index: Int, output: Bool, in function: String) throws -> (ModelHandle, ValueDeclaration) {
    let m = try object(model, ModelHandle.self, "model", in: function)
    let list = output ? m.graph.outputs : m.graph.inputs
    guard index >= 0, index < list.count else {
        throw invalid("\(function): index \(index) is out of range (the model has \(list.count) \(output ? "outputs" : "inputs"))")
    }
    return (m, list[index])
}

private func name(_ model: OpaquePointer?, _ index: Int, _ outName: UnsafeMutablePointer<UnsafePointer<CChar>?>?, output: Bool, function: String) -> drt_status {
    guarded {
        let (m, _) = try declaration(model, index, output: output, in: function)
        let out = try required(outName, "out_name", in: function)
        out.pointee = UnsafePointer(output ? m.outputNames[index] : m.inputNames[index])
    }
}

private func elementType(_ model: OpaquePointer?, _ index: Int, _ outType: UnsafeMutablePointer<Int32>?, output: Bool, function: String) -> drt_status {
    guarded {
        let (_, d) = try declaration(model, index, output: output, in: function)
        try required(outType, "out_type", in: function).pointee = d.elementType?.rawValue ?? 0
    }
}

private func shape(_ model: OpaquePointer?, _ index: Int, _ outDims: UnsafeMutablePointer<Int64>?, _ capacity: Int,
                   _ outRank: UnsafeMutablePointer<Int>?, output: Bool, function: String) -> drt_status {
    guarded {
        let (_, d) = try declaration(model, index, output: output, in: function)
        try writeShape(d.shape ?? [], outDims, capacity, outRank, function: function)
    }
}

/// Reports `dims` through the caller-buffer convention: rank always, dims if they fit.
func writeShape(_ dims: [Int], _ outDims: UnsafeMutablePointer<Int64>?, _ capacity: Int, _ outRank: UnsafeMutablePointer<Int>?,
                function: String) throws {
    let rankPointer = try required(outRank, "out_rank", in: function)
    rankPointer.pointee = dims.count
    if dims.isEmpty { return }
    if capacity < dims.count {
        throw DeformRTError(.bufferTooSmall, "\(function): the shape has \(dims.count) dims but capacity is \(capacity)")
    }
    let out = try required(outDims, "out_dims", in: function)
    for (i, d) in dims.enumerated() { out[i] = Int64(d) }
}

@_cdecl("drt_model_input_name")
public func drt_model_input_name(_ model: OpaquePointer?, _ index: Int, _ outName: UnsafeMutablePointer<UnsafePointer<CChar>?>?) -> drt_status {
    name(model, index, outName, output: false, function: "drt_model_input_name")
}

@_cdecl("drt_model_output_name")
public func drt_model_output_name(_ model: OpaquePointer?, _ index: Int, _ outName: UnsafeMutablePointer<UnsafePointer<CChar>?>?) -> drt_status {
    name(model, index, outName, output: true, function: "drt_model_output_name")
}

@_cdecl("drt_model_input_element_type")
public func drt_model_input_element_type(_ model: OpaquePointer?, _ index: Int, _ outType: UnsafeMutablePointer<Int32>?) -> drt_status {
    elementType(model, index, outType, output: false, function: "drt_model_input_element_type")
}

@_cdecl("drt_model_output_element_type")
public func drt_model_output_element_type(_ model: OpaquePointer?, _ index: Int, _ outType: UnsafeMutablePointer<Int32>?) -> drt_status {
    elementType(model, index, outType, output: true, function: "drt_model_output_element_type")
}

@_cdecl("drt_model_input_shape")
public func drt_model_input_shape(_ model: OpaquePointer?, _ index: Int, _ outDims: UnsafeMutablePointer<Int64>?, _ capacity: Int,
                                  _ outRank: UnsafeMutablePointer<Int>?) -> drt_status {
    shape(model, index, outDims, capacity, outRank, output: false, function: "drt_model_input_shape")
}

@_cdecl("drt_model_output_shape")
public func drt_model_output_shape(_ model: OpaquePointer?, _ index: Int, _ outDims: UnsafeMutablePointer<Int64>?, _ capacity: Int,
                                   _ outRank: UnsafeMutablePointer<Int>?) -> drt_status {
    shape(model, index, outDims, capacity, outRank, output: true, function: "drt_model_output_shape")
}

// ---- Metadata (appended) ----

private func metadataString(_ model: OpaquePointer?, _ outValue: UnsafeMutablePointer<UnsafePointer<CChar>?>?,
                            function: String, _ field: (ModelMetadata) -> String) -> drt_status {
    guarded {
        let m = try object(model, ModelHandle.self, "model", in: function)
        let out = try required(outValue, "out_value", in: function)
        out.pointee = m.cString(function, field(m.graph.metadata))
    }
}

@_cdecl("drt_model_producer_name")
public func drt_model_producer_name(_ model: OpaquePointer?, _ outValue: UnsafeMutablePointer<UnsafePointer<CChar>?>?) -> drt_status {
    metadataString(model, outValue, function: "drt_model_producer_name") { $0.producerName }
}

@_cdecl("drt_model_producer_version")
public func drt_model_producer_version(_ model: OpaquePointer?, _ outValue: UnsafeMutablePointer<UnsafePointer<CChar>?>?) -> drt_status {
    metadataString(model, outValue, function: "drt_model_producer_version") { $0.producerVersion }
}

@_cdecl("drt_model_domain")
public func drt_model_domain(_ model: OpaquePointer?, _ outValue: UnsafeMutablePointer<UnsafePointer<CChar>?>?) -> drt_status {
    metadataString(model, outValue, function: "drt_model_domain") { $0.domain }
}

@_cdecl("drt_model_description")
public func drt_model_description(_ model: OpaquePointer?, _ outValue: UnsafeMutablePointer<UnsafePointer<CChar>?>?) -> drt_status {
    metadataString(model, outValue, function: "drt_model_description") { $0.description }
}

@_cdecl("drt_model_graph_name")
public func drt_model_graph_name(_ model: OpaquePointer?, _ outValue: UnsafeMutablePointer<UnsafePointer<CChar>?>?) -> drt_status {
    metadataString(model, outValue, function: "drt_model_graph_name") { $0.graphName }
}

@_cdecl("drt_model_graph_description")
public func drt_model_graph_description(_ model: OpaquePointer?, _ outValue: UnsafeMutablePointer<UnsafePointer<CChar>?>?) -> drt_status {
    metadataString(model, outValue, function: "drt_model_graph_description") { $0.graphDescription }
}

@_cdecl("drt_model_version")
public func drt_model_version(_ model: OpaquePointer?, _ outVersion: UnsafeMutablePointer<Int64>?) -> drt_status {
    guarded {
        let m = try object(model, ModelHandle.self, "model", in: "drt_model_version")
        try required(outVersion, "out_version", in: "drt_model_version").pointee = m.graph.metadata.version
    }
}

@_cdecl("drt_model_metadata_count")
public func drt_model_metadata_count(_ model: OpaquePointer?, _ outCount: UnsafeMutablePointer<Int>?) -> drt_status {
    guarded {
        let m = try object(model, ModelHandle.self, "model", in: "drt_model_metadata_count")
        try required(outCount, "out_count", in: "drt_model_metadata_count").pointee = m.graph.metadata.custom.count
    }
}

@_cdecl("drt_model_metadata_key")
public func drt_model_metadata_key(_ model: OpaquePointer?, _ index: Int, _ outKey: UnsafeMutablePointer<UnsafePointer<CChar>?>?) -> drt_status {
    guarded {
        let function = "drt_model_metadata_key"
        let m = try object(model, ModelHandle.self, "model", in: function)
        let custom = m.graph.metadata.custom
        guard index >= 0, index < custom.count else {
            throw invalid("\(function): index \(index) is out of range (the model has \(custom.count) metadata entries)")
        }
        let out = try required(outKey, "out_key", in: function)
        out.pointee = m.cString("key\u{0}\(custom[index].key)", custom[index].key)
    }
}

@_cdecl("drt_model_metadata_lookup")
public func drt_model_metadata_lookup(_ model: OpaquePointer?, _ key: UnsafePointer<CChar>?,
                                      _ outValue: UnsafeMutablePointer<UnsafePointer<CChar>?>?) -> drt_status {
    guarded {
        let function = "drt_model_metadata_lookup"
        let m = try object(model, ModelHandle.self, "model", in: function)
        let key = try string(key, "key", in: function)
        let out = try required(outValue, "out_value", in: function)
        guard let value = m.graph.metadata.value(forKey: key) else {
            let known = m.graph.metadata.custom.map { "'\($0.key)'" }
            throw invalid("\(function): the model has no metadata key '\(key)' (its keys: \(known.isEmpty ? "none" : known.joined(separator: ", ")))")
        }
        out.pointee = m.cString("value\u{0}\(key)", value)
    }
}

private func dimName(_ model: OpaquePointer?, _ index: Int, _ axis: Int, _ outName: UnsafeMutablePointer<UnsafePointer<CChar>?>?,
                     output: Bool, function: String) -> drt_status {
    guarded {
        let (m, d) = try declaration(model, index, output: output, in: function)
        let rank = d.shape?.count ?? 0
        guard axis >= 0, axis < rank else {
            throw invalid("\(function): axis \(axis) is out of range (\(output ? "output" : "input") '\(d.name)' declares rank \(rank))")
        }
        let out = try required(outName, "out_name", in: function)
        let name = axis < d.dimNames.count ? d.dimNames[axis] : ""
        out.pointee = m.cString("dim\u{0}\(output)\u{0}\(index)\u{0}\(axis)", name)
    }
}

@_cdecl("drt_model_input_dim_name")
public func drt_model_input_dim_name(_ model: OpaquePointer?, _ index: Int, _ axis: Int,
                                     _ outName: UnsafeMutablePointer<UnsafePointer<CChar>?>?) -> drt_status {
    dimName(model, index, axis, outName, output: false, function: "drt_model_input_dim_name")
}

@_cdecl("drt_model_output_dim_name")
public func drt_model_output_dim_name(_ model: OpaquePointer?, _ index: Int, _ axis: Int,
                                      _ outName: UnsafeMutablePointer<UnsafePointer<CChar>?>?) -> drt_status {
    dimName(model, index, axis, outName, output: true, function: "drt_model_output_dim_name")
}
