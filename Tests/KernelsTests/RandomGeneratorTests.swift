import Foundation
import Kernels
import XCTest

final class RandomGeneratorTests: XCTestCase {
    func testSameSeedSameSequenceAndStreamsDiffer() {
        var a = RandomGenerator(seed: 42, stream: .dataOrder)
        var b = RandomGenerator(seed: 42, stream: .dataOrder)
        var c = RandomGenerator(seed: 42, stream: .augmentation)
        var d = RandomGenerator(seed: 43, stream: .dataOrder)
        let sa = (0..<100).map { _ in a.next() }
        XCTAssertEqual(sa, (0..<100).map { _ in b.next() })
        XCTAssertNotEqual(sa, (0..<100).map { _ in c.next() })
        XCTAssertNotEqual(sa, (0..<100).map { _ in d.next() })
    }

    func testKnownFirstValuesPinTheAlgorithm() {
        // Pins xoshiro256** + SplitMix64 seeding: a change here silently changes every run.
        var g = RandomGenerator(seed: 0, streamID: 0)
        let first = (0..<3).map { _ in g.next() }
        var h = RandomGenerator(state: (1, 2, 3, 4))
        // Reference values of xoshiro256** from state (1, 2, 3, 4).
        XCTAssertEqual(h.next(), 11520)
        XCTAssertEqual(h.next(), 0)
        XCTAssertEqual(h.next(), 1509978240)
        XCTAssertEqual(h.next(), 1215971899390074240)
        XCTAssertEqual(Set(first).count, 3)
    }

    func testStateRoundTripContinuesSequence() throws {
        var g = RandomGenerator(seed: 7)
        _ = (0..<10).map { _ in g.next() }
        let data = try JSONEncoder().encode(g)
        var restored = try JSONDecoder().decode(RandomGenerator.self, from: data)
        XCTAssertEqual((0..<50).map { _ in g.next() }, (0..<50).map { _ in restored.next() })
        XCTAssertThrowsError(try JSONDecoder().decode(RandomGenerator.self, from: Data(#"{"state":[0,0,0,0]}"#.utf8)))
    }

    func testDistributions() {
        var g = RandomGenerator(seed: 1)
        let n = 100_000
        var sum = 0.0, sum2 = 0.0
        for _ in 0..<n { let v = Double(g.normal()); sum += v; sum2 += v * v }
        XCTAssertEqual(sum / Double(n), 0, accuracy: 0.02)
        XCTAssertEqual(sum2 / Double(n), 1, accuracy: 0.03)
        for _ in 0..<10_000 {
            let u = g.uniform()
            XCTAssertTrue(u >= 0 && u < 1)
            let k = g.int(below: 7)
            XCTAssertTrue((0..<7).contains(k))
        }
        let p = g.permutation(100)
        XCTAssertEqual(p.sorted(), Array(0..<100))
        XCTAssertNotEqual(p, Array(0..<100))
    }
}
