import Foundation
import Search
import XCTest
import _TestSupport

/// Tau against supernet epoch: each kept epoch's supernet scores ranked against the same
/// standalone accuracies (worked by hand), and the study's state keeping which epochs are scored.
final class FidelityStudyTests: XCTestCase {
    /// Standalone mean accuracies of four architectures: a, b, c, d in rising order.
    private let standalone: [Double?] = [0.1, 0.2, 0.3, 0.4]

    func testPerEpochTauAndRhoOnCraftedScores() throws {
        let stats = EpochFidelity.statistics(epochs: [
            // Reversed ranking: every one of the 6 pairs discordant.
            (epoch: 1, scores: [0.4, 0.3, 0.2, 0.1]),
            // a and b swapped: pair (a,b) discordant, the other 5 concordant: tau = (5 - 1) / 6.
            // Ranks x = 2 1 3 4, y = 1 2 3 4, d^2 = 1 + 1: rho = 1 - 6 * 2 / (4 * 15) = 0.8.
            (epoch: 2, scores: [0.2, 0.1, 0.3, 0.4]),
            // a and b tied: C = 5, D = 0, Tx = 1, Ty = 0: tau_b = 5 / sqrt((6 - 1) * 6) = 5 / sqrt(30).
            (epoch: 3, scores: [0.2, 0.2, 0.3, 0.4]),
            // b not scored: over a, c, d only, x = 0.3 0.1 0.2 against y = 0.1 0.3 0.4:
            // (a,c) D, (a,d) D, (c,d) C: tau = (1 - 2) / 3; ranks x = 3 1 2, y = 1 2 3,
            // d^2 = 4 + 1 + 1: rho = 1 - 6 * 6 / (3 * 8) = -0.5.
            (epoch: 4, scores: [0.3, nil, 0.1, 0.2]),
            // Ranked exactly.
            (epoch: 5, scores: [0.11, 0.12, 0.13, 0.14]),
        ], standalone: standalone)
        XCTAssertEqual(stats.map(\.epoch), [1, 2, 3, 4, 5])
        XCTAssertEqual(stats.map(\.complete), [4, 4, 4, 3, 4])
        let tau = stats.map { $0.kendallTau! }, rho = stats.map { $0.spearmanRho! }
        for (got, want) in zip(tau, [-1, 4.0 / 6, 5 / 30.0.squareRoot(), -1.0 / 3, 1]) { XCTAssertEqual(got, want, accuracy: 1e-12) }
        XCTAssertEqual(rho[0], -1, accuracy: 1e-12)
        XCTAssertEqual(rho[1], 0.8, accuracy: 1e-12)
        XCTAssertEqual(rho[3], -0.5, accuracy: 1e-12)
        XCTAssertEqual(rho[4], 1, accuracy: 1e-12)
        // Sparse tau: 0.11 .. 0.14 lie 1 point apart, beyond the 0.1-point threshold: no ties.
        XCTAssertEqual(stats[4].sparseKendallTau!, 1, accuracy: 1e-12)
    }

    func testArchitecturesWithoutEveryStandaloneSeedAreLeftOut() {
        // Only a and d complete: one pair, concordant.
        let stats = EpochFidelity.statistics(epochs: [(epoch: 7, scores: [0.5, 0.9, 0.1, 0.6])], standalone: [0.1, nil, nil, 0.4])
        XCTAssertEqual(stats[0].complete, 2)
        XCTAssertEqual(stats[0].kendallTau!, 1, accuracy: 1e-12)
        // Fewer than two: no statistics.
        let none = EpochFidelity.statistics(epochs: [(epoch: 1, scores: [nil, 0.2, 0.3, 0.4])], standalone: [0.1, nil, nil, nil])
        XCTAssertEqual(none[0].complete, 0)
        XCTAssertNil(none[0].kendallTau)
    }

