import Foundation
import Kernels
import Search
import XCTest
import _TestSupport

/// End to end: `nas-mpi train`, `evaluate`, `export`, `summary --genotype`.
final class TrainCommandTests: XCTestCase {
    private let small = ["train", "--genotype", "DARTS_V2", "--channels", "4", "--layers", "3", "--input", "1x16x16",
                         "--synthetic-count", "320", "--classes", "4", "--batch-size", "16", "--learning-rate", "0.05", "--threads", "2"]

    private func metrics(_ dir: URL) throws -> [[String: JSONValue]] {
        try String(contentsOf: dir.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n").map {
            try JSONDecoder().decode([String: JSONValue].self, from: Data($0.utf8))
        }
    }

    func testQuickTrainingLearnsWellAboveChanceAndWritesItsRun() throws {
        let out = try temporaryDirectory(self).appendingPathComponent("run")
        let r = try runNasMPI(small + ["--epochs", "3", "--out", out.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let m = try metrics(out)
        XCTAssertEqual(m.count, 3)
        let best = m.compactMap { $0["test_acc"]?.double }.max()!
        XCTAssertGreaterThan(best, 0.5, "4 classes: chance is 25%, best test accuracy \(best)")
        XCTAssertEqual(m[0]["drop_path"]?.double, 0)
        XCTAssertGreaterThan(m[2]["drop_path"]?.double ?? 0, 0, "drop path ramps up")
        for f in ["config.json", "metrics.jsonl", "checkpoint.bin", "best.bin", "cost.json", "log.txt", "run.json"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent(f).path), "missing \(f)")
        }
        let cost = try JSONDecoder().decode([String: JSONValue].self, from: Data(contentsOf: out.appendingPathComponent("cost.json")))
        XCTAssertEqual(cost["threads_per_rank"]?.int, 2)
        XCTAssertGreaterThan(cost["core_seconds"]?.double ?? 0, cost["wall_seconds"]?.double ?? 0)

        // Without a validation split best.bin is the last epoch (never chosen by test accuracy):
        // evaluate reports the last epoch's test accuracy.
        let last = m[2]["test_acc"]!.double!
        XCTAssertEqual(try CheckpointFile.read(from: out.appendingPathComponent("best.bin")).metadata["epoch"]?.int, 3)
        let e = try runNasMPI(["evaluate", "--run", out.path, "--threads", "1"])
        XCTAssertEqual(e.status, 0, e.stderr)
        XCTAssertTrue(e.stdout.contains(String(format: "test accuracy: %.2f%%", 100 * last)), e.stdout)
        XCTAssertTrue(r.stdout.contains("final epoch 3"), r.stdout)
        let manifest = try RunManifest.read(from: RunDirectory(out.path))
        XCTAssertEqual(manifest.kind, "train")
        XCTAssertEqual(manifest.status, .finished)
        XCTAssertEqual(manifest.bestGenotype, .dartsV2)
        XCTAssertEqual(manifest.bestGenotypePython, Genotype.dartsV2.pythonDescription)
        XCTAssertNil(manifest.validationAccuracy)
        XCTAssertEqual(manifest.testAccuracy, last)
        XCTAssertEqual(manifest.threadsPerRank, 2)
        XCTAssertEqual(manifest.dataset.splits, ["train": 320, "test": 64])
        XCTAssertEqual(manifest.budget["epochs"], 3)
        XCTAssertGreaterThan(manifest.coreHours, 0)
        let recal = try runNasMPI(["evaluate", "--run", out.path, "--recalibrate-bn", "5", "--threads", "1"])
        XCTAssertEqual(recal.status, 0, recal.stderr)
        XCTAssertTrue(recal.stdout.contains("BatchNorm statistics recomputed on 5 batches"), recal.stdout)
    }

