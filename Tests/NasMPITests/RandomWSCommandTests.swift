import Foundation
import Kernels
import Search
import XCTest
import _TestSupport

/// End to end: `nas-mpi search --method random-ws` (random search with weight sharing).
final class RandomWSCommandTests: XCTestCase {
    private let args = ["search", "--method", "random-ws", "--channels", "4", "--layers", "3", "--input", "1x8x8",
                        "--synthetic-count", "64", "--batch-size", "8", "--threads", "1", "--epochs", "2",
                        "--ws-samples", "12", "--ws-top", "3", "--ws-batches", "2", "--ws-bn-batches", "2"]

    private func lines(_ url: URL) throws -> [[String: JSONValue]] {
        try String(contentsOf: url, encoding: .utf8).split(separator: "\n").map {
            try JSONDecoder().decode([String: JSONValue].self, from: Data($0.utf8))
        }
    }

    func testRandomWSScoresCandidatesAndWritesTheChosenGenotypeTheSameForASeed() throws {
        let base = try temporaryDirectory(self)
        let a = base.appendingPathComponent("a"), b = base.appendingPathComponent("b"), c = base.appendingPathComponent("c")
        let r = try runNasMPI(args + ["--seed", "5", "--out", a.path, "--progress", "lines"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("search: random-ws (one random architecture per step; 12 scored at the end, the best 3 re-scored)"), r.stdout)
        XCTAssertTrue(r.stdout.contains("weight-sharing scores: the best 3 re-scored"), r.stdout)

        let scores = try lines(a.appendingPathComponent("ws_scores.jsonl"))
        XCTAssertEqual(scores.count, 12)
        XCTAssertEqual(Set(scores.compactMap { $0["genotype"]?.string }).count, 12, "distinct candidates")
        let rescored = scores.filter { $0["val_acc"] != nil }
        XCTAssertEqual(rescored.count, 3)
        // The re-scored are the best by batch accuracy; the chosen is the best of them on the validation half.
        let cut = rescored.compactMap { $0["batch_acc"]?.double }.min()!
        XCTAssertTrue(scores.filter { $0["val_acc"] == nil }.allSatisfy { $0["batch_acc"]!.double! <= cut })
        let chosen = scores.filter { $0["chosen"] == .bool(true) }
        XCTAssertEqual(chosen.count, 1)
        XCTAssertEqual(chosen[0]["val_acc"]!.double!, rescored.compactMap { $0["val_acc"]?.double }.max()!)
        let genotype = try Genotype.load(a.appendingPathComponent("genotype.json").path)
        XCTAssertEqual(genotype.pythonDescription, chosen[0]["genotype"]?.string)
        XCTAssertEqual(try String(contentsOf: a.appendingPathComponent("genotype.txt"), encoding: .utf8),
                       genotype.pythonDescription + "\n")
        XCTAssertEqual(try lines(a.appendingPathComponent("metrics.jsonl")).count, 2)

        // The same seed: the same run, to the last score; another seed: other candidates.
        XCTAssertEqual(try runNasMPI(args + ["--seed", "5", "--out", b.path]).status, 0)
        for file in ["ws_scores.jsonl", "genotype.json"] {
            XCTAssertEqual(try String(contentsOf: a.appendingPathComponent(file), encoding: .utf8),
                           try String(contentsOf: b.appendingPathComponent(file), encoding: .utf8), file)
        }
        let ca = try CheckpointFile.read(from: a.appendingPathComponent("checkpoint.bin"))
        let cb = try CheckpointFile.read(from: b.appendingPathComponent("checkpoint.bin"))
        for ((name, x), (_, y)) in zip(ca.tensors, cb.tensors) { XCTAssertEqual(x, y, name) }
        XCTAssertEqual(try runNasMPI(args + ["--seed", "6", "--out", c.path]).status, 0)
        XCTAssertNotEqual(try String(contentsOf: a.appendingPathComponent("ws_scores.jsonl"), encoding: .utf8),
                          try String(contentsOf: c.appendingPathComponent("ws_scores.jsonl"), encoding: .utf8))
    }

    func testBadWeightSharingOptionsFailBeforeWork() throws {
        let out = try temporaryDirectory(self).appendingPathComponent("bad")
        for (extra, message) in [(["--ws-top", "20"], "--ws-top must lie in 1...--ws-samples (12)"),
                                 (["--ws-samples", "0"], "--ws-samples must be at least 1"),
                                 (["--order", "2"], "random-ws trains no architecture parameters")] {
            let r = try runNasMPI(args + extra + ["--out", out.path])
            XCTAssertNotEqual(r.status, 0, "\(extra)")
            XCTAssertTrue(r.stderr.contains(message), "\(extra): \(r.stderr)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: out.path), "nothing written")
        }
        let r = try runNasMPI(["search", "--method", "darts", "--ws-samples", "5", "--out", out.path])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("apply to --method random-ws"), r.stderr)
    }
}
