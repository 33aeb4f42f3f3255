import DeformRTCore
import Foundation
import TestSupport
import XCTest

/// Hostile model bytes through the importer, the graph checks, the planner and one run: every
/// outcome must be a thrown DeformRTError or a result, never a trap or a bad memory access (the
/// ASan build, `make test-asan`, checks the latter). The Python suite (Tests/python/test_hostile.py)
/// holds the targeted cases; these sweep mechanically.
final class ImporterHostileTests: XCTestCase {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    static func bytes(_ relativePath: String) throws -> [UInt8] {
        let data = try Data(contentsOf: repo.appendingPathComponent(relativePath))
        return [UInt8](data)
    }

    static func files(in folder: String) throws -> [String] {
        let names = try FileManager.default.contentsOfDirectory(atPath: repo.appendingPathComponent(folder).path)
        return names.filter { !$0.hasPrefix(".") && $0 != "README.md" }.sorted().map { "\(folder)/\($0)" }
    }

    /// Loads, plans and runs `bytes` once on zero-filled inputs (dynamic dims 2); returns the
    /// stage reached, for the sweeps' statistics.
    @discardableResult
    static func exercise(_ bytes: [UInt8]) -> String {
        let graph: Graph
        do { graph = try Importer.importModel(bytes: bytes, baseDirectory: nil) } catch { return "import" }
        let session: SessionCore
        do {
            session = try SessionCore(graph: graph, options: SessionOptions(threads: 1, memoryLimit: 64 << 20))
        } catch { return "session" }
        var feeds: [(name: String, tensor: Tensor)] = []
        for input in graph.inputs {
            let type = input.elementType ?? .float
            let shape = (input.shape ?? []).map { $0 < 0 ? 2 : $0 }
            guard type != .string, let count = try? Limits.elementCount(shape, what: "feed"), count <= 1 << 20,
                  let tensor = try? Tensor(zeros: type, shape: shape) else { return "feeds" }
            feeds.append((input.name, tensor))
        }
        do { _ = try session.run(feeds: feeds, outputNames: nil) } catch { return "run" }
        return "ok"
    }

    func testSeedCorpusAndRegressionsRunOrFailCleanly() throws {
        for path in try Self.files(in: "fuzz/corpus") {
            // Valid models: they load and plan; a run may refuse the made-up dynamic sizes.
            XCTAssert(["ok", "run"].contains(Self.exercise(try Self.bytes(path))), path)
        }
        for path in try Self.files(in: "fuzz/regressions") {
            Self.exercise(try Self.bytes(path))
        }
    }

    func testTruncatedModelsFailCleanly() throws {
        let model = try Self.bytes("examples/models/tiny_dcn.onnx")
        var cut = 0
        while cut < model.count {
            Self.exercise(Array(model[..<cut]))
            cut += cut < 64 ? 1 : 97  // every cut in the header, then a spread over the weights
        }
    }

    func testBitFlippedModelsFailCleanly() throws {
        var random = SeededGenerator(seed: 0xDEF0_4A7E)
        let seeds = try Self.files(in: "fuzz/corpus").map { try Self.bytes($0) }
        for _ in 0..<400 {
            var model = seeds[Int.random(in: 0..<seeds.count, using: &random)]
            for _ in 0..<Int.random(in: 1...4, using: &random) {
                let at = Int.random(in: 0..<model.count, using: &random)
                model[at] ^= UInt8(1) << UInt8.random(in: 0..<8, using: &random)
            }
            Self.exercise(model)
        }
    }

    func testRandomBytesAreRefused() throws {
        var random = SeededGenerator(seed: 7)
        for length in [1, 2, 3, 7, 16, 100, 1000] {
            let garbage = (0..<length).map { _ in UInt8.random(in: 0...255, using: &random) }
            XCTAssertThrowsError(try Importer.importModel(bytes: garbage, baseDirectory: nil))
        }
        XCTAssertThrowsError(try Importer.importModel(bytes: [], baseDirectory: nil))
    }

    func testElementCountRefusesOverflowEvenBehindAZeroDim() {
        XCTAssertThrowsError(try Limits.elementCount([1 << 40, 1 << 40], what: "t"))
        XCTAssertThrowsError(try Limits.elementCount([0, 1 << 40, 1 << 40], what: "t"))
        XCTAssertThrowsError(try Limits.elementCount([2, -1], what: "t"))
        XCTAssertThrowsError(try Limits.elementCount([Int](repeating: 1, count: Limits.maxRank + 1), what: "t"))
        XCTAssertEqual(try Limits.elementCount([0, 1 << 20, 1 << 20], what: "t"), 0)
        XCTAssertEqual(try Limits.elementCount([], what: "t"), 1)
        XCTAssertThrowsError(try Limits.byteCount(Int.max / 2, elementSize: 8, what: "t"))
        XCTAssertThrowsError(try Limits.product(Int.max, 2, what: "t"))
    }

    func testMemoryLimitIsCheckedBeforeAllocating() throws {
        let graph = try Importer.importModel(bytes: try Self.bytes("examples/models/tiny_dcn.onnx"), baseDirectory: nil)
        XCTAssertThrowsError(try SessionCore(graph: graph, options: SessionOptions(threads: 1, memoryLimit: 1024))) { error in
            XCTAssertEqual((error as? DeformRTError)?.code, .outOfMemory)
        }
    }
}
