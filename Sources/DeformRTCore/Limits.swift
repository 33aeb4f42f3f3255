/// Bounds that keep hostile models from exhausting memory or stack, and the checked arithmetic
/// every shape and size computation goes through.
public enum Limits {
    /// Largest rank a tensor may have.
    public static let maxRank = 16
    /// Largest node count a graph may have.
    public static let maxNodes = 1_000_000
    /// Largest element count of one tensor (2^40), far above any real model and below Int overflow.
    public static let maxElements = 1 << 40
    /// Default cap on the tensor bytes one session plans.
    public static let defaultMemoryLimit: UInt64 = 16 << 30
    /// Largest total number of attributes values read from one node attribute list.
    public static let maxAttributeValues = 1 << 24

    /// Element count of `shape`, refusing negative dims and products over `maxElements`.
    public static func elementCount(_ shape: [Int], what: @autoclosure () -> String) throws -> Int {
        if shape.count > maxRank {
            throw DeformRTError.invalidModel("\(what()): rank \(shape.count) exceeds the limit of \(maxRank)")
        }
        var count = 1
        for dim in shape {
            if dim < 0 { throw DeformRTError.invalidModel("\(what()): negative dimension \(dim) in shape \(shape)") }
            let (product, overflow) = count.multipliedReportingOverflow(by: dim)
            if overflow || product > maxElements {
                throw DeformRTError.invalidModel("\(what()): shape \(shape) has too many elements")
            }
            count = product
        }
        return count
    }

    /// `count * size` in bytes, refusing overflow.
    public static func byteCount(_ count: Int, elementSize: Int, what: @autoclosure () -> String) throws -> Int {
        let (bytes, overflow) = count.multipliedReportingOverflow(by: elementSize)
        if overflow { throw DeformRTError.invalidModel("\(what()): byte size overflows") }
        return bytes
    }
}
