import Kernels
import Search
import XCTest

/// Kendall tau-b, Spearman rho, sparse Kendall tau and top-k overlap against examples worked by
/// hand (the pair tables are in the comments; scipy.stats.kendalltau / spearmanr agree).
final class RankCorrelationTests: XCTestCase {
    func testKendallTauBWithoutTies() {
        // x = 1 2 3 4 5, y = 3 1 2 5 4. Discordant pairs (x rises, y falls): (0,1), (0,2), (3,4);
        // the other 7 of the 10 are concordant. tau = (7 - 3) / 10 = 0.4.
        XCTAssertEqual(RankCorrelation.kendallTau([1, 2, 3, 4, 5], [3, 1, 2, 5, 4])!, 0.4, accuracy: 1e-12)
        XCTAssertEqual(RankCorrelation.kendallTau([1, 2, 3], [1, 2, 3])!, 1, accuracy: 1e-12)
        XCTAssertEqual(RankCorrelation.kendallTau([1, 2, 3], [3, 2, 1])!, -1, accuracy: 1e-12)
    }

    func testKendallTauBWithTies() {
        // x = 1 2 2 3, y = 1 3 2 2; n0 = 6 pairs:
        //   (0,1) C  (0,2) C  (0,3) C  (1,2) tied in x  (1,3) D  (2,3) tied in y
        // C = 3, D = 1, Tx = 1, Ty = 1: tau_b = (3 - 1) / sqrt((6 - 1)(6 - 1)) = 2 / 5 = 0.4.
        XCTAssertEqual(RankCorrelation.kendallTau([1, 2, 2, 3], [1, 3, 2, 2])!, 0.4, accuracy: 1e-12)
        // A pair tied in both counts in Tx and Ty: x = 1 1 2, y = 5 5 6: C = 2, Tx = Ty = 1,
        // tau_b = 2 / sqrt(2 * 2) = 1.
        XCTAssertEqual(RankCorrelation.kendallTau([1, 1, 2], [5, 5, 6])!, 1, accuracy: 1e-12)
    }

    func testSpearmanRhoWithAverageRanks() {
        // No ties: x = 1..5, y = 3 1 2 5 4, d = -2 1 1 -1 1, sum d^2 = 8:
        // rho = 1 - 6 * 8 / (5 * 24) = 0.6.
        XCTAssertEqual(RankCorrelation.spearmanRho([1, 2, 3, 4, 5], [3, 1, 2, 5, 4])!, 0.6, accuracy: 1e-12)
        // Ties: x = 1 2 2 3 has ranks 1 2.5 2.5 4, y = 1 3 2 2 has ranks 1 4 2.5 2.5 (mean 2.5).
        // Deviations -1.5 0 0 1.5 and -1.5 1.5 0 0: sxy = 2.25, sxx = syy = 4.5, rho = 0.5.
        XCTAssertEqual(RankCorrelation.averageRanks([1, 2, 2, 3]), [1, 2.5, 2.5, 4])
        XCTAssertEqual(RankCorrelation.averageRanks([7, 7, 7]), [2, 2, 2])
        XCTAssertEqual(RankCorrelation.spearmanRho([1, 2, 2, 3], [1, 3, 2, 2])!, 0.5, accuracy: 1e-12)
    }

