/// Bounds that keep hostile models from exhausting memory or stack, and the checked arithmetic
/// every shape and size computation goes through.
public enum Limits {
    /// Largest rank a tensor may have.
    public static let maxRank = 16
    /// Deepest nesting of subgraphs (If / Loop bodies) a model may have.
    public static let maxSubgraphDepth = 16
    /// Largest node count a graph may have.
    public static let maxNodes = 1_000_000
    /// Largest element count of one tensor (2^40), far above any real model and below Int overflow.
    public static let maxElements = 1 << 40
    /// Default cap on the tensor bytes one session plans.
    public static let defaultMemoryLimit: UInt64 = 16 << 30
    /// Largest total number of attributes values read from one node attribute list.
    public static let maxAttributeValues = 1 << 24

    /// Largest value of a window attribute (strides, dilations, pads, pooling kernel_shape), so
    /// that window arithmetic on dims up to `maxElements` cannot overflow.
    public static let maxWindowValue = 1 << 20

    /// Element count of `shape`, refusing negative dims and products over `maxElements`.
    /// Zero dims count as 1 in the bound, so any product of a checked shape's dims (as operators
    /// compute when flattening or striding a possibly empty tensor) stays below `maxElements`.
    public static func elementCount(_ shape: [Int], what: @autoclosure () -> String) throws -> Int {
        if shape.count > maxRank {
            throw DeformRTError.invalidModel("\(what()): rank \(shape.count) exceeds the limit of \(maxRank)")
        }
        var count = 1
        var bound = 1
        for dim in shape {
            if dim < 0 { throw DeformRTError.invalidModel("\(what()): negative dimension \(dim) in shape \(shape)") }
            let (product, overflow) = bound.multipliedReportingOverflow(by: max(dim, 1))
            if overflow || product > maxElements {
                throw DeformRTError.invalidModel("\(what()): shape \(shape) has too many elements")
            }
            bound = product
            count *= dim
        }
        return count
    }

    /// `a * b`, or an error naming `what` when it overflows.
    public static func product(_ a: Int, _ b: Int, what: @autoclosure () -> String) throws -> Int {
        let (result, overflow) = a.multipliedReportingOverflow(by: b)
        if overflow { throw DeformRTError.invalidModel("\(what()): size \(a) x \(b) overflows") }
        return result
    }

    /// `count * size` in bytes, refusing overflow.
    public static func byteCount(_ count: Int, elementSize: Int, what: @autoclosure () -> String) throws -> Int {
        let (bytes, overflow) = count.multipliedReportingOverflow(by: elementSize)
        if overflow { throw DeformRTError.invalidModel("\(what()): byte size overflows") }
        return bytes
    }
}