    /// A study of four architectures with kept epochs 1, 2, 3, every seed trained; epochs 1 and 3
    /// scored: the summary ranks those two, resume scores only epoch 2, and fidelity.jsonl and the
    /// CSV carry every epoch's numbers.
    func testTheStateKeepsWhichEpochsAreScoredAcrossAResume() throws {
        let dir = RunDirectory(try temporaryDirectory(self).path)
        try dir.create()
        let genotypes = ["DARTS_V1", "DARTS_V2", "NASNet", "AmoebaNet"].map { Genotype.builtIn[$0]! }
        let config = FidelityConfig(searchRun: "/nowhere", genotypeRuns: [], samples: 4, seeds: 2, seed: 0, ranksPerCandidate: 1,
                                    scoreBatches: nil, bnBatches: 2,
                                    training: TrainConfig.preset(.quick, genotype: genotypes[0], source: "test"))
        let study = try FidelityStudy(config: config, directory: dir, resume: false, epochs: [1, 2, 3]) {
            genotypes.enumerated().map { i, g in
                var e = FidelityEntry(genotype: g, source: "random", seeds: 2)
                e.accuracies = [standalone[i]! - 0.01, standalone[i]! + 0.01]
                return e
            }
        }
        XCTAssertEqual(study.state.epochsToScore, [1, 2, 3])
        try study.setScores([0.1, 0.2, 0.3, 0.4], epoch: 3, images: 32)
        try study.setEpochScores([0.4, 0.3, 0.2, 0.1], epoch: 1)
        try study.setEpochScores([0.2, 0.1, 0.3, 0.4], epoch: 3)
        XCTAssertThrowsError(try study.setEpochScores([0, 0, 0, 0], epoch: 9), "not a kept epoch")

        let resumed = try FidelityStudy(config: config, directory: dir, resume: true) { XCTFail("not rebuilt"); return [] }
        XCTAssertEqual(resumed.state.epochsToScore, [2], "a resumed study scores only the epoch not scored")
        let summary = resumed.summary(searchMethod: "random-ws", validationImages: 32)
        let perEpoch = try XCTUnwrap(summary.perEpoch)
        XCTAssertEqual(perEpoch.map(\.epoch), [1, 3], "only scored epochs are ranked")
        XCTAssertEqual(perEpoch[0].kendallTau!, -1, accuracy: 1e-12)
        XCTAssertEqual(perEpoch[1].kendallTau!, 4.0 / 6, accuracy: 1e-12)
        XCTAssertTrue(summary.supernetEpochTauNote.hasPrefix("measured"), summary.supernetEpochTauNote)
        // fidelity.json round trip keeps per_epoch.
        let decoded = try JSONDecoder().decode(FidelitySummary.self, from: JSONEncoder().encode(summary))
        XCTAssertEqual(decoded, summary)

        try resumed.setEpochScores([0.1, 0.2, 0.3, 0.4], epoch: 2)
        XCTAssertEqual(resumed.perEpochStatistics()?.map(\.epoch), [1, 2, 3])
        let line = try XCTUnwrap(resumed.lines()[1].object)
        XCTAssertEqual(line["supernet_acc_by_epoch"], .array([1, 2, 3].map { e in
            .object(["epoch": .number(Double(e)), "supernet_acc": .number([0.3, 0.2, 0.1][e - 1])])
        }))
        let csv = CSVTable.parse(try XCTUnwrap(resumed.epochTable()).text)
        XCTAssertEqual(csv.first, ["epoch", "complete", "kendall_tau", "spearman_rho", "sparse_kendall_tau"])
        XCTAssertEqual(csv.dropFirst().map { $0[0] }, ["1", "2", "3"])
        XCTAssertEqual(Double(csv[2][2])!, 1, accuracy: 1e-12)
    }

    func testAStudyWithoutKeptEpochsSaysWhy() throws {
        let dir = RunDirectory(try temporaryDirectory(self).path)
        try dir.create()
        let g = Genotype.builtIn["DARTS_V2"]!
        let config = FidelityConfig(searchRun: "/nowhere", genotypeRuns: [], samples: 2, seeds: 2, seed: 0, ranksPerCandidate: 1,
                                    scoreBatches: nil, bnBatches: 2, training: TrainConfig.preset(.quick, genotype: g, source: "test"))
        let study = try FidelityStudy(config: config, directory: dir, resume: false) { [FidelityEntry(genotype: g, source: "random", seeds: 2)] }
        XCTAssertNil(study.state.epochScores)
        XCTAssertNil(study.perEpochStatistics())
        XCTAssertNil(study.epochTable())
        let summary = study.summary(searchMethod: "darts", validationImages: 0)
        XCTAssertNil(summary.perEpoch)
        XCTAssertEqual(summary.supernetEpochTauNote, FidelitySummary.noEpochWeights)
    }
}
