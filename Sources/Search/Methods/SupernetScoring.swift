import Distributed
import Foundation
import Kernels

/// How a weight-sharing search scores its final candidates on the trained supernet.
public struct WeightSharingSettings: Codable, Equatable, Sendable {
    /// Random architectures scored at the end (`--ws-samples`; Li & Talwalkar: 1000).
    public var samples: Int
    /// The best this many by batch accuracy are re-scored on the whole validation half (`--ws-top`).
    public var top: Int
    /// Validation batches (of the global batch size) of the first scoring, the same for every
    /// candidate (`--ws-batches`).
    public var batches: Int
    /// Training batches the BatchNorm statistics are recomputed on for each candidate
    /// (`--ws-bn-batches`; 0: keep the running statistics of the supernet's training).
    public var bnBatches: Int

    public init(samples: Int, top: Int, batches: Int, bnBatches: Int) {
        self.samples = samples
        self.top = top
        self.batches = batches
        self.bnBatches = bnBatches
    }

    /// The paper's scale (1000 candidates, the best 10 re-scored), or 100 candidates for the
    /// quick preset.
    public static func preset(_ p: SearchConfig.Preset) -> WeightSharingSettings {
        WeightSharingSettings(samples: p == .quick ? 100 : 1000, top: 10, batches: 4, bnBatches: 4)
    }

    public func validate() throws {
        guard samples >= 1 else { throw SearchConfigError("--ws-samples must be at least 1, got \(samples)") }
        guard top >= 1, top <= samples else { throw SearchConfigError("--ws-top must lie in 1...--ws-samples (\(samples)), got \(top)") }
        guard batches >= 1 else { throw SearchConfigError("--ws-batches must be at least 1, got \(batches)") }
        guard bnBatches >= 0 else { throw SearchConfigError("--ws-bn-batches must be at least 0, got \(bnBatches)") }
    }
}

/// A candidate's scores on the shared weights: `batchAccuracy` on the fixed validation batches,
/// `validationAccuracy` on the whole validation half (the re-scored best only).
public struct WeightSharingScore: Equatable {
    public var genotype: Genotype
    public var batchAccuracy: Double
    public var validationAccuracy: Double?
}

/// Scores discrete architectures by the accuracy the supernet's shared weights give them, as
/// random search with weight sharing chooses its architecture (and ENAS its final one): for each
/// candidate the BatchNorm running statistics are recomputed on training batches with that
/// candidate's path (`BatchNormRecalibration`; the shared statistics mix every architecture the
/// supernet trained) and kept by path (`PathStatisticsCache`), then its accuracy is measured in
/// eval mode on fixed validation batches, the same for every candidate; the best `top` are
/// re-scored, with the statistics of their path, on the whole validation half. At the end the
/// supernet holds the chosen candidate's path and statistics.
///
/// Data parallel: every rank runs every candidate on its shard of each batch, and the counts
/// (and BatchNorm statistics) are summed over ranks, so every rank gets the same scores.
///
/// Li, Talwalkar. Random Search and Reproducibility for Neural Architecture Search. UAI 2019,
/// section 4 (the DARTS CNN space).
public final class SupernetScoring {
    public let network: SearchNetwork
    public let end: SearchEnd
    public let settings: WeightSharingSettings
    public let seed: UInt64
    /// This rank's shards of the fixed validation batches.
    private let batches: [Batch]
    /// The statistics recomputed for each path scored (nil: `bnBatches` 0, nothing recomputed).
    public let statisticsCache: PathStatisticsCache?

    public init(network: SearchNetwork, end: SearchEnd, settings: WeightSharingSettings, seed: UInt64) {
        self.network = network
        self.end = end
        self.settings = settings
        self.seed = seed
        statisticsCache = settings.bnBatches > 0 ? PathStatisticsCache() : nil
        let comm = end.comm
        let local = end.batchSize / comm.size
        var g = RandomGenerator(seed: seed, streamID: RandomStream.architectureSample.rawValue << 56 | 0xFFFF << 40 | 1)
        let order = g.permutation(end.validationSet.count)
        batches = (0..<settings.batches).map { k in
            let first = EpochLoop.shardStart(step: k, batch: end.batchSize, rank: comm.rank, ranks: comm.size)
            return end.validationSet.batch((0..<local).map { order[(first + $0) % order.count] }, augment: false, generator: &g)
        }
    }

