@testable import DeformRTCore
import TestSupport
import XCTest

final class PlannerTests: XCTestCase {
    /// Blocks alive at the same step never share bytes, and the arena is no larger than their sum.
    func testArenaBlocksWithOverlappingLifetimesDoNotOverlap() {
        var generator = SeededGenerator(seed: 42)
        for _ in 0..<200 {
            var blocks: [ArenaBlock] = (0..<Int.random(in: 1...30, using: &generator)).map { value in
                let first = Int.random(in: 0..<20, using: &generator)
                return ArenaBlock(value: value, bytes: Int.random(in: 0...5000, using: &generator), first: first,
                                  last: first + Int.random(in: 0..<6, using: &generator))
            }
            let total = ArenaBlock.assignOffsets(&blocks)
            let rounded = blocks.map { ($0.bytes + 63) / 64 * 64 }
            XCTAssertLessThanOrEqual(total, rounded.reduce(0, +))
            for i in blocks.indices {
                XCTAssertEqual(blocks[i].offset % 64, 0)
                XCTAssertLessThanOrEqual(blocks[i].offset + rounded[i], total)
                for j in blocks.indices where i < j {
                    let liveTogether = blocks[i].first <= blocks[j].last && blocks[j].first <= blocks[i].last
                    let bytesOverlap = blocks[i].offset < blocks[j].offset + rounded[j] && blocks[j].offset < blocks[i].offset + rounded[i]
                    XCTAssertFalse(liveTogether && bytesOverlap && rounded[i] > 0 && rounded[j] > 0)
                }
            }
        }
    }

    /// A chain of values, each used only by the next step, reuses memory: the arena holds two.
    func testChainReusesMemory() {
        var blocks = (0..<10).map { ArenaBlock(value: $0, bytes: 1024, first: $0, last: $0 + 1) }
        XCTAssertEqual(ArenaBlock.assignOffsets(&blocks), 2048)
    }

    func testBroadcastShapes() throws {
        XCTAssertEqual(try Broadcast.shape([2, 3, 4], [4]), [2, 3, 4])
        XCTAssertEqual(try Broadcast.shape([2, 1, 4], [3, 1]), [2, 3, 4])
        XCTAssertEqual(try Broadcast.shape([], [5]), [5])
        XCTAssertThrowsError(try Broadcast.shape([2, 3], [4]))
    }

    func testCoalesceMergesContiguousDims() {
        let out = [2, 3, 4, 5]
        let (shape, strides) = Broadcast.coalesce(out, [Broadcast.strides(out, into: out), Broadcast.strides([3, 1, 1], into: out)])
        XCTAssertEqual(shape, [2, 3, 20])
        XCTAssertEqual(strides[0], [60, 20, 1])
        XCTAssertEqual(strides[1], [0, 1, 0])
    }

    func testElementCountRefusesOverflowAndNegativeDims() {
        XCTAssertThrowsError(try Limits.elementCount([1 << 30, 1 << 30, 1 << 30], what: "t"))
        XCTAssertThrowsError(try Limits.elementCount([3, -1], what: "t"))
        XCTAssertEqual(try Limits.elementCount([3, 0, 7], what: "t"), 0)
    }
}
