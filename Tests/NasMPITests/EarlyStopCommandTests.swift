import Foundation
import Kernels
import Search
import XCTest
import _TestSupport

/// End to end: --hessian-eigenvalue and --early-stop from the command line, the chosen genotype
/// in the run directory, and resumes before and after the stop.
final class EarlyStopCommandTests: XCTestCase {
    /// With only none and skip_connect every derived edge is a skip (none is never chosen), so
    /// skips=1 fires after the first epoch, and the (empty) ranking of learnable ops never changes.
    private let skipsOnly = ["search", "--channels", "2", "--layers", "3", "--input", "1x8x8", "--synthetic-count", "64",
                             "--batch-size", "8", "--threads", "1", "--seed", "3", "--progress", "lines",
                             "--primitives", "none,skip_connect"]

    private func metrics(_ out: URL) throws -> [[String: JSONValue]] {
        try String(contentsOf: out.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n").map {
            try JSONDecoder().decode([String: JSONValue].self, from: Data($0.utf8))
        }
    }

    func testASkipsRuleStopsAfterTheEpochWritesItsGenotypeAndAResumeStopsAtOnce() throws {
        let out = try temporaryDirectory(self).appendingPathComponent("run")
        let r = try runNasMPI(skipsOnly + ["--epochs", "4", "--early-stop", "skips=1", "--hessian-eigenvalue", "--out", out.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("early stop (skips=1) after epoch 1"), r.stdout)
        XCTAssertTrue(r.stdout.contains(", hessian eigenvalue "), r.stdout)
        let m = try metrics(out)
        XCTAssertEqual(m.count, 1)
        XCTAssertTrue(try XCTUnwrap(m[0]["hessian_eigenvalue"]?.double).isFinite)
        let stop = try XCTUnwrap(m[0]["early_stop"]?.object)
        XCTAssertEqual(stop["rule"]?.string, "skips=1")
        XCTAssertEqual(stop["chosen_epoch"]?.int, 1)
        let genotype = try String(contentsOf: out.appendingPathComponent("genotype.txt"), encoding: .utf8)
        XCTAssertEqual(genotype, (m[0]["genotype"]?.string ?? "") + "\n")
        let file = try JSONDecoder().decode([String: JSONValue].self,
                                            from: Data(contentsOf: out.appendingPathComponent("early_stop.json")))
        XCTAssertEqual(file["epoch"]?.int, 1)
        XCTAssertEqual(try CheckpointFile.read(from: out.appendingPathComponent("checkpoint.bin")).metadata["epoch"]?.int, 1)
        let again = try runNasMPI(["search", "--resume", "--out", out.path])
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stdout.contains("ended early before"), again.stdout)
        XCTAssertEqual(try metrics(out).count, 1)
        XCTAssertEqual(try String(contentsOf: out.appendingPathComponent("genotype.txt"), encoding: .utf8), genotype)
        // A resume may not change the rules.
        let changed = try runNasMPI(["search", "--resume", "--out", out.path, "--early-stop", "skips=2"])
        XCTAssertTrue(changed.status != 0 && changed.stderr.contains("--early-stop (saved"), changed.stderr)
    }

    func testTheStableWindowSurvivesAResumeBeforeTheStop() throws {
        let base = try temporaryDirectory(self)
        let whole = base.appendingPathComponent("whole"), cut = base.appendingPathComponent("cut")
        // 256 images: 16 steps per epoch, so the signal lands inside epoch 2; stable=2 fires after
        // epoch 3 only if epoch 1's ranking survived the resume.
        let args = skipsOnly.map { $0 == "64" ? "256" : $0 } + ["--epochs", "5", "--early-stop", "stable=2"]
        XCTAssertEqual(try runNasMPI(args + ["--out", whole.path]).status, 0)
        let status = try interruptNasMPI(args + ["--out", cut.path, "--log-every", "1"],
                                         log: cut.appendingPathComponent("log.txt"), after: "epoch 2/5 step 2/", signal: SIGTERM)
        XCTAssertEqual(status, 143)
        let r = try runNasMPI(["search", "--resume", "--out", cut.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("early stop (stable=2) after epoch 3"), r.stdout)
        for dir in [whole, cut] {
            XCTAssertEqual(try metrics(dir).count, 3)
            XCTAssertEqual(try metrics(dir).last?["early_stop"]?.object?["epoch"]?.int, 3)
        }
        XCTAssertEqual(try String(contentsOf: whole.appendingPathComponent("genotype.json"), encoding: .utf8),
                       try String(contentsOf: cut.appendingPathComponent("genotype.json"), encoding: .utf8))
    }

    func testTheEigenvalueIsRecordedForPCDARTSAndTheRulesAreChecked() throws {
        let base = try temporaryDirectory(self)
        let out = base.appendingPathComponent("pc")
        let small = ["search", "--channels", "4", "--layers", "3", "--input", "1x8x8", "--synthetic-count", "64",
                     "--batch-size", "8", "--threads", "1", "--seed", "5", "--epochs", "1"]
        let r = try runNasMPI(small + ["--method", "pc-darts", "--partial-channels", "2", "--hessian-eigenvalue", "--out", out.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(try XCTUnwrap(try metrics(out).first?["hessian_eigenvalue"]?.double).isFinite)
        for (flags, message) in [(["--early-stop", "eigenvalue"], "needs --hessian-eigenvalue"),
                                 (["--early-stop", "skips=0"], "at least 1"),
                                 (["--early-stop", "skips=2,often"], "unknown rule 'often'")] {
            let bad = try runNasMPI(small + flags + ["--out", base.appendingPathComponent("bad").path])
            XCTAssertTrue(bad.status != 0 && bad.stderr.contains(message), "\(flags): \(bad.stderr)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: base.appendingPathComponent("bad").path))
        }
    }
}
