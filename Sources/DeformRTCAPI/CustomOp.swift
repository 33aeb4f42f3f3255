import CDeformRT
import DeformRTCore
import Glibc

/// A drt_custom_op: the definition sessions use, with the C callbacks behind its closures.
final class CustomOpHandle {
    let definition: CustomOperatorDefinition
    init(_ definition: CustomOperatorDefinition) { self.definition = definition }
}

/// The error for a callback's non-OK status: the same code when it is one of ours.
private func callbackFailure(_ status: drt_status, _ what: String) -> DeformRTError {
    let raw = Int32(bitPattern: status.rawValue)
    let text = String(cString: drt_status_string(status))
    if let code = DeformRTError.Code(rawValue: raw) {
        return DeformRTError(code, "\(what) returned status \(raw) (\(text))")
    }
    return DeformRTError(.invalidArgument, "\(what) returned status \(raw), which is not a drt_status")
}

@_cdecl("drt_custom_op_create")
public func drt_custom_op_create(_ domain: UnsafePointer<CChar>?, _ opType: UnsafePointer<CChar>?, _ sinceVersion: Int32,
                                 _ untilVersion: Int32, _ shape: drt_custom_op_shape_fn?, _ compute: drt_custom_op_compute_fn?,
                                 _ userData: UnsafeMutableRawPointer?, _ outOp: UnsafeMutablePointer<OpaquePointer?>?) -> drt_status {
    guarded {
        let function = "drt_custom_op_create"
        let domain = try string(domain, "domain", in: function)
        let opType = try string(opType, "op_type", in: function)
        let shape = try required(shape, "shape", in: function)
        let compute = try required(compute, "compute", in: function)
        let out = try required(outOp, "out_op", in: function)
        if sinceVersion < 1 || untilVersion < sinceVersion {
            throw invalid("\(function): the opset range \(sinceVersion)...\(untilVersion) is empty or starts below 1")
        }
        let label = "custom operator \(domain)::\(opType)"
        let maxRank = Limits.maxRank
        let definition = try CustomOperatorDefinition(
            domain: domain, opType: opType, opsets: Int(sinceVersion)...Int(untilVersion),
            outputTypes: { inputs, outputCount in
                let inputTypes = inputs.map { $0?.elementType.rawValue ?? 0 }
                let inputRanks = inputs.map { $0?.shape.count ?? 0 }
                let inputDims = inputs.map { ($0?.shape ?? []).map(Int64.init) }
                // Flat scratch, filled with values no valid answer has, so unwritten slots are caught.
                var outputTypes = [Int32](repeating: -1, count: outputCount)
                var outputRanks = [Int](repeating: Int.max, count: outputCount)
                let dims = UnsafeMutablePointer<Int64>.allocate(capacity: max(1, outputCount * maxRank))
                dims.initialize(repeating: -1, count: max(1, outputCount * maxRank))
                defer { dims.deallocate() }
                let outputShapes = (0..<outputCount).map { Optional(dims + $0 * maxRank) }
                let inputCopies = inputDims.map { dims -> UnsafeMutablePointer<Int64> in
                    let copy = UnsafeMutablePointer<Int64>.allocate(capacity: max(1, dims.count))
                    copy.initialize(from: dims, count: dims.count)
                    return copy
                }
                defer { inputCopies.forEach { $0.deallocate() } }
                let inputShapes = inputCopies.map { Optional(UnsafePointer($0)) }
                let status = shape(userData, inputs.count, inputTypes, inputShapes, inputRanks, outputCount, maxRank,
                                   &outputTypes, outputShapes, &outputRanks)
                if status != DRT_OK { throw callbackFailure(status, "\(label): the shape callback") }
                return try (0..<outputCount).map { i in
                    guard let type = ElementType(rawValue: outputTypes[i]) else {
                        throw invalid("\(label): the shape callback gave output \(i) the element type \(outputTypes[i]), which is not a drt_element_type")
                    }
                    let rank = outputRanks[i]
                    guard rank >= 0, rank <= maxRank else {
                        throw invalid("\(label): the shape callback gave output \(i) the rank \(rank == Int.max ? "(none written)" : String(rank)), more than max_rank \(maxRank)")
                    }
                    var shape: [Int] = []
                    for axis in 0..<rank {
                        let dim = dims[i * maxRank + axis]
                        if dim < 0 || dim > Int64(Limits.maxElements) {
                            throw invalid("\(label): the shape callback gave output \(i) dim \(axis) = \(dim)")
                        }
                        shape.append(Int(dim))
                    }
                    return ValueType(type, shape)
                }
            },
            compute: { inputs, outputs in
                // Handles lent for the call; released after it whatever the callback did with them.
                let inputHandles = inputs.map { $0.map { HandleRegistry.register(TensorHandle($0, readOnly: true)) } }
                let outputHandles: [OpaquePointer?] = outputs.map { HandleRegistry.register(TensorHandle($0)) }
                defer {
                    for case let handle? in inputHandles { HandleRegistry.release(handle, as: TensorHandle.self) }
                    for case let handle? in outputHandles { HandleRegistry.release(handle, as: TensorHandle.self) }
                }
                let status = inputHandles.withUnsafeBufferPointer { ins in
                    outputHandles.withUnsafeBufferPointer { outs in
                        compute(userData, ins.baseAddress, ins.count, outs.baseAddress, outs.count)
                    }
                }
                if status != DRT_OK { throw callbackFailure(status, "\(label): the compute callback") }
            })
        out.pointee = HandleRegistry.register(CustomOpHandle(definition))
    }
}

@_cdecl("drt_custom_op_free")
public func drt_custom_op_free(_ op: OpaquePointer?) {
    HandleRegistry.release(op, as: CustomOpHandle.self)
}

@_cdecl("drt_session_options_add_custom_op")
public func drt_session_options_add_custom_op(_ options: OpaquePointer?, _ op: OpaquePointer?) -> drt_status {
    guarded {
        let function = "drt_session_options_add_custom_op"
        let o = try object(options, SessionOptionsHandle.self, "options", in: function)
        let c = try object(op, CustomOpHandle.self, "op", in: function)
        o.options.customOperators.append(c.definition)
    }
}
