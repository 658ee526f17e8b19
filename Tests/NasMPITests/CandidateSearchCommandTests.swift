import Foundation
import Search
import XCTest
import _TestSupport

/// `nas-mpi evolve`, `random` and `rl`: every candidate trained in full, on groups of ranks.
final class CandidateSearchCommandTests: XCTestCase {
    /// Candidates of a few hundred milliseconds each.
    private let tiny = ["--channels", "2", "--layers", "3", "--input", "1x8x8", "--synthetic-count", "64",
                        "--batch-size", "8", "--candidate-epochs", "1", "--threads", "1", "--seed", "3"]

    private func lines(_ dir: URL) throws -> [[String: JSONValue]] {
        let text = try String(contentsOf: dir.appendingPathComponent("candidates.jsonl"), encoding: .utf8)
        return try text.split(separator: "\n").map { try JSONDecoder().decode([String: JSONValue].self, from: Data($0.utf8)) }
    }

    private func manifest(_ dir: URL) throws -> [String: JSONValue] {
        try JSONDecoder().decode([String: JSONValue].self, from: Data(contentsOf: dir.appendingPathComponent("run.json")))
    }

    func testEvolveTrainsTheBudgetAndTestsOnlyTheBest() throws {
        let out = try temporaryDirectory(self).appendingPathComponent("evolve")
        let r = try runNasMPI(["evolve"] + tiny + ["--candidates", "6", "--population", "3", "--sample-size", "2", "--out", out.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let records = try lines(out)
        XCTAssertEqual(records.compactMap { $0["id"]?.int }, Array(0..<6))
        for rec in records {
            XCTAssertEqual(rec["status"]?.string, "ok")
            let acc = try XCTUnwrap(rec["valid_acc"]?.double)
            XCTAssertTrue((0...1).contains(acc))
            XCTAssertGreaterThan(rec["parameters"]?.int ?? 0, 0)
            XCTAssertGreaterThan(rec["macs"]?.int ?? 0, 0)
            XCTAssertNil(rec["test_acc"], "candidates never see the test set")
        }
        let best = records.max { ($0["valid_acc"]?.double ?? 0) < ($1["valid_acc"]?.double ?? 0) }!
        let m = try manifest(out)
        XCTAssertEqual(m["kind"]?.string, "evolve")
        XCTAssertEqual(m["status"]?.string, "finished")
        XCTAssertEqual(m["validation_accuracy"]?.double, best["valid_acc"]?.double)
        XCTAssertNotNil(m["test_accuracy"]?.double, "the final choice is tested once")
        XCTAssertEqual(try Genotype.load(out.appendingPathComponent("genotype.json").path).pythonDescription, best["genotype"]?.string)
        XCTAssertTrue(r.stdout.contains("best candidate"), r.stdout)
    }

    func testACandidateForcedToNaNIsRecordedAsFailedAndTheRunGoesOn() throws {
        let out = try temporaryDirectory(self).appendingPathComponent("random")
        let r = try runNasMPI(["random"] + tiny + ["--candidates", "3", "--out", out.path],
                              environment: ["NAS_MPI_FORCE_NAN_CANDIDATE": "1"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let records = try lines(out)
        XCTAssertEqual(records.map { $0["status"]?.string }, ["ok", "failed", "ok"])
        XCTAssertTrue(records[1]["reason"]?.string?.contains("loss") == true, "\(records[1])")
    }

    func testKillNineThenResumeRetrainsOnlyTheCandidatesInFlight() throws {
        let out = try temporaryDirectory(self).appendingPathComponent("run")
        // Slower candidates, so the kill lands while one is being trained.
        let args = ["random"] + tiny.map { $0 == "64" ? "512" : $0 } + ["--candidates", "5", "--out", out.path]
        let process = Process()
        process.executableURL = try nasMPIBinary()
        process.arguments = args
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(120)
        var before: [[String: JSONValue]] = []
        while Date() < deadline {
            before = (try? lines(out)) ?? []
            if before.count >= 2 { break }
            usleep(20_000)
        }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        before = try lines(out)
        XCTAssertGreaterThanOrEqual(before.count, 2)
        XCTAssertLessThan(before.count, 5, "killed before the end")
        let resumed = try runNasMPI(["random", "--resume", "--out", out.path, "--threads", "1"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        // One candidate was in flight; if its line was written just before the kill, it counts as done.
        XCTAssertTrue(resumed.stdout.contains("\(before.count) of 5 candidates done, 1 in flight")
                      || resumed.stdout.contains("\(before.count) of 5 candidates done, 0 in flight"), resumed.stdout)
        let after = try lines(out)
        XCTAssertEqual(after.compactMap { $0["id"]?.int }.sorted(), Array(0..<5), "every candidate once")
        for (a, b) in zip(before, after) {
            XCTAssertEqual(a["wall_seconds"]?.double, b["wall_seconds"]?.double, "a finished candidate is never retrained")
        }
    }

    func testTheTimeBudgetStopsCandidatesWithCheckpointsAndResumeFinishes() throws {
        let out = try temporaryDirectory(self).appendingPathComponent("budget")
        let args = ["random"] + tiny.map { $0 == "64" ? "2048" : $0 } + ["--candidates", "1", "--out", out.path]
        let r = try runNasMPI(args + ["--time-budget", "2"])
        XCTAssertEqual(r.status, 75, r.stdout + r.stderr)
        let state = try JSONDecoder().decode([String: JSONValue].self, from: Data(contentsOf: out.appendingPathComponent("strategy.json")))
        guard case .array(let inFlight)? = state["inFlight"] else { return XCTFail("strategy.json: \(state)") }
        XCTAssertEqual(inFlight.count, 1, "the candidate in flight is kept for the resume")
        XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent("candidates/000000/checkpoint.bin").path),
                      "the stopped candidate wrote its checkpoint")
        XCTAssertEqual(try manifest(out)["status"]?.string, "out-of-time")
        let resumed = try runNasMPI(["random", "--resume", "--out", out.path, "--threads", "1"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertEqual(try lines(out).compactMap { $0["id"]?.int }, [0])
        XCTAssertEqual(try manifest(out)["status"]?.string, "finished")
    }

    func testBadOptionsFailBeforeAnyWork() throws {
        let base = try temporaryDirectory(self)
        let cases: [([String], String)] = [
            (["evolve", "--population", "1"], "--population must be at least 2"),
            (["evolve", "--population", "4", "--sample-size", "5"], "--sample-size must lie in 1...4"),
            (["random", "--candidates", "0"], "--candidates must be at least 1"),
            (["random", "--validation-split", "1.5"], "--validation-split"),
        ]
        for (args, message) in cases {
            let r = try runNasMPI(args + ["--out", base.appendingPathComponent("x").path])
            XCTAssertNotEqual(r.status, 0, args.joined(separator: " "))
            XCTAssertTrue(r.stderr.contains(message), "\(args): \(r.stderr)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: base.appendingPathComponent("x").path))
        // A resume with another strategy's run.
        let out = base.appendingPathComponent("rand")
        XCTAssertEqual(try runNasMPI(["random"] + tiny + ["--candidates", "1", "--out", out.path]).status, 0)
        let r = try runNasMPI(["evolve", "--resume", "--out", out.path])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("holds a 'random' search, not 'evolve'"), r.stderr)
    }

    // MARK: Under mpirun

    func testFourRanksEvolveAndRLUseEveryGroup() throws {
        let base = try temporaryDirectory(self)
        for command in ["evolve", "rl"] {
            let out = base.appendingPathComponent(command)
            let r = try runNasMPIUnderMPI(ranks: 4, [command] + tiny + ["--candidates", "8", "--out", out.path], timeout: 300)
            XCTAssertEqual(r.status, 0, r.stderr)
            let records = try lines(out)
            XCTAssertEqual(records.count, 8)
            XCTAssertEqual(Set(records.compactMap { $0["group"]?.int }).count, 4, "\(command): all four ranks trained candidates")
            XCTAssertEqual(try manifest(out)["ranks"]?.int, 4)
        }
        let enas = try runNasMPIUnderMPI(ranks: 4, ["rl", "--weight-sharing", "--channels", "2", "--layers", "3", "--input", "1x8x8",
                                                    "--synthetic-count", "64", "--batch-size", "16", "--epochs", "1", "--ws-samples", "4",
                                                    "--ws-top", "2", "--out", base.appendingPathComponent("enas").path], timeout: 300)
        XCTAssertEqual(enas.status, 0, enas.stderr)
        XCTAssertEqual(try manifest(base.appendingPathComponent("enas"))["ranks"]?.int, 4)
    }

    func testTwoRanksPerCandidateMatchTheCandidateTrainedAloneOnTwoRanks() throws {
        let base = try temporaryDirectory(self)
        let four = try runNasMPIUnderMPI(ranks: 4, ["random"] + tiny + ["--candidates", "2", "--ranks-per-candidate", "2",
                                                                          "--out", base.appendingPathComponent("four").path], timeout: 300)
        XCTAssertEqual(four.status, 0, four.stderr)
        let alone = try runNasMPIUnderMPI(ranks: 2, ["random"] + tiny + ["--candidates", "1", "--ranks-per-candidate", "2",
                                                                           "--out", base.appendingPathComponent("two").path], timeout: 300)
        XCTAssertEqual(alone.status, 0, alone.stderr)
        let a = try lines(base.appendingPathComponent("four")), b = try lines(base.appendingPathComponent("two"))
        XCTAssertEqual(Set(a.compactMap { $0["group"]?.int }), [0, 1], "two candidates at once")
        let first = try XCTUnwrap(a.first { $0["id"]?.int == 0 })
        XCTAssertEqual(first["genotype"]?.string, b[0]["genotype"]?.string)
        XCTAssertEqual(first["valid_acc"]?.double, b[0]["valid_acc"]?.double)
        XCTAssertEqual(first["valid_loss"]?.double, b[0]["valid_loss"]?.double)
        if case .array(let ranks)? = first["ranks"] { XCTAssertEqual(ranks.count, 2) } else { XCTFail("ranks: \(first)") }
        let r = try runNasMPIUnderMPI(ranks: 3, ["random"] + tiny + ["--ranks-per-candidate", "2", "--out", base.appendingPathComponent("three").path])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("3 ranks"), r.stderr)
    }

    // MARK: Weight sharing

    func testWeightSharingVariantsRunAsSinglePathSearchMethods() throws {
        let base = try temporaryDirectory(self)
        let search = ["--channels", "2", "--layers", "3", "--input", "1x8x8", "--synthetic-count", "64", "--batch-size", "16",
                      "--epochs", "2", "--ws-samples", "6", "--ws-top", "2", "--threads", "1", "--seed", "4"]
        for (command, method) in [("rl", "enas"), ("random", "random-ws")] {
            let out = base.appendingPathComponent(method)
            let r = try runNasMPI([command, "--weight-sharing"] + search + ["--out", out.path])
            XCTAssertEqual(r.status, 0, r.stderr)
            let m = try manifest(out)
            XCTAssertEqual(m["kind"]?.string, "search")
            XCTAssertEqual(m["method"]?.string, method)
            let scores = try String(contentsOf: out.appendingPathComponent("ws_scores.jsonl"), encoding: .utf8).split(separator: "\n")
            XCTAssertEqual(scores.count, 6, method)
            XCTAssertNoThrow(try Genotype.load(out.appendingPathComponent("genotype.json").path))
        }
        let enasLog = try String(contentsOf: base.appendingPathComponent("enas/log.txt"), encoding: .utf8)
        XCTAssertTrue(enasLog.contains("distinct samples of the trained sampler"), enasLog)
    }
}
