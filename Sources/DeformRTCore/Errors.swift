import DeformRTKernels

/// Every failure in DeformRT. The codes mirror `drt_status` in include/deformrt.h one to one.
public struct DeformRTError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Code: Int32, Sendable {
        case invalidArgument = 1
        case io = 2
        case invalidModel = 3
        case unsupported = 4
        case outOfMemory = 5
        case bufferTooSmall = 6
        case `internal` = 7
        /// A run stopped because its run options asked it to (RunTermination).
        case cancelled = 8
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }

    static func invalidModel(_ message: String) -> DeformRTError { .init(.invalidModel, message) }
    static func invalidArgument(_ message: String) -> DeformRTError { .init(.invalidArgument, message) }
    static func unsupported(_ message: String) -> DeformRTError { .init(.unsupported, message) }
}

extension CPUDispatch {
    /// Throws the dispatcher's refusal (README, "How the library is built"): an unusable
    /// DEFORMRT_CPU value or a CPU below the baseline tier fails model loading and session creation.
    public static func check() throws {
        guard let refusal else { return }
        throw DeformRTError(refusal.status == DeformRTError.Code.invalidArgument.rawValue ? .invalidArgument : .unsupported,
                            refusal.message)
    }
}
