import Distributed
import Foundation
import Kernels
import Search
import XCTest
import _TestSupport

/// Training one candidate of a full-training search: its result on the validation images, its
/// failures reported rather than thrown, its stops thrown, and never a look at the test set.
final class CandidateTrainerTests: XCTestCase {
    private func config() -> TrainConfig {
        var c = TrainConfig.preset(.quick, genotype: .dartsV2, source: "DARTS_V2")
        c.data = DataSource(kind: .synthetic, imageShape: [1, 8, 8])
        c.data.syntheticCount = 64
        c.data.syntheticClasses = 4
        c.channels = 2
        c.layers = 3
        c.batchSize = 8
        c.epochs = 2
        c.validationSplit = 0.5
        c.seed = 5
        return c
    }

    private func directory(_ name: String) throws -> RunDirectory {
        RunDirectory(try temporaryDirectory(self).appendingPathComponent(name).path)
    }

    func testACandidateIsScoredOnTheValidationImagesOnly() throws {
        let dir = try directory("candidate")
        var polls = 0
        let r = try CandidateTrainer.train(.dartsV1, config: config(), group: LocalCommunicator(), worldRank: 0, directory: dir,
                                           threads: 1, poll: { polls += 1 })
        XCTAssertEqual(r.status, .ok, r.reason ?? "")
        XCTAssertNil(r.reason)
        XCTAssertEqual(r.epochs, 2)
        XCTAssertEqual(r.ranks, [0])
        XCTAssertGreaterThan(r.wallSeconds, 0)
        XCTAssertGreaterThan(r.coreSeconds, 0)
        // 32 training images in batches of 8: 4 steps an epoch; 32 validation images: 4 batches.
        XCTAssertEqual(polls, 2 * (4 + 4))
        let net = try EvalNetwork(EvalNetworkConfig(channels: 2, layers: 3, inputShape: [1, 8, 8], classes: 4, auxiliary: false),
                                  genotype: .dartsV1, seed: 5)
        XCTAssertEqual(r.parameters, net.parameterCountWithoutAuxiliary)
        XCTAssertEqual(r.macs, net.multiplyAccumulates)
        // The fitness is the best epoch's validation accuracy; no test figure anywhere.
        let metrics = try String(contentsOf: dir.metrics, encoding: .utf8).split(separator: "\n").map {
            try JSONDecoder().decode([String: JSONValue].self, from: Data($0.utf8))
        }
        XCTAssertEqual(r.validationAccuracy, metrics.compactMap { $0["valid_acc"]?.double }.max())
        XCTAssertTrue(metrics.allSatisfy { $0["test_acc"] == nil && $0["test_loss"] == nil })
        let saved = try Trainer.savedConfig(dir)
        XCTAssertEqual(saved.genotype, .dartsV1)
        XCTAssertFalse(saved.evaluateTest)
        // The result round-trips as one JSON line.
        let line = try JSONEncoder().encode(r)
        XCTAssertEqual(try JSONDecoder().decode(CandidateResult.self, from: line), r)
        XCTAssertTrue(String(decoding: line, as: UTF8.self).contains("\"validation_accuracy\""))
    }

    func testADivergedCandidateIsAFailedResultNotAnError() throws {
        var c = config()
        c.learningRate = 1e30
        let r = try CandidateTrainer.train(.dartsV2, config: c, group: LocalCommunicator(), worldRank: 3,
                                           directory: try directory("nan"), threads: 1)
        XCTAssertEqual(r.status, .failed)
        XCTAssertTrue(r.reason?.contains("loss") == true, r.reason ?? "no reason")
        XCTAssertNil(r.validationAccuracy)
        XCTAssertNotNil(r.parameters)
        XCTAssertEqual(r.ranks, [3])
    }

    func testACandidateTheDataDoesNotFitFails() throws {
        var c = config()
        c.batchSize = 64  // more than the 32 training images
        let r = try CandidateTrainer.train(.dartsV2, config: c, group: LocalCommunicator(), worldRank: 0,
                                           directory: try directory("big-batch"), threads: 1)
        XCTAssertEqual(r.status, .failed)
        XCTAssertTrue(r.reason?.contains("larger than the 32 training images") == true, r.reason ?? "no reason")
    }

    func testAStopIsThrownAndTheCandidateResumes() throws {
        let dir = try directory("stopped")
        var polls = 0
        XCTAssertThrowsError(try CandidateTrainer.train(.dartsV2, config: config(), group: LocalCommunicator(), worldRank: 0, directory: dir,
                                                         threads: 1, poll: { polls += 1; if polls == 3 { throw CandidateStopped(signal: SIGTERM) } })) {
            XCTAssertEqual(($0 as? CandidateStopped)?.signal, SIGTERM)
        }
        // A poll that throws ends the run at once (no checkpoint); resume starts from the configuration.
        let r = try CandidateTrainer.train(.dartsV2, config: config(), group: LocalCommunicator(), worldRank: 0, directory: dir,
                                           resume: true, threads: 1)
        XCTAssertEqual(r.status, .ok, r.reason ?? "")
        let whole = try CandidateTrainer.train(.dartsV2, config: config(), group: LocalCommunicator(), worldRank: 0,
                                               directory: try directory("whole"), threads: 1)
        XCTAssertEqual(r.validationAccuracy, whole.validationAccuracy)
        XCTAssertEqual(r.validationLoss, whole.validationLoss)
        // Another candidate's directory is refused.
        XCTAssertThrowsError(try CandidateTrainer.train(.dartsV1, config: config(), group: LocalCommunicator(), worldRank: 0, directory: dir,
                                                         resume: true, threads: 1)) {
            XCTAssertTrue("\($0)".contains("another configuration"), "\($0)")
        }
    }

