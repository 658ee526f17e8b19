import Foundation
import Kernels

/// A rule that ends a search before its last epoch, once the architecture has settled or started
/// to collapse (`--early-stop`). Written `skips=N`, `stable=E` or `eigenvalue`.
///
/// - `skips=N` and `stable=E`: Liang et al. DARTS+: Improved Differentiable Architecture Search
///   with Early Stopping. 2019, section 3.
/// - `eigenvalue`: Zela et al. Understanding and Robustifying Differentiable Architecture Search
///   (DARTS-ES). ICLR 2020, section 5.2.
public enum EarlyStopRule: Equatable, Sendable, Codable, CustomStringConvertible {
    /// Stop when the derived normal cell holds at least N skip connections.
    case skips(Int)
    /// Stop when the ranking of the learnable ops on every edge (both cells) has not changed for
    /// E epochs.
    case stable(Int)
    /// Stop when the window-5 mean of the Hessian's dominant eigenvalue grew by more than 1.3x
    /// over 4 epochs (checked from epoch 10), returning the genotype of 5 epochs before.
    case eigenvalue

    /// DARTS-ES constants: the mean's window, the epochs between the compared means, the growth
    /// factor, the first epoch (from 1) that may stop, and how many epochs back the genotype is taken.
    public static let window = 5, delta = 4, factor = 1.3, firstEpoch = 10, rollback = 5

    public init(parsing text: String) throws {
        let parts = text.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1).map(String.init)
        func count() throws -> Int {
            guard parts.count == 2, let n = Int(parts[1]) else {
                throw SearchConfigError("--early-stop \(text): \(parts[0]) needs a count, e.g. \(parts[0])=3")
            }
            guard n >= 1 else { throw SearchConfigError("--early-stop \(text): the count must be at least 1") }
            return n
        }
        switch parts.first ?? "" {
        case "skips": self = .skips(try count())
        case "stable": self = .stable(try count())
        case "eigenvalue" where parts.count == 1: self = .eigenvalue
        default:
            throw SearchConfigError("--early-stop: unknown rule '\(text)'; the rules are skips=N, stable=E and eigenvalue")
        }
    }

    /// Rules separated by commas ("skips=2,stable=10").
    public static func list(parsing text: String) throws -> [EarlyStopRule] {
        try text.split(separator: ",").map { try EarlyStopRule(parsing: String($0)) }
    }

    public var description: String {
        switch self {
        case .skips(let n): return "skips=\(n)"
        case .stable(let e): return "stable=\(e)"
        case .eigenvalue: return "eigenvalue"
        }
    }

    public init(from decoder: Decoder) throws {
        self = try EarlyStopRule(parsing: try decoder.singleValueContainer().decode(String.self))
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }

    /// Whether the rule fires at the last epoch of `history` (epochs in order); nil if not.
    public func check(_ history: [EpochEvidence]) -> EarlyStopDecision? {
        guard let last = history.last, !last.warmUp else { return nil }
        let t = last.epoch
        func decision(_ chosen: EpochEvidence, _ why: String) -> EarlyStopDecision {
            EarlyStopDecision(rule: description, epoch: t, chosenEpoch: chosen.epoch, genotype: chosen.genotype, reason: why)
        }
        switch self {
        case .skips(let n):
            return last.skipCount >= n ? decision(last, "the normal cell holds \(last.skipCount) skip connections") : nil
        case .stable(let e):
            let recent = history.suffix(e + 1)
            guard recent.count == e + 1, recent.allSatisfy({ !$0.warmUp && $0.ranking == last.ranking }) else { return nil }
            return decision(last, "the ranking of the learnable ops has not changed for \(e) epochs")
        case .eigenvalue:
            guard t >= Self.firstEpoch else { return nil }
            let byEpoch = Dictionary(history.map { ($0.epoch, $0) }, uniquingKeysWith: { $1 })
            func mean(endingAt end: Int) -> Double? {
                let values = (end - Self.window + 1...end).compactMap { byEpoch[$0]?.eigenvalue }
                return values.count == Self.window ? values.reduce(0, +) / Double(Self.window) : nil
            }
            guard let now = mean(endingAt: t), let before = mean(endingAt: t - Self.delta), before > 0,
                  now / before > Self.factor, let chosen = byEpoch[t - Self.rollback] else { return nil }
            return decision(chosen, String(format: "the mean dominant eigenvalue grew %.2fx in %d epochs (%.4g -> %.4g)",
                                           now / before, Self.delta, before, now))
        }
    }
}

