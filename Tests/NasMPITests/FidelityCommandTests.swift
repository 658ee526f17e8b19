import Foundation
import Search
import XCTest
import _TestSupport

/// `nas-mpi fidelity`: a tiny random-ws supernet, its genotypes scored on it and trained standalone.
final class FidelityCommandTests: XCTestCase {
    @discardableResult
    private func search(_ out: URL, method: String = "random-ws", images: String = "64", batch: String = "8",
                        extra: [String] = []) throws -> CommandResult {
        var args = ["search", "--method", method, "--channels", "4", "--layers", "3", "--input", "1x8x8", "--synthetic-count", images,
                    "--batch-size", batch, "--threads", "1", "--epochs", "1", "--seed", "1", "--out", out.path] + extra
        if method == "random-ws" { args += ["--ws-samples", "4", "--ws-top", "2", "--ws-batches", "2", "--ws-bn-batches", "2"] }
        let r = try runNasMPI(args)
        XCTAssertEqual(r.status, 0, r.stderr)
        return r
    }

    private let tiny = ["--samples", "4", "--seeds", "2", "--candidate-epochs", "1", "--channels", "4", "--layers", "3",
                        "--batch-size", "8", "--threads", "1", "--bn-batches", "2"]

    private func lines(_ dir: URL) throws -> [[String: JSONValue]] {
        try String(contentsOf: dir.appendingPathComponent("fidelity.jsonl"), encoding: .utf8).split(separator: "\n").map {
            try JSONDecoder().decode([String: JSONValue].self, from: Data($0.utf8))
        }
    }

    private func object(_ url: URL) throws -> [String: JSONValue] {
        try JSONDecoder().decode([String: JSONValue].self, from: Data(contentsOf: url))
    }

    func testFidelityScoresTrainsAndReportsConsistentStatistics() throws {
        let base = try temporaryDirectory(self)
        let run = base.appendingPathComponent("search"), out = base.appendingPathComponent("fidelity")
        try search(run)
        // The search's own run given again: deduplicated.
        let r = try runNasMPI(["fidelity", "--run", run.path, "--genotypes-from", run.path, "--out", out.path] + tiny)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("4 genotypes (1 final genotype(s) of runs, 3 uniform samples)"), r.stdout)
        XCTAssertTrue(r.stdout.contains("tau against supernet epoch: not measured"), r.stdout)

        let records = try lines(out)
        XCTAssertEqual(records.count, 4)
        XCTAssertEqual(records[0]["source"]?.string, run.standardizedFileURL.path)
        XCTAssertEqual(records[0]["genotype"]?.string, try Genotype.load(run.appendingPathComponent("genotype.json").path).pythonDescription)
        XCTAssertEqual(records.dropFirst().map { $0["source"]?.string }, ["random", "random", "random"])
        XCTAssertEqual(Set(records.compactMap { $0["genotype"]?.string }).count, 4)
        var x: [Double] = [], y: [Double] = []
        for rec in records {
            let s = try XCTUnwrap(rec["supernet_acc"]?.double)
            let accs = try XCTUnwrap(rec["standalone_accs"]?.array).compactMap(\.double)
            XCTAssertEqual(accs.count, 2, "two seeds")
            XCTAssertTrue(([s] + accs).allSatisfy { (0...1).contains($0) })
            let mean = try XCTUnwrap(rec["mean"]?.double)
            XCTAssertEqual(mean, accs.reduce(0, +) / 2, accuracy: 1e-12)
            XCTAssertEqual(rec["seeds"], .array([.number(0), .number(1)]))
            x.append(s)
            y.append(mean)
        }
        // fidelity.json holds the statistics of fidelity.jsonl's numbers, and run.json the same.
        let summary = try JSONDecoder().decode(FidelitySummary.self, from: Data(contentsOf: out.appendingPathComponent("fidelity.json")))
        XCTAssertEqual(summary.genotypes, 4)
        XCTAssertEqual(summary.complete, 4)
        XCTAssertEqual(summary.seeds, 2)
        XCTAssertEqual(summary.kendallTau, RankCorrelation.kendallTau(x, y))
        XCTAssertEqual(summary.spearmanRho, RankCorrelation.spearmanRho(x, y))
        XCTAssertEqual(summary.sparseKendallTau, RankCorrelation.sparseKendallTau(x, y))
        XCTAssertEqual(summary.topK.map(\.k), [2])
        XCTAssertEqual(summary.topK[0].common, RankCorrelation.topKOverlap(x, y, k: 2))
        for v in [summary.kendallTau, summary.spearmanRho, summary.sparseKendallTau].compactMap({ $0 }) { XCTAssertTrue((-1...1).contains(v)) }
        XCTAssertNil(summary.perEpoch, "the search kept no per-epoch weights")
        XCTAssertEqual(summary.supernetEpoch, 1)
        XCTAssertEqual(summary.searchMethod, "random-ws")
        XCTAssertEqual(summary.scoreImages, 32, "the whole validation half of 64 images")
        XCTAssertEqual(summary.validationImages, 32, "the standalone trainings are scored on the same half")
        let manifest = try RunManifest.read(from: RunDirectory(out.path))
        XCTAssertEqual(manifest.kind, "fidelity")
        XCTAssertEqual(manifest.status, .finished)
        XCTAssertEqual(manifest.fidelity, summary)
        XCTAssertEqual(manifest.budget["seeds"], 2)
        XCTAssertEqual(manifest.dataset.splits["validation"], 32)
        XCTAssertNil(manifest.dataset.splits["test"], "the test set is never loaded")
        // The report draws the study: supernet against standalone accuracy with tau and rho, and
        // gives it no row of the method table (it searched nothing).
        let report = base.appendingPathComponent("report")
        let rep = try runNasMPI(["report", run.path, out.path, "--out", report.path])
        XCTAssertEqual(rep.status, 0, rep.stderr)
        let html = try String(contentsOf: report.appendingPathComponent("index.html"), encoding: .utf8)
        XCTAssertTrue(html.contains("id=\"fig-fidelity-1\""), "the fidelity figure")
        XCTAssertTrue(html.contains(String(format: "Kendall tau %.3f, Spearman rho %.3f", summary.kendallTau!, summary.spearmanRho!)), "tau and rho in the caption")
        let csv = try String(contentsOf: report.appendingPathComponent("data/fidelity.csv"), encoding: .utf8)
        XCTAssertEqual(csv.split(whereSeparator: \.isNewline).count, 5, "a header and one row per architecture")
        XCTAssertFalse(try String(contentsOf: report.appendingPathComponent("data/table.csv"), encoding: .utf8).contains("fidelity"))
        XCTAssertTrue(try String(contentsOf: report.appendingPathComponent("report.md"), encoding: .utf8).contains("figures/fidelity-1.svg"))

