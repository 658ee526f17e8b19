import Foundation
import Kernels
import XCTest

final class ParallelTests: XCTestCase {
    override func tearDown() { Parallel.setThreads(1) }

    /// Every index is visited exactly once, in contiguous pieces that the threads claim, across
    /// many fork/joins of the persistent pool (including after idle periods, when the workers have
    /// gone to sleep); every thread takes pieces in some of them.
    func testChunksCoverEveryIndexOnceAcrossRepeatedJoins() {
        for threads in [2, 3] {
            Parallel.setThreads(threads)
            var everyWorker = Set<Int>()
            for round in 0..<300 {
                let n = 1 + (round * 7919) % 1000
                var hits = [Int](repeating: 0, count: n)
                var workersSeen = Set<Int>()
                let lock = NSLock()
                hits.withUnsafeMutableBufferPointer { h in
                    Parallel.forChunks(n) { worker, range in
                        lock.lock(); workersSeen.insert(worker); lock.unlock()
                        for i in range { h[i] += 1 }
                        if range.count > 1 { usleep(20) }  // long enough pieces for the others to join in
                    }
                }
                XCTAssertTrue(hits.allSatisfy { $0 == 1 }, "threads \(threads), n \(n)")
                XCTAssertTrue(workersSeen.allSatisfy { $0 >= 0 && $0 < min(threads, n) }, "threads \(threads), workers \(workersSeen)")
                everyWorker.formUnion(workersSeen)
                if round % 100 == 99 { usleep(5_000) }  // let the workers fall asleep
            }
            XCTAssertEqual(everyWorker, Set(0..<threads), "threads \(threads)")
        }
    }

    /// `forParts` visits the same parts with the same ranges for any thread count and any
    /// `minimumParallelWork`; only the worker that runs a part changes.
    func testPartsDependOnlyOnTheProblemSize() {
        let saved = Parallel.minimumParallelWork
        defer { Parallel.minimumParallelWork = saved }
        for count in [1, 5, 23, 24, 25, 32, 100] {
            let parts = Parallel.summationParts(count)
            XCTAssertEqual(parts, min(count, Parallel.maximumSummationParts))
            var reference: [Range<Int>]?
            for (threads, minimumWork) in [(1, 0), (2, 0), (3, 0), (3, Int.max)] {
                Parallel.setThreads(threads)
                Parallel.minimumParallelWork = minimumWork
                var ranges = [Range<Int>](repeating: 0..<0, count: parts)
                var workers = [Int](repeating: -1, count: parts)
                ranges.withUnsafeMutableBufferPointer { r in
                    workers.withUnsafeMutableBufferPointer { w in
                        Parallel.forParts(count, parts: parts, work: count) { worker, part, range in
                            r[part] = range; w[part] = worker
                        }
                    }
                }
                XCTAssertEqual(ranges.map(\.count).reduce(0, +), count)
                XCTAssertEqual(ranges.first?.lowerBound, 0)
                XCTAssertTrue(zip(ranges, ranges.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound })
                XCTAssertTrue(workers.allSatisfy { $0 >= 0 && $0 < Parallel.workers(parts: parts, work: count) })
                if let reference { XCTAssertEqual(ranges, reference, "count \(count), \(threads) threads") }
                reference = ranges
            }
        }
    }

    func testNestedCallsRunInline() {
        Parallel.setThreads(2)
        var inner = [Int](repeating: 0, count: 2)
        inner.withUnsafeMutableBufferPointer { p in
            Parallel.forChunks(2) { _, range in
                for i in range {
                    var count = 0
                    Parallel.forEach(10) { _ in count += 1 }   // nested: must not deadlock
                    p[i] = count
                }
            }
        }
        XCTAssertEqual(inner, [10, 10])
    }
}
