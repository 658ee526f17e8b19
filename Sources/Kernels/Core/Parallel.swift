import Dispatch
import Foundation
import CBLAS

/// Intra-op threading: how many threads one op may use, and the loop that splits work over them.
///
/// nas-mpi parallelises its kernels itself (over samples or channels) and keeps OpenBLAS at one
/// thread, so a GEMM called inside a parallel loop never starts threads of its own and N ranks on a
/// node never start more threads than `threads` each.
public enum Parallel {
    nonisolated(unsafe) private static var _threads = 1

    /// The number of threads an op may use (at least 1).
    public static var threads: Int { _threads }

    /// Sets the intra-op thread count and pins OpenBLAS to one thread.
    nonisolated(unsafe) private static var pool: WorkerPool?
    /// True while the pool runs a job (set and read by the thread that calls `forChunks`).
    nonisolated(unsafe) private static var inRegion = false

    public static func setThreads(_ n: Int) {
        _threads = max(1, n)
        if pool?.size != _threads {
            pool?.stop()
            pool = _threads > 1 ? WorkerPool(size: _threads) : nil
        }
        openblas_set_num_threads(1)
        if let v = ProcessInfo.processInfo.environment["NASMPI_MIN_PARALLEL_WORK"], let w = Int(v), w >= 0 {
            minimumParallelWork = w
        }
    }

    /// Below this much work (elements touched, or multiply-accumulates) an op runs on one thread:
    /// waking a second thread and sharing cache lines costs more than it saves. Measured with
    /// `nas-mpi bench step` on the DARTS C=8 supernet (see docs/PERFORMANCE.md).
    nonisolated(unsafe) public static var minimumParallelWork = 1 << 18

    /// How many pieces `forChunks` cuts its range into per thread, for the threads to claim
    /// (at most 255 threads x 8 pieces: within `WorkerPool`'s 4095).
    static let piecesPerThread = 8

    /// Runs `body(worker, range)` over 0..<count cut into contiguous pieces, which up to
    /// `threads` threads claim one at a time (a body runs several times on one thread, in no
    /// fixed order).
    ///
    /// Which thread runs which items varies: use this for work whose items are independent
    /// (each writes its own outputs), and `forParts` for partial results that are summed.
    /// `worker` is the thread's index in 0..<chunks(count), for indexing per-worker scratch memory.
    /// With one thread, one item, or less than `minimumParallelWork` of `work`, the body runs
    /// inline on the caller's thread.
    @inline(__always)
    public static func forChunks(_ count: Int, work: Int = .max, _ body: (_ worker: Int, _ range: Range<Int>) -> Void) {
        let chunks = Parallel.chunks(count, work: work)
        // Nested calls (from inside a chunk, on any thread) run inline: the pool runs one job at a time.
        if chunks <= 1 || inRegion || WorkerPool.onWorkerThread {
            if count > 0 { body(0, 0..<count) }
            return
        }
        if let pool {
            inRegion = true
            defer { inRegion = false }
            // Several pieces per thread, claimed as threads come free (see `WorkerPool`).
            let pieces = min(count, chunks * piecesPerThread)
            pool.run(threads: chunks, pieces: pieces) { worker, p in body(worker, (p * count / pieces)..<((p + 1) * count / pieces)) }
        } else {
            DispatchQueue.concurrentPerform(iterations: chunks) { c in
                body(c, (c * count / chunks)..<((c + 1) * count / chunks))
            }
        }
    }

