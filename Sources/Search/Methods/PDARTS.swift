import Distributed
import Foundation
import Kernels

/// P-DARTS (reference chenxin061/pdarts `train_search.py`): the search runs in stages on ever
/// deeper supernets (5, 11, 17 cells) over ever fewer candidate ops per edge (8, 5, 3). Each stage
/// builds a fresh supernet and fresh alphas over the op lists the previous stage kept, trains
/// like DARTS (first order) with its own cosine learning-rate schedule, the weights only during
/// its first `warmupEpochs` epochs, and dropout on the stride-1 skip connections in the weight
/// step (`OpDropout` with the skip connection's rate). After a stage, each edge keeps its
/// strongest ops by softmaxed alpha; the genotype is read off the last stage with `none`
/// excluded and at most `maxSkipConnections` skip connections in the normal cell.
///
/// The run's epochs are split evenly over the stages; epoch e belongs to stage e / (epochs /
/// stages). The next stage's supernet is built at the first step of its first epoch, from the
/// alphas the previous stage ended with; the stage and its op lists are kept in checkpoints, so a
/// resume rebuilds the stage's supernet before loading its tensors.
///
/// Chen, Xie, Wu, Tian. Progressive Differentiable Architecture Search: Bridging the Depth Gap
/// between Search and Evaluation. ICCV 2019, section 3.
public final class PDARTS: SearchMethod {
    public private(set) var network: SearchNetwork
    public private(set) var training: SupernetTraining
    public let secondOrder: Bool
    public let settings: PDARTSSettings
    /// Epochs per stage, and the warm-up epochs at the start of each.
    public let stageEpochs: Int
    public let warmupEpochs: Int
    /// The stage in progress (from 0) and its per-edge op lists.
    public private(set) var stage = 0
    public private(set) var space: CellSearchSpace
    /// The dropout of every stage's edges: the skip connection's at `skipDropoutRate`, plus
    /// `--op-dropout`'s rates for other ops.
    public let skipDropout: OpDropout
    private let config: SearchConfig
    private let inputShape: [Int]
    private let classes: Int
    private let averager: GradientAverager

    public init(_ config: SearchConfig, inputShape: [Int], classes: Int, averager: GradientAverager) throws {
        let settings = config.pdarts ?? .paper
        try settings.validate(config)
        for layers in settings.stages {
            var net = config.supernetConfig(inputShape: inputShape, classes: classes)
            net.layers = layers
            do { try net.validate() } catch { throw SearchConfigError("--stages: a stage of \(layers) cells does not fit: \(error)") }
        }
        self.settings = settings
        self.config = config
        self.inputShape = inputShape
        self.classes = classes
        self.averager = averager
        secondOrder = config.order == 2
        stageEpochs = config.epochs / settings.stages.count
        warmupEpochs = config.warmupEpochs
        let dropout = OpDropout(seed: config.seed)
        skipDropout = dropout
        (network, training) = try Self.build(stage: 0, space: nil, config: config, settings: settings, inputShape: inputShape,
                                             classes: classes, averager: averager, dropout: dropout)
        space = network.config.space
    }

    /// The stage's supernet (its depth, the op lists; nil: the whole search space) and its training.
    private static func build(stage: Int, space: CellSearchSpace?, config: SearchConfig, settings: PDARTSSettings,
                              inputShape: [Int], classes: Int, averager: GradientAverager,
                              dropout: OpDropout) throws -> (SearchNetwork, SupernetTraining) {
        var net = config.supernetConfig(inputShape: inputShape, classes: classes)
        net.layers = settings.stages[stage]
        net.edgePrimitives = space
        let network = try SearchNetwork(net, seed: config.seed, makeEdge: OpDropoutEdge.factory(dropout))
        // `--op-dropout` adds rates for other ops; the skip connection's is P-DARTS's schedule.
        let training = SupernetTraining(network: network, config: config, averager: averager, opDropout: dropout)
        training.opDropoutRates[.skipConnect] = nil
        training.architectureGradClip = config.archGradClip ?? 5
        return (network, training)
    }

    /// Replaces the supernet and its optimisers by stage `stage`'s over `space`.
    private func enter(stage: Int, space: CellSearchSpace) throws {
        let epoch = training.epoch
        (network, training) = try Self.build(stage: stage, space: stage == 0 ? nil : space, config: config, settings: settings,
                                             inputShape: inputShape, classes: classes, averager: averager, dropout: skipDropout)
        training.epoch = epoch
        self.stage = stage
        self.space = network.config.space
    }

