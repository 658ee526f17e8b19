import Kernels

// Real, Aggarwal, Huang, Le, "Regularized Evolution for Image Classifier Architecture Search",
// AAAI 2019 (Algorithm 1; the asynchronous workers of its section 3).

/// Regularized (aging) evolution: a population of the P most recently trained candidates; each
/// new candidate is a one-decision mutation of the best of S members drawn with replacement; the
/// oldest member leaves when the population exceeds P.
///
/// Asynchronous as in the paper: `propose` may run several times before results arrive. The first
/// P proposals are uniform samples (the initial population); later ones mutate a parent from the
/// members observed so far (a uniform sample while no candidate has succeeded yet). "Oldest" is
/// the order results were observed in. A failed candidate (fitness nil) is kept in the history but
/// never joins the population.
public struct RegularizedEvolution: SearchStrategy, Equatable, Sendable {
    /// Population size, tournament size and budget.
    public struct Options: Codable, Equatable, Sendable {
        /// P, the population size (`--population`).
        public var population: Int
        /// S, the members drawn with replacement to pick a parent (`--sample-size`).
        public var sampleSize: Int
        /// Candidates to train in all, counting those in flight (`--candidates`).
        public var candidates: Int

        public init(population: Int, sampleSize: Int, candidates: Int) {
            self.population = population
            self.sampleSize = sampleSize
            self.candidates = candidates
        }

        /// The paper's settings (`paper`: P = 100, S = 25) or NAS-Bench-201's small ones (`small`:
        /// P = 10, S = 3).
        public enum Preset: String, Codable, CaseIterable, Sendable {
            case paper, small
        }

        /// A preset's P and S with a budget of `candidates`.
        public static func preset(_ preset: Preset, candidates: Int) -> Options {
            switch preset {
            case .paper: return Options(population: 100, sampleSize: 25, candidates: candidates)
            case .small: return Options(population: 10, sampleSize: 3, candidates: candidates)
            }
        }

        /// Checks the ranges, naming the command-line flag at fault.
        /// - Throws: `StrategyError` when P < 2, S is outside 1...P or the budget is below 1.
        public func validate() throws {
            guard population >= 2 else {
                throw StrategyError("--population must be at least 2 (a tournament needs members to compare), got \(population)")
            }
            guard (1...population).contains(sampleSize) else {
                throw StrategyError("--sample-size must be between 1 and --population (\(population)), got \(sampleSize)")
            }
            guard candidates >= 1 else { throw StrategyError("--candidates must be at least 1, got \(candidates)") }
        }
    }

    public let space: GenotypeSpace
    public let options: Options
    /// The budget, the candidates in flight, and every result.
    public private(set) var ledger: CandidateLedger
    /// The population: indices into `ledger.history`, oldest first.
    public private(set) var population: [Int] = []
    private var generator: RandomGenerator

    /// A new search over `space`, its randomness the `evolution` stream of `seed`.
    ///
    /// - Throws: `StrategyError` for options out of range or a space of a single genotype.
    public init(space: GenotypeSpace = .darts, options: Options, seed: UInt64) throws {
        try options.validate()
        guard space.isMutable else { throw StrategyError("the search space holds a single genotype; there is nothing to evolve") }
        self.space = space
        self.options = options
        self.ledger = CandidateLedger(budget: options.candidates)
        self.generator = RandomGenerator(seed: seed, stream: .evolution)
    }

    /// Every result in the order observed.
    public var history: [Observation] { ledger.history }
    /// The best result so far.
    public var best: Observation? { ledger.best }
    /// The current members, oldest first.
    public var members: [Observation] { population.map { ledger.history[$0] } }

    /// A re-issued candidate if one waits; else, within the budget, a uniform sample for the first
    /// P proposals and a mutation of a tournament winner after them.
    public mutating func propose() throws -> Genotype? {
        if let g = ledger.nextReissue() { return g }
        guard !ledger.isSpent else { return nil }
        let g: Genotype
        if ledger.proposed < options.population || population.isEmpty {
            g = space.sample(using: &generator)
        } else {
            g = try space.mutate(parent().genotype, using: &generator)
        }
        ledger.give(g)
        return g
    }

    /// The best of S members drawn uniformly with replacement (the first drawn among equals).
    private mutating func parent() -> Observation {
        var best = ledger.history[population[generator.int(below: population.count)]]
        for _ in 1..<options.sampleSize {
            let m = ledger.history[population[generator.int(below: population.count)]]
            if m.fitness! > best.fitness! { best = m }
        }
        return best
    }

    /// Records a result; a successful candidate joins the population and the oldest member leaves
    /// once there are more than P.
    ///
    /// - Throws: `StrategyError` when `genotype` is not in flight or the fitness is not finite.
    public mutating func observe(_ genotype: Genotype, fitness: Double?) throws {
        let index = try ledger.observe(genotype, fitness: fitness)
        guard fitness != nil else { return }
        population.append(index)
        if population.count > options.population { population.removeFirst() }
    }

    /// Re-queues the candidates in flight, to call once after decoding a saved state for a resume
    /// (see `CandidateLedger.requeueInFlight`).
    public mutating func requeueInFlight() { ledger.requeueInFlight() }

    // MARK: Codable, tagged so that another strategy's state is refused

    /// The tag of this strategy's saved state.
    public static let kind = "regularized-evolution"

    private enum CodingKeys: String, CodingKey { case strategy, space, options, ledger, population, generator }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try c.checkStrategyTag(Self.kind, forKey: .strategy)
        space = try c.decode(GenotypeSpace.self, forKey: .space)
        options = try c.decode(Options.self, forKey: .options)
        try options.validate()
        ledger = try c.decode(CandidateLedger.self, forKey: .ledger)
        population = try c.decode([Int].self, forKey: .population)
        generator = try c.decode(RandomGenerator.self, forKey: .generator)
        guard ledger.budget == options.candidates, population.count <= options.population,
              population.allSatisfy({ ledger.history.indices.contains($0) && ledger.history[$0].fitness != nil }),
              population == population.sorted(), Set(population).count == population.count else {
            throw StrategyError("inconsistent regularized-evolution state: population \(population) of a history of \(ledger.history.count)")
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(Self.kind, forKey: .strategy)
        try c.encode(space, forKey: .space)
        try c.encode(options, forKey: .options)
        try c.encode(ledger, forKey: .ledger)
        try c.encode(population, forKey: .population)
        try c.encode(generator, forKey: .generator)
    }
}
