import DeformRTKernels
import XCTest

final class ParallelTests: XCTestCase {
    /// Every index is visited exactly once, for any thread count and item count, step after step.
    func testEveryIndexOnceOverManySteps() {
        for threads in [1, 2, 3, 5] {
            let parallel = Parallel(threads: threads)
            for count in [0, 1, 2, 7, 64, 1000] {
                for _ in 0..<20 {
                    let hits = UnsafeMutablePointer<Int>.allocate(capacity: max(count, 1))
                    hits.initialize(repeating: 0, count: max(count, 1))
                    parallel.forEach(count) { hits[$0] += 1 }
                    XCTAssertTrue((0..<count).allSatisfy { hits[$0] == 1 }, "threads \(threads), count \(count)")
                    hits.initialize(repeating: 0, count: max(count, 1))
                    parallel.forEachRange(count) { worker, range in
                        XCTAssertLessThan(worker, threads)
                        for i in range { hits[i] += 1 }
                    }
                    XCTAssertTrue((0..<count).allSatisfy { hits[$0] == 1 }, "threads \(threads), count \(count)")
                    hits.deallocate()
                }
            }
        }
    }

    /// A step started from inside a step runs serially instead of deadlocking on the busy pool.
    func testNestedStepsRunSerially() {
        let parallel = Parallel(threads: 2)
        let hits = UnsafeMutablePointer<Int>.allocate(capacity: 4 * 8)
        hits.initialize(repeating: 0, count: 32)
        parallel.forEach(4) { outer in
            parallel.forEach(8) { inner in hits[outer * 8 + inner] += 1 }
        }
        XCTAssertTrue((0..<32).allSatisfy { hits[$0] == 1 })
        hits.deallocate()
    }

    /// Pools are released with their owner: making many does not accumulate threads.
    func testPoolsAreReleased() {
        for _ in 0..<200 {
            let parallel = Parallel(threads: 3)
            let counter = Counter()
            parallel.forEach(3) { _ in counter.increment() }
            XCTAssertEqual(counter.value, 3)
        }
    }
}

/// A tiny mutex-protected counter (the tests avoid Foundation).
private final class Counter: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    init() { pthread_mutex_init(&mutex, nil) }
    deinit { pthread_mutex_destroy(&mutex) }
    private(set) var value = 0
    func increment() {
        pthread_mutex_lock(&mutex)
        value += 1
        pthread_mutex_unlock(&mutex)
    }
}

#if canImport(Glibc)
import Glibc
#endif
