import Foundation
import Search
import XCTest
import _TestSupport
#if canImport(FoundationXML)
import FoundationXML
#endif

/// `nas-mpi report` end to end: tiny search, evolve and train runs, then the report's files, its
/// numbers against run.json, and its refusals.
final class ReportCommandTests: XCTestCase {
    private let tiny = ["--channels", "2", "--layers", "3", "--input", "1x8x8", "--synthetic-count", "64", "--threads", "1"]

    /// Runs made once for the whole class (a few seconds).
    private static var runs: (root: URL, search: URL, evolve: URL, train: URL)?

    private func makeRuns() throws -> (root: URL, search: URL, evolve: URL, train: URL) {
        if let r = Self.runs, FileManager.default.fileExists(atPath: r.train.appendingPathComponent("run.json").path) { return r }
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("nas-mpi-report-\(UUID().uuidString)")
        let search = root.appendingPathComponent("search"), evolve = root.appendingPathComponent("evolve"), train = root.appendingPathComponent("train")
        var r = try runNasMPI(["search"] + tiny + ["--batch-size", "16", "--epochs", "3", "--out", search.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        r = try runNasMPI(["evolve"] + tiny + ["--batch-size", "8", "--candidate-epochs", "1", "--candidates", "4", "--population", "3",
                                               "--sample-size", "2", "--out", evolve.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        // The search's final genotype trained standalone: its test accuracy is the search's.
        r = try runNasMPI(["train", "--genotype", search.appendingPathComponent("genotype.json").path] + tiny
                          + ["--epochs", "1", "--validation-split", "0.5", "--out", train.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        Self.runs = (root, search, evolve, train)
        return (root, search, evolve, train)
    }

    override class func tearDown() {
        if let r = runs { try? FileManager.default.removeItem(at: r.root) }
        super.tearDown()
    }

    private func manifest(_ dir: URL) throws -> [String: JSONValue] {
        try JSONDecoder().decode([String: JSONValue].self, from: Data(contentsOf: dir.appendingPathComponent("run.json")))
    }

    private func csv(_ dir: URL, _ name: String) throws -> [[String: String]] {
        let rows = CSVTable.parse(try String(contentsOf: dir.appendingPathComponent("data/\(name).csv"), encoding: .utf8))
        let header = try XCTUnwrap(rows.first)
        return rows.dropFirst().map { Dictionary(uniqueKeysWithValues: zip(header, $0).map { ($0, $1) }) }
    }

    func testReportWritesWellFormedFilesWhoseNumbersAreTheRuns() throws {
        let runs = try makeRuns()
        let out = try temporaryDirectory(self).appendingPathComponent("report")
        let r = try runNasMPI(["report", runs.search.path, runs.evolve.path, runs.train.path, "--out", out.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        for name in ["index.html", "report.md", "data/table.csv", "data/runs.csv", "data/published.csv", "data/anytime.csv",
                     "data/cost_accuracy.csv", "data/skip_count.csv", "data/alphas.csv", "data/genotypes.csv", "data/sources.csv",
                     "figures/anytime.svg", "figures/cost_accuracy.svg", "figures/skip_count.svg", "figures/cell-1-normal.svg"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent(name).path), name)
        }
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: out.path).filter { $0.contains(".tmp-") }
        XCTAssertEqual(leftovers, [], "atomic writes leave no temporaries")

        // The page is well-formed XML (so no unescaped '<' in any text), self-contained, and holds every part.
        let html = try String(contentsOf: out.appendingPathComponent("index.html"), encoding: .utf8)
        let parser = XMLParser(data: Data(html.utf8))
        XCTAssertTrue(parser.parse(), "index.html is not well-formed: \(parser.parserError.map { "\($0)" } ?? "") line \(parser.lineNumber)")
        XCTAssertFalse(html.contains("<script"), "no JavaScript")
        XCTAssertFalse(html.replacingOccurrences(of: "http://www.w3.org/", with: "").contains("http"),
                       "no network resources (only XML namespace names)")
        for id in ["id=\"comparison\"", "id=\"published-table\"", "id=\"fig-anytime\"", "id=\"fig-cost_accuracy\"", "id=\"fig-skip_count\"",
                   "id=\"fig-alphas-1-epoch1-normal\"", "id=\"fig-alphas-1-epoch3-reduce\"", "id=\"fig-cell-1-normal\"", "id=\"fig-cell-2-reduce\"",
                   "id=\"sources-table\"", "not measured here"] {
            XCTAssertTrue(html.contains(id), id)
        }
        for svg in try FileManager.default.contentsOfDirectory(atPath: out.appendingPathComponent("figures").path) {
            let p = XMLParser(data: try Data(contentsOf: out.appendingPathComponent("figures/\(svg)")))
            XCTAssertTrue(p.parse(), "\(svg): \(p.parserError.map { "\($0)" } ?? "")")
        }

        // The table's numbers are run.json's.
        let table = try csv(out, "table")
        let search = try manifest(runs.search), evolve = try manifest(runs.evolve), train = try manifest(runs.train)
        let ws = try XCTUnwrap(table.first { $0["family"] == "weight sharing" })
        XCTAssertEqual(Double(ws["search_core_hours_held_mean"] ?? ""), search["core_hours_held"]?.double)
        XCTAssertEqual(Double(ws["wall_seconds_mean"] ?? ""), search["wall_seconds"]?.double)
        XCTAssertEqual(Double(ws["test_accuracy_mean"] ?? ""), train["test_accuracy"]?.double, "the search's test accuracy is its train run's")
        XCTAssertEqual(Double(ws["validation_accuracy_mean"] ?? ""), train["validation_accuracy"]?.double)
        XCTAssertEqual(Double(ws["supernet_validation_accuracy_mean"] ?? ""), search["supernet_validation_accuracy"]?.double)
        XCTAssertEqual(ws["test_measurements"], "1")
        let ev = try XCTUnwrap(table.first { $0["family"] == "full training" })
        XCTAssertEqual(Double(ev["search_core_hours_held_mean"] ?? ""), evolve["core_hours_held"]?.double)
        XCTAssertEqual(Double(ev["test_accuracy_mean"] ?? ""), evolve["test_accuracy"]?.double)
        XCTAssertEqual(Double(ev["validation_accuracy_mean"] ?? ""), evolve["validation_accuracy"]?.double)
        XCTAssertEqual(table.count, 2, "the train run is the search's evaluation, not a row of its own")
        // Speed-up: the most expensive method's cost over each method's.
        let costs = [ws, ev].map { Double($0["search_core_hours_held_mean"] ?? "")! }
        XCTAssertEqual(Double(ws["speed_up"] ?? "")!, costs.max()! / costs[0], accuracy: 1e-9)
        XCTAssertEqual(Double(ev["speed_up"] ?? "")!, costs.max()! / costs[1], accuracy: 1e-9)
        // The anytime curve of the evolve run has one point per candidate, non-decreasing.
        let anytime = try csv(out, "anytime").filter { $0["run"] == runs.evolve.path }.map { Double($0["best_validation_accuracy"]!)! }
        XCTAssertEqual(anytime.count, 4)
        XCTAssertEqual(anytime, anytime.sorted())
        XCTAssertEqual(anytime.last, evolve["validation_accuracy"]?.double)
        // Every run is traced to its command line.
        let sources = try csv(out, "sources")
        XCTAssertEqual(Set(sources.compactMap { $0["run"] }), Set([runs.search.path, runs.evolve.path, runs.train.path]))
        XCTAssertTrue(sources.allSatisfy { $0["command_line"]?.contains("--out") == true })
        let md = try String(contentsOf: out.appendingPathComponent("report.md"), encoding: .utf8)
        XCTAssertTrue(md.contains("## Sources") && md.contains("Published figures (not measured here)"))
    }

    /// random-ws and enas: the per-epoch validation pass (one path, BatchNorm statistics shared
    /// by every path) is never shown as the supernet's accuracy; the best candidate's score after
    /// BatchNorm recalibration (ws_scores.jsonl) is, labelled as such.
    func testSinglePathSupernetShowsTheRecalibratedCandidateScore() throws {
        let base = try temporaryDirectory(self)
        let search = base.appendingPathComponent("random-ws")
        let r = try runNasMPI(["search", "--method", "random-ws"] + tiny + ["--batch-size", "16", "--epochs", "2", "--ws-samples", "4",
                                                                           "--ws-top", "2", "--ws-batches", "1", "--ws-bn-batches", "1",
                                                                           "--out", search.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("val (last trained path, shared BatchNorm) loss"), "the log's per-epoch label: \(r.stdout)")
        XCTAssertTrue(r.stdout.contains("note: the per-epoch") && r.stdout.contains("ws_scores.jsonl (best "), r.stdout)
        let scores = try String(contentsOf: search.appendingPathComponent("ws_scores.jsonl"), encoding: .utf8).split(separator: "\n").map {
            try JSONDecoder().decode([String: JSONValue].self, from: Data($0.utf8))
        }
        let best = try XCTUnwrap(scores.compactMap { $0["val_acc"]?.double }.max())
        var m = try manifest(search)
        XCTAssertNil(m["supernet_validation_accuracy"], "run.json gives no shared-BatchNorm number as the supernet's")
        XCTAssertEqual(m["best_candidate_validation_accuracy"]?.double, best)
        XCTAssertNotNil(try String(contentsOf: search.appendingPathComponent("metrics.jsonl"), encoding: .utf8).range(of: "\"val_acc\""),
                        "metrics.jsonl keeps its field names")
        // A run.json of an older version held the shared-BatchNorm number: still not shown.
        m["supernet_validation_accuracy"] = .number(0.1)
        try JSONEncoder().encode(m).write(to: search.appendingPathComponent("run.json"))

        let out = base.appendingPathComponent("report")
        let rep = try runNasMPI(["report", search.path, "--out", out.path, "--layout", "builtin"])
        XCTAssertEqual(rep.status, 0, rep.stderr)
        let row = try XCTUnwrap(try csv(out, "table").first)
        XCTAssertEqual(row["supernet_validation_accuracy_mean"], "")
        XCTAssertEqual(Double(row["best_candidate_recalibrated_validation_accuracy_mean"] ?? ""), best)
        let run = try XCTUnwrap(try csv(out, "runs").first)
        XCTAssertEqual(run["supernet_validation_accuracy"], "")
        XCTAssertEqual(Double(run["best_candidate_recalibrated_validation_accuracy"] ?? ""), best)
        let cell = String(format: "%.2f %% (best candidate val. acc. after BN recalibration)", 100 * best)
        let html = try String(contentsOf: out.appendingPathComponent("index.html"), encoding: .utf8)
        XCTAssertTrue(html.contains("<td class=\"num\">\(cell)</td>"), "the table's cell is labelled: \(cell)")
        XCTAssertFalse(html.contains("<td class=\"num\">10.00 %</td>"), "the shared-BatchNorm number is not in the table")
        XCTAssertTrue(try String(contentsOf: out.appendingPathComponent("report.md"), encoding: .utf8).contains(cell))
        // The anytime curve: one point at the end of the search, the recalibrated score.
        let anytime = try csv(out, "anytime")
        XCTAssertEqual(anytime.count, 1)
        XCTAssertEqual(anytime.first?["source"], "ws_scores.jsonl")
        XCTAssertEqual(Double(anytime.first?["best_validation_accuracy"] ?? ""), best)
    }

    /// Two searches that found the same genotype (search seeds that agree): each train run counts
    /// for the search whose directory its --genotype file came from, not for both; a train run
    /// given the genotype from elsewhere measures every search that found it.
    func testTrainRunsCountForTheSearchTheirGenotypeFileCameFrom() throws {
        let runs = try makeRuns()
        let base = try temporaryDirectory(self)
        let fm = FileManager.default
        let search2 = base.appendingPathComponent("search-seed2"), train2 = base.appendingPathComponent("train-seed2")
        let elsewhere = base.appendingPathComponent("train-elsewhere")
        for (from, to) in [(runs.search, search2), (runs.train, train2), (runs.train, elsewhere)] { try fm.copyItem(at: from, to: to) }
        let configURL = runs.train.appendingPathComponent("config.json")
        let recorded = try JSONDecoder().decode([String: JSONValue].self, from: Data(contentsOf: configURL))
        XCTAssertEqual(recorded["genotypeSource"]?.string, runs.search.appendingPathComponent("genotype.json").standardizedFileURL.path,
                       "train records its --genotype file as an absolute path")
        func point(_ train: URL, to source: String) throws {
            var c = recorded
            c["genotypeSource"] = .string(source)
            try JSONEncoder().encode(c).write(to: train.appendingPathComponent("config.json"))
        }
        try point(train2, to: search2.appendingPathComponent("genotype.json").path)
        try fm.copyItem(at: runs.search.appendingPathComponent("genotype.json"), to: base.appendingPathComponent("genotype.json"))
        try point(elsewhere, to: base.appendingPathComponent("genotype.json").path)

        let out = base.appendingPathComponent("report")
        var r = try runNasMPI(["report", runs.search.path, search2.path, runs.train.path, train2.path, "--out", out.path, "--layout", "builtin"])
        XCTAssertEqual(r.status, 0, r.stderr)
        var byRun = Dictionary(uniqueKeysWithValues: try csv(out, "runs").map { ($0["run"]!, $0) })
        XCTAssertEqual(byRun[runs.search.path]?["accuracy_source"], "train runs \(runs.train.path)")
        XCTAssertEqual(byRun[search2.path]?["accuracy_source"], "train runs \(train2.path)")
        XCTAssertEqual(try csv(out, "table").first { $0["family"] == "weight sharing" }?["test_measurements"], "2",
                       "two searches, one training each")

        let out2 = base.appendingPathComponent("report2")
        r = try runNasMPI(["report", runs.search.path, search2.path, elsewhere.path, "--out", out2.path, "--layout", "builtin"])
        XCTAssertEqual(r.status, 0, r.stderr)
        byRun = Dictionary(uniqueKeysWithValues: try csv(out2, "runs").map { ($0["run"]!, $0) })
        XCTAssertEqual(byRun[runs.search.path]?["accuracy_source"], "train runs \(elsewhere.path)")
        XCTAssertEqual(byRun[search2.path]?["accuracy_source"], "train runs \(elsewhere.path)")
    }

    func testRefusesADirectoryWithoutRunJSON() throws {
        let empty = try temporaryDirectory(self).appendingPathComponent("empty")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        let r = try runNasMPI(["report", empty.path, "--out", empty.appendingPathComponent("rep").path])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("\(empty.path) holds no run.json"), r.stderr)
    }

    func testRefusesRunsOnDifferentDatasetsUnlessAllowed() throws {
        let runs = try makeRuns()
        // A copy of the evolve run, as if it had run on 1x16x16 images.
        let other = try temporaryDirectory(self).appendingPathComponent("other")
        try FileManager.default.copyItem(at: runs.evolve, to: other)
        var m = try manifest(other)
        guard case .object(var d)? = m["dataset"] else { return XCTFail("no dataset in run.json") }
        d["image_shape"] = .array([.number(1), .number(16), .number(16)])
        m["dataset"] = .object(d)
        try JSONEncoder().encode(m).write(to: other.appendingPathComponent("run.json"))
        let out = other.appendingPathComponent("rep")
        var r = try runNasMPI(["report", runs.search.path, other.path, "--out", out.path])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("different datasets") && r.stderr.contains(other.path) && r.stderr.contains("image shape 1x16x16")
                      && r.stderr.contains("image shape 1x8x8") && r.stderr.contains("--allow-mixed"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.appendingPathComponent("index.html").path))
        r = try runNasMPI(["report", runs.search.path, other.path, "--out", out.path, "--allow-mixed", "--layout", "builtin"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let html = try String(contentsOf: out.appendingPathComponent("index.html"), encoding: .utf8)
        XCTAssertTrue(html.contains("Mixed runs"))
        XCTAssertTrue(html.contains("built-in layered layout"))
    }

    /// The page in a real browser: headless Chromium renders it, the DOM holds the table and every
    /// figure, and a screenshot is written. Skipped when chromium is not installed.
    func testReportRendersInHeadlessChromium() throws {
        let browser = ["chromium", "chromium-browser", "google-chrome"].lazy.compactMap { name -> URL? in
            for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":") {
                let u = URL(fileURLWithPath: String(dir)).appendingPathComponent(name)
                if FileManager.default.isExecutableFile(atPath: u.path) { return u }
            }
            return nil
        }.first
        guard let browser else {
            throw XCTSkip("chromium is not installed (Debian: apt-get install chromium; scripts/install-deps --test installs it)")
        }
        let runs = try makeRuns()
        let out = try temporaryDirectory(self).appendingPathComponent("report")
        let r = try runNasMPI(["report", runs.search.path, runs.evolve.path, runs.train.path, "--out", out.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let page = out.appendingPathComponent("index.html").absoluteString
        let flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--user-data-dir=\(out.appendingPathComponent("profile").path)"]
        let dom = try runProgram(browser, flags + ["--dump-dom", page], timeout: 120)
        XCTAssertEqual(dom.status, 0, dom.stderr)
        for id in ["id=\"comparison\"", "id=\"published-table\"", "id=\"fig-anytime\"", "id=\"fig-cost_accuracy\"", "id=\"fig-skip_count\"",
                   "id=\"fig-cell-1-normal\"", "id=\"sources-table\""] {
            XCTAssertTrue(dom.stdout.contains(id), "the rendered DOM lacks \(id)")
        }
        XCTAssertGreaterThanOrEqual(dom.stdout.components(separatedBy: "<svg").count - 1, 10, "every figure is an inline SVG")
        XCTAssertFalse(dom.stderr.contains("ERR_FILE_NOT_FOUND") || dom.stderr.contains("Failed to load resource"), dom.stderr)
        let shot = out.appendingPathComponent("screenshot.png")
        let s = try runProgram(browser, flags + ["--window-size=1280,3000", "--screenshot=\(shot.path)", page], timeout: 120)
        XCTAssertEqual(s.status, 0, s.stderr)
        let png = try Data(contentsOf: shot)
        XCTAssertGreaterThan(png.count, 10_000, "a blank page compresses to almost nothing")
        XCTAssertEqual(Array(png.prefix(4)), [0x89, 0x50, 0x4E, 0x47])
    }
}