    func testTheTimeBudgetStopsTheCandidateWithAnError() throws {
        let dir = try directory("deadline")
        XCTAssertThrowsError(try CandidateTrainer.train(.dartsV2, config: config(), group: LocalCommunicator(), worldRank: 0, directory: dir,
                                                         threads: 1, deadline: Date(timeIntervalSinceNow: -1))) {
            XCTAssertNotNil($0 as? CandidateStopped, "\($0)")
            XCTAssertNil(($0 as? CandidateStopped)?.signal, "the time budget")
        }
    }

    func testOldTrainConfigsStillLoad() throws {
        // A config.json written before validationSplit, evaluateTest and syncBatchNorm existed.
        var fields = try JSONDecoder().decode([String: JSONValue].self, from: JSONEncoder().encode(config()))
        for key in ["validationSplit", "evaluateTest", "syncBatchNorm"] { fields[key] = nil }
        let old = try JSONDecoder().decode(TrainConfig.self, from: JSONEncoder().encode(fields))
        XCTAssertNil(old.validationSplit)
        XCTAssertTrue(old.evaluateTest)
        XCTAssertFalse(old.syncBatchNorm)
        var expected = config()
        expected.validationSplit = nil
        XCTAssertEqual(old, expected)
    }

    func testValidationSplitIsTheSearchSplit() throws {
        var c = config()
        c.data.syntheticCount = 100
        c.trainLimit = 60
        let data = try c.loadData()
        let (weights, architecture) = try c.data.load().train.searchSplit(portion: 0.5, limit: 60)
        XCTAssertEqual(data.train.labels, weights.labels)
        XCTAssertEqual(data.validation?.labels, architecture.labels)
        XCTAssertEqual(data.train.count, 30)
        XCTAssertNotNil(data.test, "synthetic data has a test split")
        c.evaluateTest = false
        XCTAssertNil(try c.loadData().test)
        for bad in [0.0, 1.0, -0.5, .nan] {
            c.validationSplit = bad
            XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("--validation-split"), "\($0)") }
        }
    }

    // MARK: As a task farm's work

    func testFarmWorkTrainsEachTaskWithItsSeedInItsDirectory() throws {
        let root = try directory("farm")
        var seen: [Int] = []
        let work = CandidateTrainer.FarmWork(training: config(), worldRank: 0, threads: 1, deadline: nil) { task, training in
            seen.append(task.id)
            training.epochs = 1
            return RunDirectory(root.file("c\(task.id)").path)
        }
        let task = CandidateTask(id: 7, genotype: .dartsV1, seed: 42)
        let outcome = try work.run(task, group: LocalCommunicator(), poll: {})
        XCTAssertEqual(outcome.result?.status, .ok, outcome.result?.reason ?? "no result")
        XCTAssertNil(outcome.stoppedBy)
        XCTAssertNil(work.stoppedHere)
        XCTAssertEqual(seen, [7])
        let saved = try Trainer.savedConfig(RunDirectory(root.file("c7").path))
        XCTAssertEqual(saved.seed, 42)
        XCTAssertEqual(saved.epochs, 1)
        XCTAssertEqual(saved.genotype, .dartsV1)
        let end = try work.agree(comm: LocalCommunicator(), sourceStop: nil)
        XCTAssertNil(end.stoppedBy, "finished")
        XCTAssertGreaterThan(end.cpuSeconds, 0)
    }

    func testFarmWorkTurnsAStopIntoAnOutcomeAndTheRanksAgreeOnIt() throws {
        let root = try directory("farm-stop")
        let work = CandidateTrainer.FarmWork(training: config(), worldRank: 0, threads: 1, deadline: Date(timeIntervalSinceNow: -1)) { task, _ in
            RunDirectory(root.file("c\(task.id)").path)
        }
        let outcome = try work.run(CandidateTask(id: 0, genotype: .dartsV2, seed: 1), group: LocalCommunicator(), poll: {})
        XCTAssertNil(outcome.result)
        XCTAssertEqual(outcome.stoppedBy, 0, "the time budget")
        XCTAssertEqual(work.stoppedHere, 0)
        XCTAssertEqual(try work.agree(comm: LocalCommunicator(), sourceStop: nil).stoppedBy, 0)
        // Rank 0's source speaks for the rank when it has stopped.
        XCTAssertEqual(try work.agree(comm: LocalCommunicator(), sourceStop: SIGTERM).stoppedBy, SIGTERM)
        XCTAssertEqual(try FarmStop.agree(SIGUSR1, comm: LocalCommunicator()).stoppedBy, SIGUSR1)
        XCTAssertNil(try FarmStop.agree(nil, comm: LocalCommunicator()).stoppedBy)
    }
}
