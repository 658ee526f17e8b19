import Foundation
import Kernels
import Search
import XCTest
import _TestSupport

/// What a batch system needs: SIGUSR1 (SLURM's warning signal) stops like SIGTERM, `--resume auto`
/// starts or continues with one command line, `--time-budget` stops cleanly before a deadline.
final class BatchJobTests: XCTestCase {
    private let job = ["search", "--channels", "2", "--layers", "3", "--input", "1x8x8", "--synthetic-count", "512",
                       "--batch-size", "8", "--threads", "1", "--seed", "4", "--epochs", "2", "--progress", "lines", "--log-every", "1"]

    private func tensors(_ dir: URL) throws -> [String: Tensor] {
        let f = try CheckpointFile.read(from: dir.appendingPathComponent("checkpoint.bin"))
        return Dictionary(uniqueKeysWithValues: f.tensors.map { ($0.name, $0.tensor) })
    }

    func testUSR1StopsAndResumeAutoContinuesToTheUninterruptedResult() throws {
        let base = try temporaryDirectory(self)
        let whole = base.appendingPathComponent("whole"), cut = base.appendingPathComponent("cut")
        XCTAssertEqual(try runNasMPI(job + ["--out", whole.path]).status, 0)
        // The same command line for the first start and the requeue.
        let command = job + ["--out", cut.path, "--resume", "auto"]
        let status = try interruptNasMPI(command, log: cut.appendingPathComponent("log.txt"), after: "epoch 1/2 step 5/", signal: SIGUSR1)
        XCTAssertEqual(status, 128 + SIGUSR1, "SIGUSR1 stops with a checkpoint like SIGTERM")
        XCTAssertTrue(FileManager.default.fileExists(atPath: cut.appendingPathComponent("checkpoint.bin").path))
        let r = try runNasMPI(command)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("resumed from"), r.stdout)
        XCTAssertEqual(try tensors(cut), try tensors(whole))
        // --resume auto refuses a directory that holds another configuration.
        let other = try runNasMPI(job.map { $0 == "4" ? "5" : $0 } + ["--out", cut.path, "--resume", "auto"])
        XCTAssertNotEqual(other.status, 0)
        XCTAssertTrue(other.stderr.contains("holds a run of another configuration") && other.stderr.contains("--seed (saved 4, given 5)"), other.stderr)
    }

    func testTimeBudgetStopsWithACheckpointAndStatus75() throws {
        let base = try temporaryDirectory(self)
        let out = base.appendingPathComponent("run")
        let start = Date()
        let r = try runNasMPI(job.map { $0 == "512" ? "4096" : $0 } + ["--out", out.path, "--time-budget", "8s"])
        let took = Date().timeIntervalSince(start)
        XCTAssertEqual(r.status, 75, r.stderr)
        XCTAssertLessThan(took, 8 + 5, "stopped before the budget (plus start-up slack)")
        XCTAssertTrue(r.stdout.contains("time budget: stopping at epoch 1"), r.stdout)
        let checkpoint = try CheckpointFile.read(from: out.appendingPathComponent("checkpoint.bin"))
        XCTAssertGreaterThan(checkpoint.metadata["step"]?.int ?? 0, 0)
        // Durations: seconds or h/m/s units; anything else is refused before work starts.
        let ok = try runNasMPI(job + ["--epochs", "1", "--out", base.appendingPathComponent("ok").path,
                                                                        "--time-budget", "1h30m"])
        XCTAssertEqual(ok.status, 0, ok.stderr)
        let bad = try runNasMPI(job + ["--out", base.appendingPathComponent("bad").path, "--time-budget", "5 minutes"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("--time-budget"), bad.stderr)
    }
}
