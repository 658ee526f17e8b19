import Foundation

/// One figure of the report: its SVG, what it shows, and the CSV file holding its numbers.
public struct ReportFigure {
    public let id: String
    public let title: String
    public let caption: String
    public let svg: String
    /// The data/*.csv file (without extension) behind it.
    public let data: String
}

/// The report's figures and CSV tables, computed once from a `ComparisonReport`.
public struct ReportFigures {
    public private(set) var anytime: ReportFigure!
    public private(set) var costAccuracy: ReportFigure!
    public private(set) var skipCount: ReportFigure?
    /// Per fidelity study: supernet against standalone accuracy, with its statistics, and Kendall
    /// tau against the supernet's epoch when the search kept its epochs' weights.
    public private(set) var fidelity: [(run: ReportRun, summary: FidelitySummary?, figure: ReportFigure, epochs: ReportFigure?)] = []
    /// Per weight-sharing run: its heatmaps, by selected epoch (normal and reduce).
    public private(set) var alphas: [(run: ReportRun, figures: [ReportFigure])] = []
    /// Per final genotype: normal and reduce cell.
    public private(set) var cells: [(label: String, runs: [ReportRun], figures: [ReportFigure])] = []
    /// CSV tables by file name (without extension), in writing order.
    public private(set) var tables: [(String, CSVTable)] = []

    public var all: [ReportFigure] {
        var figures: [ReportFigure] = [anytime, costAccuracy]
        if let skipCount { figures.append(skipCount) }
        figures += fidelity.flatMap { [$0.figure] + ($0.epochs.map { [$0] } ?? []) }
        figures += alphas.flatMap(\.figures)
        return figures + cells.flatMap(\.figures)
    }

