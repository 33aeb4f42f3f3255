#if canImport(Glibc)
import Glibc
#endif

/// Spreads independent pieces of one kernel over a fixed number of threads.
///
/// Kernels take a `Parallel` instead of spawning threads themselves, so a session's thread
/// count is the only knob. With one thread everything runs inline on the caller's thread; with
/// more, the caller is worker 0 and the others come from threads this value keeps waiting
/// (Dispatch's concurrentPerform sometimes ran a step on one thread, halving a layer's speed).
public struct Parallel: @unchecked Sendable {
    public let threads: Int
    private let pool: WorkerPool?

    public init(threads: Int) {
        self.threads = max(1, threads)
        pool = self.threads > 1 ? WorkerPool(extraThreads: self.threads - 1) : nil
    }

    public static let serial = Parallel(threads: 1)

    /// Calls `body(i)` for every `i` in `0..<count`; worker `w` takes `w, w + workers, ...`.
    public func forEach(_ count: Int, _ body: (Int) -> Void) {
        let workers = min(threads, count)
        run(workers) { worker in
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
        run(workers) { worker in
            let start = count * worker / workers
            let end = count * (worker + 1) / workers
            body(worker, start..<end)
        }
    }

    /// The one rule for work too small to split: each extra thread must get at least this many
    /// elementary operations (loads, multiply-adds), or waking it costs more than it saves
    /// (a wake-up and the join take a few microseconds; this is ~5 us of streaming work).
    public static let minimumWorkPerThread = 1 << 15

    /// How many workers `totalWork` operations over `count` pieces deserve.
    public func workers(for count: Int, totalWork: Int) -> Int {
        min(threads, count, max(1, totalWork / Self.minimumWorkPerThread))
    }

    /// `forEachRange` for pieces of known total work: small jobs run inline on the caller.
    public func forEachRange(_ count: Int, totalWork: Int, _ body: (_ worker: Int, _ range: Range<Int>) -> Void) {
        let workers = workers(for: count, totalWork: totalWork)
        run(workers) { worker in
            let start = count * worker / workers
            let end = count * (worker + 1) / workers
            body(worker, start..<end)
        }
    }

    /// body(0..<workers), one call per worker. A nested call (from inside a body) finds the pool
    /// busy and runs its workers one after another on the calling thread.
    private func run(_ workers: Int, _ body: (Int) -> Void) {
        if workers <= 0 { return }
        if workers > 1, let pool, pool.run(workers: workers, body) { return }
        for worker in 0..<workers { body(worker) }
    }
}

/// Threads that sleep until their owner hands them a step: each parallel step costs one wake-up.
/// The threads end when the pool is released.
final class WorkerPool: @unchecked Sendable {
    /// What the workers share; they keep it alive, not the pool, so the pool can be freed.
    private final class Shared: @unchecked Sendable {
        var mutex = pthread_mutex_t()
        var wake = pthread_cond_t()
        var finished = pthread_cond_t()
        var generation = 0
        var task: ((Int) -> Void)?
        var taskWorkers = 0
        var pending = 0
        var busy = false
        var shutdown = false

        init() {
            pthread_mutex_init(&mutex, nil)
            pthread_cond_init(&wake, nil)
            pthread_cond_init(&finished, nil)
        }

        deinit {
            pthread_cond_destroy(&finished)
            pthread_cond_destroy(&wake)
            pthread_mutex_destroy(&mutex)
        }

        func work(as index: Int) {
            var seen = 0
            pthread_mutex_lock(&mutex)
            while true {
                while generation == seen && !shutdown { pthread_cond_wait(&wake, &mutex) }
                if shutdown { break }
                seen = generation
                guard index < taskWorkers, let task else { continue }
                pthread_mutex_unlock(&mutex)
                task(index)
                pthread_mutex_lock(&mutex)
                pending -= 1
                if pending == 0 { pthread_cond_signal(&finished) }
            }
            pthread_mutex_unlock(&mutex)
        }
    }

    private final class Start {
        let shared: Shared
        let index: Int
        init(_ shared: Shared, _ index: Int) {
            self.shared = shared
            self.index = index
        }
    }

    private let shared = Shared()
    private var threads: [pthread_t] = []

    init(extraThreads: Int) {
        for index in 1...max(1, extraThreads) {
            var thread = pthread_t()
            let start = Unmanaged.passRetained(Start(shared, index)).toOpaque()
            let created = pthread_create(&thread, nil, { argument in
                let start = Unmanaged<Start>.fromOpaque(argument!).takeRetainedValue()
                start.shared.work(as: start.index)
                return nil
            }, start)
            if created == 0 {
                threads.append(thread)
            } else {
                Unmanaged<Start>.fromOpaque(start).release()
            }
        }
    }

    deinit {
        pthread_mutex_lock(&shared.mutex)
        shared.shutdown = true
        pthread_cond_broadcast(&shared.wake)
        pthread_mutex_unlock(&shared.mutex)
        for thread in threads { pthread_join(thread, nil) }
    }

    /// Runs body(0..<workers) with the caller as worker 0. Returns false, running nothing, when
    /// the pool is already running a step or has too few threads.
    func run(workers: Int, _ body: (Int) -> Void) -> Bool {
        if workers - 1 > threads.count { return false }
        return withoutActuallyEscaping(body) { task in
            pthread_mutex_lock(&shared.mutex)
            if shared.busy {
                pthread_mutex_unlock(&shared.mutex)
                return false
            }
            shared.busy = true
            shared.task = task
            shared.taskWorkers = workers
            shared.pending = workers - 1
            shared.generation += 1
            pthread_cond_broadcast(&shared.wake)
            pthread_mutex_unlock(&shared.mutex)
            task(0)
            pthread_mutex_lock(&shared.mutex)
            while shared.pending > 0 { pthread_cond_wait(&shared.finished, &shared.mutex) }
            shared.task = nil
            shared.busy = false
            pthread_mutex_unlock(&shared.mutex)
            return true
        }
    }
}
