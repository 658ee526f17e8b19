import Foundation
import Kernels

/// ENAS (Pham et al. 2018) on the DARTS cell space: the LSTM controller of `nas-mpi rl`
/// (`Reinforce`, ENAS micro settings) samples the architectures the shared supernet trains on,
/// and learns from their rewards, the supernet's accuracy on a validation batch.
///
/// Each step (`RandomWeightSharing`, which this sampler plugs into):
/// 1. draw 0: the controller samples the step's architecture from its own stream of (seed,
///    epoch, step) — a pure function of the controller's weights, so every rank and a resumed
///    run draw the same — and the shared weights take one SGD step on it (data parallel);
/// 2. draws 1...`rewardsPerStep`: the controller samples candidates (its sampling state is in the
///    checkpoint), each is scored on the step's validation batch with the correct counts summed
///    over ranks, and each reward updates the controller by REINFORCE (Adam 3.5e-3, moving
///    baseline 0.99, entropy 1e-4 in the reward) — identically on every rank, since every rank
///    sees the same rewards.
///
/// ENAS alternates whole phases (an epoch of shared-weight steps, then a number of controller
/// steps); here the two interleave step by step, which keeps the one epoch loop, its
/// checkpoints and its resume. At the end, `finalCandidates` are the trained controller's samples,
/// scored on the supernet and the best re-scored on the whole validation half (as ENAS derives its
/// final architecture from sampled ones).
public final class ControllerSampler: ArchitectureSampler {
    public private(set) var reinforce: Reinforce
    public let seed: UInt64
    public let rewardsPerStep: Int

    /// The budget of the strategy is effectively unbounded: the epochs bound the search.
    static let unbounded = 1 << 40

    public init(seed: UInt64, rewardsPerStep: Int = 1) throws {
        self.seed = seed
        self.rewardsPerStep = rewardsPerStep
        reinforce = try Reinforce(settings: .init(budget: Self.unbounded), seed: seed)
    }

    public func sample(epoch: Int, step: Int, draw: Int) throws -> Genotype {
        if draw == 0 {
            var g = UniformArchitectureSampler.generator(seed: seed ^ 0xE4A5, epoch: epoch, step: step, draw: 0)
            return try reinforce.controller.sample(using: &g).genotype
        }
        guard let genotype = try reinforce.propose() else { throw ReinforceError("the ENAS controller's budget is spent") }
        return genotype
    }

    public func observe(_ genotype: Genotype, reward: Double) throws {
        try reinforce.observe(genotype, fitness: reward)
    }

    /// The trained controller's distinct samples (at most `count`, drawn from a fixed stream).
    public func finalCandidates(count: Int) throws -> [Genotype]? {
        var g = UniformArchitectureSampler.generator(seed: seed ^ 0xE4A5, epoch: 0xFFFF, step: 0, draw: 0)
        var seen = Set<String>(), out: [Genotype] = []
        var tries = 0
        while out.count < count && tries < 20 * count {
            tries += 1
            let genotype = try reinforce.controller.sample(using: &g).genotype
            if seen.insert(genotype.pythonDescription).inserted { out.append(genotype) }
        }
        return out
    }

    public func addState(to file: inout CheckpointFile) {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        if let data = try? enc.encode(reinforce) { file.metadata["enas_controller"] = .string(String(decoding: data, as: UTF8.self)) }
    }

    public func restoreState(from file: CheckpointFile) throws {
        guard let text = file.metadata["enas_controller"]?.string else {
            throw RunError("the checkpoint holds no ENAS controller state (enas_controller)")
        }
        reinforce = try JSONDecoder().decode(Reinforce.self, from: Data(text.utf8))
    }
}
