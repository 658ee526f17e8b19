import Foundation

/// One run directory as the report reads it: run.json plus whichever of metrics.jsonl,
/// alphas.jsonl, candidates.jsonl, ws_scores.jsonl, fidelity.jsonl, cost.json and config.json it
/// holds.
public struct ReportRun {
    public let directory: RunDirectory
    public let manifest: RunManifest
    /// metrics.jsonl, one object per epoch (search and train runs).
    public let metrics: [[String: JSONValue]]
    /// alphas.jsonl, the softmaxed architecture parameters per epoch (search runs).
    public let alphas: [[String: JSONValue]]
    /// candidates.jsonl, one object per trained candidate (evolve, rl, random).
    public let candidates: [[String: JSONValue]]
    /// ws_scores.jsonl, one object per candidate scored at the end of a single-path search
    /// (random-ws, enas).
    public let wsScores: [[String: JSONValue]]
    /// fidelity.jsonl, one object per architecture of a fidelity study.
    public let fidelity: [[String: JSONValue]]
    public let cost: [String: JSONValue]?
    public let config: [String: JSONValue]?
    /// The files read, by name (for the sources section).
    public let filesRead: [String]

    /// Reads a run directory; throws when it has no readable run.json.
    public init(_ path: String) throws {
        let dir = RunDirectory(path)
        directory = dir
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw RunError("\(path) does not exist")
        }
        guard isDirectory.boolValue else { throw RunError("\(path) is not a run directory (a file, not a directory)") }
        guard FileManager.default.fileExists(atPath: dir.manifest.path) else {
            throw RunError("\(path) holds no run.json, so it is not a finished or stopped run of nas-mpi "
                           + "(search, train, evolve, rl, random and fidelity write one); give run directories only")
        }
        manifest = try RunManifest.read(from: dir)
        var read = ["run.json"]
        func lines(_ name: String) throws -> [[String: JSONValue]] {
            let url = dir.file(name)
            guard let data = FileManager.default.contents(atPath: url.path) else { return [] }
            read.append(name)
            return try String(decoding: data, as: UTF8.self).split(separator: "\n").enumerated().compactMap { n, line in
                let t = line.trimmingCharacters(in: .whitespaces)
                if t.isEmpty { return nil }
                do { return try JSONDecoder().decode([String: JSONValue].self, from: Data(t.utf8)) } catch {
                    throw RunError("\(url.path) line \(n + 1) is not a JSON object")
                }
            }
        }
        func object(_ name: String) throws -> [String: JSONValue]? {
            let url = dir.file(name)
            guard let data = FileManager.default.contents(atPath: url.path) else { return nil }
            read.append(name)
            do { return try JSONDecoder().decode([String: JSONValue].self, from: data) } catch {
                throw RunError("\(url.path) is not a JSON object")
            }
        }
        metrics = try lines("metrics.jsonl")
        alphas = try lines("alphas.jsonl")
        candidates = try lines("candidates.jsonl")
        wsScores = try lines("ws_scores.jsonl")
        fidelity = try lines("fidelity.jsonl")
        cost = try object("cost.json")
        config = try object("config.json")
        filesRead = read
    }

    public var path: String { directory.url.path }

    /// A train run's `--genotype` file (config.json `genotypeSource`), as an absolute path; nil
    /// for other runs, or a genotype given by name.
    public var genotypeSource: String? {
        guard isTraining, let source = config?["genotypeSource"]?.string, source.hasSuffix(".json") || source.contains("/") else { return nil }
        let url = source.hasPrefix("/") ? URL(fileURLWithPath: source)
            : URL(fileURLWithPath: source, relativeTo: URL(fileURLWithPath: FileManager.default.currentDirectoryPath))
        return url.standardizedFileURL.path
    }
    /// The directory's last component, to label the run in charts.
    public var name: String { directory.url.lastPathComponent }

    /// Weight sharing: the architecture was chosen from a supernet (search runs).
    public var isWeightSharing: Bool { manifest.kind == "search" }
    /// A single-path weight-sharing search (random-ws, enas): its supernet trains one path per
    /// step, so its per-epoch validation accuracy (one path, BatchNorm statistics shared by all)
    /// measures no architecture; its candidates' scores after BatchNorm recalibration do.
    public var isSinglePath: Bool { isWeightSharing && SearchMethodKind(rawValue: manifest.method)?.isSinglePath == true }

    /// The supernet's validation accuracy at the last epoch (run.json), for supernets whose
    /// validation pass measures it; nil for single-path ones (see `isSinglePath`), even where an
    /// older run.json holds their shared-BatchNorm number.
    public var supernetValidationAccuracy: Double? { isSinglePath ? nil : manifest.supernetValidationAccuracy }

    /// Single-path searches: the best candidate's validation accuracy after BatchNorm
    /// recalibration (ws_scores.jsonl, else run.json's best_candidate_validation_accuracy).
    public var bestCandidateValidationAccuracy: Double? {
        guard isSinglePath else { return nil }
        return SupernetScoring.bestValidationAccuracy(wsScores) ?? manifest.bestCandidateValidationAccuracy
    }

    /// A full-training search: every candidate trained from scratch (evolve, rl, random).
    public var isFullTraining: Bool { !candidates.isEmpty || ["evolve", "rl", "random"].contains(manifest.kind) }
    /// A standalone training of one genotype (train).
    public var isTraining: Bool { manifest.kind == "train" }
    /// A fidelity study of a supernet (fidelity): no search of its own, so no row of the table.
    public var isFidelity: Bool { manifest.kind == "fidelity" }

    /// Cores held per second of wall time: ranks x threads per rank.
    public var coresHeld: Int { max(manifest.ranks, 1) * max(manifest.threadsPerRank, 1) }

    /// The method's name in the table: the search method for weight-sharing runs, the strategy for
    /// full-training searches.
    public var methodLabel: String {
        switch manifest.kind {
        case "search":
            // DARTS's first and second order are different methods (cost and quality).
            let order = manifest.method == "darts" && config?["order"]?.int == 2 ? ", second order" : ""
            return "\(manifest.method)\(order) (weight sharing)"
        case "evolve": return "regularized evolution (full training)"
        case "rl": return "REINFORCE controller (full training)"
        case "random": return "random search (full training)"
        case "train": return "train \(genotypeName)"
        case "fidelity": return "fidelity of a \(manifest.method) supernet"
        default: return "\(manifest.kind) \(manifest.method)"
        }
    }

    /// A short name for the run's genotype: a built-in name, else a digest of its Python form.
    public var genotypeName: String {
        guard let g = manifest.bestGenotype else { return "(no genotype)" }
        if let name = Genotype.builtIn.filter({ $0.key != "DARTS" }).first(where: { $0.value == g })?.key { return name }
        return "genotype " + RunDigest.id(g.pythonDescription)
    }

    // MARK: Anytime curve

    /// Best validation accuracy found so far against core-hours held: full-training searches at
    /// each candidate's finish (finished_seconds x ranks x threads), weight-sharing searches and
    /// training runs at the end of each epoch (cumulative epoch seconds x ranks x threads; the
    /// supernet's or the network's validation accuracy). Single-path searches: one point at the
    /// end of the search (its core-hours held), the best candidate's accuracy after BatchNorm
    /// recalibration, the first accuracy of theirs that measures an architecture.
    public var anytime: [(coreHours: Double, best: Double)] {
        var out: [(Double, Double)] = []
        var best = -Double.infinity
        let cores = Double(coresHeld)
        if isSinglePath {
            return bestCandidateValidationAccuracy.map { [(manifest.coreHoursHeld, $0)] } ?? []
        }
        if !candidates.isEmpty {
            let done = candidates.compactMap { c -> (Double, Double)? in
                guard let t = c["finished_seconds"]?.double else { return nil }
                return (t, c["status"]?.string == "ok" ? (c["valid_acc"]?.double ?? -.infinity) : -.infinity)
            }.sorted { $0.0 < $1.0 }
            for (t, acc) in done {
                best = max(best, acc)
                if best.isFinite { out.append((t * cores / 3600, best)) }
            }
        } else {
            var seconds = 0.0
            for m in metrics {
                seconds += m["seconds"]?.double ?? 0
                guard let acc = m["val_acc"]?.double ?? m["valid_acc"]?.double else { continue }
                best = max(best, acc)
                out.append((seconds * cores / 3600, best))
            }
        }
        return out
    }

    // MARK: Size of the final architecture

    /// Parameters and MACs of the final architecture when known: the best candidate's record
    /// (full-training searches) or the trained network rebuilt from config.json (train runs).
    public var size: (parameters: Int?, macs: Int?) {
        if let g = manifest.bestGenotypePython, !candidates.isEmpty {
            let best = candidates.filter { $0["genotype"]?.string == g && $0["status"]?.string == "ok" }
                .max { ($0["valid_acc"]?.double ?? 0) < ($1["valid_acc"]?.double ?? 0) }
            return (best?["parameters"]?.int, best?["macs"]?.int)
        }
        if isTraining, let g = manifest.bestGenotype, let data = FileManager.default.contents(atPath: directory.config.path),
           let config = try? JSONDecoder().decode(TrainConfig.self, from: data), manifest.dataset.imageShape.count == 3,
           let net = try? EvalNetwork(config.networkConfig(inputShape: manifest.dataset.imageShape, classes: manifest.dataset.classes),
                                      genotype: g, seed: 0) {
            return (net.parameterCountWithoutAuxiliary, net.multiplyAccumulates)
        }
        return (nil, nil)
    }
}
