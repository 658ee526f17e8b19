import ArgumentParser
import Foundation
import Search

extension CellDiagram.Engine: ExpressibleByArgument {
    public init?(argument: String) {
        switch argument {
        case "graphviz", "dot": self = .graphviz
        case "builtin", "built-in": self = .builtIn
        default: return nil
        }
    }
}

/// `nas-mpi report`: the comparison report of any mix of search, train, evolve, rl and random runs.
struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Compare runs: search cost against the accuracy of the architecture found, as HTML, Markdown and CSV.",
        discussion: """
            Reads each run directory's run.json (and metrics.jsonl, alphas.jsonl, candidates.jsonl, cost.json, \
            config.json when present) and writes DIR/index.html (self-contained: inline SVG and CSS, opens from disk), \
            DIR/report.md with DIR/figures/*.svg, and DIR/data/*.csv (the numbers behind every table and figure). \
            Give the train runs of the searches' final genotypes too: their test accuracies become the searches' \
            standalone accuracies (a train run is matched to a search by its genotype). Runs on different datasets \
            or search spaces are refused unless --allow-mixed.
            """
    )

    @Argument(help: "Run directories (search, train, evolve, rl, random).") var runs: [String] = []
    @Option(help: "Directory to write the report into (created if needed; files in it are replaced).") var out: String
    @Flag(help: "Report runs on different datasets or search spaces together (the report says which differ).") var allowMixed = false
    @Option(help: "Cell diagram layout: graphviz (needs `dot`; the default when it is installed) or builtin.") var layout: CellDiagram.Engine?
    @Option(help: "Epochs drawn as alpha heatmaps per weight-sharing run (the first, the last and evenly between).") var heatmapEpochs = 4

    func validate() throws {
        guard !runs.isEmpty else { throw ValidationError("give at least one run directory to report") }
        try RunSupport.checkOut(out, naming: "the report directory")
        guard heatmapEpochs >= 1 else { throw ValidationError("--heatmap-epochs must be at least 1, got \(heatmapEpochs)") }
        if layout == .graphviz, CellDiagram.dotExecutable == nil {
            throw ValidationError("--layout graphviz needs Graphviz's dot on the PATH (Debian: apt-get install graphviz); use --layout builtin")
        }
    }

    func run() throws {
        var options = ComparisonReport.Options()
        options.allowMixed = allowMixed
        options.engine = layout
        options.heatmapEpochs = heatmapEpochs
        let report = try ComparisonReport(paths: runs, options: options)
        let dir = URL(fileURLWithPath: out, isDirectory: true)
        let written = try report.write(to: dir)
        if let mixed = report.mixed { print("warning (--allow-mixed): \(mixed)") }
        print("report of \(report.runs.count) run(s), \(report.rows.count) method(s), cells laid out with the \(report.engine.rawValue): "
              + "\(dir.appendingPathComponent("index.html").path) (\(written.count) files)")
    }
}
