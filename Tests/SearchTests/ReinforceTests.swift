import Foundation
import Kernels
import Search
import XCTest
import _TestSupport

/// REINFORCE over the ENAS controller: learning on a fixed reward, asynchronous results, the
/// budget, checkpoints that continue identically, and bad input.
final class ReinforceTests: XCTestCase {
    /// The fraction of edges (both cells) using sep_conv_3x3: a synthetic fitness in 0...1.
    private func sepConvFraction(_ g: Genotype) -> Double {
        Double((g.normal + g.reduce).filter { $0.op == .sepConv3x3 }.count) / 16
    }

    /// The frequency of sep_conv_3x3 over the edges of `count` genotypes the controller draws.
    private func sepConvFrequency(_ controller: ControllerLSTM, count: Int = 50) throws -> Double {
        var g = RandomGenerator(seed: 77, streamID: 500)
        var total = 0.0
        for _ in 0..<count { total += sepConvFraction(try controller.sample(using: &g).genotype) }
        return total / Double(count)
    }

    /// Results arrive out of order, four candidates in flight; after 150 updates the controller
    /// draws the rewarded op about twice as often as the uniform 1/7, close to the most that ENAS's
    /// op logits allow: with logits c * tanh(l), c = 1.1 / 2.5, one op of 7 gets at most
    /// e^c / (e^c + 6 e^-c) = 0.287 (the bound keeps the controller exploring).
    func testProbabilityOfRewardedOpRises() throws {
        let start = Date()
        var strategy = try Reinforce(settings: .init(budget: 150), seed: 1)
        let before = try sepConvFrequency(strategy.controller)
        var inFlight: [Genotype] = []
        var order = RandomGenerator(seed: 9, streamID: 501)
        while true {
            while inFlight.count < 4, let g = try strategy.propose() { inFlight.append(g) }
            if inFlight.isEmpty { break }
            let g = inFlight.remove(at: order.int(below: inFlight.count))
            try strategy.observe(g, fitness: sepConvFraction(g))
        }
        XCTAssertEqual(strategy.updates, 150)
        XCTAssertEqual(strategy.history.count, 150)
        let after = try sepConvFrequency(strategy.controller)
        let c = 1.1 / 2.5
        let ceiling = exp(c) / (exp(c) + 6 * exp(-c))
        XCTAssertEqual(ceiling, 0.287, accuracy: 1e-3)
        XCTAssertLessThan(abs(before - 1.0 / 7), 0.03, "an untrained controller is near uniform")
        XCTAssertGreaterThan(after, 0.22, "sep_conv_3x3 frequency \(before) -> \(after) (at most \(ceiling))")
        XCTAssertGreaterThan(strategy.baseline, 0)
        XCTAssertEqual(strategy.best?.fitness, strategy.history.compactMap(\.fitness).max())
        print("ReinforceTests: sep_conv_3x3 frequency \(before) -> \(after) in \(Date().timeIntervalSince(start)) s")
    }

    func testBudgetCountsProposalsInFlightAndFailuresDoNotUpdate() throws {
        var strategy = try Reinforce(settings: .init(budget: 3, hiddenSize: 8), seed: 2)
        let proposals = try (0..<3).map { _ in try strategy.propose()! }
        XCTAssertNil(try strategy.propose())
        XCTAssertEqual(strategy.inFlight.map(\.genotype), proposals)
        let weights = strategy.controller.parameters.map(\.value)
        try strategy.observe(proposals[1], fitness: nil)
        XCTAssertEqual(strategy.controller.parameters.map(\.value), weights, "a failed candidate does not update")
        XCTAssertEqual(strategy.baseline, 0)
        XCTAssertEqual(strategy.updates, 0)
        try strategy.observe(proposals[2], fitness: 0.5)
        XCTAssertEqual(strategy.updates, 1)
        // ENAS: the baseline moves first (0.01 * reward), the advantage is taken after.
        let reward = try XCTUnwrap(strategy.history.last?.reward)
        XCTAssertEqual(reward, 0.5, accuracy: 0.01)
        XCTAssertEqual(strategy.baseline, 0.01 * reward, accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(strategy.history.last?.advantage), 0.99 * reward, accuracy: 1e-12)
        XCTAssertNotEqual(strategy.controller.parameters.map(\.value), weights)
        XCTAssertEqual(strategy.best?.genotype, proposals[2])
        XCTAssertNil(try strategy.propose())
        XCTAssertEqual(strategy.inFlight.map(\.genotype), [proposals[0]])
    }

