import Kernels
import Search
import XCTest

final class EarlyStoppingTests: XCTestCase {
    private func history(_ n: Int, _ make: (Int) -> EpochEvidence) -> [EpochEvidence] { (1...n).map(make) }

    func testRulesParseAndRefuseBadInput() throws {
        XCTAssertEqual(try EarlyStopRule.list(parsing: "skips=2,stable=10,eigenvalue"), [.skips(2), .stable(10), .eigenvalue])
        for (text, message) in [("skip=2", "unknown rule 'skip=2'"), ("skips=0", "at least 1"), ("stable", "needs a count"),
                                ("eigenvalue=3", "unknown rule")] {
            XCTAssertThrowsError(try EarlyStopRule(parsing: text), text) { XCTAssertTrue("\($0)".contains(message), "\($0)") }
        }
        var c = SearchConfig.preset(.quick)
        c.earlyStop = [.eigenvalue]
        XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("needs --hessian-eigenvalue"), "\($0)") }
        c.hessianEigenvalue = true
        XCTAssertNoThrow(try c.validate())
        c.earlyStop = [.skips(0)]
        XCTAssertThrowsError(try c.validate())
    }

    func testSkipsFiresAtTheFirstEpochWithEnoughSkipsButNotInWarmUp() {
        let skips = [0, 1, 3, 2, 4]
        let h = history(5) { EpochEvidence(epoch: $0, warmUp: $0 == 3, genotype: "g\($0)", skipCount: skips[$0 - 1]) }
        let fired = (1...5).compactMap { t in EarlyStopRule.skips(2).check(Array(h.prefix(t))) }
        XCTAssertEqual(fired.map(\.epoch), [4, 5])
        XCTAssertEqual(fired.first?.chosenEpoch, 4)
        XCTAssertEqual(fired.first?.genotype, "g4")
    }

    func testStableNeedsTheRankingUnchangedForEEpochs() {
        let rankings: [[[Int]]] = [[[0, 1]], [[1, 0]], [[1, 0]], [[1, 0]], [[0, 1]], [[0, 1]], [[0, 1]]]
        let h = history(7) { EpochEvidence(epoch: $0, genotype: "g\($0)", ranking: rankings[$0 - 1]) }
        let rule = EarlyStopRule.stable(2)
        let fired = (1...7).compactMap { t in rule.check(Array(h.prefix(t))) }
        XCTAssertEqual(fired.map(\.epoch), [4, 7], "epochs 2-4 and 5-7 hold one ranking for 2 epochs after the change")
        XCTAssertEqual(fired.first?.chosenEpoch, 4)
    }

    func testRankingOrdersTheLearnableOpsByAlpha() throws {
        let a = try Tensor(shape: [1, 4], scalars: [5, 0.1, 0.3, 0.2])
        XCTAssertEqual(EpochEvidence.ranking(alphas: [a], primitives: [.skipConnect, .sepConv3x3, .sepConv5x5, .dilConv3x3]), [[2, 3, 1]])
    }

    func testEigenvalueRuleStopsOnA30PercentGrowthOfTheWindowMeanAndRollsBack5Epochs() {
        // Flat at 1 for 8 epochs, then rising by 0.25 a epoch.
        let ev: (Int) -> Double = { $0 <= 8 ? 1 : 1 + 0.25 * Double($0 - 8) }
        let h = history(20) { EpochEvidence(epoch: $0, genotype: "g\($0)", eigenvalue: ev($0)) }
        let fired = (1...20).compactMap { t in EarlyStopRule.eigenvalue.check(Array(h.prefix(t))) }
        // mean_t over t-4..t; mean_10 = 1.15 vs mean_6 = 1 (no); mean_11 = 1.3 (not > 1.3); mean_12 = 1.5 vs mean_8 = 1 fires.
        XCTAssertEqual(fired.first?.epoch, 12)
        XCTAssertEqual(fired.first?.chosenEpoch, 7)
        XCTAssertEqual(fired.first?.genotype, "g7")
        // Never before epoch 10, even with a sharp rise.
        let early = history(9) { EpochEvidence(epoch: $0, eigenvalue: $0 < 5 ? 1 : 100) }
        XCTAssertTrue((1...9).allSatisfy { EarlyStopRule.eigenvalue.check(Array(early.prefix($0))) == nil })
        // Missing eigenvalues never fire.
        XCTAssertNil(EarlyStopRule.eigenvalue.check(history(20) { EpochEvidence(epoch: $0) }))
    }

    func testStateSurvivesARoundTripAndTheFirstDecisionSticks() throws {
        let s = EarlyStopping(rules: [.skips(1), .stable(1)])
        XCTAssertNil(s.record(EpochEvidence(epoch: 1, genotype: "a", skipCount: 0, ranking: [[0]])))
        let d = s.record(EpochEvidence(epoch: 2, genotype: "b", skipCount: 1, ranking: [[0]]))
        XCTAssertEqual(d?.rule, "skips=1", "rules are tried in the order given")
        XCTAssertNil(s.record(EpochEvidence(epoch: 3, genotype: "c", skipCount: 2)))
        let copy = EarlyStopping(rules: s.rules)
        try copy.restore(try s.state)
        XCTAssertEqual(copy.history, s.history)
        XCTAssertEqual(copy.decision, d)
    }
}
