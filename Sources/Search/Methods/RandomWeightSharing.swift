import Distributed
import Foundation
import Kernels

/// Random search with weight sharing (reference liamcli/randomNAS_release, the DARTS CNN space):
/// the supernet's shared weights are trained on one architecture per step, drawn uniformly
/// (`UniformArchitectureSampler`) and run single-path (`SearchNetwork.path`: only the chosen
/// ops, unweighted; the other ops get no gradient and no update) with DARTS's weight step (SGD,
/// cosine schedule, clipping, gradients averaged over ranks). No architecture parameters are
/// trained. At the end `--ws-samples` random architectures are scored by the shared weights'
/// accuracy on a few validation batches after recomputing BatchNorm for each, the best
/// `--ws-top` are re-scored on the whole validation half, and the best of those is the genotype
/// (`SupernetScoring`; every score in ws_scores.jsonl).
///
/// Every rank trains the same architecture: each rank draws it, then rank 0's draw is broadcast
/// (the uniform draw is a pure function of the seed, epoch, step and draw, so the broadcast only
/// guards samplers with state). The sampler is pluggable (`ArchitectureSampler`): a sampler that
/// asks for rewards (the ENAS controller) gets, after each weight step, the accuracy of each of
/// its `rewardsPerStep` further draws on the step's validation batch — ENAS's alternation of
/// shared-weight and controller steps at the granularity of one step.
///
/// Between steps the supernet keeps the path of the last architecture trained, so the epoch's
/// validation pass and the per-epoch genotype are that architecture's.
///
/// Li, Talwalkar. Random Search and Reproducibility for Neural Architecture Search. UAI 2019.
public final class RandomWeightSharing: SearchMethod {
    public let network: SearchNetwork
    public let training: SupernetTraining
    public let derivation: DerivationPolicy
    public let sampler: ArchitectureSampler
    public let settings: WeightSharingSettings
    public let seed: UInt64
    public var secondOrder: Bool { false }
    /// The architecture trained in the last step (nil before the first step of this process).
    public private(set) var lastTrained: Genotype?

    /// - Parameter sampler: the architectures to train (default: uniform draws from the seed).
    public init(_ config: SearchConfig, inputShape: [Int], classes: Int, averager: GradientAverager,
                sampler: ArchitectureSampler? = nil) throws {
        let supernet = config.supernetConfig(inputShape: inputShape, classes: classes)
        network = try SearchNetwork(supernet, seed: config.seed)
        training = SupernetTraining(network: network, config: config, averager: averager)
        derivation = DerivationPolicy(space: network.config.space, steps: network.config.steps)
        self.sampler = sampler ?? UniformArchitectureSampler(seed: config.seed, steps: supernet.steps, primitives: supernet.primitives)
        settings = config.weightSharing ?? .preset(config.preset)
        seed = config.seed
    }

    /// The architecture parameters are never trained.
    public func isWarmUp(epoch: Int) -> Bool { false }

    /// A weight step on the step's architecture, then the sampler's reward draws on `validation`.
    public func step(train: Batch, validation: Batch, epoch: Int, learningRate: Float,
                     control: StepControl = StepControl()) throws -> StepResult {
        let genotype = try draw(epoch: epoch, step: control.step, draw: 0)
        network.path = try path(genotype)
        let result = try training.weightStep(train, learningRate: learningRate)
        lastTrained = genotype
        if sampler.rewardsPerStep > 0 {
            for d in 1...sampler.rewardsPerStep {
                let candidate = try draw(epoch: epoch, step: control.step, draw: d)
                try sampler.observe(candidate, reward: try reward(candidate, on: validation))
            }
            network.path = try path(genotype)
        }
        return result
    }

    /// The sampler's draw, rank 0's on every rank.
    public func draw(epoch: Int, step: Int, draw: Int) throws -> Genotype {
        let genotype = try sampler.sample(epoch: epoch, step: step, draw: draw)
        let comm = training.averager.comm
        guard comm.size > 1 else { return genotype }
        var bytes = comm.rank == 0 ? [UInt8](try JSONEncoder().encode(genotype)) : []
        try comm.broadcast(bytes: &bytes, root: 0)
        return try JSONDecoder().decode(Genotype.self, from: Data(bytes))
    }