        for g in 0..<4 {
            for s in 0..<2 {
                XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent(String(format: "candidates/g%03d-s%d/best.bin", g, s)).path))
            }
        }
    }

    /// A search that keeps every epoch's weights: the study scores the genotypes on each kept
    /// supernet and ranks each epoch against the same standalone trainings (done once), and the
    /// report draws tau against the epoch.
    func testKeptEpochWeightsGiveOneTauPerEpoch() throws {
        let base = try temporaryDirectory(self)
        let run = base.appendingPathComponent("search"), out = base.appendingPathComponent("fidelity")
        // --epochs 3 after the helper's --epochs 1: the last one given wins.
        let s = try search(run, extra: ["--keep-epoch-weights", "--epochs", "3"])
        XCTAssertTrue(s.stdout.contains("every epoch's weights kept in epochs/"), s.stdout)
        let kept = RunDirectory(run.path).epochCheckpoints()
        XCTAssertEqual(kept.map(\.epoch), [1, 2, 3])
        XCTAssertEqual(kept.map(\.url.lastPathComponent), ["epoch-001.bin", "epoch-002.bin", "epoch-003.bin"])
        for (e, url) in kept {
            XCTAssertEqual(try CheckpointFile.read(from: url).metadata["epoch"]?.int, e, "the checkpoint at the end of epoch \(e)")
        }
        XCTAssertEqual(try Data(contentsOf: kept[2].url), try Data(contentsOf: run.appendingPathComponent("checkpoint.bin")),
                       "the last epoch's file is the last checkpoint")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: run.appendingPathComponent("epochs").path).filter { $0.hasPrefix(".") }, [],
                       "atomic writes leave no temporaries")

        let r = try runNasMPI(["fidelity", "--run", run.path, "--out", out.path] + tiny)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("supernets of the 3 epoch(s) the search kept"), r.stdout)
        XCTAssertEqual(r.stdout.components(separatedBy: "on the kept weights of epoch").count - 1, 3, "each kept epoch scored once")
        let summary = try JSONDecoder().decode(FidelitySummary.self, from: Data(contentsOf: out.appendingPathComponent("fidelity.json")))
        let perEpoch = try XCTUnwrap(summary.perEpoch)
        XCTAssertEqual(perEpoch.map(\.epoch), [1, 2, 3], "one tau per kept epoch")
        XCTAssertEqual(perEpoch.map(\.complete), [4, 4, 4])
        // Each epoch's statistics are those of its scores in fidelity.jsonl against the standalone means.
        let records = try lines(out)
        let means = records.map { $0["mean"]!.double! }
        for (k, e) in perEpoch.enumerated() {
            let scores = try records.map { rec in
                try XCTUnwrap(rec["supernet_acc_by_epoch"]?.array?[k].object?["supernet_acc"]?.double)
            }
            XCTAssertEqual(e.kendallTau, RankCorrelation.kendallTau(scores, means), "epoch \(e.epoch)")
            XCTAssertEqual(e.spearmanRho, RankCorrelation.spearmanRho(scores, means), "epoch \(e.epoch)")
        }
        // The last kept epoch holds the weights the main scores used.
        XCTAssertEqual(perEpoch[2].kendallTau, summary.kendallTau)
        XCTAssertTrue(r.stdout.contains("tau against supernet epoch (fidelity_epochs.csv): epoch 1 tau"), r.stdout)
        let csv = try String(contentsOf: out.appendingPathComponent("fidelity_epochs.csv"), encoding: .utf8)
        XCTAssertEqual(csv.split(whereSeparator: \.isNewline).count, 4, "a header and one row per epoch")
        // Standalone training is done once, not per epoch.
        XCTAssertEqual(try object(out.appendingPathComponent("state.json"))["done"]?.int, 8)

        // The report draws tau against the epoch, with its data.
        let report = base.appendingPathComponent("report")
        let rep = try runNasMPI(["report", run.path, out.path, "--out", report.path])
        XCTAssertEqual(rep.status, 0, rep.stderr)
        let html = try String(contentsOf: report.appendingPathComponent("index.html"), encoding: .utf8)
        XCTAssertTrue(html.contains("id=\"fig-fidelity-epochs-1\"") && html.contains("Kendall tau against supernet epoch"), "the epoch figure")
        XCTAssertTrue(FileManager.default.fileExists(atPath: report.appendingPathComponent("figures/fidelity-epochs-1.svg").path))
        let rows = CSVTable.parse(try String(contentsOf: report.appendingPathComponent("data/fidelity_epochs.csv"), encoding: .utf8))
        XCTAssertEqual(rows.dropFirst().map { $0[1] }, ["1", "2", "3"])
        XCTAssertTrue(try String(contentsOf: report.appendingPathComponent("report.md"), encoding: .utf8).contains("figures/fidelity-epochs-1.svg"))
    }

    func testTheTimeBudgetStopsAndResumeTrainsOnlyWhatIsLeft() throws {
        let base = try temporaryDirectory(self)
        let run = base.appendingPathComponent("search"), out = base.appendingPathComponent("fidelity")
        try search(run, images: "1024", batch: "16")
        let r = try runNasMPI(["fidelity", "--run", run.path, "--out", out.path, "--time-budget", "2"] + tiny)
        XCTAssertEqual(r.status, 75, r.stdout + r.stderr)
        let state = try object(out.appendingPathComponent("state.json"))
        let done = try XCTUnwrap(state["done"]?.int)
        XCTAssertLessThan(done, 8)
        let before = try lines(out)
        XCTAssertEqual(try RunManifest.read(from: RunDirectory(out.path)).status, .outOfTime)
        let resumed = try runNasMPI(["fidelity", "--resume", "--out", out.path, "--threads", "1"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("\(done) of 8 trainings done"), resumed.stdout)
        XCTAssertFalse(resumed.stdout.contains("supernet scores:"), "the supernet is not scored again")
        let after = try lines(out)
        XCTAssertTrue(after.allSatisfy { $0["complete"] == .bool(true) })
        for (a, b) in zip(before, after) {
            XCTAssertEqual(a["supernet_acc"], b["supernet_acc"])
            // A training finished before the stop keeps its accuracy (it is not retrained).
            for (u, v) in zip(a["standalone_accs"]!.array!, b["standalone_accs"]!.array!) where u != .null { XCTAssertEqual(u, v) }
        }
        XCTAssertEqual(try object(out.appendingPathComponent("state.json"))["done"]?.int, 8)
        XCTAssertEqual(try RunManifest.read(from: RunDirectory(out.path)).status, .finished)
    }

    /// A signal while the kept epochs' supernets score the genotypes: the scores complete before
    /// it are kept, nothing is trained, and the resumed study scores only the rest and ends as an
    /// uninterrupted one.
    func testASignalWhileScoringKeptEpochsResumesWithTheRest() throws {
        let base = try temporaryDirectory(self)
        let run = base.appendingPathComponent("search")
        try search(run, images: "1024", batch: "16", extra: ["--keep-epoch-weights", "--epochs", "3"])
        let study = tiny + ["--samples", "8"]
        let reference = base.appendingPathComponent("reference"), cut = base.appendingPathComponent("cut")
        let r = try runNasMPI(["fidelity", "--run", run.path, "--out", reference.path] + study)
        XCTAssertEqual(r.status, 0, r.stderr)

        let status = try interruptNasMPI(["fidelity", "--run", run.path, "--out", cut.path] + study, log: cut.appendingPathComponent("log.txt"),
                                         after: "on the kept weights of epoch 1", signal: SIGTERM)
        XCTAssertEqual(status, 128 + SIGTERM)
        let state = try object(cut.appendingPathComponent("state.json"))
        XCTAssertEqual(state["scored"], .bool(true), "the last checkpoint's scores were complete before the signal")
        XCTAssertEqual(state["done"]?.int, 0, "nothing is trained before every supernet is scored")
        let scoredBefore = try XCTUnwrap(state["epochScores"]?.array).filter { $0.object?["scored"] == .bool(true) }.count
        XCTAssertLessThan(scoredBefore, 3, "stopped while scoring, not after")
        XCTAssertTrue(try String(contentsOf: cut.appendingPathComponent("log.txt"), encoding: .utf8).contains("these are scored again on resume"))
        XCTAssertEqual(try RunManifest.read(from: RunDirectory(cut.path)).status, .interrupted)

        let resumed = try runNasMPI(["fidelity", "--resume", "--out", cut.path, "--threads", "1"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertEqual(resumed.stdout.components(separatedBy: "on the kept weights of epoch").count - 1, 3 - scoredBefore,
                       "only the epochs not scored: \(resumed.stdout)")
        XCTAssertFalse(resumed.stdout.contains("(checkpoint.bin)"), "the last checkpoint is not scored again")
        let expected = try lines(reference), got = try lines(cut)
        XCTAssertEqual(got.count, expected.count)
        for (a, b) in zip(got, expected) {
            for key in ["genotype", "supernet_acc", "supernet_acc_by_epoch", "standalone_accs", "mean"] { XCTAssertEqual(a[key], b[key], key) }
        }
        let summary = { (dir: URL) in try JSONDecoder().decode(FidelitySummary.self, from: Data(contentsOf: dir.appendingPathComponent("fidelity.json"))) }
        XCTAssertEqual(try summary(cut).perEpoch?.map(\.kendallTau), try summary(reference).perEpoch?.map(\.kendallTau))
    }

    func testBadInputFailsBeforeAnyWork() throws {
        let base = try temporaryDirectory(self)
        let run = base.appendingPathComponent("search"), out = base.appendingPathComponent("bad")
        try search(run)
        let empty = base.appendingPathComponent("empty")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        let pc = base.appendingPathComponent("pc")
        try search(pc, method: "pc-darts")
        for (args, message) in [(["--run", empty.path], "is not a search run: it holds no config.json"),
                                (["--run", run.path, "--seeds", "0"], "--seeds must be at least 2"),
                                (["--run", run.path, "--samples", "1"], "--samples must be at least 2"),
                                (["--run", run.path, "--genotypes-from", base.appendingPathComponent("nowhere").path], "does not exist"),
                                (["--run", pc.path], "no single-path forward"),
                                (["--run", run.path, "--per-epoch"], "kept no per-epoch weights")] {
            let r = try runNasMPI(["fidelity", "--out", out.path, "--threads", "1"] + args)
            XCTAssertNotEqual(r.status, 0, "\(args)")
            XCTAssertTrue(r.stderr.contains(message), "\(args): \(r.stderr)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: out.path), "nothing written")
        }
        // A fidelity study is not a search run either.
        let study = base.appendingPathComponent("study")
        XCTAssertEqual(try runNasMPI(["fidelity", "--run", run.path, "--out", study.path] + tiny).status, 0)
        let r = try runNasMPI(["fidelity", "--run", study.path, "--out", out.path, "--threads", "1"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("is not a search run"), r.stderr)
    }

    func testTwoRanksScoreTogetherAndTrainInTwoGroups() throws {
        let base = try temporaryDirectory(self)
        let run = base.appendingPathComponent("search"), out = base.appendingPathComponent("fidelity")
        try search(run, extra: ["--keep-epoch-weights", "--epochs", "2"])
        let r = try runNasMPIUnderMPI(ranks: 2, ["fidelity", "--run", run.path, "--out", out.path] + tiny, timeout: 300)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("2 group(s) of 1 rank(s)"), r.stdout)
        // The kept epochs are scored by both ranks together: one tau per epoch.
        XCTAssertEqual(r.stdout.components(separatedBy: "on the kept weights of epoch").count - 1, 2, r.stdout)
        let summary = try JSONDecoder().decode(FidelitySummary.self, from: Data(contentsOf: out.appendingPathComponent("fidelity.json")))
        XCTAssertEqual(summary.perEpoch?.map(\.epoch), [1, 2])
        XCTAssertEqual(summary.perEpoch?.map(\.complete), [4, 4])
        XCTAssertTrue(r.stdout.contains("on rank(s) 1"), "the second group trained: \(r.stdout)")
        XCTAssertEqual(try lines(out).filter { $0["complete"] == .bool(true) }.count, 4)
        XCTAssertEqual(try RunManifest.read(from: RunDirectory(out.path)).ranks, 2)
    }
}
