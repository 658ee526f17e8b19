import Foundation

/// Everything that defines a fidelity study (`nas-mpi fidelity`); written to config.json in its
/// run directory.
///
/// The question: does the trained supernet of a weight-sharing search rank architectures the way
/// training them standalone does? `samples` genotypes (the final genotypes of the search and of
/// `genotypeRuns`, then uniform random ones) are each scored on the supernet, single path, with
/// BatchNorm recomputed for that path, on the search's validation half; and each is trained from
/// scratch `seeds` times with `training`, scored on the same validation half (the test set is
/// never loaded). When the search kept its supernet of every epoch (`search --keep-epoch-weights`),
/// the same genotypes are also scored on each kept epoch's supernet, the same way, and each
/// epoch's scores are ranked against the same standalone accuracies (trained once).
public struct FidelityConfig: Codable, Equatable, Sendable {
    /// The search run whose supernet (checkpoint.bin) is scored.
    public var searchRun: String
    /// Runs whose final genotype joins the study (besides the search's own).
    public var genotypeRuns: [String]
    /// Genotypes in total (the runs' final genotypes, then distinct uniform samples).
    public var samples: Int
    /// Standalone trainings per genotype, seeds `training.seed + 0 ..< seeds` (the same seeds for
    /// every genotype).
    public var seeds: Int
    /// Seed of the uniform samples.
    public var seed: UInt64
    /// Ranks that train one candidate together, data-parallel.
    public var ranksPerCandidate: Int
    /// Supernet scoring: validation batches (of the search's batch size, fixed, the same for every
    /// genotype); nil: the whole validation half.
    public var scoreBatches: Int?
    /// Supernet scoring: training batches the BatchNorm statistics are recomputed on per genotype.
    public var bnBatches: Int
    /// Score the genotypes on every epoch's supernet the search kept (epochs/epoch-NNN.bin):
    /// true requires them, false skips them, nil scores them when the search kept them.
    public var perEpoch: Bool?
    /// The standalone protocol (the genotype in it is a placeholder; data, train limit and
    /// validation split are the search's, so the validation images are the search's half).
    public var training: TrainConfig

    public init(searchRun: String, genotypeRuns: [String], samples: Int, seeds: Int, seed: UInt64, ranksPerCandidate: Int,
                scoreBatches: Int?, bnBatches: Int, perEpoch: Bool? = nil, training: TrainConfig) {
        self.searchRun = searchRun
        self.genotypeRuns = genotypeRuns
        self.samples = samples
        self.seeds = seeds
        self.seed = seed
        self.ranksPerCandidate = ranksPerCandidate
        self.scoreBatches = scoreBatches
        self.bnBatches = bnBatches
        self.perEpoch = perEpoch
        self.training = training
    }

    public func validate() throws {
        func fail(_ m: String) -> SearchConfigError { SearchConfigError(m) }
        guard samples >= 2 else { throw fail("--samples must be at least 2 (a rank correlation needs two architectures), got \(samples)") }
        guard seeds >= 2 else {
            throw fail("--seeds must be at least 2 (the standalone accuracy is a mean over seeds, and one seed shows no spread), got \(seeds)")
        }
        guard ranksPerCandidate >= 1 else { throw fail("--ranks-per-candidate must be at least 1, got \(ranksPerCandidate)") }
        if let b = scoreBatches, b < 1 { throw fail("--score-batches must be at least 1 (leave it out for the whole validation half), got \(b)") }
        guard bnBatches >= 0 else { throw fail("--bn-batches must be at least 0, got \(bnBatches)") }
        guard training.validationSplit != nil else { throw fail("the standalone trainings are scored on the search's validation half: a validation split is required") }
        guard training.batchSize % ranksPerCandidate == 0 else {
            throw fail("--batch-size \(training.batchSize) must be divisible by --ranks-per-candidate \(ranksPerCandidate)")
        }
        try training.validate()
    }

    /// The standalone protocol for a search's data: its data, train limit and halves
    /// (validation split = 1 - train portion, which `TrainConfig.loadData` cuts with the search's
    /// fixed shuffle, so the validation images are exactly the search's architecture half).
    public static func training(_ base: TrainConfig, for search: SearchConfig) -> TrainConfig {
        var t = base
        t.data = search.data
        t.trainLimit = search.trainLimit
        t.validationSplit = 1 - search.trainPortion
        t.evaluateTest = false
        return t
    }
}

/// The statistics of a fidelity study: fidelity.json, and the `fidelity` field of its run.json
/// (which `nas-mpi report` reads).
public struct FidelitySummary: Codable, Equatable, Sendable {
    public struct Overlap: Codable, Equatable, Sendable {
        public var k: Int
        /// Architectures in both top-k lists.
        public var common: Int
        /// common / k.
        public var fraction: Double
    }

