import Kernels
import XCTest
@testable import Search

/// ENAS's controller as the single-path supernet's sampler (`ControllerSampler`).
final class ENASTests: XCTestCase {
    private func share(of op: Primitive, in genotypes: [Genotype]) -> Double {
        let edges = genotypes.flatMap { $0.normal + $0.reduce }
        return Double(edges.filter { $0.op == op }.count) / Double(edges.count)
    }

    func testTheTrainingDrawIsAPureFunctionOfTheControllerAndThePosition() throws {
        let a = try ControllerSampler(seed: 4), b = try ControllerSampler(seed: 4)
        XCTAssertEqual(try a.sample(epoch: 1, step: 7, draw: 0), try b.sample(epoch: 1, step: 7, draw: 0))
        XCTAssertEqual(try a.sample(epoch: 1, step: 7, draw: 0), try a.sample(epoch: 1, step: 7, draw: 0), "draw 0 changes no state")
        let draws = try (0..<20).map { try a.sample(epoch: 0, step: $0, draw: 0).pythonDescription }
        XCTAssertGreaterThan(Set(draws).count, 15, "steps draw different architectures")
    }

    func testRewardsTeachTheControllerAndItsStateSurvivesACheckpoint() throws {
        let sampler = try ControllerSampler(seed: 9)
        // Reward: the share of sep_conv_3x3 edges (as the supernet's accuracy would reward a good op).
        for step in 0..<150 {
            let g = try sampler.sample(epoch: 0, step: step, draw: 1)
            try sampler.observe(g, reward: share(of: .sepConv3x3, in: [g]))
        }
        XCTAssertEqual(sampler.reinforce.updates, 150)
        let after = try XCTUnwrap(try sampler.finalCandidates(count: 200))
        let before = try XCTUnwrap(try ControllerSampler(seed: 9).finalCandidates(count: 200))
        XCTAssertGreaterThan(share(of: .sepConv3x3, in: after), share(of: .sepConv3x3, in: before) + 0.05,
                             "the rewarded op is sampled more often after training")

        var file = CheckpointFile(metadata: [:])
        sampler.addState(to: &file)
        let restored = try ControllerSampler(seed: 9)
        try restored.restoreState(from: CheckpointFile(data: file.encoded(), path: "x"))
        for step in 0..<5 {
            XCTAssertEqual(try restored.sample(epoch: 2, step: step, draw: 0), try sampler.sample(epoch: 2, step: step, draw: 0))
            let g = try sampler.sample(epoch: 2, step: step, draw: 1)
            XCTAssertEqual(try restored.sample(epoch: 2, step: step, draw: 1), g, "the reward draws continue identically")
            try sampler.observe(g, reward: 0.5)
            try restored.observe(g, reward: 0.5)
        }
        XCTAssertThrowsError(try ControllerSampler(seed: 9).restoreState(from: CheckpointFile(metadata: [:])))
    }
}