    func testSparseKendallTauTiesAccuraciesWithinATenthOfAPoint() {
        // Supernet x = 10.00 10.08 20.00 30.00 %, standalone y = 50.00 40.00 40.05 60.00 %.
        // Exact tau-b: (0,1) D (x up 0.08 point, y down), (0,2) D, (1,2) C, the other 3 C:
        //   C = 4, D = 2, tau = 2 / 6 = 1/3.
        // Sparse (0.1 point): (0,1) tied in x (0.08 <= 0.1), (1,2) tied in y (0.05 <= 0.1);
        //   (0,2) D, (0,3) C, (1,3) C, (2,3) C: C = 3, D = 1, Tx = Ty = 1,
        //   tau = 2 / sqrt(5 * 5) = 0.4.
        let x = [0.100, 0.1008, 0.200, 0.300], y = [0.50, 0.40, 0.4005, 0.60]
        XCTAssertEqual(RankCorrelation.kendallTau(x, y)!, 1.0 / 3, accuracy: 1e-12)
        XCTAssertEqual(RankCorrelation.sparseKendallTau(x, y)!, 0.4, accuracy: 1e-12)
        // Exactly 0.1 point apart is within (a tie); 0.11 point is not.
        XCTAssertNil(RankCorrelation.sparseKendallTau([0.101, 0.100], [0.2, 0.3]), "the only pair is tied: no tau")
        XCTAssertEqual(RankCorrelation.sparseKendallTau([0.1011, 0.100], [0.2, 0.3])!, -1, accuracy: 1e-12)
    }

    func testUndefinedCorrelationsAreNil() {
        XCTAssertNil(RankCorrelation.kendallTau([1], [1]))
        XCTAssertNil(RankCorrelation.kendallTau([1, 1, 1], [1, 2, 3]), "every pair tied in x")
        XCTAssertNil(RankCorrelation.spearmanRho([1, 2, 3], [4, 4, 4]))
    }

    func testTopKOverlap() {
        // Top 2 of x: {0, 1}; of y: {1, 2}: one in common. Top 3: {0, 1, 2} and {1, 2, 4}: two.
        let x = [0.9, 0.8, 0.7, 0.6, 0.5], y = [0.5, 0.9, 0.8, 0.4, 0.7]
        XCTAssertEqual(RankCorrelation.topKOverlap(x, y, k: 2), 1)
        XCTAssertEqual(RankCorrelation.topKOverlap(x, y, k: 3), 2)
        XCTAssertEqual(RankCorrelation.topKOverlap(x, x, k: 5), 5)
        // Ties at the cut: the lower index.
        XCTAssertEqual(RankCorrelation.top(2, of: [1, 1, 1, 0]), [0, 1])
        XCTAssertEqual(RankCorrelation.overlapSizes(n: 30), [5, 10])
        XCTAssertEqual(RankCorrelation.overlapSizes(n: 6), [5])
        XCTAssertEqual(RankCorrelation.overlapSizes(n: 4), [2])
        XCTAssertEqual(RankCorrelation.overlapSizes(n: 2), [1])
        let s = FidelitySummary.statistics(supernet: x, standalone: y)
        XCTAssertEqual(s.overlaps.map(\.k), [2])
        XCTAssertEqual(s.overlaps[0].common, 1)
        XCTAssertEqual(s.overlaps[0].fraction, 0.5)
    }

    func testStudyGenotypesAreTheFinalsThenDistinctUniformSamples() throws {
        let v2 = Genotype.dartsV2
        // The same architecture with one node's two edges swapped is one architecture.
        var swapped = v2.normal
        swapped.swapAt(0, 1)
        let v2b = try Genotype(normal: swapped, normalConcat: v2.normalConcat, reduce: v2.reduce, reduceConcat: v2.reduceConcat)
        let entries = FidelityStudy.entries(finals: [(v2, "a"), (v2b, "b"), (.dartsV1, "c")], total: 6, space: .darts, seed: 3, seeds: 2)
        XCTAssertEqual(entries.map(\.source), ["a", "c", "random", "random", "random", "random"])
        XCTAssertEqual(Set(entries.map { FidelityStudy.architectureKey($0.genotype) }).count, 6)
        XCTAssertTrue(entries.allSatisfy { $0.accuracies == [nil, nil] })
        XCTAssertEqual(entries.map(\.genotype), FidelityStudy.entries(finals: [(v2, "a"), (.dartsV1, "c")], total: 6, space: .darts, seed: 3, seeds: 2).map(\.genotype),
                       "the same seed draws the same samples")
    }
}
