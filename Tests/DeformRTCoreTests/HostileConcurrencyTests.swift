import DeformRTCore
import Foundation
import TestSupport
import XCTest

/// Sessions under concurrent use (run under ThreadSanitizer by `make test-tsan`): one model
/// shared by eight sessions on eight threads gives bit-identical results to serial runs, and one
/// session called from two threads at once serialises the calls.
final class HostileConcurrencyTests: XCTestCase {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    static func exampleGraph() throws -> Graph {
        try Importer.importModel(path: repo.appendingPathComponent("examples/models/tiny_dcn.onnx").path)
    }

    static func image(seed: UInt64) -> Tensor {
        var random = SeededGenerator(seed: seed)
        return Tensor(floats: random.floats(3 * 32 * 32), shape: [1, 3, 32, 32])
    }

    static func bits(_ tensors: [Tensor]) -> [[UInt32]] {
        tensors.map { t in UnsafeBufferPointer(start: t.floats, count: t.elementCount).map(\.bitPattern) }
    }

    /// Runs `body(i)` for i in 0..<count, each on its own thread, all started together.
    static func onThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
        let group = DispatchGroup()
        let start = DispatchSemaphore(value: 0)
        for i in 0..<count {
            group.enter()
            let thread = Thread {
                start.wait()
                body(i)
                group.leave()
            }
            thread.stackSize = 8 << 20
            thread.start()
        }
        for _ in 0..<count { start.signal() }
        group.wait()
    }

    /// Results written by worker threads, read after they finish.
    final class Results: @unchecked Sendable {
        private let lock = NSLock()
        private var values: [Int: [[UInt32]]] = [:]
        private(set) var errors: [String] = []

        func set(_ index: Int, _ value: [[UInt32]]) { lock.withLock { values[index] = value } }
        func fail(_ message: String) { lock.withLock { errors.append(message) } }
        subscript(index: Int) -> [[UInt32]]? { lock.withLock { values[index] } }
    }

    func testEightSessionsSharingOneModelMatchSerialRuns() throws {
        let graph = try Self.exampleGraph()
        let inputName = graph.inputs[0].name
        // Same thread count as the parallel sessions: the split of work may change rounding.
        let serial = try SessionCore(graph: graph, options: SessionOptions(threads: 2))
        let expected = try (0..<8).map { i in
            Self.bits(try serial.run(feeds: [(inputName, Self.image(seed: UInt64(i)))], outputNames: nil))
        }
        let sessions = try (0..<8).map { _ in try SessionCore(graph: graph, options: SessionOptions(threads: 2)) }
        let results = Results()
        Self.onThreads(8) { i in
            do {
                for _ in 0..<3 {
                    results.set(i, Self.bits(try sessions[i].run(feeds: [(inputName, Self.image(seed: UInt64(i)))], outputNames: nil)))
                }
            } catch { results.fail("session \(i): \(error)") }
        }
        XCTAssertEqual(results.errors, [])
        for i in 0..<8 { XCTAssertEqual(results[i], expected[i], "session \(i) differs from the serial run") }
    }

    func testOneSessionCalledFromTwoThreadsSerialises() throws {
        let graph = try Self.exampleGraph()
        let inputName = graph.inputs[0].name
        let session = try SessionCore(graph: graph, options: SessionOptions(threads: 2))
        let expected = try (0..<2).map { i in
            Self.bits(try session.run(feeds: [(inputName, Self.image(seed: UInt64(100 + i)))], outputNames: nil))
        }
        let results = Results()
        Self.onThreads(2) { i in
            for round in 0..<10 {
                do {
                    let got = Self.bits(try session.run(feeds: [(inputName, Self.image(seed: UInt64(100 + i)))], outputNames: nil))
                    if got != expected[i] { results.fail("thread \(i) round \(round): result differs") }
                } catch { results.fail("thread \(i): \(error)") }
            }
        }
        XCTAssertEqual(results.errors, [])
    }

    func testReplanningSessionsRunConcurrently() throws {
        // Dynamic batch: each thread alternates batch sizes, so its session re-plans every call.
        let bytes = try [UInt8](Data(contentsOf: Self.repo.appendingPathComponent("fuzz/corpus/classifier_head.onnx")))
        let graph = try Importer.importModel(bytes: bytes, baseDirectory: nil)
        let sessions = try (0..<4).map { _ in try SessionCore(graph: graph, options: SessionOptions(threads: 1)) }
        let results = Results()
        Self.onThreads(4) { i in
            for round in 0..<20 {
                let batch = 1 + (round + i) % 3
                var random = SeededGenerator(seed: UInt64(batch))
                let x = Tensor(floats: random.floats(batch * 8), shape: [batch, 2, 2, 2])
                do {
                    let out = try sessions[i].run(feeds: [("x", x)], outputNames: nil)
                    if out[0].shape != [batch, 3] { results.fail("thread \(i): shape \(out[0].shape)") }
                    results.set(i * 100 + round, Self.bits(out))
                } catch { results.fail("thread \(i): \(error)") }
            }
        }
        XCTAssertEqual(results.errors, [])
        // Same batch, same input: same bits whichever thread computed it.
        for i in 0..<4 {
            for round in 0..<20 where (round + i) % 3 == 0 {
                XCTAssertEqual(results[i * 100 + round], results[0 * 100 + 0])
            }
        }
    }
}