    /// Runs `body(worker, part, range)` for each of `parts` contiguous parts of 0..<count, the
    /// parts claimed by the threads in runs of consecutive parts (`forChunks`).
    ///
    /// Use this, not `forChunks`, when each part's result is summed with the others: the ranges
    /// depend only on `count` and `parts` (part p is p * count / parts ..< (p + 1) * count / parts),
    /// never on the thread count or on `work`, so per-part partial sums added in part order give
    /// bit-identical results for any `--threads`. Threads only decide who computes which part.
    /// `worker` is in 0..<workers(parts:work:), for indexing per-worker scratch memory that does
    /// not carry results (im2col columns); results go to per-part buffers indexed by `part`.
    @inline(__always)
    public static func forParts(_ count: Int, parts: Int, work: Int = .max,
                                _ body: (_ worker: Int, _ part: Int, _ range: Range<Int>) -> Void) {
        guard count > 0, parts > 0 else { return }
        forChunks(parts, work: work) { worker, partRange in
            for part in partRange { body(worker, part, (part * count / parts)..<((part + 1) * count / parts)) }
        }
    }

    /// The number of workers `forParts(_:parts:work:)` uses (size per-worker scratch with it).
    public static func workers(parts: Int, work: Int = .max) -> Int { chunks(parts, work: work) }

    /// At most this many parts in a summed reduction: enough for 24 threads, and 24 parts split
    /// evenly over 1, 2, 3, 4, 6, 8 or 12 threads.
    public static let maximumSummationParts = 24

    /// How many parts to split `count` summed items into (see `forParts`): a function of `count`
    /// alone, min(count, `maximumSummationParts`).
    public static func summationParts(_ count: Int) -> Int { min(max(count, 0), maximumSummationParts) }

    /// Runs `body(i)` for every i in 0..<count, split over the threads.
    @inline(__always)
    public static func forEach(_ count: Int, work: Int = .max, _ body: (Int) -> Void) {
        forChunks(count, work: work) { _, range in for i in range { body(i) } }
    }

    /// Runs `body` over 0..<count split into contiguous ranges for elementwise loops: one range
    /// on one thread below `grain` elements (threads cost more than they save on small tensors).
    @inline(__always)
    public static func forRanges(_ count: Int, grain: Int = 1 << 16, _ body: (Range<Int>) -> Void) {
        if _threads <= 1 || count < grain {
            if count > 0 { body(0..<count) }
            return
        }
        forChunks(count) { _, r in body(r) }
    }

    /// The number of chunks `forChunks(count, work:)` uses (size per-worker scratch with it).
    public static func chunks(_ count: Int, work: Int = .max) -> Int {
        work < minimumParallelWork ? min(1, max(count, 0)) : min(_threads, max(count, 0))
    }
}

/// Reusable scratch buffers (im2col columns, reduction partials), kept between steps.
///
/// `withBuffers` lends `n` buffers of at least `size` floats each; they return to the pool when the
/// closure ends. The pool only grows, so a training loop reaches a steady state with no allocation.
public final class ScratchPool: @unchecked Sendable {
    public static let shared = ScratchPool()

    private var free: [(UnsafeMutablePointer<Float>, Int)] = []
    private let lock = NSLock()

    /// Lends `n` buffers of at least `size` floats to `body`.
    public func withBuffers<R>(_ n: Int, size: Int, _ body: ([UnsafeMutablePointer<Float>]) throws -> R) rethrows -> R {
        var taken: [(UnsafeMutablePointer<Float>, Int)] = []
        taken.reserveCapacity(n)
        lock.lock()
        for _ in 0..<n {
            if let i = free.firstIndex(where: { $0.1 >= size }) {
                taken.append(free.remove(at: i))
            } else if let last = free.popLast() {
                last.0.deallocate()
                taken.append((UnsafeMutablePointer<Float>.allocate(capacity: max(size, 1)), size))
            } else {
                taken.append((UnsafeMutablePointer<Float>.allocate(capacity: max(size, 1)), size))
            }
        }
        lock.unlock()
        defer {
            lock.lock()
            free.append(contentsOf: taken)
            lock.unlock()
        }
        return try body(taken.map { $0.0 })
    }

    /// Floats currently held by the pool (for memory reports).
    public var heldFloats: Int {
        lock.lock(); defer { lock.unlock() }
        return free.reduce(0) { $0 + $1.1 }
    }
}
