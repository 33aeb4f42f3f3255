import DeformRTKernels
import Foundation
import TestSupport
import XCTest

/// The RoI kernels (reference and optimised, 1 and 2 threads) against the committed vectors in
/// Tests/vectors/roi, made by tools/gen_roi_vectors.py from torchvision.ops.roi_align / roi_pool,
/// onnx.reference (checked against onnxruntime), and NumPy transcriptions of mmcv's and MXNet's
/// kernels (checked against OpenVINO). Key layout: see that script's docstring.
/// Tolerance: max |a - b| / (1 + |b|) <= 1e-5 (all are float32 computations in the same order;
/// in practice they agree to the bit).
final class RoIVectorTests: XCTestCase {
    static let tolerance: Float = 1e-5
    static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("vectors/roi")

    func vectors(_ prefix: String) throws -> [(String, RoINPZ)] {
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.directory.path)
            .filter { $0.hasPrefix(prefix) && $0.hasSuffix(".npz") }.sorted()
        XCTAssertFalse(files.isEmpty, "no \(prefix)*.npz in \(Self.directory.path)")
        return try files.map { ($0, try RoINPZ(Self.directory.appendingPathComponent($0))) }
    }

    var worst: Float = 0
    var compared = 0

    func check(_ got: [Float], _ expected: [Float], _ label: String) {
        let error = maxMixedError(got, expected)
        XCTAssertLessThanOrEqual(error, Self.tolerance, label)
        worst = max(worst, error)
        compared += 1
    }

    override func tearDown() {
        print("\(name): \(compared) comparisons, worst mixed error \(worst)")
        super.tearDown()
    }

    func testRoiAlignVectors() throws {
        for (name, v) in try vectors("roi_align_") {
            let x = try v.array("X")
            let p = RoiAlignParams(
                batch: x.shape[0], channels: x.shape[1], height: x.shape[2], width: x.shape[3],
                roiCount: try v.array("rois").shape[0], outputHeight: try v.int("output_height"),
                outputWidth: try v.int("output_width"), samplingRatio: try v.int("sampling_ratio"),
                spatialScale: try v.float("spatial_scale"),
                mode: try v.string("mode") == "max" ? .max : .average,
                coordinates: try v.string("coordinate_transformation_mode") == "half_pixel" ? .halfPixel : .outputHalfPixel)
            let rois = try v.floats("rois"), indices = try v.int64s("batch_indices"), expected = try v.floats("Y")
            check(roiAlignReference(p, x.floats, rois, indices), expected, "\(name) reference")
            for threads in [1, 2] {
                check(roiAlignRun(p, x.floats, rois, indices, threads: threads), expected, "\(name) run \(threads)")
            }
        }
    }

    func testMaxRoiPoolVectors() throws {
        for (name, v) in try vectors("max_roi_pool_") {
            let x = try v.array("X")
            let pooled = try v.int64s("pooled_shape")
            let p = MaxRoiPoolParams(
                batch: x.shape[0], channels: x.shape[1], height: x.shape[2], width: x.shape[3],
                roiCount: try v.array("rois").shape[0], pooledHeight: Int(pooled[0]), pooledWidth: Int(pooled[1]),
                spatialScale: try v.float("spatial_scale"))
            let rois = try v.floats("rois"), expected = try v.floats("Y")
            check(maxRoiPoolReference(p, x.floats, rois), expected, "\(name) reference")
            for threads in [1, 2] {
                check(maxRoiPoolRun(p, x.floats, rois, threads: threads), expected, "\(name) run \(threads)")
            }
        }
    }

    func testDeformRoIPoolVectors() throws {
        for (name, v) in try vectors("deform_roi_pool_") {
            let x = try v.array("input")
            let p = DeformRoIPoolParams(
                batch: x.shape[0], channels: x.shape[1], height: x.shape[2], width: x.shape[3],
                roiCount: try v.array("rois").shape[0], pooledHeight: try v.int("pooled_height"),
                pooledWidth: try v.int("pooled_width"), spatialScale: try v.float("spatial_scale"),
                samplingRatio: try v.int("sampling_ratio"), gamma: try v.float("gamma"))
            let rois = try v.floats("rois"), expected = try v.floats("output")
            let offset = v.has("offset") ? try v.floats("offset") : nil
            let mask = v.has("mask") ? try v.floats("mask") : nil
            check(deformRoIPoolReference(p, x.floats, rois, offset: offset, mask: mask), expected, "\(name) reference")
            for threads in [1, 2] {
                check(deformRoIPoolRun(p, x.floats, rois, offset: offset, mask: mask, threads: threads),
                      expected, "\(name) run \(threads)")
            }
        }
    }

    func testDeformablePSROIPoolVectors() throws {
        for (name, v) in try vectors("deformable_psroi_pool_") {
            let x = try v.array("data")
            let noTrans = try v.int("no_trans") != 0
            let trans = noTrans ? nil : try v.array("trans")
            let p = DeformablePSROIPoolParams(
                batch: x.shape[0], channels: x.shape[1], height: x.shape[2], width: x.shape[3],
                roiCount: try v.array("rois").shape[0], outputDim: try v.int("output_dim"),
                groupSize: try v.int("group_size"), pooledSize: try v.int("pooled_size"),
                partSize: try v.int("part_size"), samplePerPart: try v.int("sample_per_part"),
                spatialScale: try v.float("spatial_scale"), transStd: try v.float("trans_std"),
                transClasses: trans.map { $0.shape[1] / 2 } ?? 1)
            XCTAssertNil(p.invalidReason, name)
            let rois = try v.floats("rois"), expected = try v.floats("output")
            check(psroiReference(p, x.floats, rois, trans: trans?.floats), expected, "\(name) reference")
            for threads in [1, 2] {
                check(psroiRun(p, x.floats, rois, trans: trans?.floats, threads: threads), expected, "\(name) run \(threads)")
            }
        }
    }
}

