import Kernels

// Li, Talwalkar, "Random Search and Reproducibility for Neural Architecture Search", UAI 2019
// (the baseline without weight sharing).

/// Random search: every candidate a uniform sample of the space, up to the budget; the results
/// change nothing but the history.
///
/// With the same seed and space its candidates are the first ones regularized evolution proposes
/// (the same `evolution` stream and `GenotypeSpace.sample`), so the two start from one population.
public struct RandomSampling: SearchStrategy, Equatable, Sendable {
    public let space: GenotypeSpace
    /// The budget, the candidates in flight, and every result.
    public private(set) var ledger: CandidateLedger
    private var generator: RandomGenerator

    /// A search of `candidates` uniform samples of `space`, its randomness the `evolution` stream
    /// of `seed`.
    ///
    /// - Throws: `StrategyError` when `candidates` < 1.
    public init(space: GenotypeSpace = .darts, candidates: Int, seed: UInt64) throws {
        guard candidates >= 1 else { throw StrategyError("--candidates must be at least 1, got \(candidates)") }
        self.space = space
        self.ledger = CandidateLedger(budget: candidates)
        self.generator = RandomGenerator(seed: seed, stream: .evolution)
    }

    /// Every result in the order observed.
    public var history: [Observation] { ledger.history }
    /// The best result so far.
    public var best: Observation? { ledger.best }

    /// A re-issued candidate if one waits, else a uniform sample while the budget lasts.
    public mutating func propose() throws -> Genotype? {
        if let g = ledger.nextReissue() { return g }
        guard !ledger.isSpent else { return nil }
        let g = space.sample(using: &generator)
        ledger.give(g)
        return g
    }

    /// Records a result.
    /// - Throws: `StrategyError` when `genotype` is not in flight or the fitness is not finite.
    public mutating func observe(_ genotype: Genotype, fitness: Double?) throws {
        try ledger.observe(genotype, fitness: fitness)
    }

    /// Re-queues the candidates in flight, to call once after decoding a saved state for a resume.
    public mutating func requeueInFlight() { ledger.requeueInFlight() }

    // MARK: Codable, tagged so that another strategy's state is refused

    /// The tag of this strategy's saved state.
    public static let kind = "random-sampling"

    private enum CodingKeys: String, CodingKey { case strategy, space, ledger, generator }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try c.checkStrategyTag(Self.kind, forKey: .strategy)
        space = try c.decode(GenotypeSpace.self, forKey: .space)
        ledger = try c.decode(CandidateLedger.self, forKey: .ledger)
        generator = try c.decode(RandomGenerator.self, forKey: .generator)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(Self.kind, forKey: .strategy)
        try c.encode(space, forKey: .space)
        try c.encode(ledger, forKey: .ledger)
        try c.encode(generator, forKey: .generator)
    }
}