/// What the early-stopping rules read of one finished epoch.
public struct EpochEvidence: Codable, Equatable, Sendable {
    /// The epoch, counted from 1.
    public var epoch: Int
    /// The architecture was frozen (no rule fires in a warm-up epoch).
    public var warmUp: Bool
    /// The derived genotype (Python form).
    public var genotype: String
    /// skip_connect edges in the derived normal cell.
    public var skipCount: Int
    /// Per edge (normal cell rows, then reduce), the learnable ops' indices by decreasing alpha.
    public var ranking: [[Int]]
    /// The Hessian's dominant eigenvalue (nil without --hessian-eigenvalue).
    public var eigenvalue: Double?

    public init(epoch: Int, warmUp: Bool = false, genotype: String = "", skipCount: Int = 0, ranking: [[Int]] = [],
                eigenvalue: Double? = nil) {
        self.epoch = epoch
        self.warmUp = warmUp
        self.genotype = genotype
        self.skipCount = skipCount
        self.ranking = ranking
        self.eigenvalue = eigenvalue
    }

    /// Per row of each [edges, K] alpha tensor, the indices of the ops that have parameters,
    /// ordered by decreasing alpha (ties by index).
    public static func ranking(alphas: [Tensor], primitives: [Primitive]) -> [[Int]] {
        let learnable = primitives.indices.filter { !primitives[$0].isParameterFree }
        var rows: [[Int]] = []
        for a in alphas where a.shape.count == 2 && a.shape[1] == primitives.count {
            let k = a.shape[1]
            for r in 0..<a.shape[0] {
                rows.append(learnable.sorted { (a.scalars[r * k + $0], -$0) > (a.scalars[r * k + $1], -$1) })
            }
        }
        return rows
    }
}

/// A rule that fired: which, when, and the genotype the run returns.
public struct EarlyStopDecision: Codable, Equatable, Sendable {
    public var rule: String
    /// The epoch after which the run stopped (from 1).
    public var epoch: Int
    /// The epoch whose genotype the run returns (from 1).
    public var chosenEpoch: Int
    /// That genotype (Python form).
    public var genotype: String
    public var reason: String

    /// For the log: "early stop (skips=2) after epoch 4: ...; genotype of epoch 4".
    public var summary: String {
        "early stop (\(rule)) after epoch \(epoch): \(reason); the run returns the genotype of epoch \(chosenEpoch)"
    }

    /// The `early_stop` record of metrics.jsonl and early_stop.json.
    public var json: JSONValue {
        .object(["rule": .string(rule), "epoch": .number(Double(epoch)), "chosen_epoch": .number(Double(chosenEpoch)),
                 "genotype": .string(genotype), "reason": .string(reason)])
    }
}

/// The early-stopping state of a search: the rules, the per-epoch evidence (kept in checkpoints,
/// so windows survive a resume) and the decision once a rule fired.
public final class EarlyStopping {
    public let rules: [EarlyStopRule]
    public private(set) var history: [EpochEvidence] = []
    public private(set) var decision: EarlyStopDecision?

    public init(rules: [EarlyStopRule]) { self.rules = rules }

    /// Adds a finished epoch; returns the decision of the first rule (in the order given) that fires.
    public func record(_ evidence: EpochEvidence) -> EarlyStopDecision? {
        history.append(evidence)
        guard decision == nil else { return nil }
        decision = rules.lazy.compactMap { $0.check(self.history) }.first
        return decision
    }

    /// The checkpoint metadata entry.
    public var state: JSONValue {
        get throws {
            var o: [String: JSONValue] = ["history": try Self.json(history)]
            if let decision { o["decision"] = try Self.json(decision) }
            return .object(o)
        }
    }

    public func restore(_ state: JSONValue?) throws {
        guard let o = state?.object else { history = []; decision = nil; return }
        history = try o["history"].map { try Self.decode([EpochEvidence].self, $0) } ?? []
        decision = try o["decision"].map { try Self.decode(EarlyStopDecision.self, $0) }
    }

    private static func json<T: Encodable>(_ v: T) throws -> JSONValue {
        try JSONDecoder().decode(JSONValue.self, from: JSONEncoder().encode(v))
    }

    private static func decode<T: Decodable>(_ t: T.Type, _ v: JSONValue) throws -> T {
        try JSONDecoder().decode(t, from: JSONEncoder().encode(v))
    }
}
