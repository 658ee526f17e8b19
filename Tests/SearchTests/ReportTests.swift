import Foundation
import Search
import XCTest
#if canImport(FoundationXML)
import FoundationXML
#endif

/// Parses `text` as XML; returns the parser's error, nil when well formed.
func xmlError(_ text: String) -> String? {
    let parser = XMLParser(data: Data(text.utf8))
    return parser.parse() ? nil : "\(parser.parserError.map { "\($0)" } ?? "unknown error") at line \(parser.lineNumber)"
}

/// The pieces of `nas-mpi report`: statistics, the Pareto front, CSV, XML escaping, the SVG builder
/// and the cell diagrams.
final class ReportTests: XCTestCase {
    func testMeanAndSampleStandardDeviation() throws {
        let m = try XCTUnwrap(MeanStd([0.90, 0.92, 0.94]))
        XCTAssertEqual(m.mean, 0.92, accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(m.std), 0.02, accuracy: 1e-12, "sample std, n - 1 in the denominator")
        XCTAssertEqual(m.count, 3)
        XCTAssertEqual(m.formatted(percent: true), "92.00 ± 2.00 %")
        let one = try XCTUnwrap(MeanStd([1.5]))
        XCTAssertNil(one.std, "one run has no spread")
        XCTAssertEqual(one.formatted(), "1.50")
        XCTAssertNil(MeanStd([]))
    }

    func testParetoFrontKeepsOnlyPointsNoOtherBeatsOnBoth() {
        // (cost, accuracy): b dominates c (cheaper and better); d ties a on cost but is worse; e is the best and dearest.
        let cost = [1.0, 2.0, 3.0, 1.0, 10.0]
        let acc = [0.80, 0.90, 0.85, 0.70, 0.95]
        XCTAssertEqual(ParetoFront.indices(cost: cost, accuracy: acc), [0, 1, 4])
        XCTAssertEqual(ParetoFront.indices(cost: [], accuracy: []), [])
        XCTAssertEqual(ParetoFront.indices(cost: [5, 5], accuracy: [0.5, 0.5]), [0], "an equal point adds nothing")
    }

    func testCSVQuotesFieldsThatNeedItAndParsesBack() {
        XCTAssertEqual(CSVTable.field("plain"), "plain")
        XCTAssertEqual(CSVTable.field("a,b"), "\"a,b\"")
        XCTAssertEqual(CSVTable.field("say \"hi\""), "\"say \"\"hi\"\"\"")
        XCTAssertEqual(CSVTable.field("two\nlines"), "\"two\nlines\"")
        XCTAssertEqual(CSVTable.number(3), "3")
        XCTAssertEqual(CSVTable.number(0.125), "0.125")
        XCTAssertEqual(CSVTable.number(nil), "")
        var t = CSVTable(header: ["genotype", "acc"])
        t.append(["Genotype(normal=[('sep_conv_3x3', 0)], ...)", "0.5"])
        t.append(["x\"y", ""])
        XCTAssertEqual(CSVTable.parse(t.text), [t.header] + t.rows)
    }

    func testXMLEscapingCoversMarkupCharacters() {
        XCTAssertEqual(XML.escape("a < b && c > \"d\" 'e'"), "a &lt; b &amp;&amp; c &gt; &quot;d&quot; &#39;e&#39;")
        XCTAssertEqual(XML.escape("bell\u{07}"), "bell", "control characters XML forbids are dropped")
        XCTAssertEqual(XML.escape("c_{k-2} ← ±"), "c_{k-2} ← ±")
    }

    func testSVGEscapesTextAndAttributesAndParses() {
        var s = SVG(width: 100, height: 50, title: "<script>alert(1)</script>")
        s.text("x < y & z", x: 1, y: 2)
        s.rect(x: 0, y: 0, width: 1, height: 1, fill: "\"><b>", tooltip: "</title>")
        let markup = s.markup
        XCTAssertFalse(markup.contains("<script>"))
        XCTAssertFalse(markup.contains("<b>"))
        XCTAssertNil(xmlError(markup))
        XCTAssertEqual(SVG.number(1.006), "1.01")
        XCTAssertEqual(SVG.number(2), "2")
        XCTAssertEqual(SVG.number(.nan), "0")
    }

