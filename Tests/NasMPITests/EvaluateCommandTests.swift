import Foundation
import Kernels
import Search
import XCTest
import _TestSupport

/// End to end: `nas-mpi evaluate` on training and search runs.
final class EvaluateCommandTests: XCTestCase {
    private let smallTrain = ["train", "--genotype", "DARTS_V2", "--channels", "4", "--layers", "3", "--input", "1x16x16",
                              "--synthetic-count", "160", "--classes", "4", "--batch-size", "16", "--threads", "1", "--epochs", "1"]
    private let tinySearch = ["search", "--channels", "2", "--layers", "3", "--input", "1x8x8", "--synthetic-count", "64",
                              "--batch-size", "8", "--threads", "1", "--seed", "3", "--epochs", "1"]

    private func lastMetrics(_ dir: URL) throws -> [String: JSONValue] {
        let lines = try String(contentsOf: dir.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n")
        return try JSONDecoder().decode([String: JSONValue].self, from: Data(lines.last!.utf8))
    }

    private func json(_ text: String) throws -> [String: JSONValue] {
        try JSONDecoder().decode([String: JSONValue].self, from: Data(text.utf8))
    }

    func testJSONOutputHasFullPrecisionAndConflictingSourcesAreRefused() throws {
        let base = try temporaryDirectory(self)
        let out = base.appendingPathComponent("run")
        XCTAssertEqual(try runNasMPI(smallTrain + ["--out", out.path]).status, 0)
        let m = try lastMetrics(out)
        let e = try runNasMPI(["evaluate", "--run", out.path, "--threads", "1", "--json"])
        XCTAssertEqual(e.status, 0, e.stderr)
        let result = try json(e.stdout)
        XCTAssertEqual(result["accuracy"]?.double, m["test_acc"]?.double, "the exact figure training recorded")
        XCTAssertEqual(result["loss"]?.double ?? 0, m["test_loss"]?.double ?? 1, accuracy: 1e-9)
        XCTAssertEqual(result["images"]?.int, 32)
        XCTAssertEqual(result["split"]?.string, "test")

        let file = base.appendingPathComponent("w.safetensors")
        XCTAssertEqual(try runNasMPI(["export", "--run", out.path, "--out", file.path]).status, 0)
        let both = try runNasMPI(["evaluate", "--run", out.path, "--weights", file.path, "--checkpoint", "last"])
        XCTAssertNotEqual(both.status, 0)
        XCTAssertTrue(both.stderr.contains("--weights and --checkpoint"), both.stderr)
    }

    func testHugeRecalibrationIsBoundedAndShowsProgress() throws {
        let out = try temporaryDirectory(self).appendingPathComponent("run")
        XCTAssertEqual(try runNasMPI(smallTrain + ["--out", out.path]).status, 0)
        let started = Date()
        let r = try runNasMPI(["evaluate", "--run", out.path, "--threads", "1", "--recalibrate-bn", "100000"], timeout: 60)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertLessThan(Date().timeIntervalSince(started), 30)
        // 160 training images (the synthetic data has its own test split) make 10 batches of 16.
        XCTAssertTrue(r.stdout.contains("--recalibrate-bn 100000 is more than the 10 batches"), r.stdout)
        XCTAssertTrue(r.stdout.contains("recalibrating BatchNorm: 10/10 batches"), r.stdout)
        XCTAssertTrue(r.stdout.contains("BatchNorm statistics recomputed on 10 batches"), r.stdout)
    }

    func testEvaluatingASearchRunTestsTheSupernetWithItsAlphas() throws {
        let out = try temporaryDirectory(self).appendingPathComponent("search")
        XCTAssertEqual(try runNasMPI(tinySearch + ["--out", out.path]).status, 0)
        let m = try lastMetrics(out)
        // On the search's validation half the figures are those the search logged for its last epoch.
        let v = try runNasMPI(["evaluate", "--run", out.path, "--threads", "1", "--split", "validation", "--json"])
        XCTAssertEqual(v.status, 0, v.stderr)
        XCTAssertFalse(v.stderr.contains("genotypeSource"), v.stderr)
        let result = try json(v.stdout)
        XCTAssertEqual(result["accuracy"]?.double, m["val_acc"]?.double)
        XCTAssertEqual(result["loss"]?.double ?? 0, m["val_loss"]?.double ?? 1, accuracy: 1e-9)
        XCTAssertEqual(result["network"]?.string, "supernet")
        // By default the data's test split.
        let t = try runNasMPI(["evaluate", "--run", out.path, "--threads", "1"])
        XCTAssertEqual(t.status, 0, t.stderr)
        XCTAssertTrue(t.stdout.contains("supernet") && t.stdout.contains("test images: 12"), t.stdout)
        XCTAssertTrue(t.stdout.contains("test accuracy: "), t.stdout)
        let best = try runNasMPI(["evaluate", "--run", out.path, "--checkpoint", "best"])
        XCTAssertNotEqual(best.status, 0)
        XCTAssertTrue(best.stderr.contains("a search run keeps only its last checkpoint"), best.stderr)
    }
}
