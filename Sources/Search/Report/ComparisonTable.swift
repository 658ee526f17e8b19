import Foundation

/// One search (or unmatched training) run as a row of the comparison: its search cost and the
/// standalone accuracy of the architecture it found.
///
/// The final architecture's standalone accuracy comes from the training runs (`nas-mpi train`)
/// given with it whose genotype is the run's final genotype (one per seed), else from the run
/// itself when it trained and tested it (evolve, rl, random test their best candidate once).
public struct RunRow {
    public let run: ReportRun
    /// Training runs of this run's final genotype.
    public let evaluations: [ReportRun]

    /// Validation and test accuracies of the final architecture, one per measurement.
    public var validationAccuracies: [Double] {
        if !evaluations.isEmpty { return evaluations.compactMap(\.manifest.validationAccuracy) }
        return run.isWeightSharing ? [] : run.manifest.validationAccuracy.map { [$0] } ?? []
    }
    public var testAccuracies: [Double] {
        if !evaluations.isEmpty { return evaluations.compactMap(\.manifest.testAccuracy) }
        return run.manifest.testAccuracy.map { [$0] } ?? []
    }
    /// Where the accuracies come from, for the sources.
    public var accuracySource: String {
        if !evaluations.isEmpty { return "train runs " + evaluations.map(\.path).joined(separator: ", ") }
        if run.isWeightSharing { return "not trained standalone (no train run of its genotype given)" }
        return "\(run.path)/run.json"
    }
    /// Search cost: nil for a training run (it searched nothing).
    public var searchCoreHoursHeld: Double? { run.isTraining ? nil : run.manifest.coreHoursHeld }
    public var size: (parameters: Int?, macs: Int?) {
        for e in evaluations {
            let s = e.size
            if s.parameters != nil { return s }
        }
        return run.size
    }
}

/// The runs of one method (several seeds), summarised: mean +- std of cost and accuracy.
public struct MethodRow {
    public let method: String
    /// "weight sharing", "full training" or "standalone training".
    public let family: String
    public let runs: [RunRow]
    /// The most expensive method's mean core-hours held over this one's (nil for training runs).
    public var speedUp: Double?

    public var seeds: [UInt64] { runs.map(\.run.manifest.seed) }
    public var coreHoursHeld: MeanStd? { MeanStd(runs.compactMap(\.searchCoreHoursHeld)) }
    public var cpuCoreHours: MeanStd? { MeanStd(runs.map(\.run.manifest.coreHours)) }
    public var wallSeconds: MeanStd? { MeanStd(runs.map(\.run.manifest.wallSeconds)) }
    public var validationAccuracy: MeanStd? { MeanStd(runs.flatMap(\.validationAccuracies)) }
    public var testAccuracy: MeanStd? { MeanStd(runs.flatMap(\.testAccuracies)) }
    /// The supernet's last-epoch validation accuracy (not for single-path supernets).
    public var supernetValidationAccuracy: MeanStd? { MeanStd(runs.compactMap(\.run.supernetValidationAccuracy)) }
    /// Single-path supernets: the best candidate's validation accuracy after BatchNorm
    /// recalibration (ws_scores.jsonl).
    public var bestCandidateValidationAccuracy: MeanStd? { MeanStd(runs.compactMap(\.run.bestCandidateValidationAccuracy)) }
    /// "1 rank x 2 threads" (several when the runs differ).
    public var coresUsed: String {
        let forms = runs.map { "\($0.run.manifest.ranks) rank\($0.run.manifest.ranks == 1 ? "" : "s") x \($0.run.manifest.threadsPerRank) thread\($0.run.manifest.threadsPerRank == 1 ? "" : "s")" }
        var seen: [String] = []
        for f in forms where !seen.contains(f) { seen.append(f) }
        return seen.joined(separator: "; ")
    }
    /// A count as one value, or "min-max" when the runs' architectures differ; nil when unknown.
    static func range(_ values: [Int]) -> String? {
        guard let lo = values.min(), let hi = values.max() else { return nil }
        return lo == hi ? "\(lo)" : "\(lo)–\(hi)"
    }
    public var parameters: String? { Self.range(runs.compactMap { $0.size.parameters }) }
    public var macs: String? { Self.range(runs.compactMap { $0.size.macs }) }
}

extension MethodRow {
    /// Groups runs by method (fidelity studies are no method: they have their own figure),
    /// matches training runs to the searches whose final genotype they
    /// trained (to the search whose directory their genotype file came from, when given), and
    /// computes the speed-ups. Order: weight sharing, full training, training runs.
    public static func rows(_ runs: [ReportRun]) -> [MethodRow] {
        let searches = runs.filter { !$0.isTraining && !$0.isFidelity }
        let trains = runs.filter(\.isTraining)
        var matched = Set<String>()
        var rowsByRun: [RunRow] = []
        // A training whose --genotype file lies in a given search's directory measures that
        // search alone; one given its genotype otherwise measures every search that found it.
        let owner: [String: String] = trains.reduce(into: [:]) { owners, t in
            guard let source = t.genotypeSource else { return }
            if let s = searches.first(where: { source.hasPrefix($0.directory.url.standardizedFileURL.path + "/") }) {
                owners[t.path] = s.path
            }
        }
        for s in searches {
            let evals = trains.filter { t in
                guard let g = t.manifest.bestGenotypePython, g == s.manifest.bestGenotypePython else { return false }
                return owner[t.path].map { $0 == s.path } ?? true
            }
            evals.forEach { matched.insert($0.path) }
            rowsByRun.append(RunRow(run: s, evaluations: evals))
        }
        for t in trains where !matched.contains(t.path) { rowsByRun.append(RunRow(run: t, evaluations: [])) }
        var order: [String] = []
        var groups: [String: [RunRow]] = [:]
        for r in rowsByRun {
            let key = r.run.methodLabel
            if groups[key] == nil { order.append(key) }
            groups[key, default: []].append(r)
        }
        func family(_ r: ReportRun) -> (Int, String) {
            r.isWeightSharing ? (0, "weight sharing") : r.isTraining ? (2, "standalone training") : (1, "full training")
        }
        var rows = order.map { key in MethodRow(method: key, family: family(groups[key]![0].run).1, runs: groups[key]!, speedUp: nil) }
        rows.sort { family($0.runs[0].run).0 < family($1.runs[0].run).0 }
        let costs = rows.compactMap { $0.coreHoursHeld?.mean }
        if let top = costs.max(), top > 0 {
            for i in rows.indices {
                if let c = rows[i].coreHoursHeld?.mean, c > 0 { rows[i].speedUp = top / c }
            }
        }
        return rows
    }
}
