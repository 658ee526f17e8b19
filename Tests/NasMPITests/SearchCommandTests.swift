import Foundation
import Kernels
import Search
import XCTest
import _TestSupport

/// End to end: `nas-mpi search` on tiny synthetic data, its run directory, kill and resume, and
/// its refusals of bad input.
final class SearchCommandTests: XCTestCase {
    /// A tiny search: 2 channels, 3 layers, 8x8 grey images, batch 8.
    private let tiny = ["search", "--channels", "2", "--layers", "3", "--input", "1x8x8", "--synthetic-count", "64",
                        "--batch-size", "8", "--threads", "1", "--seed", "3"]

    func testTinySearchWritesAValidRunDirectory() throws {
        let out = try temporaryDirectory(self).appendingPathComponent("run")
        let r = try runNasMPI(tiny + ["--epochs", "2", "--out", out.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("genotype: Genotype(normal=["), r.stdout)
        let dir = RunDirectory(out.path)
        for f in [dir.config, dir.metrics, dir.alphas, dir.genotypeJSON, dir.genotypeText, dir.checkpoint, dir.cost, dir.log] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: f.path), "missing \(f.lastPathComponent)")
        }
        let metrics = try String(contentsOf: dir.metrics, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(metrics.count, 2)
        let last = try JSONDecoder().decode([String: JSONValue].self, from: Data(metrics[1].utf8))
        for key in ["epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds", "images_per_second", "genotype"] {
            XCTAssertNotNil(last[key], "metrics lack \(key)")
        }
        XCTAssertEqual(last["epoch"]?.int, 2)
        let alphas = try String(contentsOf: dir.alphas, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(alphas.count, 2)
        let a = try JSONDecoder().decode([String: JSONValue].self, from: Data(alphas[1].utf8))
        let rows = a["alphas_normal"]!.array!
        XCTAssertEqual(a["alphas_reduce"]?.array?.count, 14, "alphas.jsonl holds every architecture parameter by name")
        XCTAssertEqual(rows.count, 14)
        XCTAssertEqual(rows[0].array!.compactMap(\.double).reduce(0, +), 1, accuracy: 1e-5, "softmaxed rows sum to 1")
        // Both genotype files read back to the genotype of the last epoch.
        let g = try Genotype.load(dir.genotypeJSON.path)
        XCTAssertEqual(try Genotype.load(dir.genotypeText.path), g)
        XCTAssertEqual(last["genotype"]?.string, g.pythonDescription)
        let config = try JSONDecoder().decode(SearchConfig.self, from: Data(contentsOf: dir.config))
        XCTAssertEqual(config.channels, 2)
        XCTAssertEqual(config.epochs, 2)
        let checkpoint = try CheckpointFile.read(from: dir.checkpoint)
        XCTAssertEqual(checkpoint.metadata["epoch"]?.int, 2)
        XCTAssertTrue(checkpoint.contains("alphas_normal") && checkpoint.contains("cells.0._ops.0._ops.4.op.1.weight"))
        let cost = try JSONDecoder().decode([String: JSONValue].self, from: Data(contentsOf: dir.cost))
        XCTAssertGreaterThan(cost["core_seconds"]?.double ?? 0, 0)
        // Nothing but the run's files in the directory (no temporary files left).
        XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: out.path)),
                       ["config.json", "metrics.jsonl", "alphas.jsonl", "genotype.json", "genotype.txt", "checkpoint.bin", "cost.json", "log.txt", "run.json"])
        // run.json: what ran, the genotype found, the supernet's validation accuracy (no test
        // accuracy: the genotype was not trained), the cost.
        let manifest = try RunManifest.read(from: dir)
        XCTAssertEqual(manifest.version, RunManifest.formatVersion)
        XCTAssertEqual(manifest.kind, "search")
        XCTAssertEqual(manifest.method, "darts")
        XCTAssertEqual(manifest.status, .finished)
        XCTAssertEqual(manifest.seed, 3)
        XCTAssertEqual(manifest.ranks, 1)
        XCTAssertEqual(manifest.budget, ["epochs": 2])
        XCTAssertEqual(manifest.bestGenotype, g)
        XCTAssertEqual(manifest.bestGenotypePython, g.pythonDescription)
        XCTAssertEqual(manifest.supernetValidationAccuracy, last["val_acc"]?.double)
        XCTAssertNil(manifest.validationAccuracy)
        XCTAssertNil(manifest.testAccuracy)
        XCTAssertEqual(manifest.dataset.imageShape, [1, 8, 8])
        XCTAssertEqual(manifest.dataset.splits, ["train": 32, "validation": 32])
        XCTAssertEqual(manifest.wallSeconds, cost["wall_seconds"]?.double)
        XCTAssertTrue(manifest.commandLine.contains("--synthetic-count"))
        XCTAssertNotNil(ISO8601DateFormatter().date(from: manifest.started))
    }

    func testSameSeedGivesIdenticalAlphas() throws {
        let base = try temporaryDirectory(self)
        for name in ["a", "b"] {
            let r = try runNasMPI(tiny + ["--epochs", "1", "--out", base.appendingPathComponent(name).path])
            XCTAssertEqual(r.status, 0, r.stderr)
        }
        let a = try CheckpointFile.read(from: base.appendingPathComponent("a/checkpoint.bin"))
        let b = try CheckpointFile.read(from: base.appendingPathComponent("b/checkpoint.bin"))
        XCTAssertEqual(try a.tensor("alphas_normal", shape: [14, 8]), try b.tensor("alphas_normal", shape: [14, 8]))
        XCTAssertEqual(try a.tensor("alphas_reduce", shape: [14, 8]), try b.tensor("alphas_reduce", shape: [14, 8]))
    }

    func testKillAndResumeMatchesUninterruptedRun() throws {
        let base = try temporaryDirectory(self)
        let args = tiny + ["--epochs", "3", "--synthetic-count", "96", "--order", "2"]
        let whole = base.appendingPathComponent("whole")
        XCTAssertEqual(try runNasMPI(args + ["--out", whole.path]).status, 0)

        // Start the same run, stop it with SIGTERM once it has taken a step, then resume it.
        let cut = base.appendingPathComponent("cut")
        let status = try interruptNasMPI(args + ["--out", cut.path, "--log-every", "1"], log: cut.appendingPathComponent("log.txt"),
                                         after: "step 2/", signal: SIGTERM)
        XCTAssertEqual(status, 143, "SIGTERM ends the run with 128 + 15 after checkpointing")
        let partial = try CheckpointFile.read(from: cut.appendingPathComponent("checkpoint.bin"))
        let stoppedAt = (partial.metadata["epoch"]?.int ?? 0, partial.metadata["step"]?.int ?? 0)
        XCTAssertTrue(stoppedAt.0 < 3, "the run was interrupted before its end, at \(stoppedAt)")

        let resumed = try runNasMPI(["search", "--resume", "--out", cut.path, "--threads", "1"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("resumed from"), resumed.stdout)
        let a = try CheckpointFile.read(from: whole.appendingPathComponent("checkpoint.bin"))
        let b = try CheckpointFile.read(from: cut.appendingPathComponent("checkpoint.bin"))
        for name in ["alphas_normal", "alphas_reduce"] {
            XCTAssertEqual(try a.tensor(name, shape: [14, 8]), try b.tensor(name, shape: [14, 8]), "\(name) bit-identical after resume from \(stoppedAt)")
        }
        XCTAssertEqual(try String(contentsOf: whole.appendingPathComponent("genotype.txt"), encoding: .utf8),
                       try String(contentsOf: cut.appendingPathComponent("genotype.txt"), encoding: .utf8))
        XCTAssertEqual(try String(contentsOf: whole.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n").count,
                       try String(contentsOf: cut.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n").count)
    }

    func testBadInputFailsClearlyAndWritesNothing() throws {
        let base = try temporaryDirectory(self)
        let cifar = base.appendingPathComponent("cifar")
        try FileManager.default.createDirectory(at: cifar, withIntermediateDirectories: true)
        for i in 1...5 { try Data(count: 3073).write(to: cifar.appendingPathComponent("data_batch_\(i).bin")) }
        try Data(count: 3000).write(to: cifar.appendingPathComponent("test_batch.bin"))
        let mnist = base.appendingPathComponent("mnist")
        try FileManager.default.createDirectory(at: mnist, withIntermediateDirectories: true)
        try Data([0, 0, 9, 9] + [UInt8](repeating: 0, count: 40)).write(to: mnist.appendingPathComponent("train-images-idx3-ubyte"))
        try Data([0, 0, 8, 1, 0, 0, 0, 0]).write(to: mnist.appendingPathComponent("train-labels-idx1-ubyte"))

        let cases: [([String], String)] = [
            (["search", "--dataset", "cifar10", "--data", base.appendingPathComponent("none").path], "CIFAR-10 directory not found"),
            (["search", "--dataset", "cifar10", "--data", cifar.path], "not a whole number of 3073-byte CIFAR-10 records"),
            (["search", "--dataset", "mnist", "--data", mnist.path], "bad magic number"),
            (["search", "--dataset", "csv", "--data", base.appendingPathComponent("x.csv").path, "--input", "1x2x2"], "data file not found"),
            (["search", "--layers", "0"], "--layers must be at least 1"),
            (["search", "--epochs", "0"], "--epochs must be at least 1"),
            (["search", "--order", "3"], "--order must be 1 or 2"),
            (["search", "--synthetic-count", "40", "--batch-size", "32"], "--batch-size 32 is larger than the data"),
            (["search", "--input", "3x30x30"], "cannot be halved"),
            (["search", "--primitives", "sep_conv_3x3,conv_9x9"], "unknown operation 'conv_9x9'"),
            (["search", "--dataset", "csv", "--data", "x.csv"], "--dataset csv needs --input"),
            (["search", "--resume"], "holds no run to resume"),
        ]
        for (i, (args, message)) in cases.enumerated() {
            let out = base.appendingPathComponent("run\(i)")
            let r = try runNasMPI(args + ["--out", out.path])
            XCTAssertNotEqual(r.status, 0, "\(args) should fail")
            XCTAssertTrue(r.stderr.contains(message), "\(args): '\(r.stderr)' lacks '\(message)'")
            XCTAssertFalse(FileManager.default.fileExists(atPath: out.path), "\(args) left a run directory behind")
        }
        // Resuming a directory without a run, and starting over an existing run.
        let empty = base.appendingPathComponent("empty")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        let r1 = try runNasMPI(["search", "--resume", "--out", empty.path])
        XCTAssertNotEqual(r1.status, 0)
        XCTAssertTrue(r1.stderr.contains("holds no run to resume"), r1.stderr)
        let done = base.appendingPathComponent("done")
        XCTAssertEqual(try runNasMPI(tiny + ["--epochs", "1", "--out", done.path]).status, 0)
        let r2 = try runNasMPI(tiny + ["--epochs", "1", "--out", done.path])
        XCTAssertNotEqual(r2.status, 0)
        XCTAssertTrue(r2.stderr.contains("already holds a run"), r2.stderr)
        let r3 = try runNasMPI(["search", "--resume", "--out", done.path, "--epochs", "5"])
        XCTAssertNotEqual(r3.status, 0)
        XCTAssertTrue(r3.stderr.contains("--epochs (saved 1, given 5)"), r3.stderr)
    }

    func testLogHasAHeaderAndTimestampsAndCostRecordsCPUTime() throws {
        let out = try temporaryDirectory(self).appendingPathComponent("run")
        let r = try runNasMPI(tiny + ["--epochs", "1", "--out", out.path, "--progress", "lines"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = try String(contentsOf: out.appendingPathComponent("log.txt"), encoding: .utf8).split(separator: "\n")
        XCTAssertTrue(lines[0].hasPrefix("# nas-mpi 0."), String(lines[0]))
        XCTAssertTrue(lines.contains { $0.hasPrefix("# command: ") && $0.contains("search --channels 2") }, "\(lines)")
        XCTAssertTrue(lines.contains { $0.hasPrefix("# started: 20") }, "\(lines)")
        // The OpenBLAS kernels: where OpenBLAS falls back to its SSE kernels on a CPU with AVX or
        // wider (as it does in this test process), the command restarted itself with better ones.
        let blas = lines.first { $0.hasPrefix("# blas: OpenBLAS ") }.map(String.init) ?? "none in \(lines)"
        if let better = BLAS.betterCore(than: BLAS.coreName, simdLevel: BLAS.simdLevel) {
            XCTAssertTrue(blas.lowercased().contains("openblas \(better.lowercased()) kernels"), blas)
            XCTAssertTrue(blas.contains("OpenBLAS chose \(BLAS.coreName)"), blas)
        } else {
            XCTAssertTrue(blas.hasPrefix("# blas: OpenBLAS \(BLAS.coreName) kernels"), blas)
        }
        let stamped = try NSRegularExpression(pattern: #"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2}) "#)
        let body = lines.filter { !$0.hasPrefix("#") }
        XCTAssertFalse(body.isEmpty)
        for line in body {
            XCTAssertNotNil(stamped.firstMatch(in: String(line), range: NSRange(location: 0, length: line.utf16.count)), String(line))
        }
        let cost = try JSONDecoder().decode([String: JSONValue].self, from: Data(contentsOf: out.appendingPathComponent("cost.json")))
        let cpu = cost["cpu_seconds"]?.double ?? 0, wall = cost["wall_seconds"]?.double ?? 0
        XCTAssertGreaterThan(cpu, 0)
        XCTAssertLessThan(cpu, 4 * wall + 1, "one thread: CPU time about the wall time")
        XCTAssertEqual(cost["cpu_seconds_ranks"]?.int, 1)
    }

    func testSummaryPrintsReferenceCounts() throws {
        let r = try runNasMPI(["summary", "--channels", "16", "--layers", "8", "--input", "3x32x32", "--classes", "10"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("parameters: 1930618\n"), r.stdout)
        XCTAssertTrue(r.stdout.contains("forward MACs: 300255744\n"), r.stdout)
        let small = try runNasMPI(["summary", "--channels", "8", "--layers", "5"])
        XCTAssertTrue(small.stdout.contains("parameters: 394210\n"), small.stdout)
        let bad = try runNasMPI(["summary", "--input", "3x32"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("--input expects CxHxW"), bad.stderr)
    }
}

/// Supernet weights out to safetensors and back in.
final class SupernetInterchangeTests: XCTestCase {
    func testExportedSupernetStartsANewSearch() throws {
        let base = try temporaryDirectory(self)
        let tiny = ["search", "--channels", "2", "--layers", "3", "--input", "1x8x8", "--synthetic-count", "64",
                    "--batch-size", "8", "--threads", "1", "--epochs", "1"]
        let a = base.appendingPathComponent("a")
        XCTAssertEqual(try runNasMPI(tiny + ["--seed", "3", "--out", a.path]).status, 0)
        let file = base.appendingPathComponent("supernet.safetensors")
        let x = try runNasMPI(["export", "--run", a.path, "--out", file.path])
        XCTAssertEqual(x.status, 0, x.stderr)
        let tensors = try Safetensors.decode(try Data(contentsOf: file), path: file.path)
        XCTAssertTrue(tensors.contains { $0.name == "alphas_normal" } && tensors.contains { $0.name == "cells.0._ops.0._ops.4.op.1.weight" })

        // A new search (another seed) starts from the file (the restore itself is checked tensor by
        // tensor in SafetensorsTests); a supernet of another width is refused before anything is written.
        let b = base.appendingPathComponent("b")
        let r = try runNasMPI(tiny + ["--seed", "9", "--out", b.path, "--init-weights", file.path, "--epochs", "1"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("architecture parameters alphas_normal, alphas_reduce from the file"), r.stdout)
        // A file without alphas keeps the fresh ones, and says so.
        let weightsOnly = base.appendingPathComponent("weights-only.safetensors")
        try Safetensors.encode(tensors.filter { !$0.name.hasPrefix("alphas_") }).write(to: weightsOnly)
        let d = base.appendingPathComponent("d")
        let fresh = try runNasMPI(tiny + ["--seed", "9", "--out", d.path, "--init-weights", weightsOnly.path])
        XCTAssertEqual(fresh.status, 0, fresh.stderr)
        XCTAssertTrue(fresh.stdout.contains("alphas_normal, alphas_reduce not in the file: they start fresh (seed 9)"), fresh.stdout)
        XCTAssertTrue(try String(contentsOf: d.appendingPathComponent("log.txt"), encoding: .utf8).contains("not in the file: they start fresh"))
        let bad = try runNasMPI(tiny + ["--channels", "4", "--out", base.appendingPathComponent("c").path, "--init-weights", file.path])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("does not fit this supernet"), bad.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: base.appendingPathComponent("c").path))
    }
}
