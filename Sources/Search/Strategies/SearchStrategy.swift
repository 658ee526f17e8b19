/// A search strategy for full-training search: proposes genotypes, learns from their fitness.
///
/// A strategy is a Codable value holding its whole state (population or controller weights,
/// random generator, counters, candidates in flight), so a run can checkpoint it after every
/// result and resume it.
public protocol SearchStrategy: Codable {
    /// The next genotype to train, nil when the budget is given out (counting candidates in flight).
    mutating func propose() throws -> Genotype?
    /// A trained candidate's fitness (validation accuracy in 0...1), or nil when it failed.
    mutating func observe(_ genotype: Genotype, fitness: Double?) throws
}
