import Foundation

/// `nas-mpi report`: the comparison of weight sharing against full training, from run
/// directories: the table of cost and accuracy, anytime curves, cost against accuracy with the
/// Pareto front, alpha heatmaps and skip counts of weight-sharing runs, cell diagrams of every
/// final genotype, the published figures for scale, and the sources of every number.
///
/// Writes index.html (self-contained: inline SVG and CSS), report.md (with figures/*.svg) and
/// data/*.csv (the numbers behind every table and figure), each file atomically.
public struct ComparisonReport {
    public struct Options {
        /// Report runs on different datasets or search spaces together (the report says so).
        public var allowMixed = false
        /// How to lay out cell diagrams: nil picks Graphviz when `dot` is installed.
        public var engine: CellDiagram.Engine?
        /// Epochs drawn as alpha heatmaps per weight-sharing run (first, last and evenly between).
        public var heatmapEpochs = 4
        public init() {}
    }

    public let runs: [ReportRun]
    public let rows: [MethodRow]
    public let engine: CellDiagram.Engine
    /// Set with --allow-mixed when the runs' datasets or search spaces differ: what differs.
    public let mixed: String?
    public let options: Options
    public let generated: Date

    /// Reads the runs and checks that they can be compared.
    /// - Throws: `RunError` for a directory without run.json, or runs on different datasets or
    ///   search spaces (unless `allowMixed`).
    public init(paths: [String], options: Options = Options()) throws {
        guard !paths.isEmpty else { throw RunError("give at least one run directory") }
        var seen = Set<String>()
        var runs: [ReportRun] = []
        for p in paths {
            let run = try ReportRun(p)
            guard seen.insert(run.directory.url.standardizedFileURL.path).inserted else { throw RunError("\(p) is given twice") }
            runs.append(run)
        }
        let mismatch = Self.mismatch(runs)
        if let mismatch, !options.allowMixed {
            throw RunError(mismatch + "\nA comparison needs the same data and search space for every method; pass --allow-mixed to report them together anyway.")
        }
        self.runs = runs
        self.mixed = mismatch
        self.options = options
        rows = MethodRow.rows(runs)
        engine = options.engine ?? (CellDiagram.dotExecutable != nil ? .graphviz : .builtIn)
        generated = Date()
    }

    // MARK: Comparability

    /// The dataset as compared: kind, path, image shape, classes.
    static func datasetKey(_ d: RunManifest.Dataset) -> [(String, String)] {
        [("kind", d.kind), ("path", d.path ?? "(none)"), ("image shape", d.imageShape.map(String.init).joined(separator: "x")),
         ("classes", "\(d.classes)")]
    }

    /// The ops a run's search chose from (nil for training runs, which searched nothing).
    static func searchSpace(_ r: ReportRun) -> [String]? {
        if r.isWeightSharing {
            let names = r.config?["primitives"]?.array?.compactMap(\.string) ?? Primitive.darts.map(\.name)
            return names.filter { $0 != "none" }.sorted()
        }
        if r.isFullTraining { return GenotypeSpace.dartsOps.map(\.name).sorted() }
        return nil
    }

    /// What differs between the runs' datasets or search spaces, naming the runs; nil when nothing.
    static func mismatch(_ runs: [ReportRun]) -> String? {
        var problems: [String] = []
        let first = runs[0]
        let reference = datasetKey(first.manifest.dataset)
        for r in runs.dropFirst() {
            let key = datasetKey(r.manifest.dataset)
            let differing = zip(reference, key).filter { $0.1 != $1.1 }
            if !differing.isEmpty {
                problems.append("the runs use different datasets: \(r.path) has " + differing.map { "\($0.1.0) \($0.1.1)" }.joined(separator: ", ")
                                + " but \(first.path) has " + differing.map { "\($0.0.0) \($0.0.1)" }.joined(separator: ", "))
            }
        }
        let spaces = runs.compactMap { r in searchSpace(r).map { (r, $0) } }
        if let (a, sa) = spaces.first {
            for (b, sb) in spaces.dropFirst() where sb != sa {
                problems.append("the runs search different spaces: \(b.path) chooses among \(sb.joined(separator: ", ")) "
                                + "but \(a.path) among \(sa.joined(separator: ", "))")
            }
        }
        return problems.isEmpty ? nil : problems.joined(separator: "\n")
    }

    // MARK: Writing

    /// Writes index.html, report.md, figures/*.svg and data/*.csv into `directory` (created if
    /// needed); returns the paths written, relative to it.
    @discardableResult
    public func write(to directory: URL) throws -> [String] {
        let figures = ReportFigures(self)
        var written: [String] = []
        for sub in ["", "data", "figures"] {
            try RunDirectory.makeDirectories(sub.isEmpty ? directory : directory.appendingPathComponent(sub), purpose: "report directory")
        }
        func put(_ text: String, _ name: String) throws {
            try AtomicFile.write(text, to: directory.appendingPathComponent(name))
            written.append(name)
        }
        for (name, table) in figures.tables { try put(table.text, "data/\(name).csv") }
        for figure in figures.all { try put(figure.svg + "\n", "figures/\(figure.id).svg") }
        try put(ReportMarkdown(report: self, figures: figures).text, "report.md")
        try put(ReportHTML(report: self, figures: figures).text, "index.html")
        return written
    }

    // MARK: Text helpers

    /// A command line as a shell would take it back (single-quoted where needed).
    public static func shellQuoted(_ arguments: [String]) -> String {
        arguments.map { a in
            if !a.isEmpty, a.allSatisfy({ $0.isLetter || $0.isNumber || "-_./=:,+@%".contains($0) }) { return a }
            return "'" + a.replacingOccurrences(of: "'", with: "'\\''") + "'"
        }.joined(separator: " ")
    }

    /// Seconds as "42 s", "3.5 min" or "1.2 h".
    public static func duration(_ s: Double) -> String {
        if s < 120 { return String(format: "%.1f s", s) }
        if s < 7200 { return String(format: "%.1f min", s / 60) }
        return String(format: "%.2f h", s / 3600)
    }

    /// Core-hours with enough significant digits for tiny runs.
    public static func coreHours(_ v: Double) -> String {
        if v == 0 { return "0" }
        if v >= 100 { return String(format: "%.0f", v) }
        if v >= 1 { return String(format: "%.2f", v) }
        return String(format: "%.3g", v)
    }

    public static func coreHours(_ m: MeanStd) -> String {
        coreHours(m.mean) + (m.std.map { " ± " + coreHours($0) } ?? "")
    }

    /// A dataset in words: "synthetic, 1x8x8, 10 classes (train 32, validation 32)".
    public static func describe(_ d: RunManifest.Dataset) -> String {
        var s = d.kind
        if let p = d.path { s += " \(p)" }
        if let t = d.testPath { s += " (test \(t))" }
        s += ", \(d.imageShape.map(String.init).joined(separator: "x")), \(d.classes) classes"
        let parts = ["train", "validation", "test"].compactMap { k in d.splits[k].map { "\(k) \($0)" } }
            + d.splits.keys.filter { !["train", "validation", "test"].contains($0) }.sorted().map { "\($0) \(d.splits[$0]!)" }
        if !parts.isEmpty { s += " (" + parts.joined(separator: ", ") + " images)" }
        return s
    }
}