    /// A checkpoint taken with candidates in flight continues exactly as the original: same
    /// proposals, same weights, moments and baseline, bit for bit.
    func testCodableRoundTripContinuesIdentically() throws {
        var a = try Reinforce(settings: .init(budget: 12, hiddenSize: 16), seed: 3)
        var proposals: [Genotype] = []
        for _ in 0..<6 { proposals.append(try a.propose()!) }
        for g in proposals.prefix(4) { try a.observe(g, fitness: sepConvFraction(g)) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let data = try encoder.encode(a)
        var b = try JSONDecoder().decode(Reinforce.self, from: data)
        XCTAssertEqual(try encoder.encode(b), data)

        func continueRun(_ s: inout Reinforce) throws -> [Genotype] {
            var seen: [Genotype] = []
            try s.observe(proposals[5], fitness: 0.25)
            while let g = try s.propose() {
                seen.append(g)
                try s.observe(g, fitness: sepConvFraction(g))
            }
            try s.observe(proposals[4], fitness: nil)
            return seen
        }
        let fromA = try continueRun(&a)
        let fromB = try continueRun(&b)
        XCTAssertEqual(fromA.count, 6)
        XCTAssertEqual(fromA, fromB)
        XCTAssertEqual(try encoder.encode(a), try encoder.encode(b))
        XCTAssertEqual(a.updates, 11)
    }

    /// On resume the candidates that were in flight are proposed again first, without counting
    /// against the budget twice.
    func testReissueInFlightAfterResume() throws {
        var s = try Reinforce(settings: .init(budget: 4, hiddenSize: 8), seed: 4)
        let first = try (0..<3).map { _ in try s.propose()! }
        try s.observe(first[0], fitness: 0.5)
        var resumed = try JSONDecoder().decode(Reinforce.self, from: try JSONEncoder().encode(s))
        resumed.reissueInFlight()
        XCTAssertEqual(resumed.reissue.map(\.genotype), [first[1], first[2]])
        XCTAssertEqual(try resumed.propose(), first[1])
        XCTAssertEqual(try resumed.propose(), first[2])
        XCTAssertNotNil(try resumed.propose())
        XCTAssertNil(try resumed.propose())
        XCTAssertEqual(resumed.proposed, 4)
        try resumed.observe(first[2], fitness: 0.1)
    }

    /// The strategy is a value: a copy does not see the original's updates.
    func testCopiesAreIndependent() throws {
        var a = try Reinforce(settings: .init(budget: 2, hiddenSize: 8), seed: 5)
        let g = try a.propose()!
        let b = a
        try a.observe(g, fitness: 1)
        XCTAssertEqual(b.updates, 0)
        XCTAssertEqual(b.inFlight.count, 1)
        XCTAssertNotEqual(a.controller.parameters.map(\.value), b.controller.parameters.map(\.value))
    }

    func testBadInput() throws {
        XCTAssertThrowsError(try Reinforce(settings: .init(budget: -1), seed: 0)) { XCTAssertTrue("\($0)".contains("budget"), "\($0)") }
        XCTAssertThrowsError(try Reinforce(settings: .init(budget: 1, learningRate: 0), seed: 0)) { XCTAssertTrue("\($0)".contains("learning rate"), "\($0)") }
        XCTAssertThrowsError(try Reinforce(settings: .init(budget: 1, baselineDecay: 1), seed: 0)) { XCTAssertTrue("\($0)".contains("[0, 1)"), "\($0)") }
        XCTAssertThrowsError(try Reinforce(settings: .init(budget: 1, entropyWeight: -1), seed: 0)) { XCTAssertTrue("\($0)".contains("entropy"), "\($0)") }
        var s = try Reinforce(settings: .init(budget: 1, hiddenSize: 8), seed: 6)
        XCTAssertThrowsError(try s.observe(.dartsV2, fitness: 0.5)) { XCTAssertTrue("\($0)".contains("not in flight"), "\($0)") }
        let g = try s.propose()!
        XCTAssertThrowsError(try s.observe(g, fitness: .nan)) { XCTAssertTrue("\($0)".contains("nil"), "\($0)") }
        XCTAssertEqual(s.inFlight.count, 1, "a rejected result leaves the candidate in flight")
    }
}
