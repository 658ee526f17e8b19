import Foundation
import Kernels
import Search
import XCTest
import _TestSupport

/// End to end: search methods from the command line (PC-DARTS), resume refusals derived from the
/// configuration types, the published genotypes in `train`.
final class MethodCommandTests: XCTestCase {
    private let pc = ["search", "--method", "pc-darts", "--partial-channels", "2", "--channels", "4", "--layers", "3",
                      "--input", "1x8x8", "--synthetic-count", "64", "--batch-size", "8", "--threads", "1", "--seed", "5"]

    private func lines(_ url: URL) throws -> [[String: JSONValue]] {
        try String(contentsOf: url, encoding: .utf8).split(separator: "\n").map {
            try JSONDecoder().decode([String: JSONValue].self, from: Data($0.utf8))
        }
    }

    func testPCDARTSSearchRecordsBetasAndFreezesTheArchitectureDuringWarmUp() throws {
        let out = try temporaryDirectory(self).appendingPathComponent("run")
        let r = try runNasMPI(pc + ["--epochs", "2", "--warmup-epochs", "1", "--out", out.path, "--progress", "lines"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("search: pc-darts (K=2)"), r.stdout)
        let alphas = try lines(out.appendingPathComponent("alphas.jsonl"))
        XCTAssertEqual(alphas.count, 2)
        let betas = alphas[1]["betas_normal"]!.array!.compactMap(\.double)
        XCTAssertEqual(betas.count, 14)
        XCTAssertEqual(betas[0] + betas[1], 1, accuracy: 1e-5, "node 0's two edge weights sum to 1")
        // Epoch 1 was warm-up: the alphas after it are the initial ones (softmax of 1e-3 N(0,1): ~1/8).
        let first = alphas[0]["alphas_normal"]!.array![0].array!.compactMap(\.double)
        XCTAssertEqual(first.max()! - first.min()!, 0, accuracy: 1e-3)
        let metrics = try lines(out.appendingPathComponent("metrics.jsonl"))
        XCTAssertEqual(metrics[0]["warm_up"], .bool(true))
        XCTAssertNil(metrics[0]["arch_val_loss"], "no architecture steps during warm-up")
        XCTAssertEqual(metrics[1]["warm_up"], .bool(false))
        XCTAssertNotNil(metrics[1]["arch_val_loss"])
        let checkpoint = try CheckpointFile.read(from: out.appendingPathComponent("checkpoint.bin"))
        for name in ["betas_normal", "betas_reduce", "architect.exp_avg.betas_reduce", "architect.exp_avg_sq.betas_normal"] {
            XCTAssertTrue(checkpoint.contains(name), name)
        }
    }

    func testPCDARTSResumeIsBitIdenticalToAnUninterruptedRun() throws {
        let base = try temporaryDirectory(self)
        let whole = base.appendingPathComponent("whole"), cut = base.appendingPathComponent("cut")
        // Enough steps per epoch (256 images: 16 steps) that the signal lands mid-epoch.
        let args = pc.map { $0 == "64" ? "512" : $0 } + ["--epochs", "2"]
        XCTAssertEqual(try runNasMPI(args + ["--out", whole.path]).status, 0)
        // Stop in the middle of the second epoch, then resume.
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

    func testExportAndInitWeightsCarryTheBetas() throws {
        let base = try temporaryDirectory(self)
        let a = base.appendingPathComponent("a"), b = base.appendingPathComponent("b")
        XCTAssertEqual(try runNasMPI(pc + ["--epochs", "1", "--out", a.path]).status, 0)
        let file = base.appendingPathComponent("s.safetensors")
        let e = try runNasMPI(["export", "--run", a.path, "--out", file.path])
        XCTAssertEqual(e.status, 0, e.stderr)
        let exported = try Safetensors.read(file)
        let checkpoint = try CheckpointFile.read(from: a.appendingPathComponent("checkpoint.bin"))
        for name in ["alphas_normal", "alphas_reduce", "betas_normal", "betas_reduce"] {
            XCTAssertEqual(try exported.tensor(name, shape: name.hasPrefix("betas") ? [14] : [14, 8]),
                           try checkpoint.tensor(name, shape: name.hasPrefix("betas") ? [14] : [14, 8]), name)
        }
        // A new search started from the file begins with those betas (its epoch-0 checkpoint is
        // not written, so compare the config's record and the log line).
        let r = try runNasMPI(pc + ["--epochs", "1", "--out", b.path, "--init-weights", file.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("architecture parameters alphas_normal, alphas_reduce, betas_normal, betas_reduce from the file"), r.stdout)
    }

    func testResumeRefusesEveryFlagThatWouldChangeTheConfiguration() throws {
        let base = try temporaryDirectory(self)
        let train = base.appendingPathComponent("train")
        let small = ["train", "--genotype", "DARTS_V2", "--channels", "4", "--layers", "3", "--input", "1x8x8",
                     "--synthetic-count", "32", "--classes", "4", "--batch-size", "8", "--threads", "1", "--epochs", "1"]
        XCTAssertEqual(try runNasMPI(small + ["--out", train.path]).status, 0)
        for (flag, value) in [("--momentum", "0.5"), ("--weight-decay", "0.1"), ("--grad-clip", "1"), ("--learning-rate-min", "0.0001"),
                              ("--auxiliary-weight", "0.3"), ("--train-limit", "10"), ("--sync-bn", nil), ("--input", "1x16x16"),
                              ("--classes", "3"), ("--epochs", "9"), ("--seed", "4"), ("--genotype", "DARTS_V1"), ("--cutout", "4")] {
            let r = try runNasMPI(["train", "--resume", "--out", train.path, flag] + (value.map { [$0] } ?? []))
            XCTAssertNotEqual(r.status, 0, flag)
            XCTAssertTrue(r.stderr.contains(flag + " (saved"), "\(flag): \(r.stderr)")
        }
        let p = try runNasMPI(["train", "--resume", "--out", train.path, "--preset", "quick"])
        XCTAssertTrue(p.status != 0 && p.stderr.contains("--preset quick would replace it"), p.stderr)
        // Flags that do not change the configuration are fine (nothing left to run: 1 of 1 epochs done).
        XCTAssertEqual(try runNasMPI(["train", "--resume", "--out", train.path, "--threads", "1", "--momentum", "0.9"]).status, 0)

        let search = base.appendingPathComponent("search")
        XCTAssertEqual(try runNasMPI(pc + ["--epochs", "1", "--out", search.path]).status, 0)
        for (flag, value) in [("--method", "darts"), ("--partial-channels", "4"), ("--train-portion", "0.6"), ("--order", "2"),
                              ("--arch-learning-rate", "0.1"), ("--primitives", "none,skip_connect"), ("--recompute", "all")] {
            let r = try runNasMPI(["search", "--resume", "--out", search.path, flag, value])
            XCTAssertNotEqual(r.status, 0, flag)
            XCTAssertTrue(r.stderr.contains(flag + " (saved"), "\(flag): \(r.stderr)")
        }
        let q = try runNasMPI(["search", "--resume", "--out", search.path, "--preset", "pc-darts"])
        XCTAssertTrue(q.status != 0 && q.stderr.contains("--preset pc-darts would replace it"), q.stderr)
    }

    func testPublishedGenotypesTrainAndExport() throws {
        let base = try temporaryDirectory(self)
        for name in ["NASNet", "AmoebaNet"] {
            let out = base.appendingPathComponent(name)
            let r = try runNasMPI(["train", "--genotype", name, "--channels", "4", "--layers", "3", "--input", "3x16x16",
                                   "--synthetic-count", "32", "--classes", "4", "--batch-size", "8", "--threads", "1",
                                   "--epochs", "2", "--out", out.path])
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertEqual(try lines(out.appendingPathComponent("metrics.jsonl")).count, 2)
            let e = try runNasMPI(["export", "--run", out.path, "--out", base.appendingPathComponent(name + ".safetensors").path])
            XCTAssertEqual(e.status, 0, e.stderr)
        }
        let s = try runNasMPI(["summary", "--genotype", "NASNet", "--auxiliary"])
        XCTAssertTrue(s.stdout.contains("parameters: 4288944") && s.stdout.contains("parameters without auxiliary head: 3830950"), s.stdout)
    }
}
