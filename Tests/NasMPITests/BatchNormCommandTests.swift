import Foundation
import Kernels
import Search
import XCTest
import _TestSupport

/// End to end: `--bn-reset` (a metrics line and a log line after the search) and `--bn-mode
/// batch` (a search whose supernet keeps no running statistics), and their checks.
final class BatchNormCommandTests: XCTestCase {
    private let small = ["search", "--epochs", "1", "--primitives", "none,max_pool_3x3,skip_connect,sep_conv_3x3",
                         "--channels", "4", "--layers", "3", "--input", "1x8x8", "--synthetic-count", "32", "--batch-size", "8",
                         "--threads", "1", "--seed", "5"]

    private func lines(_ url: URL) throws -> [[String: JSONValue]] {
        try String(contentsOf: url, encoding: .utf8).split(separator: "\n").map {
            try JSONDecoder().decode([String: JSONValue].self, from: Data($0.utf8))
        }
    }

    func testResetAfterTheSearchAndBatchMode() throws {
        let base = try temporaryDirectory(self)
        let out = base.appendingPathComponent("reset")
        let r = try runNasMPI(small + ["--bn-reset", "2", "--out", out.path, "--progress", "lines"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("BatchNorm reset: statistics recomputed over 2 training batches of 8 images: val loss"), r.stdout)
        let metrics = try lines(out.appendingPathComponent("metrics.jsonl"))
        XCTAssertEqual(metrics.count, 2)
        let last = metrics[1]
        XCTAssertEqual(last["bn_reset_batches"], .number(2))
        XCTAssertEqual(last["val_acc_before_bn_reset"], metrics[0]["val_acc"])
        XCTAssertNotNil(last["val_loss"]?.double)
        XCTAssertNotEqual(last["val_loss"], metrics[0]["val_loss"], "the statistics changed")
        let log = try String(contentsOf: out.appendingPathComponent("log.txt"), encoding: .utf8)
        XCTAssertTrue(log.contains("BatchNorm reset"), log)

        let batch = base.appendingPathComponent("batch")
        let b = try runNasMPI(small + ["--bn-mode", "batch", "--out", batch.path])
        XCTAssertEqual(b.status, 0, b.stderr)
        XCTAssertTrue(b.stdout.contains("BatchNorm without running statistics"), b.stdout)
        let checkpoint = try CheckpointFile.read(from: batch.appendingPathComponent("checkpoint.bin"))
        XCTAssertEqual(try checkpoint.tensor("stem.1.running_var", shape: [12]), Tensor(shape: [12], repeating: 1), "buffers never updated")

        for (args, message) in [(["--bn-reset", "0"], "at least 1"), (["--bn-mode", "batch", "--bn-reset", "2"], "--bn-mode batch"),
                                (["--bn-mode", "mean"], "bn-mode")] {
            let bad = try runNasMPI(small + args + ["--out", base.appendingPathComponent("bad").path])
            XCTAssertTrue(bad.status != 0 && bad.stderr.contains(message), "\(args): \(bad.stderr)")
        }
    }
}