/// Reads numpy's uncompressed .npz (np.savez): a zip of .npy files, little-endian float32,
/// int64 and unicode arrays only. Enough for the committed vectors; not a general reader.
struct RoINPZ {
    struct Array {
        var descr: String
        var shape: [Int]
        var payload: Data
        var count: Int { shape.reduce(1, *) }
        var floats: [Float] {
            precondition(descr == "<f4", "not float32: \(descr)")
            return payload.withUnsafeBytes { raw in (0..<count).map { raw.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) } }
        }
    }

    struct Malformed: Error, CustomStringConvertible { var description: String }

    private var arrays: [String: Array] = [:]

    init(_ url: URL) throws {
        let data = try Data(contentsOf: url)
        func u16(_ at: Int) -> Int { Int(data[data.startIndex + at]) | Int(data[data.startIndex + at + 1]) << 8 }
        func u32(_ at: Int) -> Int { u16(at) | u16(at + 2) << 16 }
        func u64(_ at: Int) -> Int { u32(at) | u32(at + 4) << 32 }
        // End of central directory: the last 22+ bytes, found by its signature.
        guard let end = stride(from: data.count - 22, through: 0, by: -1).first(where: { u32($0) == 0x0605_4B50 })
        else { throw Malformed(description: "\(url.lastPathComponent): no zip directory") }
        var entry = u32(end + 16)
        for _ in 0..<u16(end + 10) {
            guard u32(entry) == 0x0201_4B50, u16(entry + 10) == 0 else {
                throw Malformed(description: "\(url.lastPathComponent): compressed or bad entry")
            }
            var size = u32(entry + 20)
            let nameLength = u16(entry + 28), extraLength = u16(entry + 30), commentLength = u16(entry + 32)
            var local = u32(entry + 42)
            let name = String(decoding: data[(data.startIndex + entry + 46)..<(data.startIndex + entry + 46 + nameLength)],
                              as: UTF8.self)
            // Zip64 extra field: 8-byte values for whichever 32-bit fields are saturated.
            var extra = entry + 46 + nameLength
            while extra < entry + 46 + nameLength + extraLength {
                let id = u16(extra), length = u16(extra + 2)
                if id == 1 {
                    var field = extra + 4
                    if u32(entry + 24) == 0xFFFF_FFFF { field += 8 }
                    if size == 0xFFFF_FFFF { size = u64(field); field += 8 }
                    if local == 0xFFFF_FFFF { local = u64(field) }
                }
                extra += 4 + length
            }
            let start = local + 30 + u16(local + 26) + u16(local + 28)
            let npy = data[(data.startIndex + start)..<(data.startIndex + start + size)]
            arrays[name.hasSuffix(".npy") ? String(name.dropLast(4)) : name] = try RoINPZ.parse(npy, name)
            entry += 46 + nameLength + extraLength + commentLength
        }
    }

    private static func parse(_ npy: Data, _ name: String) throws -> Array {
        let bytes = [UInt8](npy)
        guard bytes.count > 10, bytes[0] == 0x93, bytes[1...5].elementsEqual("NUMPY".utf8) else {
            throw Malformed(description: "\(name): not .npy")
        }
        let headerLength = bytes[6] == 1 ? Int(bytes[8]) | Int(bytes[9]) << 8
            : Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
        let headerStart = bytes[6] == 1 ? 10 : 12
        let header = String(decoding: bytes[headerStart..<(headerStart + headerLength)], as: UTF8.self)
        func value(_ key: String, _ close: Character) -> Substring? {
            guard let r = header.range(of: "'\(key)': ") else { return nil }
            let rest = header[r.upperBound...]
            guard let e = rest.dropFirst().firstIndex(of: close) else { return nil }
            return rest[rest.index(after: rest.startIndex)..<e]
        }
        guard let descr = value("descr", "'"), let shapeText = value("shape", ")"),
              header.contains("'fortran_order': False")
        else { throw Malformed(description: "\(name): unsupported header \(header)") }
        let shape = shapeText.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        return Array(descr: String(descr), shape: shape, payload: Data(bytes[(headerStart + headerLength)...]))
    }

    func has(_ key: String) -> Bool { arrays[key] != nil }

    func array(_ key: String) throws -> Array {
        guard let a = arrays[key] else { throw Malformed(description: "missing key \(key)") }
        return a
    }

    func floats(_ key: String) throws -> [Float] { try array(key).floats }

    func int64s(_ key: String) throws -> [Int64] {
        let a = try array(key)
        precondition(a.descr == "<i8", "\(key) is not int64: \(a.descr)")
        return a.payload.withUnsafeBytes { raw in (0..<a.count).map { raw.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self) } }
    }

    func int(_ key: String) throws -> Int { Int(try int64s(key)[0]) }

    func float(_ key: String) throws -> Float { try floats(key)[0] }

    /// A 0-d unicode array ('<U...': UTF-32 code units).
    func string(_ key: String) throws -> String {
        let a = try array(key)
        precondition(a.descr.hasPrefix("<U"), "\(key) is not a string: \(a.descr)")
        let units = a.payload.withUnsafeBytes { raw in
            (0..<(raw.count / 4)).map { raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self) }
        }
        return String(String.UnicodeScalarView(units.prefix { $0 != 0 }.compactMap(Unicode.Scalar.init)))
    }
}
