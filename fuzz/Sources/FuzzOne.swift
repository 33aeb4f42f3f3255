import CDeformRT

/// One fuzz input through the C API as an embedding program uses it: load the bytes as a model,
/// make a session, and run it once on zero-filled inputs. Every call must return a status;
/// anything else (a trap, an out-of-bounds access, a leak) is a bug the fuzzer reports.
enum FuzzOne {
    /// Caps that keep one input cheap: a session may plan at most this many bytes, and inputs
    /// larger than `maxInputElements` are not fed (the model is still loaded and planned).
    static let memoryLimit: UInt64 = 256 << 20
    static let maxInputElements = 1 << 20

    static func run(_ data: UnsafeRawPointer?, _ size: Int) {
        var model: OpaquePointer?
        guard drt_model_load_memory(data, size, &model) == DRT_OK, let model else { return }
        defer { drt_model_free(model) }
        readMetadata(model)

        var options: OpaquePointer?
        guard drt_session_options_create(&options) == DRT_OK else { fatalError("options: \(lastError())") }
        defer { drt_session_options_free(options) }
        check(drt_session_options_set_threads(options, 1), "set_threads")
        check(drt_session_options_set_memory_limit(options, memoryLimit), "set_memory_limit")
        var session: OpaquePointer?
        guard drt_session_create(model, options, &session) == DRT_OK, let session else { return }
        defer { drt_session_free(session) }

        var inputCount = 0
        check(drt_model_input_count(model, &inputCount), "input_count")
        var names: [UnsafePointer<CChar>?] = []
        var tensors: [OpaquePointer?] = []
        defer { tensors.forEach { drt_tensor_free($0) } }
        for index in 0..<inputCount {
            var name: UnsafePointer<CChar>?
            check(drt_model_input_name(model, index, &name), "input_name")
            guard let tensor = zeroTensor(model, index, seed: size) else { return }
            names.append(name)
            tensors.append(tensor)
        }
        var outputCount = 0
        check(drt_model_output_count(model, &outputCount), "output_count")
        var outputs = [OpaquePointer?](repeating: nil, count: outputCount)
        let status = names.withUnsafeBufferPointer { namePointers in
            tensors.withUnsafeBufferPointer { tensorPointers in
                outputs.withUnsafeMutableBufferPointer { out in
                    drt_session_run(session, namePointers.baseAddress, tensorPointers.baseAddress, inputCount,
                                    nil, outputCount, out.baseAddress)
                }
            }
        }
        if status == DRT_OK {
            for output in outputs {
                var byteSize = 0
                check(drt_tensor_byte_size(output, &byteSize), "byte_size")
                drt_tensor_free(output)
            }
        }
    }

    /// Reads every piece of metadata the header offers, as a binding would.
    static func readMetadata(_ model: OpaquePointer) {
        for output in [false, true] {
            var count = 0
            check(output ? drt_model_output_count(model, &count) : drt_model_input_count(model, &count), "count")
            for index in 0..<count {
                var name: UnsafePointer<CChar>?
                var type: Int32 = 0
                var rank = 0
                check(output ? drt_model_output_name(model, index, &name) : drt_model_input_name(model, index, &name), "name")
                check(output ? drt_model_output_element_type(model, index, &type) : drt_model_input_element_type(model, index, &type), "type")
                var dims = [Int64](repeating: 0, count: 64)
                check(output ? drt_model_output_shape(model, index, &dims, dims.count, &rank)
                             : drt_model_input_shape(model, index, &dims, dims.count, &rank), "shape")
                for axis in 0..<rank {
                    var dimName: UnsafePointer<CChar>?
                    check(output ? drt_model_output_dim_name(model, index, axis, &dimName)
                                 : drt_model_input_dim_name(model, index, axis, &dimName), "dim_name")
                }
            }
        }
        var text: UnsafePointer<CChar>?
        check(drt_model_producer_name(model, &text), "producer_name")
        check(drt_model_producer_version(model, &text), "producer_version")
        check(drt_model_domain(model, &text), "domain")
        check(drt_model_description(model, &text), "description")
        check(drt_model_graph_name(model, &text), "graph_name")
        check(drt_model_graph_description(model, &text), "graph_description")
        var version: Int64 = 0
        check(drt_model_version(model, &version), "version")
        var count = 0
        check(drt_model_metadata_count(model, &count), "metadata_count")
        for index in 0..<count {
            var key: UnsafePointer<CChar>?
            check(drt_model_metadata_key(model, index, &key), "metadata_key")
            check(drt_model_metadata_lookup(model, key, &text), "metadata_lookup")
        }
    }

    /// A zero-filled tensor for input `index`: its declared type (float if none) and shape, each
    /// dynamic dim a small size (1...4). nil when the input is too large or of a type that cannot
    /// be fed.
    static func zeroTensor(_ model: OpaquePointer, _ index: Int, seed: Int) -> OpaquePointer? {
        var type: Int32 = 0
        check(drt_model_input_element_type(model, index, &type), "input_element_type")
        if type == DRT_TYPE_UNDEFINED.rawValue { type = Int32(DRT_TYPE_FLOAT.rawValue) }
        var rank = 0
        var dims = [Int64](repeating: 0, count: 64)
        check(drt_model_input_shape(model, index, &dims, dims.count, &rank), "input_shape")
        var elements = 1
        for axis in 0..<rank {
            if dims[axis] < 0 { dims[axis] = Int64(1 + (seed + index + axis) % 4) }
            let (product, overflow) = elements.multipliedReportingOverflow(by: Int(dims[axis]))
            if overflow || product > maxInputElements { return nil }
            elements = product
        }
        let elementSize: Int
        switch UInt32(bitPattern: type) {
        case DRT_TYPE_UINT8.rawValue, DRT_TYPE_INT8.rawValue, DRT_TYPE_BOOL.rawValue: elementSize = 1
        case DRT_TYPE_UINT16.rawValue, DRT_TYPE_INT16.rawValue, DRT_TYPE_FLOAT16.rawValue: elementSize = 2
        case DRT_TYPE_FLOAT.rawValue, DRT_TYPE_INT32.rawValue, DRT_TYPE_UINT32.rawValue: elementSize = 4
        case DRT_TYPE_INT64.rawValue, DRT_TYPE_DOUBLE.rawValue, DRT_TYPE_UINT64.rawValue: elementSize = 8
        default: return nil
        }
        let bytes = [UInt8](repeating: 0, count: elements * elementSize)
        var tensor: OpaquePointer?
        let status = bytes.withUnsafeBytes { raw in
            dims.withUnsafeBufferPointer { drt_tensor_create(type, $0.baseAddress, rank, raw.baseAddress, raw.count, &tensor) }
        }
        check(status, "tensor_create")
        return tensor
    }

    static func lastError() -> String { String(cString: drt_last_error_message()) }

    /// Calls that cannot fail on a loaded model: a failure here is itself a bug.
    static func check(_ status: drt_status, _ call: String) {
        if status != DRT_OK { fatalError("drt_\(call) failed unexpectedly: \(lastError())") }
    }
}

/// libFuzzer's entry point. -sanitize=fuzzer links libFuzzer whole, whose own main refers to it;
/// Main.swift drives the same function through LLVMFuzzerRunDriver.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    FuzzOne.run(data, size)
    return 0
}
