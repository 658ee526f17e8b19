/// The bookkeeping every strategy that proposes whole candidates shares: the budget, what was
/// given out, what is in flight, what came back, and what to give out again after a resume.
///
/// The budget counts proposals, so candidates in flight count against it. A re-issued candidate
/// (in flight when the run stopped) was counted when first proposed and is not counted again.
public struct CandidateLedger: Codable, Equatable, Sendable {
    /// Candidates to propose in all.
    public let budget: Int
    /// Candidates proposed so far (each once, however often re-issued).
    public private(set) var proposed = 0
    /// Proposed and not yet observed, in the order proposed.
    public private(set) var inFlight: [Genotype] = []
    /// In flight when the run stopped: proposed again, in this order, before any new candidate.
    public private(set) var reissue: [Genotype] = []
    /// Every result, in the order observed.
    public private(set) var history: [Observation] = []

    /// An empty ledger for `budget` candidates.
    public init(budget: Int) { self.budget = budget }

    /// Whether the budget is given out.
    public var isSpent: Bool { proposed >= budget }

    /// The best result so far (the first of equal fitness); nil before any candidate succeeded.
    public var best: Observation? {
        var best: Observation?
        for o in history {
            if let f = o.fitness, f > best?.fitness ?? -.infinity { best = o }
        }
        return best
    }

    /// The next candidate to re-issue, now in flight again; nil when none waits.
    public mutating func nextReissue() -> Genotype? {
        guard !reissue.isEmpty else { return nil }
        let g = reissue.removeFirst()
        inFlight.append(g)
        return g
    }

    /// Records a new proposal.
    /// - Precondition: the budget is not spent.
    public mutating func give(_ genotype: Genotype) {
        precondition(!isSpent, "CandidateLedger.give: the budget of \(budget) candidates is spent")
        proposed += 1
        inFlight.append(genotype)
    }

    /// Records a result and returns its index in `history`.
    ///
    /// - Throws: `StrategyError` when no candidate equal to `genotype` is in flight, or the
    ///   fitness is not a finite number (a failed candidate's fitness is nil).
    @discardableResult
    public mutating func observe(_ genotype: Genotype, fitness: Double?) throws -> Int {
        if let f = fitness, !f.isFinite {
            throw StrategyError("fitness \(f) of \(genotype.pythonDescription) is not a finite number; report a failed candidate with nil")
        }
        guard let k = inFlight.firstIndex(of: genotype) else {
            throw StrategyError("a result for a genotype that is not in flight (\(inFlight.count) are): \(genotype.pythonDescription)")
        }
        inFlight.remove(at: k)
        history.append(Observation(genotype: genotype, fitness: fitness))
        return history.count - 1
    }

    /// Moves every candidate in flight to the re-issue queue: after a resume, their workers are
    /// gone, so they are proposed again (before new ones) and never trained twice to completion.
    public mutating func requeueInFlight() {
        reissue += inFlight
        inFlight = []
    }

    // MARK: Codable, with the counts checked on decoding

    private enum CodingKeys: String, CodingKey { case budget, proposed, inFlight, reissue, history }

    /// Decodes a saved ledger and checks its counts, so every strategy that holds one refuses an
    /// inconsistent state the same way.
    ///
    /// - Throws: `StrategyError` when the budget is below 1, more were proposed than it allows, or
    ///   the observed, in-flight and re-issue candidates do not add up to those proposed.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        budget = try c.decode(Int.self, forKey: .budget)
        proposed = try c.decode(Int.self, forKey: .proposed)
        inFlight = try c.decode([Genotype].self, forKey: .inFlight)
        reissue = try c.decode([Genotype].self, forKey: .reissue)
        history = try c.decode([Observation].self, forKey: .history)
        guard budget >= 1, proposed >= 0, proposed <= budget,
              history.count + inFlight.count + reissue.count == proposed else {
            throw StrategyError("inconsistent strategy state: budget \(budget), \(proposed) proposed, \(history.count) observed, \(inFlight.count) in flight, \(reissue.count) to re-issue")
        }
    }
}
