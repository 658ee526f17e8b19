import Foundation
import Kernels
import Search
import XCTest
import _TestSupport

/// End to end: the architecture regularisers and gradient clips from the command line, and the
/// collapse diagnostics every search records.
final class RegularizationCommandTests: XCTestCase {
    private let tiny = ["search", "--channels", "2", "--layers", "3", "--input", "1x8x8", "--synthetic-count", "64",
                        "--batch-size", "8", "--threads", "1", "--seed", "3", "--epochs", "2", "--progress", "lines"]

    private func metrics(_ out: URL) throws -> [[String: JSONValue]] {
        try String(contentsOf: out.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n").map {
            try JSONDecoder().decode([String: JSONValue].self, from: Data($0.utf8))
        }
    }

    func testEachFlagRunsAndTheDiagnosticsAreRecorded() throws {
        let base = try temporaryDirectory(self)
        let runs: [(String, [String], String?, Double)] = [
            ("beta", ["--beta-regularization", "2", "--arch-grad-clip", "1"], "beta_regularization", 1),
            ("entropy", ["--entropy-weight", "-1", "--arch-grad-clip-per-edge", "0.5", "--order", "2"], "entropy_weight", -0.5),
        ]
        for (name, flags, field, final) in runs {
            let out = base.appendingPathComponent(name)
            let r = try runNasMPI(tiny + flags + ["--out", out.path])
            XCTAssertEqual(r.status, 0, r.stderr)
            let m = try metrics(out)
            XCTAssertEqual(m.count, 2)
            for e in m {
                XCTAssertNotNil(e["skip_count"]?.double, name)
                let share = try XCTUnwrap(e["parameter_free_share"]?.double, name)
                XCTAssertTrue((0...1).contains(share))
                let h = try XCTUnwrap(e["alpha_entropy"]?.double, name)
                XCTAssertTrue(h > 0 && h <= log(8.0) + 1e-6, "\(h)")
            }
            if let field {
                XCTAssertEqual(m[0][field]?.double, 0, "\(name): ramp starts at 0")
                XCTAssertEqual(m[1][field]?.double ?? .nan, final, accuracy: 1e-6, name)
            }
            XCTAssertTrue(r.stdout.contains(", alpha entropy "), r.stdout)
            let saved = try String(contentsOf: out.appendingPathComponent("config.json"), encoding: .utf8)
            XCTAssertTrue(saved.contains(name == "beta" ? "betaRegularization" : "archGradClipPerEdge"), saved)
        }
        // --resume refuses to change them (derived from the configuration's field names).
        let beta = base.appendingPathComponent("beta")
        for (flag, value) in [("--beta-regularization", "3"), ("--entropy-weight", "1"), ("--arch-grad-clip", "2"),
                              ("--arch-grad-clip-per-edge", "1")] {
            let r = try runNasMPI(["search", "--resume", "--out", beta.path, flag, value])
            XCTAssertNotEqual(r.status, 0, flag)
            XCTAssertTrue(r.stderr.contains(flag + " (saved"), "\(flag): \(r.stderr)")
        }
    }

    func testInvalidValuesAreRefusedBeforeAnythingIsWritten() throws {
        let base = try temporaryDirectory(self)
        let cases: [([String], String)] = [
            (["--arch-grad-clip", "-1"], "--arch-grad-clip must be a positive norm"),
            (["--arch-grad-clip-per-edge", "0"], "--arch-grad-clip-per-edge must be a positive norm"),
            (["--beta-regularization", "nan"], "--beta-regularization must be a finite number"),
            (["--beta-regularization", "-0.5"], "--beta-regularization must be at least 0"),
            (["--entropy-weight", "inf"], "--entropy-weight must be a finite number"),
        ]
        for (i, (flags, message)) in cases.enumerated() {
            let out = base.appendingPathComponent("run\(i)")
            let r = try runNasMPI(tiny + flags + ["--out", out.path])
            XCTAssertNotEqual(r.status, 0, "\(flags) should fail")
            XCTAssertTrue(r.stderr.contains(message), "\(flags): '\(r.stderr)' lacks '\(message)'")
            XCTAssertFalse(FileManager.default.fileExists(atPath: out.path), "\(flags) left a run directory behind")
        }
    }
}
