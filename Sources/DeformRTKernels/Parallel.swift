#if canImport(Glibc)
import Glibc
#endif
import CPlatform
import Synchronization

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

/// Threads that wait for their owner to hand them a step. Between steps a worker spins for a
/// while (about 1-3 ms, yielding the core) before it sleeps on a condition variable, and the owner spins for the
/// workers to finish before it sleeps: a network runs hundreds of short parallel steps, and a
/// futex wake-up of a sleeping thread takes 10-50 us on a VM (measured: ResNet-50 at 224x224 on
/// 2 threads lost 10-25% per convolution to wake-ups before the spin). The threads end when the
/// pool is released.
final class WorkerPool: @unchecked Sendable {
    /// What the workers share; they keep it alive, not the pool, so the pool can be freed.
    private final class Shared: @unchecked Sendable {
        var mutex = pthread_mutex_t()
        var wake = pthread_cond_t()
        var finished = pthread_cond_t()
        /// Bumped (release) after `task` and `taskWorkers` are set: a worker that sees a new
        /// generation (acquire) sees the step.
        let generation = Atomic<Int>(0)
        /// Extra threads that have not finished the current step. Every thread checks in for every
        /// step, also when it has no part in it, so none can lag into the next step.
        let pending = Atomic<Int>(0)
        let busy = Atomic<Bool>(false)
        let shutdown = Atomic<Bool>(false)
        var task: ((Int) -> Void)?
        var taskWorkers = 0
        // Under `mutex`: who sleeps, so that wake-ups are sent only when someone needs one.
        var sleepingWorkers = 0
        var ownerSleeping = false

        /// Spins until `done()` or the budget runs out (then false): a few microseconds of PAUSE,
        /// then about 1-3 ms of sched_yield. The yields matter when the thread we wait for
        /// shares our core (more runnable threads than cores, or the scheduler put both on one):
        /// a pure PAUSE loop would hold the core for its whole budget at every step (measured:
        /// 3 ms instead of 0.2 ms per run of a small net on 2 threads).
        @inline(__always)
        static func spin(until done: () -> Bool) -> Bool {
            for _ in 0..<256 {
                if done() { return true }
                deformrt_cpu_relax()
            }
            for _ in 0..<3000 {
                if done() { return true }
                sched_yield()
                deformrt_cpu_relax()
            }
            return done()
        }

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

        /// Waits for a generation after `seen`; nil on shutdown.
        private func nextGeneration(after seen: Int) -> Int? {
            let woken = Self.spin {
                generation.load(ordering: .acquiring) != seen || shutdown.load(ordering: .acquiring)
            }
            if woken {
                return shutdown.load(ordering: .acquiring) ? nil : generation.load(ordering: .acquiring)
            }
            pthread_mutex_lock(&mutex)
            sleepingWorkers += 1
            while generation.load(ordering: .acquiring) == seen && !shutdown.load(ordering: .acquiring) {
                pthread_cond_wait(&wake, &mutex)
            }
            sleepingWorkers -= 1
            pthread_mutex_unlock(&mutex)
            if shutdown.load(ordering: .acquiring) { return nil }
            return generation.load(ordering: .acquiring)
        }

        /// Runs this thread's part of the step, if it has one. A function of its own so that its
        /// reference to the task is gone before the thread checks out (the owner then drops the
        /// task, and withoutActuallyEscaping checks that nothing else holds it).
        @inline(never)
        private func runPart(_ index: Int) {
            guard index < taskWorkers, let task else { return }
            task(index)
        }

        func work(as index: Int) {
            var seen = 0
            while let current = nextGeneration(after: seen) {
                seen = current
                runPart(index)
                if pending.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 {
                    pthread_mutex_lock(&mutex)
                    if ownerSleeping { pthread_cond_signal(&finished) }
                    pthread_mutex_unlock(&mutex)
                }
            }
        }

        /// The owner's side of a step: publish, wake sleepers, run worker 0, wait for the rest.
        func runStep(workers: Int, extraThreads: Int, _ task: @escaping (Int) -> Void) {
            self.task = task
            taskWorkers = workers
            pending.store(extraThreads, ordering: .relaxed)
            generation.add(1, ordering: .releasing)
            pthread_mutex_lock(&mutex)
            if sleepingWorkers > 0 { pthread_cond_broadcast(&wake) }
            pthread_mutex_unlock(&mutex)
            task(0)
            if !Self.spin(until: { pending.load(ordering: .acquiring) == 0 }) {
                pthread_mutex_lock(&mutex)
                ownerSleeping = true
                while pending.load(ordering: .acquiring) > 0 { pthread_cond_wait(&finished, &mutex) }
                ownerSleeping = false
                pthread_mutex_unlock(&mutex)
            }
            self.task = nil
        }

        func stop() {
            shutdown.store(true, ordering: .releasing)
            pthread_mutex_lock(&mutex)
            pthread_cond_broadcast(&wake)
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
                // Worker indices must stay contiguous: run with the threads made so far.
                Unmanaged<Start>.fromOpaque(start).release()
                break
            }
        }
    }

    deinit {
        shared.stop()
        for thread in threads { pthread_join(thread, nil) }
    }

    /// Runs body(0..<workers) with the caller as worker 0. Returns false, running nothing, when
    /// the pool is already running a step or has too few threads.
    func run(workers: Int, _ body: (Int) -> Void) -> Bool {
        if workers - 1 > threads.count { return false }
        guard shared.busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            return false
        }
        withoutActuallyEscaping(body) { task in shared.runStep(workers: workers, extraThreads: threads.count, task) }
        shared.busy.store(false, ordering: .releasing)
        return true
    }
}
