import Foundation
import Kernels
import Search
import XCTest
import _TestSupport

/// End to end: divergence, non-finite inputs, dead-end run directories and signals.
final class RobustnessTests: XCTestCase {
    private let tiny = ["search", "--channels", "2", "--layers", "3", "--input", "1x8x8", "--synthetic-count", "64",
                        "--batch-size", "8", "--threads", "1", "--seed", "3", "--epochs", "1"]

    func testDivergingRunsStopAtOnceWithTheLikelyCause() throws {
        let base = try temporaryDirectory(self)
        for (name, args, flag) in [
            ("lr", tiny + ["--learning-rate", "1e30"], "--learning-rate 1e+30"),
            ("arch", tiny + ["--arch-learning-rate", "1e38", "--epochs", "2"], "--arch-learning-rate 1e+38"),
            ("train", ["train", "--genotype", "DARTS_V2", "--channels", "4", "--layers", "3", "--input", "1x8x8", "--synthetic-count", "32",
                       "--batch-size", "8", "--threads", "1", "--epochs", "1", "--learning-rate", "1e30"], "--learning-rate 1e+30"),
        ] {
            let out = base.appendingPathComponent(name)
            let r = try runNasMPI(args + ["--out", out.path])
            XCTAssertNotEqual(r.status, 0, name)
            XCTAssertTrue(r.stderr.contains("the run diverged") && r.stderr.contains("epoch 1 step") && r.stderr.contains(flag), "\(name): \(r.stderr)")
            XCTAssertFalse(r.stderr.contains("JSON") || r.stdout.contains("genotype = "), "\(name): \(r.stdout)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: out.appendingPathComponent("metrics.jsonl").path), "no epoch of NaN is recorded")
        }
        for value in ["inf", "nan"] {
            let r = try runNasMPI(tiny + ["--learning-rate", value, "--out", base.appendingPathComponent(value).path])
            XCTAssertNotEqual(r.status, 0)
            XCTAssertTrue(r.stderr.contains("--learning-rate must be a finite number"), r.stderr)
        }
    }

    func testNonFiniteWeightsInImportedFilesAreRefused() throws {
        let base = try temporaryDirectory(self)
        let run = base.appendingPathComponent("run")
        XCTAssertEqual(try runNasMPI(tiny + ["--out", run.path]).status, 0)
        let good = base.appendingPathComponent("good.safetensors"), bad = base.appendingPathComponent("bad.safetensors")
        XCTAssertEqual(try runNasMPI(["export", "--run", run.path, "--out", good.path]).status, 0)
        var tensors = try Safetensors.decode(try Data(contentsOf: good), path: good.path)
        tensors[0].tensor.scalars[0] = .nan
        try Safetensors.encode(tensors).write(to: bad)
        let r = try runNasMPI(tiny + ["--init-weights", bad.path, "--out", base.appendingPathComponent("x").path])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("'\(tensors[0].name)' holds 1 NaN or infinite value"), r.stderr)
        let e = try runNasMPI(["evaluate", "--run", run.path, "--weights", bad.path])
        XCTAssertNotEqual(e.status, 0)
        XCTAssertTrue(e.stderr.contains("NaN or infinite"), e.stderr)
    }

    func testARunKilledBeforeItsFirstCheckpointResumes() throws {
        let out = try temporaryDirectory(self).appendingPathComponent("run")
        // Kill -9 as soon as the configuration is written (long before the first checkpoint).
        let process = Process()
        process.executableURL = try nasMPIBinary()
        process.arguments = tiny.map { $0 == "64" ? "2048" : $0 } + ["--out", out.path]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let config = out.appendingPathComponent("config.json")
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline, !FileManager.default.fileExists(atPath: config.path) { usleep(2_000) }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.appendingPathComponent("checkpoint.bin").path))
        // A fresh start refuses the directory; --resume starts the saved configuration over.
        XCTAssertNotEqual(try runNasMPI(tiny.map { $0 == "64" ? "2048" : $0 } + ["--out", out.path]).status, 0)
        let r = try runNasMPI(["search", "--resume", "--out", out.path, "--threads", "1"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("no checkpoint yet") && r.stdout.contains("starting it from the beginning"), r.stdout)
        XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent("genotype.json").path))
    }

    func testASecondSignalExitsAtOnce() throws {
        // Steps of a few seconds (second order, larger images): the first SIGINT would wait for the
        // step to end; the second must not.
        let out = try temporaryDirectory(self).appendingPathComponent("run")
        let process = Process()
        process.executableURL = try nasMPIBinary()
        process.arguments = ["search", "--channels", "4", "--layers", "3", "--input", "3x16x16", "--synthetic-count", "128",
                             "--batch-size", "16", "--order", "2", "--threads", "1", "--epochs", "1", "--out", out.path,
                             "--progress", "lines", "--log-every", "1"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let log = out.appendingPathComponent("log.txt")
        let deadline = Date().addingTimeInterval(300)
        var stepStarted = Date()
        while Date() < deadline {
            if let text = try? String(contentsOf: log, encoding: .utf8), text.contains("step 1/") { stepStarted = Date(); break }
            usleep(10_000)
        }
        // The next step is under way: ask twice.
        usleep(300_000)
        kill(process.processIdentifier, SIGINT)
        usleep(300_000)
        let second = Date()
        kill(process.processIdentifier, SIGINT)
        process.waitUntilExit()
        let waited = Date().timeIntervalSince(second)
        XCTAssertEqual(process.terminationStatus, 130)
        XCTAssertLessThan(waited, 1.0, "exited \(waited) s after the second signal (a step had been running \(second.timeIntervalSince(stepStarted)) s)")
        // No torn or temporary file is left behind.
        let names = try FileManager.default.contentsOfDirectory(atPath: out.path)
        XCTAssertFalse(names.contains { $0.contains(".tmp-") }, "\(names)")
    }

    func testEvaluationPassesShowProgressAndCountInTheEpochTime() throws {
        let out = try temporaryDirectory(self).appendingPathComponent("run")
        let r = try runNasMPI(tiny.map { $0 == "64" ? "1536" : $0 } + ["--batch-size", "32", "--out", out.path, "--progress", "lines", "--log-every", "8"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let metrics = try JSONDecoder().decode([String: JSONValue].self, from: Data(contentsOf: out.appendingPathComponent("metrics.jsonl")))
        let evaluation = try XCTUnwrap(metrics["evaluation_seconds"]?.double)
        XCTAssertGreaterThan(metrics["seconds"]?.double ?? 0, evaluation, "the epoch's time includes its evaluation")
        XCTAssertTrue(r.stdout.contains(String(format: "(evaluation %.1f s): train loss", evaluation)), r.stdout)
        if evaluation >= 2.5 {
            XCTAssertTrue(r.stdout.contains("epoch 1/1 evaluating: batch "), "a \(evaluation) s evaluation shows progress: \(r.stdout)")
        }
    }
}
