/// A search strategy that proposes whole genotypes to train and learns from their results
/// (regularized evolution, random sampling, the RL controller).
///
/// A strategy is a value holding its whole state (history, population or controller, random
/// generator, counters, candidates to re-issue), so the controller checkpoints it by encoding it
/// after every result and a resumed run continues as if never stopped. Proposals and results are
/// asynchronous: several candidates may be in flight (proposed, not yet observed), and results
/// arrive in any order.
public protocol SearchStrategy: Codable {
    /// The next genotype to train, nil when the budget is given out (counting candidates in flight).
    mutating func propose() throws -> Genotype?
    /// A trained candidate's fitness (validation accuracy in 0...1), or nil when it failed.
    mutating func observe(_ genotype: Genotype, fitness: Double?) throws
}

/// One trained candidate as a strategy saw it: the genotype and its fitness (nil: it failed).
public struct Observation: Codable, Equatable, Sendable {
    public var genotype: Genotype
    public var fitness: Double?

    public init(genotype: Genotype, fitness: Double?) {
        self.genotype = genotype
        self.fitness = fitness
    }
}

/// Strategy options out of range, a result nobody asked for, or a saved state of another strategy.
public struct StrategyError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension KeyedDecodingContainer {
    /// Decodes the tag a strategy writes at the head of its saved state and checks that it is
    /// `kind`, so a strategy never continues another strategy's run.
    ///
    /// - Throws: `StrategyError` naming both tags when the state belongs to another strategy.
    func checkStrategyTag(_ kind: String, forKey key: Key) throws {
        let saved = try decode(String.self, forKey: key)
        guard saved == kind else {
            throw StrategyError("the saved strategy state is '\(saved)', not '\(kind)': it belongs to a run of another strategy")
        }
    }
}
