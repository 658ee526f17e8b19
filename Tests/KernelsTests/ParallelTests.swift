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

    /// Each thread starts on its own contiguous share of the pieces (thread 1 of 2 on the second
    /// half), in order, so consecutive ops over the same range give each thread the items it had
    /// before; a thread that finishes its share takes what is left of the other's.
    func testThreadsStartOnTheirOwnShares() {
        Parallel.setThreads(2)
        Parallel.forChunks(64) { _, _ in usleep(100) }  // the worker is up and spinning
        var order = [[Int]](repeating: [], count: 2)
        let lock = NSLock()
        Parallel.forChunks(16) { worker, range in
            lock.lock(); order[worker].append(contentsOf: range); lock.unlock()
            usleep(5_000)  // the worker has 40 ms to claim the first piece of its share
        }
        XCTAssertEqual((order[0] + order[1]).sorted(), Array(0..<16))
        XCTAssertEqual(order[0].first, 0, "\(order)")
        XCTAssertEqual(order[1].first, 8, "the second thread starts on the second half: \(order)")
        XCTAssertEqual(Array(order[0].prefix { $0 < 8 }), Array(0..<order[0].prefix { $0 < 8 }.count), "in order: \(order)")
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