    /// Scores `candidates` (every rank the same list), re-scores the best `top`; returns the
    /// scores in the candidates' order and the index of the chosen one (the best validation
    /// accuracy among the re-scored; ties: the better batch accuracy, then the earlier draw).
    /// The supernet is left on the chosen candidate: its path and its statistics.
    public func run(_ candidates: [Genotype]) throws -> (scores: [WeightSharingScore], chosen: Int) {
        var scores: [WeightSharingScore] = []
        var lastShown = Date()
        for (i, g) in candidates.enumerated() {
            try use(g)
            scores.append(WeightSharingScore(genotype: g, batchAccuracy: try batchAccuracy(), validationAccuracy: nil))
            if Date().timeIntervalSince(lastShown) >= 10 || i + 1 == candidates.count {
                lastShown = Date()
                end.log(String(format: "weight-sharing scores: %d/%d candidates, best batch accuracy %.1f%%", i + 1, candidates.count,
                               100 * scores.map(\.batchAccuracy).max()!))
            }
        }
        let best = scores.indices.sorted { (scores[$0].batchAccuracy, -$0) > (scores[$1].batchAccuracy, -$1) }.prefix(settings.top)
        for i in best {
            scores[i].validationAccuracy = try accuracy(of: scores[i].genotype, wholeValidationHalf: true)
        }
        let chosen = best.max { a, b in
            (scores[a].validationAccuracy!, scores[a].batchAccuracy, -a) < (scores[b].validationAccuracy!, scores[b].batchAccuracy, -b)
        }!
        try use(scores[chosen].genotype)
        end.log(String(format: "weight-sharing scores: the best %d re-scored on %d validation images; chosen: candidate %d, validation accuracy %.1f%%",
                       best.count, end.validationSet.count, chosen, 100 * scores[chosen].validationAccuracy!)
                + (statisticsCache.map { "; path BatchNorm statistics: \($0.summary)" } ?? ""))
        return (scores, chosen)
    }

    /// The accuracy of one candidate on the shared weights: its path put on the supernet, its
    /// BatchNorm statistics recomputed, then eval-mode accuracy on the fixed validation batches
    /// or, with `wholeValidationHalf`, on every validation image (counts summed over ranks). The
    /// supernet keeps the candidate's path.
    public func accuracy(of g: Genotype, wholeValidationHalf: Bool) throws -> Double {
        try use(g)
        guard wholeValidationHalf else { return try batchAccuracy() }
        return try evaluate(end.validationSet, batchSize: end.batchSize / end.comm.size, comm: end.comm) { batch in
            try network.forward(Variable(batch.images), ForwardContext(tape: Tape(recording: false), training: false))
        }.accuracy
    }

    /// Validation images one `accuracy(of:wholeValidationHalf:)` scores.
    public func images(wholeValidationHalf: Bool) -> Int {
        wholeValidationHalf ? end.validationSet.count : settings.batches * end.batchSize
    }

    /// Puts candidate `g` on the supernet with the BatchNorm statistics of its path: from the
    /// cache when the path was scored before, else recomputed (and cached).
    private func use(_ g: Genotype) throws {
        let path = try SupernetPath(g, space: network.config.space, steps: network.config.steps)
        network.path = path
        guard let cache = statisticsCache else { return }
        if cache.restore(path, into: network.state) { return }
        let comm = end.comm
        // Each rank recalibrates on its own draw of training batches; the statistics are then
        // averaged over ranks. The same batches for every candidate.
        try BatchNormRecalibration.run(network.state, data: end.trainSet, batches: settings.bnBatches,
                                       batchSize: end.batchSize / comm.size, seed: seed &+ UInt64(comm.rank), comm: comm) { batch in
            _ = try network.forward(Variable(batch.images), ForwardContext(tape: Tape(recording: false), training: true))
        }
        cache.store(path, from: network.state)
    }

    /// Eval-mode accuracy of the current path on the fixed validation batches, over all ranks.
    private func batchAccuracy() throws -> Double {
        var counts = [0.0, 0.0]
        for b in batches {
            let logits = try network.forward(Variable(b.images), ForwardContext(tape: Tape(recording: false), training: false))
            counts[0] += Double(correctCount(logits: logits.value, labels: b.labels))
            counts[1] += Double(b.labels.count)
        }
        if end.comm.size > 1 { try end.comm.allreduceSum(&counts) }
        return counts[0] / max(counts[1], 1)
    }

    /// The best re-scored validation accuracy (`val_acc`) among ws_scores.jsonl's lines: the
    /// best candidate's accuracy after BatchNorm recalibration; nil when none was re-scored.
    public static func bestValidationAccuracy(_ lines: [[String: JSONValue]]) -> Double? {
        lines.compactMap { $0["val_acc"]?.double }.max()
    }

    /// The same, read from a ws_scores.jsonl file (nil when it is missing or unreadable).
    public static func bestValidationAccuracy(file url: URL) -> Double? {
        guard let data = FileManager.default.contents(atPath: url.path) else { return nil }
        let lines = String(decoding: data, as: UTF8.self).split(separator: "\n").compactMap {
            try? JSONDecoder().decode([String: JSONValue].self, from: Data($0.utf8))
        }
        return bestValidationAccuracy(lines)
    }

    /// ws_scores.jsonl: one line per candidate in draw order: its index, genotype, batch
    /// accuracy, validation accuracy (the re-scored only) and whether it was chosen.
    public static func lines(_ scores: [WeightSharingScore], chosen: Int) -> [JSONValue] {
        scores.enumerated().map { i, s in
            var o: [String: JSONValue] = ["candidate": .number(Double(i)), "genotype": .string(s.genotype.pythonDescription),
                                          "batch_acc": .number(s.batchAccuracy)]
            if let v = s.validationAccuracy { o["val_acc"] = .number(v) }
            if i == chosen { o["chosen"] = .bool(true) }
            return .object(o)
        }
    }
}
