import Foundation
import Kernels
import XCTest

final class ParallelTests: XCTestCase {
    override func tearDown() { Parallel.setThreads(1) }

    /// Every index is visited exactly once, by chunk-contiguous workers, across many fork/joins of
    /// the persistent pool (including after idle periods, when the workers have gone to sleep).
    func testChunksCoverEveryIndexOnceAcrossRepeatedJoins() {
        for threads in [2, 3] {
            Parallel.setThreads(threads)
            for round in 0..<300 {
                let n = 1 + (round * 7919) % 1000
                var hits = [Int](repeating: 0, count: n)
                var workersSeen = Set<Int>()
                let lock = NSLock()
                hits.withUnsafeMutableBufferPointer { h in
                    Parallel.forChunks(n) { worker, range in
                        lock.lock(); workersSeen.insert(worker); lock.unlock()
                        for i in range { h[i] += 1 }
                    }
                }
                XCTAssertTrue(hits.allSatisfy { $0 == 1 }, "threads \(threads), n \(n)")
                XCTAssertEqual(workersSeen.count, min(threads, n))
                if round % 100 == 99 { usleep(5_000) }  // let the workers fall asleep
            }
        }
    }

    func testNestedCallsRunInline() {
        Parallel.setThreads(2)
        var inner = [Int](repeating: 0, count: 2)
        inner.withUnsafeMutableBufferPointer { p in
            Parallel.forChunks(2) { worker, _ in
                var count = 0
                Parallel.forEach(10) { _ in count += 1 }   // nested: must not deadlock
                p[worker] = count
            }
        }
        XCTAssertEqual(inner, [10, 10])
    }
}
