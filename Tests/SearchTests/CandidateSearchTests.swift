import Foundation
import XCTest
@testable import Search

/// Rank 0's side of a full-training search: its state on disk and what a resume does with it.
final class CandidateSearchTests: XCTestCase {
    private func config() -> CandidateSearchConfig {
        var t = TrainConfig.preset(.quick, genotype: .dartsV2, source: "candidate")
        t.validationSplit = 0.5
        t.evaluateTest = false
        return CandidateSearchConfig(strategy: .evolution, candidates: 6, population: 3, sampleSize: 2, ranksPerCandidate: 1,
                                     seed: 7, training: t)
    }

    private func result(_ acc: Double) -> CandidateResult {
        var r = CandidateResult(status: .ok)
        r.validationAccuracy = acc
        r.validationLoss = 1
        r.ranks = [0]
        return r
    }

    func testAResultWrittenButNotSavedIsReplayedAndACutOffLineIsDropped() throws {
        let dir = RunDirectory(try temporaryDirectory().path)
        let search = try CandidateSearch(config: config(), directory: dir, resume: false)
        let a = try XCTUnwrap(try search.nextTask(for: 0)), b = try XCTUnwrap(try search.nextTask(for: 0))
        let c = try XCTUnwrap(try search.nextTask(for: 0))
        try search.record(CandidateOutcome(result: result(0.5), stoppedBy: nil), of: a, group: 0)
        let saved = try Data(contentsOf: search.stateFile)
        // b finishes: its line is appended, then the process dies before strategy.json is replaced.
        try search.record(CandidateOutcome(result: result(0.8), stoppedBy: nil), of: b, group: 0)
        try saved.write(to: search.stateFile)
        // c's line was being appended when the process died: cut off.
        let handle = try FileHandle(forWritingTo: search.candidatesFile)
        handle.seekToEndOfFile()
        handle.write(Data("{\"id\":\(c.id),\"sta".utf8))
        handle.closeFile()

        let resumed = try CandidateSearch(config: config(), directory: dir, resume: true)
        XCTAssertEqual(resumed.state.recorded, 2, "b's written result counts")
        XCTAssertEqual(resumed.state.inFlight.map(\.id), [c.id], "only c is trained again")
        XCTAssertEqual(resumed.requeued, 1)
        XCTAssertEqual(resumed.state.best?.id, b.id)
        XCTAssertEqual(resumed.notes.count, 1, resumed.notes.joined())
        let lines = try String(contentsOf: resumed.candidatesFile, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 2)
        XCTAssertEqual(try XCTUnwrap(try resumed.nextTask(for: 0)), c, "the task in flight is handed out first, with its id")
    }

    func testACandidatesFileShorterThanTheStateIsRefused() throws {
        let dir = RunDirectory(try temporaryDirectory().path)
        let search = try CandidateSearch(config: config(), directory: dir, resume: false)
        let a = try XCTUnwrap(try search.nextTask(for: 0))
        try search.record(CandidateOutcome(result: result(0.5), stoppedBy: nil), of: a, group: 0)
        try Data().write(to: search.candidatesFile)
        XCTAssertThrowsError(try CandidateSearch(config: config(), directory: dir, resume: true)) { error in
            XCTAssertTrue("\(error)".contains("changed by hand"), "\(error)")
        }
    }

    private func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("candidate-search-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }
}
