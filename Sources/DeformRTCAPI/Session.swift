import CDeformRT
import DeformRTCore
import Glibc

final class SessionOptionsHandle {
    var options = SessionOptions()
}

/// A session keeps what it needs of its model (the optimised graph, the names it matches), not
/// the model itself: the caller may free them in any order, and freeing the model releases the
/// weights the graph passes replaced (BatchNormalization folded into convolutions).
final class SessionHandle {
    let inputNames: [UnsafeMutablePointer<CChar>]
    let outputNames: [UnsafeMutablePointer<CChar>]
    let core: SessionCore
    /// The last profile's path, handed out by drt_session_end_profiling; freed with the session.
    var profilePath: UnsafeMutablePointer<CChar>?

    deinit {
        free(profilePath)
        inputNames.forEach { free($0) }
        outputNames.forEach { free($0) }
    }

    init(core: SessionCore) {
        inputNames = core.graph.inputs.map { strdup($0.name)! }
        outputNames = core.graph.outputs.map { strdup($0.name)! }
        self.core = core
    }
}

@_cdecl("drt_session_options_create")
public func drt_session_options_create(_ outOptions: UnsafeMutablePointer<OpaquePointer?>?) -> drt_status {
    guarded {
        let out = try required(outOptions, "out_options", in: "drt_session_options_create")
        out.pointee = HandleRegistry.register(SessionOptionsHandle())
    }
}

@_cdecl("drt_session_options_set_threads")
public func drt_session_options_set_threads(_ options: OpaquePointer?, _ threads: Int32) -> drt_status {
    guarded {
        let function = "drt_session_options_set_threads"
        let o = try object(options, SessionOptionsHandle.self, "options", in: function)
        if threads < 0 || threads > 256 { throw invalid("\(function): threads must be 0..256, got \(threads)") }
        o.options.threads = threads == 0 ? SessionOptions.defaultThreads : Int(threads)
    }
}

@_cdecl("drt_session_options_set_memory_limit")
public func drt_session_options_set_memory_limit(_ options: OpaquePointer?, _ bytes: UInt64) -> drt_status {
    guarded {
        let o = try object(options, SessionOptionsHandle.self, "options", in: "drt_session_options_set_memory_limit")
        o.options.memoryLimit = bytes == 0 ? Limits.defaultMemoryLimit : bytes
    }
}

@_cdecl("drt_session_options_set_graph_optimization_level")
public func drt_session_options_set_graph_optimization_level(_ options: OpaquePointer?, _ level: Int32) -> drt_status {
    guarded {
        let function = "drt_session_options_set_graph_optimization_level"
        let o = try object(options, SessionOptionsHandle.self, "options", in: function)
        guard let value = GraphOptimizationLevel(rawValue: Int(level)) else {
            throw invalid("\(function): level must be 0 (disabled), 1 (basic), 2 (extended) or 99 (all), got \(level)")
        }
        o.options.graphOptimizationLevel = value
    }
}

@_cdecl("drt_session_options_set_profiling")
public func drt_session_options_set_profiling(_ options: OpaquePointer?, _ filePrefix: UnsafePointer<CChar>?) -> drt_status {
    guarded {
        let function = "drt_session_options_set_profiling"
        let o = try object(options, SessionOptionsHandle.self, "options", in: function)
        guard let filePrefix else { o.options.profileFilePrefix = nil; return }
        let prefix = String(cString: filePrefix)
        if prefix.isEmpty { throw invalid("\(function): file_prefix must not be empty (NULL turns profiling off)") }
        o.options.profileFilePrefix = prefix
    }
}

@_cdecl("drt_session_end_profiling")
public func drt_session_end_profiling(_ session: OpaquePointer?, _ outPath: UnsafeMutablePointer<UnsafePointer<CChar>?>?) -> drt_status {
    guarded {
        let function = "drt_session_end_profiling"
        let s = try object(session, SessionHandle.self, "session", in: function)
        let out = try required(outPath, "out_path", in: function)
        let path = try s.core.endProfiling()
        free(s.profilePath)
        s.profilePath = strdup(path)
        out.pointee = UnsafePointer(s.profilePath)
    }
}

@_cdecl("drt_session_options_free")
public func drt_session_options_free(_ options: OpaquePointer?) {
    HandleRegistry.release(options, as: SessionOptionsHandle.self)
}

@_cdecl("drt_session_create")
public func drt_session_create(_ model: OpaquePointer?, _ options: OpaquePointer?, _ outSession: UnsafeMutablePointer<OpaquePointer?>?) -> drt_status {
    guarded {
        let function = "drt_session_create"
        let m = try object(model, ModelHandle.self, "model", in: function)
        var sessionOptions = SessionOptions()
        if options != nil { sessionOptions = try object(options, SessionOptionsHandle.self, "options", in: function).options }
        let out = try required(outSession, "out_session", in: function)
        let core = try SessionCore(graph: m.graph, options: sessionOptions)
        out.pointee = HandleRegistry.register(SessionHandle(core: core))
    }
}

@_cdecl("drt_session_free")
public func drt_session_free(_ session: OpaquePointer?) {
    HandleRegistry.release(session, as: SessionHandle.self)
}

@_cdecl("drt_session_run")
public func drt_session_run(_ session: OpaquePointer?, _ inputNames: UnsafePointer<UnsafePointer<CChar>?>?,
                            _ inputs: UnsafePointer<OpaquePointer?>?, _ inputCount: Int,
                            _ outputNames: UnsafePointer<UnsafePointer<CChar>?>?, _ outputCount: Int,
                            _ outOutputs: UnsafeMutablePointer<OpaquePointer?>?) -> drt_status {
    guarded {
        try run(session, nil, inputNames, inputs, inputCount, outputNames, outputCount, outOutputs,
                callerTensors: false, function: "drt_session_run")
    }
}

