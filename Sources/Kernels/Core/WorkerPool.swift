import Dispatch
import Foundation
import Synchronization

/// Persistent worker threads for `Parallel`: an op's fork/join costs a few atomic operations
/// instead of waking a dispatch worker each time. Workers spin briefly after each job (ops follow
/// each other within microseconds during a step), then sleep on a semaphore with a short timeout;
/// spinning threads yield their core after a short while, so a busy machine is not made busier.
///
/// A job is a number of pieces that the threads claim one at a time, the caller's thread
/// included: a thread that starts late (woken from its sleep) or runs slower takes fewer pieces,
/// instead of the others waiting for its fixed share at the end of every op.
///
/// Each thread first claims the pieces of its own contiguous share (thread w of T: pieces
/// w P/T ..< (w+1) P/T), in order, then those left in the others' shares. Consecutive ops that
/// split the same range (the samples of a batch) so give each thread the items it wrote in the
/// op before, still in its own caches: where the two threads do not share a last-level cache
/// (vCPUs on two core complexes of an AMD EPYC), a piece taken from the shared claim counter by
/// whichever thread came first read the other thread's output across complexes.
final class WorkerPool: @unchecked Sendable {
    let size: Int
    /// The published job: (job number << 16) | (shares << 8) | threads, in one word so that a
    /// worker always sees a job number with its shares and thread count. 0 before the first job.
    private let published = Atomic<Int>(0)
    /// Per share of the job (one per thread), its next unclaimed piece: (job tag << 24) | (end of
    /// the share << 12) | next piece, the tag being the job number modulo 2^39 (a worker would
    /// have to stall for 2^39 jobs to mistake a later job for its own). A worker claims a piece by
    /// advancing it, only while the tag is that of the job it was woken for and pieces of the
    /// share remain, so a late worker never claims a piece of a later job.
    private let claims: [Claim]
    /// One share's claim word, alone on its cache line.
    private final class Claim {
        let word = Atomic<Int>(0)
        let padding = (0, 0, 0, 0, 0, 0, 0, 0)
    }
    /// Whether threads start on their own shares (`NAS_MPI_POOL_SHARES=0`: one share that all
    /// threads claim from, for comparisons).
    private let ownShares = ProcessInfo.processInfo.environment["NAS_MPI_POOL_SHARES"] != "0"
    /// Pieces of the current job finished.
    private let finished = Atomic<Int>(0)
    private var jobNumber = 0
    private let stopped = Atomic<Bool>(false)
    private let wake = DispatchSemaphore(value: 0)
    private let sleepers = Atomic<Int>(0)
    // Written by the caller before publishing a job, read by a worker only after it claimed a
    // piece of that job (the caller cannot return before that piece is finished).
    nonisolated(unsafe) private var job: ((_ worker: Int, _ piece: Int) -> Void)?

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
        claims = (0..<size).map { _ in Claim() }
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

    /// Runs body(worker, piece) for every piece in 0..<pieces on up to `threads` threads: the
    /// caller's (worker 0) and workers 1..<threads, each claiming the next piece until none is left.
    /// `worker` identifies the thread running the piece (for per-thread scratch memory).
    func run(threads: Int, pieces: Int, _ body: (_ worker: Int, _ piece: Int) -> Void) {
        precondition(threads <= size, "WorkerPool: \(threads) threads, the pool has \(size)")
        precondition(threads < 256 && pieces < 1 << 12, "WorkerPool: at most 255 threads and 4095 pieces")
        guard pieces > 0 else { return }
        withoutActuallyEscaping(body) { escaping in
            job = escaping
            jobNumber += 1
            finished.store(0, ordering: .relaxed)
            let shares = ownShares ? min(threads, pieces) : 1
            for r in 0..<shares {
                let (start, end) = (r * pieces / shares, (r + 1) * pieces / shares)
                claims[r].word.store(Self.tag(jobNumber) << 24 | end << 12 | start, ordering: .releasing)
            }
            published.store(jobNumber << 16 | shares << 8 | threads, ordering: .releasing)
            let asleep = sleepers.load(ordering: .acquiring)
            for _ in 0..<asleep { wake.signal() }
            runPieces(0, job: jobNumber, shares: shares)
            var spins = 0
            while finished.load(ordering: .acquiring) < pieces {
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

    private static func tag(_ job: Int) -> Int { job & (1 << 39 - 1) }

    /// Calls the current job on one piece, without keeping a reference to it beyond the call (the
    /// caller may return once the piece is counted finished).
    @inline(never)
    private func runPiece(_ w: Int, _ piece: Int) {
        job?(w, piece)
    }

    /// Claims and runs pieces of job `number` until none is left (or a later job replaced it):
    /// those of the worker's own share first, then the others' in turn.
    @inline(never)
    private func runPieces(_ w: Int, job number: Int, shares: Int) {
        for k in 0..<shares {
            let claim = claims[(w + k) % shares]
            var c = claim.word.load(ordering: .acquiring)
            while c >> 24 == Self.tag(number), c & 0xFFF < (c >> 12) & 0xFFF {
                let (exchanged, original) = claim.word.compareExchange(expected: c, desired: c + 1, ordering: .acquiringAndReleasing)
                guard exchanged else { c = original; continue }
                runPiece(w, c & 0xFFF)
                finished.wrappingAdd(1, ordering: .releasing)
                c = claim.word.load(ordering: .acquiring)
            }
        }
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
            if w < current & 0xFF { runPieces(w, job: current >> 16, shares: (current >> 8) & 0xFF) }
        }
    }
}
