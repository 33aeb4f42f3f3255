import Dispatch

/// Spreads independent pieces of one kernel over a fixed number of threads.
///
/// Kernels take a `Parallel` instead of spawning threads themselves, so a session's thread
/// count is the only knob. With one thread everything runs inline on the caller's thread.
public struct Parallel: Sendable {
    public let threads: Int

    public init(threads: Int) {
        self.threads = max(1, threads)
    }

    public static let serial = Parallel(threads: 1)

    /// Calls `body(i)` for every `i` in `0..<count`; worker `w` takes `w, w + workers, ...`.
    public func forEach(_ count: Int, _ body: (Int) -> Void) {
        let workers = min(threads, count)
        if workers <= 1 {
            for i in 0..<count { body(i) }
            return
        }
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            var i = worker
            while i < count {
                body(i)
                i += workers
            }
        }
    }

    /// Splits `0..<count` into at most `threads` contiguous ranges of near-equal size and calls
    /// `body(workerIndex, range)` for each; `workerIndex` < `threads` picks per-thread scratch.
    public func forEachRange(_ count: Int, _ body: (_ worker: Int, _ range: Range<Int>) -> Void) {
        let workers = min(threads, count)
        if workers <= 1 {
            if count > 0 { body(0, 0..<count) }
            return
        }
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            let start = count * worker / workers
            let end = count * (worker + 1) / workers
            body(worker, start..<end)
        }
    }
}
