/// Memory behind a tensor: owned (freed with the storage), borrowed from a caller, or a slice of
/// a session's arena (kept alive by the plan that owns the arena).
public final class TensorStorage: @unchecked Sendable {
    public let bytes: UnsafeMutableRawPointer
    public let byteCount: Int
    private let owned: Bool
    /// Keeps whatever the bytes belong to alive (an arena, a caller's object).
    private let keepAlive: AnyObject?

    /// Allocates `byteCount` zeroed bytes, 64-byte aligned.
    public init(zeroedByteCount byteCount: Int) {
        self.byteCount = byteCount
        bytes = UnsafeMutableRawPointer.allocate(byteCount: max(byteCount, 1), alignment: 64)
        bytes.initializeMemory(as: UInt8.self, repeating: 0, count: max(byteCount, 1))
        owned = true
        keepAlive = nil
    }

    /// Allocates `byteCount` bytes, 64-byte aligned, left uninitialised (for outputs every kernel
    /// writes in full).
    public init(uninitializedByteCount byteCount: Int) {
        self.byteCount = byteCount
        bytes = UnsafeMutableRawPointer.allocate(byteCount: max(byteCount, 1), alignment: 64)
        #if DEBUG
        // Debug builds (the test suites) fill it with NaN bit patterns, so that a kernel that
        // leaves an element unwritten shows up as NaN instead of passing on stale heap bytes.
        bytes.initializeMemory(as: UInt8.self, repeating: 0xFF, count: max(byteCount, 1))
        #endif
        owned = true
        keepAlive = nil
    }

    /// Allocates and copies `byteCount` bytes from `source`.
    public init(copying source: UnsafeRawPointer?, byteCount: Int) {
        self.byteCount = byteCount
        bytes = UnsafeMutableRawPointer.allocate(byteCount: max(byteCount, 1), alignment: 64)
        if let source, byteCount > 0 { bytes.copyMemory(from: source, byteCount: byteCount) }
        owned = true
        keepAlive = nil
    }

    /// Wraps memory owned by someone else; `keepAlive` is retained for the storage's lifetime.
    public init(borrowing bytes: UnsafeMutableRawPointer, byteCount: Int, keepAlive: AnyObject? = nil) {
        self.bytes = bytes
        self.byteCount = byteCount
        owned = false
        self.keepAlive = keepAlive
    }

    deinit {
        if owned { bytes.deallocate() }
    }
}

/// A dense row-major tensor. Copying a `Tensor` shares its storage.
public struct Tensor: @unchecked Sendable {
    public let elementType: ElementType
    public let shape: [Int]
    public var storage: TensorStorage

    public init(elementType: ElementType, shape: [Int], storage: TensorStorage) {
        self.elementType = elementType
        self.shape = shape
        self.storage = storage
    }

    /// A zero-filled tensor with fresh storage.
    public init(zeros elementType: ElementType, shape: [Int]) throws {
        let count = try Limits.elementCount(shape, what: "tensor")
        let bytes = try Limits.byteCount(count, elementSize: elementType.byteSize, what: "tensor")
        self.init(elementType: elementType, shape: shape, storage: TensorStorage(zeroedByteCount: bytes))
    }

    /// A float32 tensor holding `values`.
    public init(floats values: [Float], shape: [Int]) {
        precondition(values.count == shape.reduce(1, *), "value count does not match shape")
        let storage = values.withUnsafeBytes { TensorStorage(copying: $0.baseAddress, byteCount: $0.count) }
        self.init(elementType: .float, shape: shape, storage: storage)
    }

    /// An int64 tensor holding `values`.
    public init(int64s values: [Int64], shape: [Int]) {
        precondition(values.count == shape.reduce(1, *), "value count does not match shape")
        let storage = values.withUnsafeBytes { TensorStorage(copying: $0.baseAddress, byteCount: $0.count) }
        self.init(elementType: .int64, shape: shape, storage: storage)
    }

    public var elementCount: Int { shape.reduce(1, *) }
    public var byteCount: Int { elementCount * elementType.byteSize }
    public var rank: Int { shape.count }

    public var rawPointer: UnsafeMutableRawPointer { storage.bytes }

    /// Typed pointer; the caller has checked `elementType`.
    @inline(__always)
    public func pointer<T>(_: T.Type) -> UnsafeMutablePointer<T> {
        storage.bytes.assumingMemoryBound(to: T.self)
    }

    @inline(__always)
    public var floats: UnsafeMutablePointer<Float> { pointer(Float.self) }

    /// The same bytes seen with another shape of equal element count.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        Tensor(elementType: elementType, shape: newShape, storage: storage)
    }

    /// A copy with its own storage.
    public func copy() -> Tensor {
        Tensor(elementType: elementType, shape: shape, storage: TensorStorage(copying: storage.bytes, byteCount: byteCount))
    }

    /// Values as Int64, for shape-like tensors (int64, int32 and the other integer types).
    public func integerValues() throws -> [Int64] {
        let n = elementCount
        switch elementType {
        case .int64: return Array(UnsafeBufferPointer(start: pointer(Int64.self), count: n))
        case .int32: return UnsafeBufferPointer(start: pointer(Int32.self), count: n).map { Int64($0) }
        case .int16: return UnsafeBufferPointer(start: pointer(Int16.self), count: n).map { Int64($0) }
        case .int8: return UnsafeBufferPointer(start: pointer(Int8.self), count: n).map { Int64($0) }
        case .uint8, .bool: return UnsafeBufferPointer(start: pointer(UInt8.self), count: n).map { Int64($0) }
        case .uint16: return UnsafeBufferPointer(start: pointer(UInt16.self), count: n).map { Int64($0) }
        case .uint32: return UnsafeBufferPointer(start: pointer(UInt32.self), count: n).map { Int64($0) }
        case .uint64: return UnsafeBufferPointer(start: pointer(UInt64.self), count: n).map { Int64(truncatingIfNeeded: $0) }
        default:
            throw DeformRTError.invalidModel("expected an integer tensor, got \(elementType.onnxName)")
        }
    }

    /// Values as Float, for float-like tensors.
    public func floatValues() throws -> [Float] {
        let n = elementCount
        switch elementType {
        case .float: return Array(UnsafeBufferPointer(start: floats, count: n))
        case .double: return UnsafeBufferPointer(start: pointer(Double.self), count: n).map { Float($0) }
        case .float16: return UnsafeBufferPointer(start: pointer(Float16.self), count: n).map { Float($0) }
        default:
            throw DeformRTError.invalidModel("expected a floating-point tensor, got \(elementType.onnxName)")
        }
    }
}

/// Element type and shape of a value, with -1 for a dynamic dim where shapes are declared.
public struct ValueType: Sendable, Equatable {
    public var elementType: ElementType
    public var shape: [Int]

    public init(_ elementType: ElementType, _ shape: [Int]) {
        self.elementType = elementType
        self.shape = shape
    }
}
