import Foundation
import Kernels

/// Architecture search by reinforcement learning: the ENAS controller (`ControllerLSTM`) trained
/// with REINFORCE (Williams 1992) on the validation accuracy of fully trained candidates, as
/// Zoph & Le 2017 and with ENAS's micro-search settings (Pham et al. 2018):
///
///     reward    = fitness + entropyWeight * entropy          (entropy of the candidate's decisions)
///     baseline  = decay * baseline + (1 - decay) * reward    (starts at 0; updated first, as ENAS)
///     loss      = -log p(decisions) * (reward - baseline)
///
/// with Adam (lr 3.5e-3), entropy weight 1e-4 and decay 0.99. As in ENAS the reward is a constant
/// of the loss and the baseline moves before the advantage is taken.
///
/// Asynchronous use: candidates are trained by workers and their results arrive later, in any
/// order. Each proposal's decisions are kept until its result is observed; the update then
/// re-scores those decisions under the current weights (log-probability and entropy), so it is an
/// ordinary REINFORCE step of the current controller, one per result. A failed candidate
/// (fitness nil) leaves the controller and the baseline unchanged.
///
/// The whole state is Codable: controller weights, Adam's moments and step, baseline, generator,
/// candidates in flight, history and best. The controller and the optimizer are references held
/// copy-on-write, so the strategy behaves as a value.
public struct Reinforce: SearchStrategy {
    /// Options, with ENAS's micro-search values as defaults.
    public struct Settings: Codable, Equatable, Sendable {
        /// Proposals in all (candidates in flight included).
        public var budget: Int
        public var learningRate: Float
        public var entropyWeight: Double
        public var baselineDecay: Double
        public var hiddenSize: Int
        /// Intermediate nodes per cell.
        public var steps: Int

        public init(budget: Int, learningRate: Float = 3.5e-3, entropyWeight: Double = 1e-4, baselineDecay: Double = 0.99,
                    hiddenSize: Int = 64, steps: Int = 4) {
            self.budget = budget
            self.learningRate = learningRate
            self.entropyWeight = entropyWeight
            self.baselineDecay = baselineDecay
            self.hiddenSize = hiddenSize
            self.steps = steps
        }

        /// Throws `ReinforceError` naming the first option out of range.
        public func validate() throws {
            guard budget >= 0 else { throw ReinforceError("the budget must be at least 0 candidates, got \(budget)") }
            guard learningRate > 0, learningRate.isFinite else { throw ReinforceError("the controller learning rate must be positive, got \(learningRate)") }
            guard entropyWeight >= 0, entropyWeight.isFinite else { throw ReinforceError("the entropy weight must be at least 0, got \(entropyWeight)") }
            guard (0..<1).contains(baselineDecay) else { throw ReinforceError("the baseline decay must lie in [0, 1), got \(baselineDecay)") }
            guard hiddenSize >= 1 else { throw ReinforceError("the controller needs at least one hidden unit, got \(hiddenSize)") }
            guard steps >= 1 else { throw ReinforceError("a cell needs at least one node, got \(steps)") }
        }
    }

    /// A proposed genotype and the decisions it was sampled as.
    public struct Candidate: Codable, Equatable, Sendable {
        public var genotype: Genotype
        public var decisions: [Int]
    }

    /// One observed result and the update it made.
    public struct Observation: Codable, Equatable, Sendable {
        public var genotype: Genotype
        /// nil: the candidate failed (no update).
        public var fitness: Double?
        /// fitness + entropyWeight * entropy.
        public var reward: Double?
        /// reward - baseline (after the baseline's update).
        public var advantage: Double?
    }

    /// The best candidate observed so far (the first one on ties).
    public struct Best: Codable, Equatable, Sendable {
        public var genotype: Genotype
        public var fitness: Double
    }

    public let settings: Settings
    /// Proposals made (re-issued ones not counted again).
    public private(set) var proposed = 0
    public private(set) var baseline = 0.0
    public private(set) var history: [Observation] = []
    public private(set) var best: Best?
    /// Proposed and not yet observed, oldest first.
    public private(set) var inFlight: [Candidate] = []
    /// Candidates to propose again before sampling new ones (see `reissueInFlight()`).
    public private(set) var reissue: [Candidate] = []
    private var generator: RandomGenerator
    private var learner: Learner

    /// A fresh controller, initialised from `seed` (stream `controller`).
    public init(settings: Settings, seed: UInt64) throws {
        try settings.validate()
        self.settings = settings
        generator = RandomGenerator(seed: seed, stream: .controller)
        let controller = try ControllerLSTM(steps: settings.steps, hiddenSize: settings.hiddenSize, generator: &generator)
        learner = Learner(controller: controller, learningRate: settings.learningRate)
    }

    /// The controller (read it; updates go through `observe`).
    public var controller: ControllerLSTM { learner.controller }
    /// Adam steps taken (one per successful result).
    public var updates: Int { learner.optimizer.stepCount }

    // MARK: SearchStrategy

    /// A re-issued candidate if any, else a new sample; nil once `budget` proposals were made.
    public mutating func propose() throws -> Genotype? {
        if !reissue.isEmpty {
            let c = reissue.removeFirst()
            inFlight.append(c)
            return c.genotype
        }
        guard proposed < settings.budget else { return nil }
        let s = try learner.controller.sample(using: &generator)
        proposed += 1
        inFlight.append(Candidate(genotype: s.genotype, decisions: s.decisions))
        return s.genotype
    }

