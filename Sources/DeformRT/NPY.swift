import DeformRTCore
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Reads and writes NumPy .npy files (format 1.0-3.0, little-endian, C order).
public enum NPY {
    private static let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]

    private static let descriptors: [(String, ElementType)] = [
        ("<f4", .float), ("<f8", .double), ("<f2", .float16), ("<i8", .int64), ("<i4", .int32), ("<i2", .int16),
        ("|i1", .int8), ("|u1", .uint8), ("<u2", .uint16), ("<u4", .uint32), ("<u8", .uint64), ("|b1", .bool),
    ]

    /// Reads a .npy file into a tensor.
    public static func read(path: String) throws -> Tensor {
        let url = URL(fileURLWithPath: path)
        let data: Data
        do { data = try Data(contentsOf: url) } catch { throw DeformRTError(.io, "cannot read '\(path)': \(error)") }
        let bytes = [UInt8](data)
        func fail(_ why: String) -> DeformRTError { DeformRTError(.invalidArgument, "'\(path)' is not a supported .npy file: \(why)") }
        guard bytes.count >= 10, Array(bytes[0..<6]) == magic else { throw fail("bad magic") }
        let major = bytes[6]
        let headerLength: Int, headerStart: Int
        if major == 1 {
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
            headerStart = 10
        } else {
            guard bytes.count >= 12 else { throw fail("truncated header") }
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
            headerStart = 12
        }
        guard headerStart + headerLength <= bytes.count else { throw fail("truncated header") }
        let header = String(decoding: bytes[headerStart..<headerStart + headerLength], as: UTF8.self)
        guard let descr = field(header, "descr"), let (_, type) = descriptors.first(where: { $0.0 == descr || $0.0.dropFirst() == descr.dropFirst() && $0.0.first == "|" }) else {
            throw fail("unsupported dtype in header \(header)")
        }
        if header.contains("'fortran_order': True") { throw fail("Fortran order is not supported") }
        guard let open = header.firstIndex(of: "("), let close = header[open...].firstIndex(of: ")") else { throw fail("no shape") }
        let shape = try header[header.index(after: open)..<close].split(separator: ",").map { part -> Int in
            guard let v = Int(String(part.filter { !$0.isWhitespace })) else { throw fail("bad shape") }
            return v
        }
        let payload = Array(bytes[(headerStart + headerLength)...])
        let count = shape.reduce(1, *)
        guard payload.count >= count * type.byteSize else { throw fail("data is shorter than the shape needs") }
        return try Tensor(shape: shape, elementType: type, bytes: Array(payload[0..<count * type.byteSize]))
    }

    /// Writes a tensor as a version 1.0 .npy file.
    public static func write(_ tensor: Tensor, path: String) throws {
        guard let descr = descriptors.first(where: { $0.1 == tensor.elementType })?.0 else {
            throw DeformRTError(.unsupported, "cannot write \(tensor.elementType.onnxName) as .npy")
        }
        let shapeText = tensor.shape.isEmpty ? "()" : tensor.shape.count == 1 ? "(\(tensor.shape[0]),)" : "(" + tensor.shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(shapeText), }"
        while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
        header += "\n"
        var bytes = magic + [1, 0, UInt8(header.utf8.count & 0xFF), UInt8(header.utf8.count >> 8)]
        bytes += Array(header.utf8)
        tensor.withUnsafeBytes { bytes += Array($0) }
        do { try Data(bytes).write(to: URL(fileURLWithPath: path)) } catch {
            throw DeformRTError(.io, "cannot write '\(path)': \(error)")
        }
    }

    private static func field(_ header: String, _ key: String) -> String? {
        let pattern = Array("'\(key)': '".utf8), text = Array(header.utf8)
        guard text.count >= pattern.count,
              let start = (0...(text.count - pattern.count)).first(where: { Array(text[$0..<$0 + pattern.count]) == pattern }) else { return nil }
        let rest = text[(start + pattern.count)...]
        guard let end = rest.firstIndex(of: UInt8(ascii: "'")) else { return nil }
        return String(decoding: rest[..<end], as: UTF8.self)
    }
}