    /// The stage epoch `epoch` belongs to, and its index in that stage.
    public func stage(of epoch: Int) -> (stage: Int, epoch: Int) {
        let s = min(epoch / stageEpochs, settings.stages.count - 1)
        return (s, epoch - s * stageEpochs)
    }

    public func isWarmUp(epoch: Int) -> Bool { stage(of: epoch).epoch < warmupEpochs }

    /// The stage's own cosine schedule, restarting at each stage.
    public func learningRate(epoch: Int) -> Float? {
        CosineAnnealing(base: config.learningRate, minimum: config.learningRateMin, period: stageEpochs)
            .learningRate(at: stage(of: epoch).epoch)
    }

    /// The skip-connection dropout rate of epoch `epoch` (`OpDropout.rate(initial:...)`).
    public func skipDropoutRate(epoch: Int) -> Float {
        let (s, e) = stage(of: epoch)
        return OpDropout.rate(initial: settings.skipDropout[s], epochInStage: e, stageEpochs: stageEpochs, warmUp: warmupEpochs)
    }

    /// The reference derivation on the current stage's op lists, with the skip cap.
    public var derivation: DerivationPolicy {
        DerivationPolicy(space: network.config.space, steps: network.config.steps, maxSkipConnections: settings.maxSkipConnections)
    }

    /// Enters the epoch's stage if it is a later one, then the DARTS step with dropout on the
    /// skip connections in the weight step.
    ///
    /// The reference (`train_search.py`, `train()`) calls `model.train()` before both forward
    /// passes, so its `nn.Dropout` also acts in the first-order architecture step. Here the
    /// architecture step sees the undropped supernet, as SDARTS-RS's clean weights: the alphas are
    /// ranked on the ops' actual outputs, and `--op-dropout` behaves the same for every method.
    public func step(train: Batch, validation: Batch, epoch: Int, learningRate: Float,
                     control: StepControl = StepControl()) throws -> StepResult {
        try advance(to: stage(of: epoch).stage)
        training.epoch = epoch
        let rate = skipDropoutRate(epoch: epoch)
        return try dartsStep(train: train, validation: validation, epoch: epoch, learningRate: learningRate, control: control) { weightStep in
            try skipDropout.during(rate: rate, epoch: epoch, step: control.step, weightStep)
        }
    }

    /// Moves stage by stage to `target`, each edge keeping the next stage's number of ops.
    public func advance(to target: Int) throws {
        while stage < target {
            let next = settings.stageOps[stage + 1]
            try enter(stage: stage + 1, space: try Self.prune(space, strengths: network, keep: next, dropNone: false))
        }
    }

    /// The single op per edge the final stage leads to (the last transition: `none` dropped first).
    public func finalOps() throws -> CellSearchSpace { try Self.prune(space, strengths: network, keep: 1, dropNone: true) }

    // MARK: Pruning

    /// Each edge's `keep` strongest ops by the network's softmaxed alphas.
    static func prune(_ space: CellSearchSpace, strengths network: SearchNetwork, keep: Int, dropNone: Bool) throws -> CellSearchSpace {
        let p = network.architectureParameters
        return CellSearchSpace(normal: try prune(space.normal, try p.strengths(reduction: false).ops, keep: keep, dropNone: dropNone),
                               reduce: try prune(space.reduce, try p.strengths(reduction: true).ops, keep: keep, dropNone: dropNone))
    }

    /// Each edge's `keep` strongest ops, by its row of op weights w: [edges, K], in their order
    /// in the edge's list (ties keep the earlier op). With `dropNone`, `none` gets weight 0 and is
    /// never kept (reference `get_min_k_no_zero`).
    public static func prune(_ edges: [[Primitive]], _ w: Tensor, keep: Int, dropNone: Bool) throws -> [[Primitive]] {
        let k = edges.first?.count ?? 0
        guard w.shape == [edges.count, k] else {
            throw SearchConfigError("op weights of shape \(w.shape) do not fit \(edges.count) edges of \(k) ops")
        }
        return edges.enumerated().map { e, ops in
            let candidates = ops.indices.filter { !(dropNone && ops[$0] == .none) }
            let order = candidates.sorted { a, b in
                let (x, y) = (w.scalars[e * k + a], w.scalars[e * k + b])
                return x != y ? x > y : a < b
            }
            return order.prefix(keep).sorted().map { ops[$0] }
        }
    }

    // MARK: State

    /// Every method's state, plus the stage and its op lists (`pdarts_stage`, `pdarts_ops`).
    public func addState(to file: inout CheckpointFile) {
        training.addState(to: &file)
        file.metadata["pdarts_stage"] = .number(Double(stage))
        file.metadata["pdarts_ops"] = Self.json(space)
    }

