import Distributed
import Foundation
import Kernels
import Search
import XCTest
import _TestSupport

/// The epoch loop's stops: between the two parts of a search step and inside the end-of-epoch
/// evaluation, each resumed bit for bit; divergence stops at once.
final class EpochLoopTests: XCTestCase {
    private func config() -> SearchConfig {
        var c = SearchConfig.preset(.quick)
        c.data = DataSource(kind: .synthetic, imageShape: [1, 8, 8])
        c.data.syntheticCount = 64
        c.channels = 2
        c.layers = 3
        c.batchSize = 8
        c.epochs = 2
        c.seed = 7
        return c
    }

    private func directory(_ name: String) throws -> RunDirectory {
        RunDirectory(try temporaryDirectory(self).appendingPathComponent(name).path)
    }

    /// Runs to the end, with a stop requested at the `stopAt`-th question (1-based), then resumed.
    private func interruptedThenResumed(stopAt: Int, expectLine: String) throws -> (Searcher, RunDirectory) {
        let dir = try directory("cut-\(stopAt)")
        let a = try Searcher(config: config(), directory: dir, resume: false, threads: 1)
        var lines: [String] = []
        a.log = { lines.append($0) }
        var asked = 0
        a.stopRequested = { asked += 1; return asked >= stopAt ? SIGTERM : nil }
        XCTAssertEqual(try a.run(), .interrupted(signal: SIGTERM))
        XCTAssertTrue(lines.contains { $0.contains(expectLine) }, "\(lines)")
        let b = try Searcher(config: config(), directory: dir, resume: true, threads: 1)
        b.log = { _ in }
        _ = try b.run()
        return (b, dir)
    }

    private func assertSameRun(_ a: RunDirectory, _ b: RunDirectory, file: StaticString = #filePath, line: UInt = #line) throws {
        let x = try CheckpointFile.read(from: a.checkpoint), y = try CheckpointFile.read(from: b.checkpoint)
        XCTAssertEqual(x.tensors.map(\.name), y.tensors.map(\.name), file: file, line: line)
        for ((name, p), (_, q)) in zip(x.tensors, y.tensors) { XCTAssertEqual(p, q, name, file: file, line: line) }
        func strip(_ url: URL) throws -> [[String: JSONValue]] {
            try String(contentsOf: url, encoding: .utf8).split(separator: "\n").map {
                var o = try JSONDecoder().decode([String: JSONValue].self, from: Data($0.utf8))
                for k in ["seconds", "images_per_second", "communication_seconds", "evaluation_seconds"] { o[k] = nil }
                return o
            }
        }
        XCTAssertEqual(try strip(a.metrics), try strip(b.metrics), "metrics without timings", file: file, line: line)
        XCTAssertEqual(try String(contentsOf: a.alphas, encoding: .utf8), try String(contentsOf: b.alphas, encoding: .utf8), file: file, line: line)
    }

    func testStopsBetweenArchitectureAndWeightStepAndInsideTheEvaluationResumeExactly() throws {
        let whole = try directory("whole")
        let w = try Searcher(config: config(), directory: whole, resume: false, threads: 1)
        w.log = { _ in }
        var questions = 0
        w.stopRequested = { questions += 1; return nil }
        _ = try w.run()
        // Questions: 1 at the start; per step 2 (between the parts, after the step); during the
        // evaluation one per batch round. 4 steps per epoch (32 images, batch 8).
        // The 4th question is the pause check of step 2; the 11th falls in epoch 1's evaluation.
        let (paused, dirPaused) = try interruptedThenResumed(stopAt: 4, expectLine: "between the architecture and the weight step of epoch 1 step 2")
        try assertSameRun(whole, dirPaused)
        XCTAssertEqual(paused.stateHash(), w.stateHash())
        let (_, dirEval) = try interruptedThenResumed(stopAt: 11, expectLine: "during the evaluation at the end of epoch 1")
        try assertSameRun(whole, dirEval)
        XCTAssertGreaterThan(questions, 11)
    }

    func testAStopBeforeTheFirstStepLeavesARunThatResumesFromItsConfiguration() throws {
        let dir = try directory("early")
        let a = try Searcher(config: config(), directory: dir, resume: false, threads: 1)
        var lines: [String] = []
        a.log = { lines.append($0) }
        a.stopRequested = { SIGINT }
        XCTAssertEqual(try a.run(), .interrupted(signal: SIGINT))
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.checkpoint.path), "nothing to save before the first step")
        XCTAssertTrue(lines.contains { $0.contains("nothing to save yet") }, "\(lines)")
        // A stale temporary file of a killed writer is cleared on the next start.
        let stale = dir.file(".checkpoint.bin.tmp-2147483000")
        FileManager.default.createFile(atPath: stale.path, contents: Data([1, 2, 3]))
        let b = try Searcher(config: try Searcher.savedConfig(dir), directory: dir, resume: true, threads: 1)
        var resumed: [String] = []
        b.log = { resumed.append($0) }
        _ = try b.run()
        XCTAssertFalse(FileManager.default.fileExists(atPath: stale.path))
        let log = try String(contentsOf: dir.log, encoding: .utf8)
        XCTAssertTrue(log.contains("holds the configuration but no checkpoint yet"), log)
        XCTAssertTrue(log.contains("removed temporary files left by a killed run: .checkpoint.bin.tmp-2147483000"), log)
        // The run restarted from scratch equals a run never stopped.
        let whole = try directory("whole")
        let w = try Searcher(config: config(), directory: whole, resume: false, threads: 1)
        w.log = { _ in }
        _ = try w.run()
        XCTAssertEqual(b.stateHash(), w.stateHash())
    }

    func testDivergenceStopsAtOnceKeepingTheLastGoodCheckpoint() throws {
        var c = config()
        c.epochs = 3
        let dir = try directory("diverge")
        let s = try Searcher(config: c, directory: dir, resume: false, threads: 1)
        s.log = { _ in }
        // One good epoch, then the weights are poisoned.
        var questions = 0
        s.stopRequested = {
            questions += 1
            if questions == 1 + 4 * 2 + 4 + 1 { s.network.weights[0].value.scalars[0] = .nan }
            return nil
        }
        XCTAssertThrowsError(try s.run()) { error in
            let m = "\(error)"
            XCTAssertTrue(m.contains("the run diverged") && m.contains("epoch 2 step") && m.contains("--learning-rate"), m)
            XCTAssertTrue(m.contains("last good checkpoint"), m)
        }
        let kept = try CheckpointFile.read(from: dir.checkpoint)
        XCTAssertEqual(kept.metadata["epoch"]?.int, 1, "the checkpoint of epoch 1 is kept")
        XCTAssertTrue(try kept.tensor(s.network.state.parameters[0].name, shape: s.network.weights[0].shape).scalars.allSatisfy(\.isFinite))
    }
}
