import Search
import XCTest

final class MemoryEstimateTests: XCTestCase {
    func testPaperRunsFitAndAbsurdOnesAreRefusedWithTheFigures() throws {
        // The paper's search (3.9 GB measured, docs/PERFORMANCE.md) and training stay in the GB range.
        let search = try XCTUnwrap(MemoryEstimate.search(SearchConfig.preset(.paper)))
        XCTAssertGreaterThan(search.totalBytes, 1e9)
        XCTAssertLessThan(search.totalBytes, 8e9, MemoryEstimate.format(search.totalBytes))
        let train = try XCTUnwrap(MemoryEstimate.train(TrainConfig.preset(.paper, genotype: .dartsV2, source: "DARTS_V2")))
        XCTAssertLessThan(train.totalBytes, 12e9, MemoryEstimate.format(train.totalBytes))
        XCTAssertNoThrow(try search.check(available: 16e9, advice: ""))
        // More ranks: each holds a smaller share of the batch.
        XCTAssertLessThan(try XCTUnwrap(MemoryEstimate.search(SearchConfig.preset(.paper), ranks: 4)).activationBytes, search.activationBytes)

        var huge = SearchConfig.preset(.quick)
        huge.data.imageShape = [3, 100_000, 100_000]
        let estimate = try XCTUnwrap(MemoryEstimate.search(huge))
        XCTAssertThrowsError(try estimate.check(available: 16e9, advice: "use a smaller --input")) {
            let m = "\($0)"
            XCTAssertTrue(m.contains("this run would need about") && m.contains("PB of memory"), m)
            XCTAssertTrue(m.contains("activations for a batch of 32 images of 3x100000x100000"), m)
            XCTAssertTrue(m.contains("images: 43 TB") && m.contains("this machine has 16 GB; use a smaller --input"), m)
        }
        // Recomputed cells keep their inputs only (train --recompute, as search's).
        var paper = TrainConfig.preset(.paper, genotype: .dartsV2, source: "DARTS_V2")
        var kept: [RecomputePolicy: Double] = [:]
        for policy in [RecomputePolicy.none, .first, .all, .leading(1)] {
            paper.recompute = policy
            kept[policy] = try XCTUnwrap(MemoryEstimate.train(paper)).activationBytes
        }
        XCTAssertLessThan(kept[.all]!, kept[.first]!)
        XCTAssertLessThan(kept[.first]!, kept[.leading(1)]!)
        XCTAssertLessThan(kept[.leading(1)]!, kept[.none]!)
        // One cell rebuilt at a time, the largest: 6 cells of 36 x 32 x 32, 7 of 72 x 16 x 16, 7 of 144 x 8 x 8.
        let stages: Double = 6 * 36864 + 7 * 18432 + 7 * 9216
        XCTAssertEqual(kept[.all]! / kept[.none]!, 36864 / stages, accuracy: 1e-9)

        // The policy's spellings, as flags and in saved configurations.
        for (text, policy) in [("none", RecomputePolicy.none), ("first", .first), ("all", .all), ("auto", .auto), ("3", .leading(3))] {
            XCTAssertEqual(RecomputePolicy(text), policy)
            XCTAssertEqual(policy.description, text)
            let json = try JSONEncoder().encode([policy])
            XCTAssertEqual(String(decoding: json, as: UTF8.self), "[\"\(text)\"]")
            XCTAssertEqual(try JSONDecoder().decode([RecomputePolicy].self, from: json), [policy])
        }
        for text in ["0", "-2", "some", ""] { XCTAssertNil(RecomputePolicy(text), text) }
        XCTAssertThrowsError(try JSONDecoder().decode([RecomputePolicy].self, from: Data("[\"0\"]".utf8)))
        XCTAssertEqual(RecomputePolicy.leading(50).recomputedCells(cells: 8, layers: 8) { 0 }, Set(0..<8))

        XCTAssertEqual(MemoryEstimate.format(4.2e12), "4.2 TB")
        XCTAssertEqual(MemoryEstimate.format(512e6), "512 MB")
        XCTAssertEqual(MemoryEstimate.format(12), "12 bytes")
    }
}
