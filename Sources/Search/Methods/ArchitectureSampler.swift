import Kernels

/// Where a single-path weight-sharing method gets its architectures: draw 0 of each step is the
/// architecture the shared weights train on; a sampler that learns (the ENAS controller) also
/// asks for `rewardsPerStep` more draws per step, each scored on the step's validation batch and
/// handed back through `observe`. Random search with weight sharing uses
/// `UniformArchitectureSampler`; ENAS plugs its controller in here, with no edit to the method.
///
/// The method calls the sampler on every rank in the same order with the same rewards, then
/// uses rank 0's draw on every rank (a broadcast), so a stateful sampler stays identical across
/// ranks and a drawn architecture is always the same everywhere.
public protocol ArchitectureSampler: AnyObject {
    /// The `draw`-th architecture of step `step` (in the epoch) of epoch `epoch`.
    func sample(epoch: Int, step: Int, draw: Int) throws -> Genotype
    /// Architectures scored for rewards after each weight step (default 0: none).
    var rewardsPerStep: Int { get }
    /// The reward of draw `genotype`: the supernet's accuracy on the step's validation batch, in
    /// 0...1, the same on every rank.
    func observe(_ genotype: Genotype, reward: Double) throws
    /// The `count` candidates to score at the end of the search (ENAS: the trained controller's
    /// samples); nil (the default): distinct uniform draws from the run seed.
    func finalCandidates(count: Int) throws -> [Genotype]?
    /// The sampler's state in checkpoints (default: none, for a sampler that is a pure function
    /// of the seed and the position).
    func addState(to file: inout CheckpointFile)
    func restoreState(from file: CheckpointFile) throws
}

extension ArchitectureSampler {
    public var rewardsPerStep: Int { 0 }
    public func observe(_ genotype: Genotype, reward: Double) throws {}
    public func finalCandidates(count: Int) throws -> [Genotype]? { nil }
    public func addState(to file: inout CheckpointFile) {}
    public func restoreState(from file: CheckpointFile) throws {}
}

/// Uniformly random architectures of the DARTS cell space: in each cell each node takes two
/// distinct inputs among the cell inputs and the earlier nodes, and on each of them one op other
/// than `none`; the cell outputs every node. Draw d of step s of epoch e comes from its own
/// counter-based stream of the run seed, so it is a pure function of (seed, e, s, d): the same on
/// every rank and after a resume, without state.
public final class UniformArchitectureSampler: ArchitectureSampler {
    public let seed: UInt64
    public let steps: Int
    /// The ops a drawn edge may carry (the space's ops other than `none`).
    public let ops: [Primitive]

    public init(seed: UInt64, steps: Int = 4, primitives: [Primitive] = Primitive.darts) {
        self.seed = seed
        self.steps = steps
        ops = primitives.filter { $0 != .none }
    }

    public func sample(epoch: Int, step: Int, draw: Int) throws -> Genotype {
        var g = Self.generator(seed: seed, epoch: epoch, step: step, draw: draw)
        return try Self.uniformGenotype(steps: steps, ops: ops, using: &g)
    }

    /// The stream of one draw: stream kind (8 bits), epoch (16), step (24), draw (16). Epoch
    /// 0xFFFF is the final scoring's (`RandomWeightSharing`).
    public static func generator(seed: UInt64, epoch: Int, step: Int, draw: Int) -> RandomGenerator {
        let id = RandomStream.architectureSample.rawValue << 56 | UInt64(epoch & 0xFFFF) << 40
            | UInt64(step & 0xFF_FFFF) << 16 | UInt64(draw & 0xFFFF)
        return RandomGenerator(seed: seed, streamID: id)
    }

    /// A uniformly random genotype: normal cell then reduction cell, per node its two inputs (an
    /// unordered pair of distinct ones, listed in increasing order) then their ops.
    ///
    /// A stand-in for `GenotypeSpace.sample(using:)` (Search/SearchSpace), which replaces it
    /// once merged: the draws differ, the distribution is the same.
    public static func uniformGenotype(steps: Int, ops: [Primitive], using g: inout RandomGenerator) throws -> Genotype {
        precondition(!ops.isEmpty && !ops.contains(.none), "a genotype's ops exclude none")
        func cell() -> [Genotype.Edge] {
            var edges: [Genotype.Edge] = []
            for node in 0..<steps {
                let n = node + 2
                let a = g.int(below: n)
                var b = g.int(below: n - 1)
                if b >= a { b += 1 }
                for input in [min(a, b), max(a, b)] { edges.append(Genotype.Edge(ops[g.int(below: ops.count)], input)) }
            }
            return edges
        }
        let concat = Array(2..<(steps + 2))
        let normal = cell()
        return try Genotype(normal: normal, normalConcat: concat, reduce: cell(), reduceConcat: concat)
    }
}
