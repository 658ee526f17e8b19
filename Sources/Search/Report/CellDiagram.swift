import Foundation

/// A drawing of one cell of a genotype as the reference's `visualize.py` draws it: the inputs
/// c_{k-2} and c_{k-1}, the intermediate nodes 0..n-1, one arrow per chosen edge labelled with its
/// op, and the concatenated nodes into c_{k}.
///
/// Laid out by Graphviz (`dot -Tsvg`) when `dot` is on the PATH, else by `layered`, a simple
/// layout of its own: inputs in the first column, node i in column i + 1, the output last.
public struct CellDiagram {
    public let edges: [Genotype.Edge]
    public let concat: [Int]
    public let title: String

    public init(genotype: Genotype, reduction: Bool, title: String) {
        edges = reduction ? genotype.reduce : genotype.normal
        concat = reduction ? genotype.reduceConcat : genotype.normalConcat
        self.title = title
    }

    /// The layout engine used: "graphviz dot" or "built-in layered layout".
    public enum Engine: String, Sendable { case graphviz = "Graphviz dot", builtIn = "built-in layered layout" }

    /// The name of input `i` of a cell: c_{k-2}, c_{k-1}, or an intermediate node's number.
    public static func inputName(_ i: Int) -> String { i == 0 ? "c_{k-2}" : i == 1 ? "c_{k-1}" : String(i - 2) }

    public var steps: Int { edges.count / 2 }

    // MARK: Graphviz

    /// The Graphviz source, as `visualize.py` writes it (left to right, the same colours).
    public var dotSource: String {
        func q(_ s: String) -> String { "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\"" }
        var lines = ["digraph cell {", "  rankdir=LR;", "  label=\(q(title)); labelloc=t; fontname=\"Helvetica\"; fontsize=14;",
                     "  node [style=filled, shape=rect, fontsize=14, height=0.4, width=0.4, penwidth=2, fontname=\"Helvetica\"];",
                     "  edge [fontsize=11, fontname=\"Helvetica\"];",
                     "  \(q("c_{k-2}")) [fillcolor=darkseagreen2];", "  \(q("c_{k-1}")) [fillcolor=darkseagreen2];"]
        for i in 0..<steps { lines.append("  \(q(String(i))) [fillcolor=lightblue];") }
        for (k, e) in edges.enumerated() {
            lines.append("  \(q(Self.inputName(e.input))) -> \(q(String(k / 2))) [label=\(q(e.op.name)), fillcolor=gray];")
        }
        lines.append("  \(q("c_{k}")) [fillcolor=palegoldenrod];")
        for c in concat { lines.append("  \(q(String(c - 2))) -> \(q("c_{k}")) [fillcolor=gray];") }
        lines.append("}")
        return lines.joined(separator: "\n") + "\n"
    }

