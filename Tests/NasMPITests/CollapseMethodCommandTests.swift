import Foundation
import Kernels
import Search
import XCTest
import _TestSupport

/// End to end: the methods against skip-connection collapse (DARTS-, SDARTS-RS) from the command
/// line, and an SDARTS run resumed mid-epoch matching the uninterrupted one.
final class CollapseMethodCommandTests: XCTestCase {
    private let small = ["search", "--channels", "4", "--layers", "3", "--input", "1x8x8", "--synthetic-count", "64",
                         "--batch-size", "8", "--threads", "1", "--seed", "5"]

    func testDARTSMinusSearchRunsAndKeepsTheAuxiliarySkipOutOfTheGenotype() throws {
        let out = try temporaryDirectory(self).appendingPathComponent("run")
        let r = try runNasMPI(small + ["--method", "darts-minus", "--epochs", "2", "--out", out.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("search: darts-minus (auxiliary skip, beta 1 -> 0)"), r.stdout)
        let genotype = try String(contentsOf: out.appendingPathComponent("genotype.txt"), encoding: .utf8)
        XCTAssertTrue(genotype.hasPrefix("Genotype(normal=["), genotype)
        XCTAssertFalse(genotype.contains("auxiliary"), genotype)
        let checkpoint = try CheckpointFile.read(from: out.appendingPathComponent("checkpoint.bin"))
        XCTAssertTrue(checkpoint.contains("cells.1._ops.0.auxiliary_skip.conv_1.weight"))
        XCTAssertTrue(checkpoint.contains("cells.1._ops.0.auxiliary_skip.bn.running_mean"))
        XCTAssertEqual(checkpoint.metadata["auxiliary_skip_beta"]?.double, 0.5, "the last epoch (e = 1 of 2) trained with beta 1 - 1/2")
        // evaluate restores beta with the weights: on the validation half it reproduces the last epoch's figures.
        try assertEvaluateReproducesLastValidationLoss(out)
    }

    func testSDARTSSearchRunsAndChecksItsFlag() throws {
        let out = try temporaryDirectory(self).appendingPathComponent("run")
        let r = try runNasMPI(small + ["--method", "sdarts", "--sdarts-epsilon", "0.05:0.5", "--epochs", "2", "--out", out.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("search: sdarts (random smoothing, eps 0.05 -> 0.5)"), r.stdout)
        let config = try String(contentsOf: out.appendingPathComponent("config.json"), encoding: .utf8)
        XCTAssertTrue(config.contains("\"sdartsEpsilon\""), config)
        let bad = try runNasMPI(small + ["--method", "darts", "--sdarts-epsilon", "0.3", "--epochs", "1"])
        XCTAssertTrue(bad.status != 0 && bad.stderr.contains("--sdarts-epsilon applies to --method sdarts"), bad.stderr)
        let unparsable = try runNasMPI(small + ["--method", "sdarts", "--sdarts-epsilon", "x:y", "--epochs", "1"])
        XCTAssertNotEqual(unparsable.status, 0)
        // A resume may not change eps.
        let again = try runNasMPI(["search", "--resume", "--out", out.path, "--sdarts-epsilon", "0.1:0.2"])
        XCTAssertTrue(again.status != 0 && again.stderr.contains("--sdarts-epsilon (saved"), again.stderr)
    }

    func testSDARTSResumeIsBitIdenticalToAnUninterruptedRun() throws {
        let base = try temporaryDirectory(self)
        let whole = base.appendingPathComponent("whole"), cut = base.appendingPathComponent("cut")
        // 256 images: 16 steps per epoch, so the signal lands mid-epoch.
        let args = small.map { $0 == "64" ? "256" : $0 } + ["--method", "sdarts", "--epochs", "2"]
        XCTAssertEqual(try runNasMPI(args + ["--out", whole.path]).status, 0)
        let status = try interruptNasMPI(args + ["--out", cut.path, "--progress", "lines", "--log-every", "1"],
                                         log: cut.appendingPathComponent("log.txt"), after: "epoch 2/2 step 2/", signal: SIGTERM)
        XCTAssertEqual(status, 143)
        let r = try runNasMPI(["search", "--resume", "--out", cut.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let a = try CheckpointFile.read(from: whole.appendingPathComponent("checkpoint.bin"))
        let b = try CheckpointFile.read(from: cut.appendingPathComponent("checkpoint.bin"))
        XCTAssertEqual(a.tensors.map(\.name), b.tensors.map(\.name))
        for ((name, x), (_, y)) in zip(a.tensors, b.tensors) { XCTAssertEqual(x, y, name) }
        XCTAssertEqual(try String(contentsOf: whole.appendingPathComponent("alphas.jsonl"), encoding: .utf8),
                       try String(contentsOf: cut.appendingPathComponent("alphas.jsonl"), encoding: .utf8))
    }
}