@_cdecl("drt_session_run_with_options")
public func drt_session_run_with_options(_ session: OpaquePointer?, _ runOptions: OpaquePointer?,
                                         _ inputNames: UnsafePointer<UnsafePointer<CChar>?>?,
                                         _ inputs: UnsafePointer<OpaquePointer?>?, _ inputCount: Int,
                                         _ outputNames: UnsafePointer<UnsafePointer<CChar>?>?, _ outputCount: Int,
                                         _ outputs: UnsafeMutablePointer<OpaquePointer?>?) -> drt_status {
    guarded {
        try run(session, runOptions, inputNames, inputs, inputCount, outputNames, outputCount, outputs,
                callerTensors: true, function: "drt_session_run_with_options")
    }
}

/// The two run calls. With `callerTensors`, a non-NULL out[i] on entry is the caller's tensor to
/// write output i into; otherwise out is only written.
private func run(_ session: OpaquePointer?, _ runOptions: OpaquePointer?, _ inputNames: UnsafePointer<UnsafePointer<CChar>?>?,
                 _ inputs: UnsafePointer<OpaquePointer?>?, _ inputCount: Int,
                 _ outputNames: UnsafePointer<UnsafePointer<CChar>?>?, _ outputCount: Int,
                 _ outOutputs: UnsafeMutablePointer<OpaquePointer?>?, callerTensors: Bool, function: String) throws {
    let s = try object(session, SessionHandle.self, "session", in: function)
    let termination = runOptions == nil ? nil : try object(runOptions, RunOptionsHandle.self, "run_options", in: function).termination
    if inputCount < 0 || inputCount > 1 << 20 { throw invalid("\(function): input_count \(inputCount) is out of range") }
    let modelOutputs = s.core.modelOutputCount
    if outputNames != nil {
        if outputCount < 1 || outputCount > 1 << 20 { throw invalid("\(function): output_count \(outputCount) is out of range") }
    } else if outputCount != modelOutputs {
        throw invalid("\(function): output_names is NULL, so output_count must be the model's \(modelOutputs) outputs, got \(outputCount)")
    }
    let out = try required(outOutputs, "\(callerTensors ? "outputs" : "out_outputs")", in: function)
    let names = inputCount > 0 ? try required(inputNames, "input_names", in: function) : nil
    let tensors = inputCount > 0 ? try required(inputs, "inputs", in: function) : nil
    // Names are matched as C strings against the model's: no String is made on success.
    // Outputs are emitted only after every step has run, so a failure writes nothing to out.
    let anyCallerTensor = callerTensors && (0..<outputCount).contains { out[$0] != nil }
    try s.core.run(feedCount: inputCount, feed: { i in
            let name = try required(names![i], "input_names[\(i)]", in: function)
            guard let index = s.inputNames.firstIndex(where: { strcmp($0, name) == 0 }) else {
                throw s.core.unknownInput(String(cString: name))
            }
            return (index, try object(tensors![i], TensorHandle.self, "inputs[\(i)]", in: function).tensor)
        }, outputCount: outputNames == nil ? nil : outputCount, output: { i in
            let name = try required(outputNames![i], "output_names[\(i)]", in: function)
            guard let index = s.outputNames.firstIndex(where: { strcmp($0, name) == 0 }) else {
                throw s.core.unknownOutput(String(cString: name))
            }
            return index
        }, providesOutputs: anyCallerTensor, provided: { i in
            guard out[i] != nil else { return nil }
            return try object(out[i], TensorHandle.self, "outputs[\(i)]", in: function).tensor
        }, termination: termination, emit: { i, tensor in
            if !anyCallerTensor || out[i] == nil { out[i] = HandleRegistry.register(TensorHandle(tensor)) }
        })
}

@_cdecl("drt_session_options_add_output")
public func drt_session_options_add_output(_ options: OpaquePointer?, _ name: UnsafePointer<CChar>?) -> drt_status {
    guarded {
        let function = "drt_session_options_add_output"
        let o = try object(options, SessionOptionsHandle.self, "options", in: function)
        let name = try string(name, "name", in: function)
        if name.isEmpty { throw invalid("\(function): name is empty") }
        if o.options.extraOutputs.contains(name) { throw invalid("\(function): '\(name)' was added already") }
        o.options.extraOutputs.append(name)
    }
}

/// A drt_run_options: shared by any number of runs; the flag is set from any thread.
final class RunOptionsHandle {
    let termination = RunTermination()
}

@_cdecl("drt_run_options_create")
public func drt_run_options_create(_ outOptions: UnsafeMutablePointer<OpaquePointer?>?) -> drt_status {
    guarded {
        let out = try required(outOptions, "out_options", in: "drt_run_options_create")
        out.pointee = HandleRegistry.register(RunOptionsHandle())
    }
}

@_cdecl("drt_run_options_free")
public func drt_run_options_free(_ options: OpaquePointer?) {
    HandleRegistry.release(options, as: RunOptionsHandle.self)
}

@_cdecl("drt_run_options_set_terminate")
public func drt_run_options_set_terminate(_ options: OpaquePointer?, _ terminate: Int32) -> drt_status {
    guarded {
        let o = try object(options, RunOptionsHandle.self, "options", in: "drt_run_options_set_terminate")
        o.termination.set(terminate != 0)
    }
}
