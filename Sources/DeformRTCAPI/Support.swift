import CDeformRT
import DeformRTCore
import Glibc

// Shared machinery of the C entry points: the live-handle registry, thread-local error text and
// the conversion of Swift errors into drt_status codes. No Swift error crosses the boundary.

/// Addresses of every live handle, so a NULL, freed or foreign pointer is refused instead of
/// dereferenced.
enum HandleRegistry {
    private static let lock = RegistryLock()
    nonisolated(unsafe) private static var live: [UnsafeMutableRawPointer: ObjectIdentifier] = [:]

    /// Retains `object` and returns its handle.
    static func register<T: AnyObject>(_ object: T) -> OpaquePointer {
        let pointer = Unmanaged.passRetained(object).toOpaque()
        lock.locked { live[pointer] = ObjectIdentifier(T.self) }
        return OpaquePointer(pointer)
    }

    /// The object behind a live handle of type T, or nil for NULL, freed or foreign handles.
    static func lookup<T: AnyObject>(_ handle: OpaquePointer?, as _: T.Type) -> T? {
        guard let handle else { return nil }
        let pointer = UnsafeMutableRawPointer(handle)
        return lock.locked {
            guard live[pointer] == ObjectIdentifier(T.self) else { return nil }
            return Unmanaged<T>.fromOpaque(pointer).takeUnretainedValue()
        }
    }

    /// Forgets a live handle of type T and releases its object; false if it was not live.
    @discardableResult
    static func release<T: AnyObject>(_ handle: OpaquePointer?, as _: T.Type) -> Bool {
        guard let handle else { return false }
        let pointer = UnsafeMutableRawPointer(handle)
        let removed: Bool = lock.locked {
            guard live[pointer] == ObjectIdentifier(T.self) else { return false }
            live[pointer] = nil
            return true
        }
        if removed { Unmanaged<T>.fromOpaque(pointer).release() }
        return removed
    }
}

final class RegistryLock: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    init() { pthread_mutex_init(&mutex, nil) }
    func locked<R>(_ body: () throws -> R) rethrows -> R {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return try body()
    }
}

/// The last failure's message, one per thread (a pthread key holding a malloc'd C string).
enum LastError {
    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key) { free($0) }
        return key
    }()
    private static let empty: UnsafeMutablePointer<CChar> = strdup("")!

    static func set(_ message: String) {
        let old = pthread_getspecific(key)
        pthread_setspecific(key, strdup(message))
        free(old)
    }

    static var message: UnsafePointer<CChar> {
        if let current = pthread_getspecific(key) { return UnsafePointer(current.assumingMemoryBound(to: CChar.self)) }
        return UnsafePointer(empty)
    }
}

extension drt_status {
    init(_ code: DeformRTError.Code) { self.init(rawValue: UInt32(code.rawValue)) }
}

/// Runs an entry point's body: errors become a status with the message stored for the thread.
@inline(__always)
func guarded(_ body: () throws -> Void) -> drt_status {
    do {
        try body()
        return DRT_OK
    } catch let error as DeformRTError {
        LastError.set(error.message)
        return drt_status(error.code)
    } catch {
        LastError.set("internal error: \(error)")
        return DRT_ERROR_INTERNAL
    }
}

func invalid(_ message: String) -> DeformRTError { DeformRTError(.invalidArgument, message) }

/// Unwraps a required pointer argument.
func required<T>(_ pointer: T?, _ name: String, in function: String) throws -> T {
    guard let pointer else { throw invalid("\(function): \(name) is NULL") }
    return pointer
}

/// The object behind a handle argument, or a clear error.
func object<T: AnyObject>(_ handle: OpaquePointer?, _ type: T.Type, _ name: String, in function: String) throws -> T {
    guard handle != nil else { throw invalid("\(function): \(name) is NULL") }
    guard let object = HandleRegistry.lookup(handle, as: type) else {
        throw invalid("\(function): \(name) is not a live handle (freed already, or not made by this library)")
    }
    return object
}

/// A NUL-terminated UTF-8 argument as a String.
func string(_ pointer: UnsafePointer<CChar>?, _ name: String, in function: String) throws -> String {
    String(cString: try required(pointer, name, in: function))
}