    public init(_ report: ComparisonReport) {
        let methodIndex = Dictionary(uniqueKeysWithValues: report.rows.enumerated().map { ($1.method, $0) })
        func color(_ r: ReportRun) -> String { Palette.color(methodIndex[r.methodLabel] ?? 0) }
        func label(_ r: ReportRun) -> String { "\(r.methodLabel), seed \(r.manifest.seed)" }
        tables.append(("table", Self.methodTable(report.rows)))
        tables.append(("runs", Self.runTable(report.rows)))
        tables.append(("published", Self.publishedTable))

        // Anytime curves.
        var anytimeCSV = CSVTable(header: ["run", "method", "seed", "source", "core_hours_held", "best_validation_accuracy"])
        var anytimeSeries: [Chart.Series] = []
        for r in report.runs where !r.isTraining && !r.isFidelity {
            let curve = r.anytime
            let source = r.isSinglePath ? "ws_scores.jsonl" : r.candidates.isEmpty ? "metrics.jsonl" : "candidates.jsonl"
            for p in curve {
                anytimeCSV.append([r.path, r.methodLabel, "\(r.manifest.seed)", source, CSVTable.number(p.coreHours), CSVTable.number(p.best)])
            }
            anytimeSeries.append(Chart.Series(label(r), curve.map { (x: $0.coreHours, y: $0.best) }, style: .step, color: color(r),
                                              dash: r.isWeightSharing ? "5 3" : nil))
        }
        tables.append(("anytime", anytimeCSV))
        anytime = ReportFigure(
            id: "anytime", title: "Best validation accuracy so far against core-hours",
            caption: "x: core-hours held since the run started (wall seconds x ranks x threads per rank / 3600). y: the best validation accuracy found so far. "
                + "Full-training searches (solid): one step per finished candidate, its standalone validation accuracy (candidates.jsonl finished_seconds, valid_acc). "
                + "Weight-sharing searches (dashed): one step per epoch, the supernet's validation accuracy (metrics.jsonl seconds summed, val_acc), which is not the accuracy of any standalone architecture; "
                + "single-path ones (random-ws, enas), whose per-epoch validation pass uses BatchNorm statistics shared by every path and measures no architecture: one point at the end of the search (run.json core_hours_held), "
                + "the best candidate's validation accuracy after BatchNorm recalibration (ws_scores.jsonl val_acc).",
            svg: Chart(title: "Anytime performance", x: .init("core-hours held"), y: .init("best validation accuracy so far", percent: true),
                       series: anytimeSeries).svg,
            data: "anytime")

        // Cost against accuracy, with the Pareto front.
        var points: [(row: RunRow, cost: Double, acc: Double, test: Bool)] = []
        var unplotted: [String] = []
        for row in report.rows.flatMap(\.runs) where !row.run.isTraining {
            let cost = row.run.manifest.coreHoursHeld
            if let t = MeanStd(row.testAccuracies) { points.append((row, cost, t.mean, true)) }
            else if let v = MeanStd(row.validationAccuracies) { points.append((row, cost, v.mean, false)) }
            else { unplotted.append(row.run.path) }
        }
        let front = Set(ParetoFront.indices(cost: points.map(\.cost), accuracy: points.map(\.acc)))
        var scatterCSV = CSVTable(header: ["run", "method", "seed", "core_hours_held", "accuracy", "accuracy_kind", "measurements", "pareto_front"])
        for (i, p) in points.enumerated() {
            scatterCSV.append([p.row.run.path, p.row.run.methodLabel, "\(p.row.run.manifest.seed)", CSVTable.number(p.cost),
                               CSVTable.number(p.acc), p.test ? "test" : "validation",
                               "\(p.test ? p.row.testAccuracies.count : p.row.validationAccuracies.count)", front.contains(i) ? "yes" : "no"])
        }
        tables.append(("cost_accuracy", scatterCSV))
        var scatterSeries: [Chart.Series] = []
        for row in report.rows {
            for test in [true, false] {
                let mine = points.filter { $0.row.run.methodLabel == row.method && $0.test == test }
                guard !mine.isEmpty else { continue }
                scatterSeries.append(Chart.Series(row.method + (test ? "" : " (validation)"), mine.map { (x: $0.cost, y: $0.acc) },
                                                  style: test ? .points : .hollowPoints, color: Palette.color(methodIndex[row.method] ?? 0),
                                                  tooltips: mine.map { "\($0.row.run.path): " + String(format: "%.4g core-hours, %.2f %%", $0.cost, 100 * $0.acc) }))
            }
        }
        let frontPoints = front.sorted { points[$0].cost < points[$1].cost }.map { (x: points[$0].cost, y: points[$0].acc) }
        if frontPoints.count > 0 { scatterSeries.append(Chart.Series("Pareto front", frontPoints, style: .step, color: "#555555", dash: "4 3")) }
        costAccuracy = ReportFigure(
            id: "cost_accuracy", title: "Search cost against accuracy of the final architecture",
            caption: "x: search cost in core-hours held (run.json core_hours_held). y: the final architecture's standalone test accuracy "
                + "(mean over its training runs, or the run's own test of its best candidate); hollow markers: validation accuracy where no test accuracy was measured. "
                + "The dashed line joins the Pareto front (no other run is both cheaper and more accurate)."
                + (unplotted.isEmpty ? "" : " Not plotted (their final architecture was not trained standalone): " + unplotted.joined(separator: ", ") + "."),
            svg: Chart(title: "Cost against accuracy", x: .init("search cost (core-hours held)"), y: .init("accuracy of the final architecture", percent: true),
                       series: scatterSeries).svg,
            data: "cost_accuracy")

        // Weight sharing: skip count and alpha heatmaps.
        let shared = report.runs.filter(\.isWeightSharing)
        var skipCSV = CSVTable(header: ["run", "method", "seed", "epoch", "skip_count"])
        var skipSeries: [Chart.Series] = []
        for r in shared {
            let pts = r.metrics.compactMap { m -> (x: Double, y: Double)? in
                guard let e = m["epoch"]?.double, let s = m["skip_count"]?.double else { return nil }
                return (x: e, y: s)
            }
            for p in pts { skipCSV.append([r.path, r.methodLabel, "\(r.manifest.seed)", CSVTable.number(p.x), CSVTable.number(p.y)]) }
            skipSeries.append(Chart.Series(label(r), pts, style: .line, color: color(r)))
        }
        var alphaCSV = CSVTable(header: ["run", "epoch", "cell", "edge", "node", "input", "op", "weight"])
        for (n, r) in shared.enumerated() {
            var figures: [ReportFigure] = []
            for entry in Self.select(r.alphas, count: report.options.heatmapEpochs) {
                let epoch = entry["epoch"]?.int ?? 0
                let primitives = entry["primitives"]?.array?.compactMap(\.string) ?? Primitive.darts.map(\.name)
                for cell in ["normal", "reduce"] {
                    guard let rows = entry["alphas_\(cell)"]?.array?.map({ $0.array?.compactMap(\.double) ?? [] }), !rows.isEmpty else { continue }
                    let labels = AlphaHeatmap.edgeLabels(edges: rows.count)
                    for (i, row) in rows.enumerated() {
                        for (j, w) in row.enumerated() {
                            alphaCSV.append([r.path, "\(epoch)", cell, "\(i)", "\(labels[i].node)", CellDiagram.inputName(labels[i].input),
                                             primitives[safe: j] ?? "op \(j)", CSVTable.number(w)])
                        }
                    }
                    figures.append(ReportFigure(
                        id: "alphas-\(n + 1)-epoch\(epoch)-\(cell)", title: "\(cell) cell, epoch \(epoch)",
                        caption: "softmax of the \(cell) cell's alphas after epoch \(epoch) (alphas.jsonl)",
                        svg: AlphaHeatmap(weights: rows, primitives: primitives, title: "\(cell), epoch \(epoch)").svg, data: "alphas"))
                }
            }
            alphas.append((r, figures))
        }
        if !shared.isEmpty {
            tables.append(("skip_count", skipCSV))
            tables.append(("alphas", alphaCSV))
            skipCount = ReportFigure(
                id: "skip_count", title: "Skip connections in the derived normal cell, per epoch",
                caption: "x: epoch. y: skip_connect edges in the normal cell derived after that epoch (metrics.jsonl skip_count); "
                    + "a count growing towards all edges is the collapse weight sharing is known for.",
                svg: Chart(title: "Skip count over epochs", x: .init("epoch", log: false), y: .init("skip connections in the normal cell", log: false),
                           series: skipSeries).svg,
                data: "skip_count")
        }

        // Fidelity: supernet against standalone accuracy.
        let studies = report.runs.filter(\.isFidelity)
        var fidelityCSV = CSVTable(header: ["run", "index", "source", "supernet_accuracy", "standalone_accuracy_mean", "standalone_accuracy_std",
                                            "standalone_accuracies", "complete", "genotype"])
        var epochCSV = CSVTable(header: ["run", "epoch", "complete", "kendall_tau", "spearman_rho", "sparse_kendall_tau"])
        for (n, r) in studies.enumerated() {
            var points: [(x: Double, y: Double)] = [], tips: [String] = []
            for rec in r.fidelity {
                let accs = rec["standalone_accs"]?.array?.map { $0.double.map { CSVTable.number($0) } ?? "" } ?? []
                fidelityCSV.append([r.path, CSVTable.number(rec["index"]?.double), rec["source"]?.string ?? "", CSVTable.number(rec["supernet_acc"]?.double),
                                    CSVTable.number(rec["mean"]?.double), CSVTable.number(rec["std"]?.double), accs.joined(separator: " "),
                                    rec["complete"] == .bool(true) ? "yes" : "no", rec["genotype"]?.string ?? ""])
                guard rec["complete"] == .bool(true), let x = rec["supernet_acc"]?.double, let y = rec["mean"]?.double else { continue }
                points.append((x: x, y: y))
                tips.append("#\(rec["index"]?.int ?? 0) (\(rec["source"]?.string ?? "")): " + String(format: "supernet %.2f %%, standalone %.2f %%", 100 * x, 100 * y))
            }
            let summary = r.manifest.fidelity
            let epochs = summary?.perEpoch.flatMap { $0.isEmpty ? nil : $0 }.map { perEpoch in
                for e in perEpoch {
                    epochCSV.append([r.path, "\(e.epoch)", "\(e.complete)", CSVTable.number(e.kendallTau), CSVTable.number(e.spearmanRho),
                                     CSVTable.number(e.sparseKendallTau)])
                }
                return Self.epochFigure(perEpoch, run: r, index: n + 1)
            }
            fidelity.append((r, summary, ReportFigure(
                id: "fidelity-\(n + 1)", title: "Fidelity of the \(r.manifest.method) supernet (\(r.name))",
                caption: "x: the supernet's validation accuracy of each architecture (its single path, BatchNorm recomputed for it). "
                    + "y: its standalone validation accuracy, mean over \(summary?.seeds ?? 0) seeds (the same validation half). "
                    + (summary.map(ReportText.fidelityStatistics) ?? "No statistics (the study has not finished)") + ". From \(r.path)/fidelity.jsonl and run.json.",
                svg: Chart(title: "Supernet against standalone accuracy", x: .init("supernet validation accuracy", log: false, percent: true),
                           y: .init("standalone validation accuracy (mean over seeds)", log: false, percent: true),
                           series: [Chart.Series("architectures", points, style: .points, color: Palette.color(0), tooltips: tips)]).svg,
                data: "fidelity"), epochs))
        }
        if !studies.isEmpty { tables.append(("fidelity", fidelityCSV)) }
        if fidelity.contains(where: { $0.epochs != nil }) { tables.append(("fidelity_epochs", epochCSV)) }

        // Cell diagrams of every final genotype (runs sharing one are drawn once).
        var genotypeCSV = CSVTable(header: ["genotype", "runs", "cell", "node", "input", "op", "python"])
        var byGenotype: [(String, Genotype, [ReportRun])] = []
        for r in report.runs {
            guard let g = r.manifest.bestGenotype, let py = r.manifest.bestGenotypePython else { continue }
            if let k = byGenotype.firstIndex(where: { $0.0 == py }) { byGenotype[k].2.append(r) } else { byGenotype.append((py, g, [r])) }
        }
        for (k, (py, g, runs)) in byGenotype.enumerated() {
            let name = runs[0].genotypeName
            let who = runs.map { "\($0.methodLabel), seed \($0.manifest.seed)" }.joined(separator: "; ")
            var figures: [ReportFigure] = []
            for reduction in [false, true] {
                let cell = reduction ? "reduce" : "normal"
                let edges = reduction ? g.reduce : g.normal
                for (i, e) in edges.enumerated() {
                    genotypeCSV.append([name, runs.map(\.path).joined(separator: " "), cell, "\(i / 2)", CellDiagram.inputName(e.input), e.op.name, py])
                }
                let diagram = CellDiagram(genotype: g, reduction: reduction, title: "\(name): \(cell) cell")
                figures.append(ReportFigure(id: "cell-\(k + 1)-\(cell)", title: "\(name): \(cell) cell", caption: who,
                                            svg: diagram.svg(engine: report.engine), data: "genotypes"))
            }
            cells.append((name, runs, figures))
        }
        tables.append(("genotypes", genotypeCSV))
        tables.append(("sources", Self.sourcesTable(report.runs)))
    }

