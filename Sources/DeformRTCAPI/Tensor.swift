import CDeformRT
import DeformRTCore

final class TensorHandle {
    let tensor: Tensor
    /// Set for the inputs lent to a custom operator's compute callback.
    let readOnly: Bool
    init(_ tensor: Tensor, readOnly: Bool = false) {
        self.tensor = tensor
        self.readOnly = readOnly
    }
}

/// Validates the arguments shared by the two create calls; returns the type and shape.
private func checkedTensorArguments(_ elementType: Int32, _ shape: UnsafePointer<Int64>?, _ rank: Int, _ data: UnsafeRawPointer?,
                                    _ dataSize: Int, function: String) throws -> (ElementType, [Int]) {
    guard let type = ElementType(rawValue: elementType), type != .string else {
        throw invalid("\(function): element type \(elementType) is not supported")
    }
    if rank < 0 || rank > Limits.maxRank { throw invalid("\(function): rank \(rank) is out of range (0...\(Limits.maxRank))") }
    var dims: [Int] = []
    if rank > 0 {
        let shape = try required(shape, "shape", in: function)
        for i in 0..<rank {
            if shape[i] < 0 || shape[i] > Int64(Limits.maxElements) { throw invalid("\(function): dim \(i) is \(shape[i])") }
            dims.append(Int(shape[i]))
        }
    }
    let count: Int
    do { count = try Limits.elementCount(dims, what: "tensor") } catch { throw invalid("\(function): shape \(dims) has too many elements") }
    let bytes = count * type.byteSize
    if dataSize != bytes {
        throw invalid("\(function): data_size is \(dataSize) bytes but shape \(dims) of \(type.onnxName) needs \(bytes)")
    }
    if bytes > 0 && data == nil { throw invalid("\(function): data is NULL") }
    return (type, dims)
}

@_cdecl("drt_tensor_create")
public func drt_tensor_create(_ elementType: Int32, _ shape: UnsafePointer<Int64>?, _ rank: Int, _ data: UnsafeRawPointer?,
                              _ dataSize: Int, _ outTensor: UnsafeMutablePointer<OpaquePointer?>?) -> drt_status {
    guarded {
        let function = "drt_tensor_create"
        let (type, dims) = try checkedTensorArguments(elementType, shape, rank, data, dataSize, function: function)
        let out = try required(outTensor, "out_tensor", in: function)
        let tensor = Tensor(elementType: type, shape: dims, storage: TensorStorage(copying: data, byteCount: dataSize))
        out.pointee = HandleRegistry.register(TensorHandle(tensor))
    }
}

@_cdecl("drt_tensor_create_borrowed")
public func drt_tensor_create_borrowed(_ elementType: Int32, _ shape: UnsafePointer<Int64>?, _ rank: Int, _ data: UnsafeRawPointer?,
                                       _ dataSize: Int, _ outTensor: UnsafeMutablePointer<OpaquePointer?>?) -> drt_status {
    guarded {
        let function = "drt_tensor_create_borrowed"
        let (type, dims) = try checkedTensorArguments(elementType, shape, rank, data, dataSize, function: function)
        let out = try required(outTensor, "out_tensor", in: function)
        // Zero-size tensors may come with a NULL pointer; give them a harmless one.
        let storage = data.map { TensorStorage(borrowing: UnsafeMutableRawPointer(mutating: $0), byteCount: dataSize) }
            ?? TensorStorage(zeroedByteCount: 0)
        out.pointee = HandleRegistry.register(TensorHandle(Tensor(elementType: type, shape: dims, storage: storage)))
    }
}

@_cdecl("drt_tensor_free")
public func drt_tensor_free(_ tensor: OpaquePointer?) {
    HandleRegistry.release(tensor, as: TensorHandle.self)
}

@_cdecl("drt_tensor_data")
public func drt_tensor_data(_ tensor: OpaquePointer?, _ outData: UnsafeMutablePointer<UnsafeRawPointer?>?) -> drt_status {
    guarded {
        let t = try object(tensor, TensorHandle.self, "tensor", in: "drt_tensor_data")
        try required(outData, "out_data", in: "drt_tensor_data").pointee = UnsafeRawPointer(t.tensor.rawPointer)
    }
}

@_cdecl("drt_tensor_element_type")
public func drt_tensor_element_type(_ tensor: OpaquePointer?, _ outType: UnsafeMutablePointer<Int32>?) -> drt_status {
    guarded {
        let t = try object(tensor, TensorHandle.self, "tensor", in: "drt_tensor_element_type")
        try required(outType, "out_type", in: "drt_tensor_element_type").pointee = t.tensor.elementType.rawValue
    }
}

@_cdecl("drt_tensor_rank")
public func drt_tensor_rank(_ tensor: OpaquePointer?, _ outRank: UnsafeMutablePointer<Int>?) -> drt_status {
    guarded {
        let t = try object(tensor, TensorHandle.self, "tensor", in: "drt_tensor_rank")
        try required(outRank, "out_rank", in: "drt_tensor_rank").pointee = t.tensor.rank
    }
}

@_cdecl("drt_tensor_shape")
public func drt_tensor_shape(_ tensor: OpaquePointer?, _ outDims: UnsafeMutablePointer<Int64>?, _ capacity: Int,
                             _ outRank: UnsafeMutablePointer<Int>?) -> drt_status {
    guarded {
        let t = try object(tensor, TensorHandle.self, "tensor", in: "drt_tensor_shape")
        try writeShape(t.tensor.shape, outDims, capacity, outRank, function: "drt_tensor_shape")
    }
}

@_cdecl("drt_tensor_byte_size")
public func drt_tensor_byte_size(_ tensor: OpaquePointer?, _ outSize: UnsafeMutablePointer<Int>?) -> drt_status {
    guarded {
        let t = try object(tensor, TensorHandle.self, "tensor", in: "drt_tensor_byte_size")
        try required(outSize, "out_size", in: "drt_tensor_byte_size").pointee = t.tensor.byteCount
    }
}

@_cdecl("drt_tensor_mutable_data")
public func drt_tensor_mutable_data(_ tensor: OpaquePointer?, _ outData: UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> drt_status {
    guarded {
        let function = "drt_tensor_mutable_data"
        let t = try object(tensor, TensorHandle.self, "tensor", in: function)
        let out = try required(outData, "out_data", in: function)
        if t.readOnly { throw invalid("\(function): the tensor is a custom operator's input, which is read-only") }
        out.pointee = t.tensor.rawPointer
    }
}