    /// Records the result of an in-flight candidate and, when it has a fitness, takes one
    /// REINFORCE step.
    /// - Throws: `ReinforceError` when `genotype` is not in flight or the fitness is not finite.
    public mutating func observe(_ genotype: Genotype, fitness: Double?) throws {
        guard let k = inFlight.firstIndex(where: { $0.genotype == genotype }) else {
            throw ReinforceError("observed a genotype that is not in flight (\(inFlight.count) candidates are): \(genotype.pythonDescription)")
        }
        if let fitness, !fitness.isFinite { throw ReinforceError("fitness \(fitness) is not a number; report a failed candidate as nil") }
        let candidate = inFlight.remove(at: k)
        guard let fitness else {
            history.append(Observation(genotype: genotype, fitness: nil, reward: nil, advantage: nil))
            return
        }
        if !isKnownUniquelyReferenced(&learner) { learner = try learner.copy() }
        let tape = Tape()
        let (logP, entropy) = try learner.controller.score(candidate.decisions, on: tape)
        let reward = fitness + settings.entropyWeight * Double(entropy.value.scalars[0])
        baseline -= (1 - settings.baselineDecay) * (baseline - reward)
        let advantage = reward - baseline
        try tape.backward(tape.scale(logP, Float(-advantage)))
        learner.optimizer.step()
        learner.optimizer.zeroGrad()
        history.append(Observation(genotype: genotype, fitness: fitness, reward: reward, advantage: advantage))
        if best == nil || fitness > best!.fitness { best = Best(genotype: genotype, fitness: fitness) }
    }

    /// Queues every candidate in flight to be proposed again (before any new sample, not counted
    /// against the budget again): call it after restoring a checkpointed strategy on resume, when
    /// the candidates that were training are lost.
    public mutating func reissueInFlight() {
        reissue += inFlight
        inFlight = []
    }
}

/// The controller and its optimizer, shared between copies of a `Reinforce` until one updates.
private final class Learner {
    let controller: ControllerLSTM
    let optimizer: Adam

    init(controller: ControllerLSTM, learningRate: Float) {
        self.controller = controller
        optimizer = Adam(parameters: controller.parameters, learningRate: learningRate)
    }

    /// A deep copy: weights, moments and step count.
    func copy() throws -> Learner {
        let c = Learner(controller: try controller.copy(), learningRate: optimizer.learningRate)
        c.optimizer.stepCount = optimizer.stepCount
        c.optimizer.firstMoments = optimizer.firstMoments
        c.optimizer.secondMoments = optimizer.secondMoments
        return c
    }
}

// MARK: Codable

extension Reinforce {
    private enum CodingKeys: String, CodingKey {
        case settings, proposed, baseline, history, best, inFlight, reissue, generator, controller, adam
    }

    /// Adam's state: step count and moments in the controller's parameter order.
    private struct AdamState: Codable {
        var step: Int
        var firstMoments: [Base64Tensor]
        var secondMoments: [Base64Tensor]
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        settings = try c.decode(Settings.self, forKey: .settings)
        try settings.validate()
        proposed = try c.decode(Int.self, forKey: .proposed)
        baseline = try c.decode(Double.self, forKey: .baseline)
        history = try c.decode([Observation].self, forKey: .history)
        best = try c.decodeIfPresent(Best.self, forKey: .best)
        inFlight = try c.decode([Candidate].self, forKey: .inFlight)
        reissue = try c.decode([Candidate].self, forKey: .reissue)
        generator = try c.decode(RandomGenerator.self, forKey: .generator)
        let controller = try c.decode(ControllerLSTM.self, forKey: .controller)
        guard controller.steps == settings.steps, controller.hiddenSize == settings.hiddenSize else {
            throw ReinforceError("the stored controller (\(controller.steps) nodes, \(controller.hiddenSize) units) does not match its settings (\(settings.steps), \(settings.hiddenSize))")
        }
        learner = Learner(controller: controller, learningRate: settings.learningRate)
        let adam = try c.decode(AdamState.self, forKey: .adam)
        let shapes = controller.parameters.map(\.shape)
        let first = try adam.firstMoments.map { try $0.tensor("Adam first moment") }
        let second = try adam.secondMoments.map { try $0.tensor("Adam second moment") }
        guard adam.step >= 0, first.map(\.shape) == shapes, second.map(\.shape) == shapes else {
            throw ReinforceError("the stored Adam state does not match the controller's \(shapes.count) parameters")
        }
        learner.optimizer.stepCount = adam.step
        learner.optimizer.firstMoments = first
        learner.optimizer.secondMoments = second
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(settings, forKey: .settings)
        try c.encode(proposed, forKey: .proposed)
        try c.encode(baseline, forKey: .baseline)
        try c.encode(history, forKey: .history)
        try c.encodeIfPresent(best, forKey: .best)
        try c.encode(inFlight, forKey: .inFlight)
        try c.encode(reissue, forKey: .reissue)
        try c.encode(generator, forKey: .generator)
        try c.encode(learner.controller, forKey: .controller)
        let adam = learner.optimizer
        try c.encode(AdamState(step: adam.stepCount, firstMoments: adam.firstMoments.map(Base64Tensor.init),
                               secondMoments: adam.secondMoments.map(Base64Tensor.init)), forKey: .adam)
    }
}

/// A `Reinforce` option out of range or a result it cannot use.
public struct ReinforceError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