    /// The accuracy of `genotype` on a validation batch (this rank's shard; counts summed over
    /// ranks): training-mode BatchNorm (the batch's own statistics, as the shared running
    /// statistics belong to no one architecture), running statistics untouched, no tape.
    public func reward(_ genotype: Genotype, on batch: Batch) throws -> Double {
        network.path = try path(genotype)
        let logits = try network.forward(Variable(batch.images),
                                         ForwardContext(tape: Tape(recording: false), training: true, updateStatistics: false))
        var counts = [Double(correctCount(logits: logits.value, labels: batch.labels)), Double(batch.labels.count)]
        let comm = training.averager.comm
        if comm.size > 1 { try comm.allreduceSum(&counts) }
        return counts[0] / max(counts[1], 1)
    }

    /// The supernet path of a genotype.
    public func path(_ genotype: Genotype) throws -> SupernetPath {
        try SupernetPath(genotype, space: network.config.space, steps: network.config.steps)
    }

    /// The architecture trained last (before the first step: draw 0 of epoch 0 step 0).
    public func genotype() throws -> Genotype {
        try lastTrained ?? sampler.sample(epoch: 0, step: 0, draw: 0)
    }

    /// Scores `settings.samples` candidates (the sampler's, or distinct uniform draws) on the
    /// trained supernet, writes ws_scores.jsonl (rank 0) and returns the chosen architecture.
    public func finalGenotype(_ end: SearchEnd) throws -> Genotype {
        let learnt = try sampler.finalCandidates(count: settings.samples)
        let candidates = try learnt
            ?? Self.candidates(count: settings.samples, seed: seed, steps: network.config.steps, primitives: network.config.primitives)
        end.log("weight-sharing scores: \(candidates.count) \(learnt == nil ? "random architectures" : "distinct samples of the trained sampler"), BatchNorm recomputed on \(settings.bnBatches) training batches each, scored on \(settings.batches) validation batches; the best \(settings.top) re-scored on the validation half")
        let (scores, chosen) = try SupernetScoring(network: network, end: end, settings: settings, seed: seed).run(candidates)
        if end.comm.rank == 0 {
            try end.directory.writeLines(SupernetScoring.lines(scores, chosen: chosen), to: end.directory.file("ws_scores.jsonl"))
        }
        return scores[chosen].genotype // the supernet holds its path and its statistics
    }

    /// `count` distinct uniform architectures from the final scoring's stream of `seed` (epoch
    /// 0xFFFF of `UniformArchitectureSampler.generator`): the same list on every rank.
    public static func candidates(count: Int, seed: UInt64, steps: Int, primitives: [Primitive]) throws -> [Genotype] {
        var g = UniformArchitectureSampler.generator(seed: seed, epoch: 0xFFFF, step: 0, draw: 0)
        let ops = primitives.filter { $0 != .none }
        var seen = Set<String>(), list: [Genotype] = []
        var attempts = 0
        while list.count < count && attempts < 100 * count {
            attempts += 1
            let genotype = try UniformArchitectureSampler.uniformGenotype(steps: steps, ops: ops, using: &g)
            if seen.insert(genotype.pythonDescription).inserted { list.append(genotype) }
        }
        return list
    }

    /// `training`'s state, the sampler's, and the architecture trained last (the supernet's
    /// path for an evaluation redone after a resume).
    public func addState(to file: inout CheckpointFile) {
        training.addState(to: &file)
        sampler.addState(to: &file)
        if let lastTrained { file.metadata["ws_last_trained"] = .string(lastTrained.pythonDescription) }
    }

    public func restoreState(from file: CheckpointFile) throws {
        try training.restoreState(from: file)
        try sampler.restoreState(from: file)
        lastTrained = try file.metadata["ws_last_trained"]?.string.map { try Genotype(python: $0) }
        network.path = try lastTrained.map { try path($0) }
    }
}