    /// Kendall tau (and Spearman rho) of each kept epoch's supernet against standalone training.
    static func epochFigure(_ perEpoch: [EpochFidelity], run r: ReportRun, index: Int) -> ReportFigure {
        func series(_ name: String, _ value: (EpochFidelity) -> Double?, color: String, dash: String?) -> Chart.Series {
            let kept = perEpoch.compactMap { e in value(e).map { (e, $0) } }
            return Chart.Series(name, kept.map { (x: Double($0.0.epoch), y: $0.1) }, style: .linePoints, color: color, dash: dash,
                                tooltips: kept.map { String(format: "epoch %d: %@ %.3f over %d architectures", $0.0.epoch, name, $0.1, $0.0.complete) })
        }
        return ReportFigure(
            id: "fidelity-epochs-\(index)", title: "Kendall tau against supernet epoch (\(r.name))",
            caption: "x: epochs the \(r.manifest.method) supernet had trained (the search's kept weights, epochs/epoch-NNN.bin). "
                + "y: rank correlation between that supernet's validation accuracy of each architecture (single path, BatchNorm recomputed for it) "
                + "and its standalone validation accuracy (mean over seeds, trained once): Kendall tau-b (solid) and Spearman rho (dashed). "
                + "From \(r.path)/fidelity.json (per_epoch).",
            svg: Chart(title: "Kendall tau against supernet epoch", x: .init("supernet epoch", log: false),
                       y: .init("rank correlation with standalone accuracy", log: false, includes: [-1, 1]),
                       series: [series("Kendall tau", \.kendallTau, color: Palette.color(0), dash: nil),
                                series("Spearman rho", \.spearmanRho, color: Palette.color(1), dash: "5 3")]).svg,
            data: "fidelity_epochs")
    }