    func testValidationSplitChoosesBestByValidationAndTestsOnce() throws {
        let out = try temporaryDirectory(self).appendingPathComponent("run")
        let r = try runNasMPI(small + ["--epochs", "3", "--validation-split", "0.5", "--out", out.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let m = try metrics(out)
        XCTAssertEqual(m.count, 3)
        XCTAssertTrue(m.allSatisfy { $0["valid_acc"] != nil && $0["valid_loss"] != nil && $0["test_acc"] == nil },
                      "every epoch is validated, none is tested: \(m)")
        let valid = m.map { $0["valid_acc"]!.double! }
        let chosen = valid.firstIndex(of: valid.max()!)! + 1
        let best = try CheckpointFile.read(from: out.appendingPathComponent("best.bin"))
        XCTAssertEqual(best.metadata["epoch"]?.int, chosen)
        XCTAssertEqual(best.metadata["selected_by"]?.string, "validation_accuracy")
        XCTAssertTrue(r.stdout.contains("160 train / 160 validation / 64 test images"), r.stdout)
        XCTAssertTrue(r.stdout.contains(String(format: "best validation accuracy: %.2f%% at epoch %d", 100 * valid.max()!, chosen)), r.stdout)
        let log = try String(contentsOf: out.appendingPathComponent("log.txt"), encoding: .utf8)
        XCTAssertEqual(log.components(separatedBy: "test of best.bin").count, 2, "the test set is evaluated once: \(log)")

        // run.json holds the selected epoch's validation accuracy and best.bin's test accuracy,
        // the figure evaluate measures on best.bin.
        let manifest = try RunManifest.read(from: RunDirectory(out.path))
        XCTAssertEqual(manifest.validationAccuracy, valid.max())
        XCTAssertEqual(manifest.dataset.splits, ["train": 160, "validation": 160, "test": 64])
        let e = try runNasMPI(["evaluate", "--run", out.path, "--threads", "1", "--json"])
        XCTAssertEqual(e.status, 0, e.stderr)
        let tested = try JSONDecoder().decode([String: JSONValue].self, from: Data(e.stdout.utf8))
        XCTAssertEqual(manifest.testAccuracy, tested["accuracy"]?.double)
        XCTAssertEqual(tested["epoch"]?.int, chosen)
        let v = try runNasMPI(["evaluate", "--run", out.path, "--threads", "1", "--split", "validation", "--json"])
        XCTAssertEqual(v.status, 0, v.stderr)
        XCTAssertEqual(try JSONDecoder().decode([String: JSONValue].self, from: Data(v.stdout.utf8))["accuracy"]?.double, valid.max())

        // Out of range.
        let bad = try runNasMPI(small + ["--validation-split", "1", "--out", out.path + "-bad"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("--validation-split must lie strictly between 0 and 1"), bad.stderr)
    }

    func testKillAndResumeWithValidationSplitKeepsTheSelection() throws {
        let base = try temporaryDirectory(self)
        let args = small + ["--epochs", "2", "--synthetic-count", "160", "--threads", "1", "--validation-split", "0.5"]
        let whole = base.appendingPathComponent("whole")
        XCTAssertEqual(try runNasMPI(args + ["--out", whole.path]).status, 0)
        let cut = base.appendingPathComponent("cut")
        // 80 training images in batches of 16: 5 steps an epoch; stop in the second epoch.
        let status = try interruptNasMPI(args + ["--out", cut.path, "--log-every", "1"], log: cut.appendingPathComponent("log.txt"),
                                         after: "epoch 2/2 step 2/", signal: SIGTERM)
        XCTAssertEqual(status, 143)
        let stopped = try RunManifest.read(from: RunDirectory(cut.path))
        XCTAssertEqual(stopped.status, .interrupted)
        XCTAssertEqual(stopped.statusDetail, "signal 15")
        let resumed = try runNasMPI(["train", "--resume", "--out", cut.path, "--threads", "1"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        let a = try RunManifest.read(from: RunDirectory(whole.path)), b = try RunManifest.read(from: RunDirectory(cut.path))
        XCTAssertEqual(b.status, .finished)
        XCTAssertEqual(b.started, stopped.started, "a resumed run keeps its first start")
        XCTAssertEqual(a.validationAccuracy, b.validationAccuracy)
        XCTAssertEqual(a.testAccuracy, b.testAccuracy)
        XCTAssertEqual(try CheckpointFile.read(from: whole.appendingPathComponent("best.bin")).metadata["epoch"],
                       try CheckpointFile.read(from: cut.appendingPathComponent("best.bin")).metadata["epoch"])
    }

    func testSafetensorsRoundTripGivesIdenticalOutputs() throws {
        let base = try temporaryDirectory(self)
        let out = base.appendingPathComponent("run")
        XCTAssertEqual(try runNasMPI(small + ["--epochs", "1", "--out", out.path]).status, 0)
        let file = base.appendingPathComponent("w.safetensors")
        let x = try runNasMPI(["export", "--run", out.path, "--out", file.path])
        XCTAssertEqual(x.status, 0, x.stderr)
        // The count of tensors is called tensors; the parameters are the scalars of the learnable ones.
        let written = try Safetensors.decode(try Data(contentsOf: file), path: file.path)
        let summary = try runNasMPI(["summary", "--genotype", "DARTS_V2", "--channels", "4", "--layers", "3", "--input", "1x16x16", "--classes", "4"])
        let parameters = summary.stdout.split(separator: "\n").first { $0.hasPrefix("parameters: ") }!.dropFirst(12)
        XCTAssertTrue(x.stdout.contains("exported \(written.count) tensors (\(parameters) parameters"), x.stdout)
        let fromCheckpoint = try runNasMPI(["evaluate", "--run", out.path, "--checkpoint", "last", "--threads", "1"])
        let fromWeights = try runNasMPI(["evaluate", "--run", out.path, "--weights", file.path, "--threads", "1"])
        XCTAssertEqual(fromWeights.status, 0, fromWeights.stderr)
        func figures(_ s: String) -> [Substring] { s.split(separator: "\n").filter { $0.hasPrefix("test ") } }
        XCTAssertEqual(figures(fromCheckpoint.stdout), figures(fromWeights.stdout))
        // Reference names and dtypes in the file.
        let tensors = try Safetensors.decode(try Data(contentsOf: file), path: file.path)
        let names = Set(tensors.map(\.name))
        for n in ["stem.0.weight", "stem.1.running_mean", "stem.1.num_batches_tracked", "cells.0._ops.0.op.1.weight", "classifier.bias"] {
            XCTAssertTrue(names.contains(n), "missing \(n)")
        }
        let bytes = [UInt8](try Data(contentsOf: file))
        let n = (0..<8).reduce(0) { $0 | Int(bytes[$1]) << (8 * $1) }
        let header = try JSONSerialization.jsonObject(with: Data(bytes[8..<(8 + n)])) as! [String: Any]
        XCTAssertEqual((header["stem.1.num_batches_tracked"] as? [String: Any])?["dtype"] as? String, "I64")
        XCTAssertEqual((header["stem.0.weight"] as? [String: Any])?["dtype"] as? String, "F32")
        XCTAssertEqual(n % 8, 0, "header padded to 8 bytes")
    }

    func testKillAndResumeMatches() throws {
        let base = try temporaryDirectory(self)
        let args = small + ["--epochs", "2", "--synthetic-count", "160", "--threads", "1"]
        let whole = base.appendingPathComponent("whole")
        XCTAssertEqual(try runNasMPI(args + ["--out", whole.path]).status, 0)
        let cut = base.appendingPathComponent("cut")
        let status = try interruptNasMPI(args + ["--out", cut.path, "--log-every", "1"], log: cut.appendingPathComponent("log.txt"),
                                         after: "step 3/", signal: SIGINT)
        XCTAssertEqual(status, 130)
        let resumed = try runNasMPI(["train", "--resume", "--out", cut.path, "--threads", "1"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        let a = try CheckpointFile.read(from: whole.appendingPathComponent("checkpoint.bin"))
        let b = try CheckpointFile.read(from: cut.appendingPathComponent("checkpoint.bin"))
        for name in ["stem.0.weight", "classifier.weight", "cells.2._ops.7.op.2.weight"] {
            XCTAssertEqual(a.tensors.first { $0.name == name }?.tensor, b.tensors.first { $0.name == name }?.tensor, "\(name) after resume")
        }
    }

    /// `--recompute all`: the run records it (a resume reads it back) and trains as the run that keeps
    /// every activation does (to float summation order).
    func testRecomputedTrainingIsRecordedAndMatches() throws {
        let base = try temporaryDirectory(self)
        let args = small + ["--epochs", "1", "--synthetic-count", "160", "--threads", "1"]
        let kept = base.appendingPathComponent("kept"), recomputed = base.appendingPathComponent("recomputed")
        XCTAssertEqual(try runNasMPI(args + ["--out", kept.path]).status, 0)
        let r = try runNasMPI(args + ["--recompute", "all", "--out", recomputed.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try Trainer.savedConfig(RunDirectory(recomputed.path)).recompute, .all)
        let a = try metrics(kept), b = try metrics(recomputed)
        XCTAssertEqual(a.count, b.count)
        for (x, y) in zip(a, b) {
            XCTAssertEqual(x["train_loss"]!.double!, y["train_loss"]!.double!, accuracy: 1e-4)
            XCTAssertEqual(x["test_acc"]?.double, y["test_acc"]?.double)
        }
        // A number recomputes that many leading cells.
        let one = base.appendingPathComponent("one")
        let r1 = try runNasMPI(args + ["--recompute", "1", "--out", one.path])
        XCTAssertEqual(r1.status, 0, r1.stderr)
        XCTAssertEqual(try Trainer.savedConfig(RunDirectory(one.path)).recompute, .leading(1))
        for (x, y) in zip(a, try metrics(one)) { XCTAssertEqual(x["train_loss"]!.double!, y["train_loss"]!.double!, accuracy: 1e-4) }
        for value in ["some", "0", "-1"] {
            let bad = try runNasMPI(args + ["--recompute", value, "--out", base.appendingPathComponent("bad").path])
            XCTAssertNotEqual(bad.status, 0)
            XCTAssertTrue(bad.stderr.contains("--recompute"), bad.stderr)
        }
    }

    func testRefusals() throws {
        let base = try temporaryDirectory(self)
        let v2 = Genotype.dartsV2.pythonDescription
        let unknown = base.appendingPathComponent("unknown.txt")
        try v2.replacingOccurrences(of: "dil_conv_3x3", with: "conv_11x11").write(to: unknown, atomically: true, encoding: .utf8)
        let dangling = base.appendingPathComponent("dangling.txt")
        try v2.replacingOccurrences(of: "('dil_conv_3x3', 2)", with: "('dil_conv_3x3', 6)").write(to: dangling, atomically: true, encoding: .utf8)
        for (file, message) in [(unknown, "unknown operation 'conv_11x11'"), (dangling, "does not exist")] {
            for args in [["train", "--genotype", file.path, "--out", base.appendingPathComponent("r").path], ["summary", "--genotype", file.path]] {
                let r = try runNasMPI(args)
                XCTAssertNotEqual(r.status, 0)
                XCTAssertTrue(r.stderr.contains(message), "\(args): \(r.stderr)")
            }
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: base.appendingPathComponent("r").path))

        // A checkpoint of another architecture is refused by evaluate.
        let a = base.appendingPathComponent("a"), b = base.appendingPathComponent("b")
        XCTAssertEqual(try runNasMPI(small + ["--epochs", "1", "--synthetic-count", "64", "--out", a.path]).status, 0)
        XCTAssertEqual(try runNasMPI(small + ["--epochs", "1", "--synthetic-count", "64", "--genotype", "DARTS_V1", "--out", b.path]).status, 0)
        let other = try runNasMPI(["evaluate", "--run", a.path, "--checkpoint", b.appendingPathComponent("checkpoint.bin").path])
        XCTAssertNotEqual(other.status, 0)
        XCTAssertTrue(other.stderr.contains("trained on another genotype"), other.stderr)
        let c = base.appendingPathComponent("c")
        XCTAssertEqual(try runNasMPI(small + ["--epochs", "1", "--synthetic-count", "64", "--channels", "6", "--out", c.path]).status, 0)
        try FileManager.default.removeItem(at: c.appendingPathComponent("config.json"))
        try FileManager.default.copyItem(at: a.appendingPathComponent("config.json"), to: c.appendingPathComponent("config.json"))
        let wider = try runNasMPI(["evaluate", "--run", c.path, "--checkpoint", "last"])
        XCTAssertNotEqual(wider.status, 0)
        XCTAssertTrue(wider.stderr.contains("does not fit the network"), wider.stderr)
    }

    func testSummaryOfPublishedGenotype() throws {
        let r = try runNasMPI(["summary", "--genotype", "DARTS_V2", "--channels", "36", "--layers", "20", "--input", "3x32x32", "--classes", "10"])
        XCTAssertTrue(r.stdout.contains("parameters: 3349342\n"), r.stdout)
        let aux = try runNasMPI(["summary", "--genotype", "DARTS_V2", "--channels", "36", "--layers", "20", "--auxiliary"])
        XCTAssertTrue(aux.stdout.contains("parameters: 3825768\n"), aux.stdout)
        XCTAssertTrue(aux.stdout.contains("forward MACs: "), aux.stdout)
    }
}