    /// The `dot` executable on the PATH, if any.
    public static var dotExecutable: URL? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":") {
            let candidate = URL(fileURLWithPath: String(dir)).appendingPathComponent("dot")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        }
        return nil
    }

    /// The SVG from `dot -Tsvg`, from its `<svg` element on (no XML prolog or doctype, so it can be
    /// inlined in HTML); nil when dot is missing or fails.
    public func graphviz(_ dot: URL) -> String? {
        let process = Process()
        process.executableURL = dot
        process.arguments = ["-Tsvg"]
        let input = Pipe(), output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { return nil }
        input.fileHandleForWriting.write(Data(dotSource.utf8))
        try? input.fileHandleForWriting.close()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0, let text = String(data: data, encoding: .utf8),
              let start = text.range(of: "<svg") else { return nil }
        // Comments name the graph and nodes; they carry nothing the drawing needs.
        return String(text[start.lowerBound...]).replacingOccurrences(of: #"<!--[\s\S]*?-->"#, with: "", options: .regularExpression)
    }

    /// The drawing and the engine that laid it out.
    public func svg(engine: Engine) -> String {
        if engine == .graphviz, let dot = Self.dotExecutable, let s = graphviz(dot) { return s }
        return layered
    }

    // MARK: Built-in layout

    /// Inputs at the left, node i in column i + 1 (alternately above and below the middle, so that
    /// edges skipping a column bend around the nodes between), c_{k} at the right.
    public var layered: String {
        let columnWidth = 150.0, boxW = 64.0, boxH = 28.0, margin = 24.0
        let height = 300.0
        let width = margin * 2 + columnWidth * Double(steps + 1) + boxW
        let mid = height / 2 + 10
        var position: [String: (Double, Double)] = [
            "c_{k-2}": (margin + boxW / 2, mid - 60), "c_{k-1}": (margin + boxW / 2, mid + 60),
            "c_{k}": (margin + boxW / 2 + columnWidth * Double(steps + 1), mid),
        ]
        for i in 0..<steps {
            position[String(i)] = (margin + boxW / 2 + columnWidth * Double(i + 1), mid + (i % 2 == 0 ? -38 : 38))
        }
        var s = SVG(width: width, height: height, title: title)
        s.rect(x: 0, y: 0, width: width, height: height, fill: "#ffffff")
        s.arrowMarker(id: "arrow-\(RunDigest.id(title))")
        s.text(title, x: width / 2, y: 18, size: 13, anchor: .middle, weight: "bold")
        func anchor(_ name: String, out: Bool) -> (Double, Double) {
            let p = position[name]!
            return (p.0 + (out ? boxW / 2 : -boxW / 2), p.1)
        }
        // Edges first (under the boxes), each a cubic curve whose bend grows with the columns it spans.
        var labels: [(String, Double, Double)] = []
        for (k, e) in edges.enumerated() {
            let from = Self.inputName(e.input), to = String(k / 2)
            let a = anchor(from, out: true), b = anchor(to, out: false)
            let span = (b.0 - a.0) / columnWidth
            // Long edges bend away from the middle, on the side their source lies, and stay inside the canvas.
            let side = a.1 < mid - 1 ? -1.0 : a.1 > mid + 1 ? 1.0 : (k % 2 == 0 ? -1.0 : 1.0)
            let bend = span > 1.2 ? side * min(75, 28 * span) : side * 8
            func clamp(_ y: Double) -> Double { min(max(y, 34), height - 12) }
            let c1 = (a.0 + (b.0 - a.0) * 0.35, clamp(a.1 + bend)), c2 = (a.0 + (b.0 - a.0) * 0.65, clamp(b.1 + bend))
            s.path("M\(SVG.number(a.0)),\(SVG.number(a.1)) C\(SVG.number(c1.0)),\(SVG.number(c1.1)) \(SVG.number(c2.0)),\(SVG.number(c2.1)) \(SVG.number(b.0)),\(SVG.number(b.1))",
                   stroke: "#666", markerEnd: "arrow-\(RunDigest.id(title))")
            // The curve's midpoint (t = 1/2 of the cubic).
            labels.append((e.op.name, (a.0 + 3 * c1.0 + 3 * c2.0 + b.0) / 8, (a.1 + 3 * c1.1 + 3 * c2.1 + b.1) / 8))
        }
        for c in concat {
            let a = anchor(String(c - 2), out: true), b = anchor("c_{k}", out: false)
            s.path("M\(SVG.number(a.0)),\(SVG.number(a.1)) C\(SVG.number((a.0 + b.0) / 2)),\(SVG.number(a.1)) \(SVG.number((a.0 + b.0) / 2)),\(SVG.number(b.1)) \(SVG.number(b.0)),\(SVG.number(b.1))",
                   stroke: "#aaa", markerEnd: "arrow-\(RunDigest.id(title))")
        }
        for (name, p) in position.sorted(by: { $0.key < $1.key }) {
            let fill = name.hasPrefix("c_{k-") ? "#b4eeb4" : name == "c_{k}" ? "#eee8aa" : "#add8e6"
            s.rect(x: p.0 - boxW / 2, y: p.1 - boxH / 2, width: boxW, height: boxH, fill: fill, stroke: "#333", rx: 2)
            s.text(name, x: p.0, y: p.1 + 4.5, size: 13, anchor: .middle)
        }
        // Labels last, so a box never hides one.
        for (text, x, y) in labels {
            let w = Double(text.count) * 5.6 + 6
            s.rect(x: x - w / 2, y: y - 8, width: w, height: 13, fill: "#ffffff", rx: 3)
            s.text(text, x: x, y: y + 2.5, size: 9.5, anchor: .middle, fill: "#333")
        }
        return s.markup
    }
}

/// Short identifiers derived from text (for SVG ids, file names).
public enum RunDigest {
    /// Eight hex digits of FNV-1a.
    public static func id(_ s: String) -> String {
        var h: UInt32 = 2166136261
        for b in s.utf8 { h = (h ^ UInt32(b)) &* 16777619 }
        return String(format: "%08x", h)
    }
}
