import Foundation
import Kernels
import Search
import XCTest
import _TestSupport

/// End to end: a two-stage P-DARTS search from the command line (flags, the genotype's skip cap,
/// a deeper second stage over pruned op lists), and a run resumed inside its second stage
/// matching the uninterrupted one.
final class PDARTSCommandTests: XCTestCase {
    private let small = ["search", "--method", "p-darts", "--stages", "3,4", "--stage-ops", "4,2", "--stage-epochs", "2",
                         "--warmup-epochs", "1", "--skip-dropout", "0.2,0.5", "--max-skip", "1",
                         "--primitives", "none,max_pool_3x3,skip_connect,sep_conv_3x3",
                         "--channels", "4", "--input", "1x8x8", "--synthetic-count", "64", "--batch-size", "8",
                         "--threads", "1", "--seed", "5"]

    private func lines(_ url: URL) throws -> [[String: JSONValue]] {
        try String(contentsOf: url, encoding: .utf8).split(separator: "\n").map {
            try JSONDecoder().decode([String: JSONValue].self, from: Data($0.utf8))
        }
    }

    func testTwoStageSearchWritesACappedGenotypeFromTheDeeperPrunedStage() throws {
        let out = try temporaryDirectory(self).appendingPathComponent("run")
        let r = try runNasMPI(small + ["--out", out.path, "--progress", "lines"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("search: p-darts (stages 3,4 cells, 4,2 ops per edge, skip dropout 0.2,0.5, at most 1 skips)"), r.stdout)
        let metrics = try lines(out.appendingPathComponent("metrics.jsonl"))
        XCTAssertEqual(metrics.count, 4, "2 stages x 2 epochs")
        XCTAssertEqual(metrics.map { $0["warm_up"] }, [.bool(true), .bool(false), .bool(true), .bool(false)])
        let genotype = try JSONDecoder().decode(Genotype.self, from: Data(contentsOf: out.appendingPathComponent("genotype.json")))
        XCTAssertLessThanOrEqual(genotype.normal.filter { $0.op == .skipConnect }.count, 1)
        XCTAssertFalse((genotype.normal + genotype.reduce).contains { $0.op == .none })
        let checkpoint = try CheckpointFile.read(from: out.appendingPathComponent("checkpoint.bin"))
        XCTAssertEqual(checkpoint.metadata["pdarts_stage"], .number(1))
        XCTAssertEqual(try checkpoint.tensor("alphas_normal", shape: [14, 2]).shape, [14, 2], "the second stage keeps 2 ops per edge")
        XCTAssertTrue(checkpoint.tensors.contains { $0.name.hasPrefix("cells.3.") }, "the second stage has 4 cells")
        // The genotype's ops come from the second stage's op lists.
        guard case .object(let ops)? = checkpoint.metadata["pdarts_ops"], let normal = ops["normal"]?.array else {
            return XCTFail("no op lists in the checkpoint")
        }
        XCTAssertEqual(normal.count, 14)
        XCTAssertTrue(normal.allSatisfy { $0.array?.count == 2 })
        // Flags.
        for (args, message) in [(["--stage-ops", "5,2"], "all 4 primitives"), (["--skip-dropout", "0.2,1"], "[0, 1)"),
                                (["--stages", "3"], "one value per stage"), (["--stage-ops", "4,x"], "comma-separated")] {
            var a = small
            for i in stride(from: 0, to: args.count, by: 2) { a[a.firstIndex(of: args[i])! + 1] = args[i + 1] }
            let bad = try runNasMPI(a + ["--out", out.path + "-bad"])
            XCTAssertTrue(bad.status != 0 && bad.stderr.contains(message), "\(args): \(bad.stderr)")
        }
        let darts = try runNasMPI(["search", "--method", "darts", "--stages", "3,4", "--epochs", "1", "--input", "1x8x8"])
        XCTAssertTrue(darts.status != 0 && darts.stderr.contains("apply to --method p-darts"), darts.stderr)
    }

    func testResumeInsideTheSecondStageIsBitIdenticalToAnUninterruptedRun() throws {
        let base = try temporaryDirectory(self)
        let whole = base.appendingPathComponent("whole"), cut = base.appendingPathComponent("cut")
        // 256 images: 16 steps per epoch, so the signal lands mid-epoch.
        let args = small.map { $0 == "64" ? "256" : $0 }
        XCTAssertEqual(try runNasMPI(args + ["--out", whole.path]).status, 0)
        // Stop in the second epoch of the second stage (with architecture steps and skip dropout).
        let status = try interruptNasMPI(args + ["--out", cut.path, "--progress", "lines", "--log-every", "1"],
                                         log: cut.appendingPathComponent("log.txt"), after: "epoch 4/4 step 2/", signal: SIGTERM)
        XCTAssertEqual(status, 143)
        let r = try runNasMPI(["search", "--resume", "--out", cut.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let a = try CheckpointFile.read(from: whole.appendingPathComponent("checkpoint.bin"))
        let b = try CheckpointFile.read(from: cut.appendingPathComponent("checkpoint.bin"))
        XCTAssertEqual(a.metadata["pdarts_ops"], b.metadata["pdarts_ops"])
        XCTAssertEqual(a.tensors.map(\.name), b.tensors.map(\.name))
        for ((name, x), (_, y)) in zip(a.tensors, b.tensors) { XCTAssertEqual(x, y, name) }
        XCTAssertEqual(try String(contentsOf: whole.appendingPathComponent("alphas.jsonl"), encoding: .utf8),
                       try String(contentsOf: cut.appendingPathComponent("alphas.jsonl"), encoding: .utf8))
        XCTAssertEqual(try String(contentsOf: whole.appendingPathComponent("genotype.txt"), encoding: .utf8),
                       try String(contentsOf: cut.appendingPathComponent("genotype.txt"), encoding: .utf8))
    }
}
