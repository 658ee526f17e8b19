import Foundation
import Kernels
import Search
import XCTest
import _TestSupport

/// End to end: `nas-mpi search --channel-schedule` (the log, the configuration, a checkpoint at the
/// final width that `evaluate` reads back) and the flag's checks before any work.
final class ChannelScheduleCommandTests: XCTestCase {
    private let small = ["search", "--primitives", "none,max_pool_3x3,skip_connect,sep_conv_3x3",
                         "--layers", "3", "--input", "1x8x8", "--synthetic-count", "32", "--batch-size", "8",
                         "--threads", "1", "--seed", "5"]

    func testSearchWidensAndEvaluateReadsTheWideSupernet() throws {
        let out = try temporaryDirectory(self).appendingPathComponent("run")
        let r = try runNasMPI(small + ["--channel-schedule", "2@0,4@1", "--epochs", "2", "--out", out.path, "--progress", "lines"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("C=4") && r.stdout.contains("channel schedule 2@0,4@1 (C widened at the start of epochs 2)"), r.stdout)
        let config = try String(contentsOf: out.appendingPathComponent("config.json"), encoding: .utf8)
        XCTAssertTrue(config.contains("\"channelSchedule\" : \"2@0,4@1\""), config)
        let checkpoint = try CheckpointFile.read(from: out.appendingPathComponent("checkpoint.bin"))
        XCTAssertEqual(checkpoint.metadata["channels"]?.int, 4)
        XCTAssertNoThrow(try checkpoint.tensor("classifier.weight", shape: [10, 64]), "C=4: 4 nodes x 16 channels after two reductions")
        // evaluate builds the method at C=2 and widens it for the file: it reproduces the last epoch's validation loss.
        try assertEvaluateReproducesLastValidationLoss(out)
    }

    func testBadSchedulesStopBeforeAnyWork() throws {
        let base = try temporaryDirectory(self)
        for (flags, message) in [
            (["--channel-schedule", "4@0,8"], "C@EPOCH pairs"),
            (["--channel-schedule", "4@0,8@x"], "C@EPOCH pairs"),
            (["--channel-schedule", "4@2,8@3"], "start at epoch 0"),
            (["--channel-schedule", "8@0,4@1"], "widths must increase"),
            (["--channel-schedule", "4@0,8@1,16@1"], "epochs must increase"),
            (["--channel-schedule", "4@0,8@5", "--epochs", "5"], "beyond the run's 5 epochs"),
            (["--channel-schedule", "4@0,8@1", "--channels", "16"], "--channels 16 contradicts"),
            (["--channel-schedule", "4@0,8@1", "--method", "pc-darts", "--partial-channels", "2"], "pc-darts is not supported"),
            (["--channel-schedule", "4@0,8@1", "--method", "p-darts", "--stages", "3", "--stage-ops", "4", "--skip-dropout", "0",
              "--epochs", "3", "--warmup-epochs", "1"], "p-darts is not supported"),
            (["--channel-schedule", "4@0,8@1", "--method", "random-ws"], "random-ws is not supported"),
        ] {
            let out = base.appendingPathComponent("bad")
            let r = try runNasMPI(small + flags + ["--out", out.path])
            XCTAssertTrue(r.status != 0 && r.stderr.contains(message), "\(flags): \(r.stderr)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: out.path), "\(flags)")
        }
    }
}