    func testChartTicksAreRoundAndCoverTheRange() {
        XCTAssertEqual(Chart.ticks(0, 1, count: 6).map { ($0 * 10).rounded() / 10 }, [0, 0.2, 0.4, 0.6, 0.8, 1])
        let t = Chart.ticks(0.093, 0.19)
        XCTAssertTrue(t.allSatisfy { $0 >= 0.093 - 1e-12 && $0 <= 0.19 + 1e-12 }, "\(t)")
        XCTAssertGreaterThanOrEqual(t.count, 3)
        let chart = Chart(title: "a & b", x: .init("core-hours"), y: .init("accuracy", percent: true),
                          series: [.init("run <1>", [(x: 0.001, y: 0.5), (x: 2, y: 0.7)], style: .step, color: "#000"),
                                   .init("points", [(x: 1, y: 0.6)], style: .hollowPoints, color: "#f00", tooltips: ["t"])])
        XCTAssertNil(xmlError(chart.svg))
        XCTAssertTrue(chart.svg.contains("(log scale)"), "costs spanning three decades get a log axis")
        XCTAssertTrue(chart.svg.contains("run &lt;1&gt;"))
        XCTAssertNil(xmlError(Chart(title: "empty", x: .init("x"), y: .init("y"), series: []).svg))
    }

    func testAlphaHeatmapLabelsEveryEdgeOfTheCell() {
        let labels = AlphaHeatmap.edgeLabels(edges: 14)
        XCTAssertEqual(labels.count, 14)
        XCTAssertEqual(labels.first?.label, "0 ← c_{k-2}")
        XCTAssertEqual(labels.last?.label, "3 ← 2")
        let svg = AlphaHeatmap(weights: Array(repeating: Array(repeating: 0.125, count: 8), count: 14),
                               primitives: Primitive.darts.map(\.name), title: "normal, epoch 1").svg
        XCTAssertNil(xmlError(svg))
        XCTAssertEqual(svg.components(separatedBy: "<rect").count - 1, 1 + 14 * 8, "a background and one square per edge and op")
    }

    func testBuiltInCellDiagramDrawsEveryNodeAndLabelledEdge() {
        let diagram = CellDiagram(genotype: .dartsV2, reduction: false, title: "DARTS_V2: normal cell")
        let svg = diagram.svg(engine: .builtIn)
        XCTAssertNil(xmlError(svg))
        for name in ["c_{k-2}", "c_{k-1}", "c_{k}", ">0<", ">1<", ">2<", ">3<"] { XCTAssertTrue(svg.contains(name), name) }
        XCTAssertEqual(svg.components(separatedBy: ">sep_conv_3x3<").count - 1, 5)
        XCTAssertEqual(svg.components(separatedBy: "marker-end").count - 1, 8 + 4, "one arrow per edge plus the concat into c_{k}")
        XCTAssertTrue(diagram.dotSource.contains("\"0\" -> \"3\" [label=\"dil_conv_3x3\""), diagram.dotSource)
    }

    func testGraphvizCellDiagramWhenDotIsInstalled() throws {
        guard CellDiagram.dotExecutable != nil else {
            throw XCTSkip("Graphviz dot is not installed (Debian: apt-get install graphviz; scripts/install-deps --test installs it)")
        }
        let svg = CellDiagram(genotype: .dartsV1, reduction: true, title: "DARTS_V1 & co: reduce").svg(engine: .graphviz)
        XCTAssertTrue(svg.hasPrefix("<svg"), String(svg.prefix(80)))
        XCTAssertNil(xmlError(svg))
        XCTAssertTrue(svg.contains("max_pool_3x3"))
    }

    func testShellQuotingAndDurations() {
        XCTAssertEqual(ComparisonReport.shellQuoted(["nas-mpi", "--out", "/tmp/a b", "it's"]), "nas-mpi --out '/tmp/a b' 'it'\\''s'")
        XCTAssertEqual(ComparisonReport.duration(42), "42.0 s")
        XCTAssertEqual(ComparisonReport.duration(600), "10.0 min")
        XCTAssertEqual(ComparisonReport.coreHours(0.00123456), "0.00123")
    }
}
