import Foundation
import Kernels

/// Dropout on the op paths of a supernet's mixed edges, shared by every edge and set by the
/// method around each weight step: inside `during`, the output of each op that has a rate is
/// replaced by dropout(op(x)) (elementwise, kept values scaled by 1/(1-p), as `nn.Dropout`)
/// before the edge weights it. Outside `during`, in the architecture step and in evaluation,
/// nothing is dropped.
///
/// P-DARTS's dropout on the skip connection is the case { skip_connect: p } with P-DARTS's
/// schedule of p (`PDARTS.skipDropoutRate`); `--op-dropout` gives fixed rates to any ops. The
/// skip connection is dropped only where it is the identity (stride 1): on the stride-2 edges of a
/// reduction cell it is a FactorizedReduce, a learned op that P-DARTS leaves alone, and so does
/// this. `none` has no output to drop.
///
/// The masks of edge `slot` in step `step` of epoch `epoch` come from one counter-based stream of
/// the run seed, drawn in the edge's op order, so they are the same on every rank, when a cell's
/// activations are recomputed in backward, and after a resume.
public final class OpDropout {
    public let seed: UInt64
    /// The drop probability of each op while active, in [0, 1); ops without an entry are kept.
    public private(set) var rates: [Primitive: Float] = [:]
    public private(set) var epoch = 0
    public private(set) var step = 0
    /// Whether the current forward pass drops (only inside `during`, with a rate above 0).
    public private(set) var active = false

    public init(seed: UInt64) { self.seed = seed }

    /// Runs `body` (a weight step) with `rates` on top of the rates already active (an inner
    /// `during` adds ops or overrides their rates, and restores the outer ones when it returns),
    /// for step `step` of epoch `epoch`.
    public func during<T>(rates: [Primitive: Float], epoch: Int, step: Int, _ body: () throws -> T) rethrows -> T {
        let saved = (self.rates, self.epoch, self.step, active)
        var merged = active ? self.rates : [:]
        merged.merge(rates) { $1 }
        merged = merged.filter { $0.value > 0 }
        (self.rates, self.epoch, self.step, active) = (merged, epoch, step, !merged.isEmpty)
        defer { (self.rates, self.epoch, self.step, active) = saved }
        return try body()
    }

    /// The rate of op `op` of kind `primitive` in the current pass: 0 when inactive, for `none`,
    /// and for a skip connection that is not the identity.
    public func rate(_ primitive: Primitive, op: Layer?) -> Float {
        guard active, let op, let p = rates[primitive] else { return 0 }
        if primitive == .skipConnect && !(op is Identity) { return 0 }
        return p
    }

    /// The generator of one edge's masks in the current step: stream kind (8 bits), epoch (16),
    /// step (24) and edge slot (16).
    func generator(slot: Int) -> RandomGenerator {
        let id = RandomStream.skipDropout.rawValue << 56 | UInt64(epoch & 0xFFFF) << 40 | UInt64(step & 0xFF_FFFF) << 16
            | UInt64(slot & 0xFFFF)
        return RandomGenerator(seed: seed, streamID: id)
    }
}

/// P-DARTS's name for the mechanism (its dropout has one entry, the skip connection).
public typealias SkipDropout = OpDropout

extension OpDropout {
    /// Runs `body` with dropout on the stride-1 skip connections only, at `rate` (P-DARTS).
    public func during<T>(rate: Float, epoch: Int, step: Int, _ body: () throws -> T) rethrows -> T {
        try during(rates: [.skipConnect: rate], epoch: epoch, step: step, body)
    }

    /// P-DARTS's schedule of the skip rate in epoch `e` (from 0) of a stage of `epochs` epochs whose
    /// first `warmUp` train the weights only, from the stage's initial rate `p`: p (E - e - 1) / E
    /// during the warm-up, then p exp(-0.2 (e - warmUp)) (reference `train_search.py`).
    public static func rate(initial p: Float, epochInStage e: Int, stageEpochs E: Int, warmUp: Int) -> Float {
        if e < warmUp { return p * Float(E - e - 1) / Float(max(E, 1)) }
        return p * Float(exp(-0.2 * Double(e - warmUp)))
    }
}

/// `--op-dropout`: fixed dropout rates of named ops in the weight step, `all` for every op of
/// the search space (entries naming an op override it). Written to config.json as the flag's text.
public struct OpDropoutRates: Codable, Equatable, Sendable {
    /// Rate by op name (`all` included as given).
    public var rates: [String: Float]

    public init(_ rates: [String: Float]) { self.rates = rates }

    /// Parses `name=p,name=p` (`all=p` for every op).
    /// - Throws: `SearchConfigError` naming the flag, for malformed text, unknown or repeated
    ///   names, `none` and rates outside [0, 1).
    public init(parsing text: String) throws {
        func fail(_ m: String) -> SearchConfigError { SearchConfigError("--op-dropout: \(m) (expected name=p,... with p in [0, 1), e.g. skip_connect=0.3,max_pool_3x3=0.1 or all=0.1)") }
        var rates: [String: Float] = [:]
        for entry in text.split(separator: ",", omittingEmptySubsequences: false) {
            let parts = entry.split(separator: "=", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2, !parts[0].isEmpty, let p = Float(parts[1]) else { throw fail("cannot read '\(entry)'") }
            let name = parts[0]
            if name != "all" {
                guard let op = Primitive(rawValue: name) else {
                    throw fail("unknown operation '\(name)'; the operations are all, \(Primitive.allCases.filter { $0 != .none }.map(\.name).joined(separator: ", "))")
                }
                guard op != .none else { throw fail("none has no output to drop") }
            }
            guard p >= 0 && p < 1 else { throw fail("the rate of \(name) must lie in [0, 1), got \(parts[1])") }
            guard rates[name] == nil else { throw fail("\(name) is given twice") }
            rates[name] = p
        }
        self.rates = rates
    }

    /// Each op's rate over a search space: `all` for every op but `none`, then the named ones;
    /// ops at rate 0 are left out.
    public func resolved(over primitives: [Primitive]) -> [Primitive: Float] {
        var out: [Primitive: Float] = [:]
        for op in primitives where op != .none {
            if let p = rates[op.name] ?? rates["all"], p > 0 { out[op] = p }
        }
        return out
    }

    /// The flag's text, names sorted (`all` first).
    public var description: String {
        rates.keys.sorted { ($0 == "all" ? "" : $0) < ($1 == "all" ? "" : $1) }.map { "\($0)=\(rates[$0]!)" }.joined(separator: ",")
    }

    public init(from decoder: Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        self = try OpDropoutRates(parsing: text)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}