    /// `count` entries spread evenly, always the first and the last.
    static func select<T>(_ items: [T], count: Int) -> [T] {
        guard items.count > count, count >= 2 else { return items }
        var picked: [Int] = []
        for i in 0..<count {
            let k = Int((Double(i) * Double(items.count - 1) / Double(count - 1)).rounded())
            if !picked.contains(k) { picked.append(k) }
        }
        return picked.map { items[$0] }
    }

    // MARK: Tables

    static func methodTable(_ rows: [MethodRow]) -> CSVTable {
        var t = CSVTable(header: ["method", "family", "runs", "seeds", "search_core_hours_held_mean", "search_core_hours_held_std",
                                  "cpu_core_hours_mean", "wall_seconds_mean", "wall_seconds_std", "cores_used",
                                  "validation_accuracy_mean", "validation_accuracy_std", "validation_measurements",
                                  "test_accuracy_mean", "test_accuracy_std", "test_measurements",
                                  "supernet_validation_accuracy_mean", "best_candidate_recalibrated_validation_accuracy_mean",
                                  "parameters", "macs", "speed_up"])
        for r in rows {
            t.append([r.method, r.family, "\(r.runs.count)", r.seeds.map(String.init).joined(separator: " "),
                      CSVTable.number(r.coreHoursHeld?.mean), CSVTable.number(r.coreHoursHeld?.std),
                      CSVTable.number(r.cpuCoreHours?.mean), CSVTable.number(r.wallSeconds?.mean), CSVTable.number(r.wallSeconds?.std), r.coresUsed,
                      CSVTable.number(r.validationAccuracy?.mean), CSVTable.number(r.validationAccuracy?.std), "\(r.validationAccuracy?.count ?? 0)",
                      CSVTable.number(r.testAccuracy?.mean), CSVTable.number(r.testAccuracy?.std), "\(r.testAccuracy?.count ?? 0)",
                      CSVTable.number(r.supernetValidationAccuracy?.mean), CSVTable.number(r.bestCandidateValidationAccuracy?.mean),
                      r.parameters ?? "", r.macs ?? "", CSVTable.number(r.speedUp)])
        }
        return t
    }