    /// Rebuilds the checkpoint's stage (a new supernet and optimisers), then loads its tensors.
    public func restoreState(from file: CheckpointFile) throws {
        try restoreStage(from: file)
        try training.restoreState(from: file)
    }

    public func restoreForEvaluation(from file: CheckpointFile) throws {
        try restoreStage(from: file)
        try network.state.restore(from: file)
        for v in network.architecture { v.value = try file.tensor(v.name, shape: v.shape) }
    }

    private func restoreStage(from file: CheckpointFile) throws {
        guard let s = file.metadata["pdarts_stage"]?.int else { return }
        guard settings.stages.indices.contains(s), let saved = file.metadata["pdarts_ops"].flatMap(Self.space) else {
            throw SearchConfigError("the checkpoint's P-DARTS stage \(s) or op lists do not fit --stages \(settings.stages)")
        }
        if s != stage || saved != space { try enter(stage: s, space: saved) }
    }

    static func json(_ space: CellSearchSpace) -> JSONValue {
        func rows(_ r: [[Primitive]]) -> JSONValue { .array(r.map { .array($0.map { .string($0.name) }) }) }
        return .object(["normal": rows(space.normal), "reduce": rows(space.reduce)])
    }

    static func space(_ json: JSONValue) -> CellSearchSpace? {
        func rows(_ v: JSONValue?) -> [[Primitive]]? {
            v?.array?.map { $0.array?.compactMap { $0.string.flatMap { try? Primitive(name: $0) } } ?? [] }
        }
        guard case .object(let o) = json, let n = rows(o["normal"]), let r = rows(o["reduce"]) else { return nil }
        return CellSearchSpace(normal: n, reduce: r)
    }
}

/// The P-DARTS schedule: cells per stage, ops per edge entering each stage, the initial
/// skip-connection dropout rate of each stage, and the skip cap of the final normal cell.
public struct PDARTSSettings: Codable, Equatable, Sendable {
    public var stages: [Int]
    public var stageOps: [Int]
    public var skipDropout: [Float]
    public var maxSkipConnections: Int

    public init(stages: [Int], stageOps: [Int], skipDropout: [Float], maxSkipConnections: Int) {
        self.stages = stages
        self.stageOps = stageOps
        self.skipDropout = skipDropout
        self.maxSkipConnections = maxSkipConnections
    }

    /// The paper's CIFAR-10 schedule: 5, 11, 17 cells; 8, 5, 3 ops; dropout 0, 0.4, 0.7; 2 skips.
    public static let paper = PDARTSSettings(stages: [5, 11, 17], stageOps: [8, 5, 3], skipDropout: [0, 0.4, 0.7],
                                             maxSkipConnections: 2)

    /// The paper's epochs per stage and warm-up epochs per stage.
    public static let paperStageEpochs = 25, paperWarmupEpochs = 10

    /// Checks the schedule against the configuration; messages name the flags.
    public func validate(_ c: SearchConfig) throws {
        func fail(_ m: String) -> SearchConfigError { SearchConfigError(m) }
        let n = stages.count
        guard n >= 1 else { throw fail("--stages needs at least one stage") }
        guard stageOps.count == n, skipDropout.count == n else {
            throw fail("--stages (\(n) stages), --stage-ops (\(stageOps.count)) and --skip-dropout (\(skipDropout.count)) must list one value per stage")
        }
        for layers in stages where layers < 1 { throw fail("--stages: each stage needs at least 1 cell, got \(layers)") }
        guard stageOps[0] == c.primitives.count else {
            throw fail("--stage-ops: the first stage searches all \(c.primitives.count) primitives of the search space, got \(stageOps[0])")
        }
        for (i, k) in stageOps.enumerated().dropFirst() where k < 2 || k > stageOps[i - 1] {
            throw fail("--stage-ops: each stage keeps between 2 and the previous stage's number of ops per edge, got \(stageOps.map(String.init).joined(separator: ","))")
        }
        for p in skipDropout where !(p >= 0 && p < 1) {
            throw fail("--skip-dropout rates must lie in [0, 1), got \(p)")
        }
        guard maxSkipConnections >= 0 else { throw fail("--max-skip must be at least 0, got \(maxSkipConnections)") }
        guard c.epochs % n == 0 else {
            throw fail("--epochs \(c.epochs) must be a multiple of the \(n) stages (or use --stage-epochs)")
        }
        guard c.warmupEpochs < c.epochs / n else {
            throw fail("--warmup-epochs \(c.warmupEpochs) (per stage) leaves no epoch for the architecture in a stage of \(c.epochs / n) epochs")
        }
    }
}
