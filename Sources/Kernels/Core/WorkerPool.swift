import Dispatch
import Foundation
import Synchronization

/// Persistent worker threads for `Parallel`: an op's fork/join costs a few atomic operations
/// instead of waking a dispatch worker each time. Workers spin briefly after each job (ops follow
/// each other within microseconds during a step), then sleep on a semaphore with a short timeout;
/// spinning threads yield their core after a short while, so a busy machine is not made busier.
final class WorkerPool: @unchecked Sendable {
    let size: Int
    /// The published job: (job number << 8) | chunks, in one word so that a worker always sees a
    /// job number and its chunk count together. 0 before the first job.
    private let published = Atomic<Int>(0)
    private var jobNumber = 0
    private let pending = Atomic<Int>(0)
    private let stopped = Atomic<Bool>(false)
    private let wake = DispatchSemaphore(value: 0)
    private let sleepers = Atomic<Int>(0)
    // Written by the caller before publishing a generation, read by workers after observing it.
    nonisolated(unsafe) private var job: ((Int) -> Void)?

    /// Marks pool threads, so a nested parallel call runs inline.
    nonisolated(unsafe) static var workerThreadFlag: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    static var onWorkerThread: Bool { pthread_getspecific(workerThreadFlag) != nil }

    /// A pool of `size - 1` workers (the caller's thread is the first).
    init(size: Int) {
        self.size = size
        for w in 1..<size {
            let t = Thread { [self] in  // the thread keeps the pool alive until it exits
                pthread_setspecific(WorkerPool.workerThreadFlag, UnsafeRawPointer(bitPattern: 1))
                self.workerLoop(w)
            }
            t.stackSize = 1 << 20
            t.start()
        }
    }

    /// Ends the workers (they exit after their current wait).
    func stop() {
        stopped.store(true, ordering: .releasing)
        for _ in 0..<size { wake.signal() }
    }

    /// Runs body(0..<chunks) with chunk 0 on the caller's thread and chunk w on worker w.
    func run(chunks: Int, _ body: (Int) -> Void) {
        precondition(chunks <= size, "WorkerPool: \(chunks) chunks for \(size) threads")
        precondition(chunks < 256, "WorkerPool: at most 255 chunks")
        withoutActuallyEscaping(body) { escaping in
            job = escaping
            pending.store(chunks - 1, ordering: .releasing)
            jobNumber += 1
            published.store(jobNumber << 8 | chunks, ordering: .releasing)
            let asleep = sleepers.load(ordering: .acquiring)
            for _ in 0..<asleep { wake.signal() }
            escaping(0)
            var spins = 0
            while pending.load(ordering: .acquiring) > 0 {
                spins += 1
                if spins & 0xFFF == 0, sleepers.load(ordering: .acquiring) > 0 { wake.signal() }
                // After a short spin, give the core away: when another process competes for the
                // cores (ranks oversubscribed, a neighbour's job), the worker this thread waits
                // for may be the one that needs it. Without contention the yield returns at once.
                if spins > 2_000 { sched_yield() }
            }
            job = nil
        }
    }

    /// Calls the current job without keeping a reference to it beyond the call.
    @inline(never)
    private func runChunk(_ w: Int) {
        job?(w)
    }

    private func workerLoop(_ w: Int) {
        // Start from "no job yet": a worker that starts after the first job was published still
        // takes its chunk (the job cannot finish without it).
        var seen = 0
        while !stopped.load(ordering: .acquiring) {
            var current = published.load(ordering: .acquiring)
            var spins = 0
            while current == seen && spins < 20_000 {
                spins += 1
                if spins > 2_000 && spins & 0xFF == 0 { sched_yield() }
                current = published.load(ordering: .acquiring)
            }
            if current == seen {
                sleepers.wrappingAdd(1, ordering: .acquiringAndReleasing)
                if published.load(ordering: .acquiring) == seen {
                    _ = wake.wait(timeout: .now() + .milliseconds(2))
                }
                sleepers.wrappingSubtract(1, ordering: .acquiringAndReleasing)
                continue
            }
            seen = current
            if w < current & 0xFF {
                runChunk(w)
                // The job closure is no longer referenced here: the caller may return.
                pending.wrappingSubtract(1, ordering: .acquiringAndReleasing)
            }
        }
    }
}
