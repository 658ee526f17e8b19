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
        XCTAssertEqual(MemoryEstimate.format(4.2e12), "4.2 TB")
        XCTAssertEqual(MemoryEstimate.format(512e6), "512 MB")
        XCTAssertEqual(MemoryEstimate.format(12), "12 bytes")
    }
}