    /// Genotypes studied, and how many have every seed trained (the statistics use those).
    public var genotypes: Int
    public var complete: Int
    public var seeds: Int
    public var kendallTau: Double?
    public var spearmanRho: Double?
    public var sparseKendallTau: Double?
    /// The sparse tau's tie threshold (accuracy fraction: 0.001 = 0.1 point).
    public var sparseThreshold: Double
    public var topK: [Overlap]
    /// The rank agreement of each kept epoch's supernet (`search --keep-epoch-weights`) with
    /// the same standalone accuracies, by epoch; nil when not measured (see the note).
    public var perEpoch: [EpochFidelity]?
    /// How tau against the supernet's epoch was measured, or why it was not.
    public var supernetEpochTauNote: String
    /// The search run and the epoch of its weights.
    public var searchRun: String
    public var searchMethod: String
    public var supernetEpoch: Int?
    /// Validation images the supernet scored each genotype on; BatchNorm batches per genotype.
    public var scoreImages: Int
    public var bnBatches: Int
    public var candidateEpochs: Int
    public var validationImages: Int

    enum CodingKeys: String, CodingKey {
        case genotypes, complete, seeds
        case kendallTau = "kendall_tau"
        case spearmanRho = "spearman_rho"
        case sparseKendallTau = "sparse_kendall_tau"
        case sparseThreshold = "sparse_threshold"
        case topK = "top_k"
        case perEpoch = "per_epoch"
        case supernetEpochTauNote = "supernet_epoch_tau_note"
        case searchRun = "search_run"
        case searchMethod = "search_method"
        case supernetEpoch = "supernet_epoch"
        case scoreImages = "score_images"
        case bnBatches = "bn_batches"
        case candidateEpochs = "candidate_epochs"
        case validationImages = "validation_images"
    }

    /// Why tau against supernet epoch is missing.
    public static let noEpochWeights = "not measured: the search run kept only its last weights (checkpoint.bin); run the search with --keep-epoch-weights to keep every epoch's supernet (epochs/epoch-NNN.bin)"
    /// Why it is missing with --no-per-epoch.
    public static let perEpochOff = "not measured: --no-per-epoch"

    /// The note when it was measured on `epochs` kept epochs.
    public static func perEpochNote(epochs: Int) -> String {
        "measured: the same genotypes scored on the supernet of each of the \(epochs) epoch(s) the search kept (epochs/epoch-NNN.bin), the same way as on its last weights, against the same standalone accuracies"
    }

    /// The statistics of supernet accuracies `supernet` against mean standalone accuracies
    /// `standalone` (the complete genotypes only, in the same order).
    public static func statistics(supernet: [Double], standalone: [Double])
        -> (tau: Double?, rho: Double?, sparse: Double?, overlaps: [Overlap]) {
        let ks = RankCorrelation.overlapSizes(n: supernet.count)
        let overlaps: [Overlap] = supernet.count < 2 ? [] : ks.map { k in
            let c = RankCorrelation.topKOverlap(supernet, standalone, k: k)
            return Overlap(k: k, common: c, fraction: Double(c) / Double(k))
        }
        return (RankCorrelation.kendallTau(supernet, standalone), RankCorrelation.spearmanRho(supernet, standalone),
                RankCorrelation.sparseKendallTau(supernet, standalone), overlaps)
    }
}

/// The rank agreement of one epoch's supernet with standalone training (fidelity.json's
/// `per_epoch`).
public struct EpochFidelity: Codable, Equatable, Sendable {
    /// Epochs the supernet had trained (1-based, as metrics.jsonl counts).
    public var epoch: Int
    /// Architectures ranked (scored at this epoch, every seed trained).
    public var complete: Int
    public var kendallTau: Double?
    public var spearmanRho: Double?
    public var sparseKendallTau: Double?

    public init(epoch: Int, complete: Int, kendallTau: Double?, spearmanRho: Double?, sparseKendallTau: Double?) {
        self.epoch = epoch
        self.complete = complete
        self.kendallTau = kendallTau
        self.spearmanRho = spearmanRho
        self.sparseKendallTau = sparseKendallTau
    }

    enum CodingKeys: String, CodingKey {
        case epoch, complete
        case kendallTau = "kendall_tau"
        case spearmanRho = "spearman_rho"
        case sparseKendallTau = "sparse_kendall_tau"
    }

    /// Tau, rho and sparse tau of each epoch's supernet scores against the standalone
    /// accuracies, over the architectures with both (nil: not scored at that epoch, or not every
    /// seed trained).
    /// - Parameters:
    ///   - epochs: per epoch, one score per architecture (in the study's order).
    ///   - standalone: the mean standalone accuracy per architecture, in the same order.
    /// - Returns: one entry per epoch, in the order given.
    public static func statistics(epochs: [(epoch: Int, scores: [Double?])], standalone: [Double?]) -> [EpochFidelity] {
        epochs.map { e in
            precondition(e.scores.count == standalone.count, "one score per architecture")
            let pairs = zip(e.scores, standalone).compactMap { s, a in s.flatMap { s in a.map { (s, $0) } } }
            let x = pairs.map(\.0), y = pairs.map(\.1)
            return EpochFidelity(epoch: e.epoch, complete: pairs.count, kendallTau: RankCorrelation.kendallTau(x, y),
                                 spearmanRho: RankCorrelation.spearmanRho(x, y), sparseKendallTau: RankCorrelation.sparseKendallTau(x, y))
        }
    }
}