    static func runTable(_ rows: [MethodRow]) -> CSVTable {
        var t = CSVTable(header: ["run", "kind", "method", "seed", "status", "ranks", "threads_per_rank", "core_hours_held", "cpu_core_hours",
                                  "wall_seconds", "supernet_validation_accuracy", "best_candidate_recalibrated_validation_accuracy",
                                  "validation_accuracy", "test_accuracy", "accuracy_source",
                                  "parameters", "macs", "genotype"])
        for row in rows {
            for r in row.runs {
                let m = r.run.manifest
                t.append([r.run.path, m.kind, m.method, "\(m.seed)", m.status.rawValue, "\(m.ranks)", "\(m.threadsPerRank)",
                          CSVTable.number(m.coreHoursHeld), CSVTable.number(m.coreHours), CSVTable.number(m.wallSeconds),
                          CSVTable.number(r.run.supernetValidationAccuracy), CSVTable.number(r.run.bestCandidateValidationAccuracy),
                          r.validationAccuracies.map { CSVTable.number($0) }.joined(separator: " "),
                          r.testAccuracies.map { CSVTable.number($0) }.joined(separator: " "), r.accuracySource,
                          r.size.parameters.map(String.init) ?? "", r.size.macs.map(String.init) ?? "", m.bestGenotypePython ?? ""])
            }
        }
        return t
    }

    static var publishedTable: CSVTable {
        var t = CSVTable(header: ["method", "paper", "search", "search_cost_gpu_days", "cifar10_test_accuracy_percent", "note"])
        for p in PublishedResult.all {
            t.append([p.method, p.paper, p.searchKind, CSVTable.number(p.gpuDays), CSVTable.number(p.testAccuracyPercent),
                      "published, not measured here"])
        }
        return t
    }

    static func sourcesTable(_ runs: [ReportRun]) -> CSVTable {
        var t = CSVTable(header: ["run", "files", "command_line", "host", "cores", "ranks", "threads_per_rank", "dataset", "started", "finished", "status"])
        for r in runs {
            let m = r.manifest
            t.append([r.path, r.filesRead.joined(separator: " "), ComparisonReport.shellQuoted(m.commandLine), m.host, "\(m.cores)", "\(m.ranks)",
                      "\(m.threadsPerRank)", ComparisonReport.describe(m.dataset), m.started, m.finished,
                      m.status.rawValue + (m.statusDetail.map { " (\($0))" } ?? "")])
        }
        return t
    }
}
