import Foundation

/// Escaping for text and attribute values in XML, SVG and HTML.
public enum XML {
    /// `&`, `<`, `>`, `"` and `'` as entities; control characters other than tab and newline
    /// (which XML 1.0 forbids) dropped.
    public static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            case "\t", "\n", "\r": out.unicodeScalars.append(scalar)
            default:
                if scalar.value < 0x20 || (0xFFFE...0xFFFF).contains(scalar.value) { continue }
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}

/// A small SVG builder: elements appended in drawing order, every text and attribute escaped.
///
///     var svg = SVG(width: 400, height: 300)
///     svg.line(x1: 0, y1: 0, x2: 10, y2: 10, stroke: "#333")
///     svg.text("a < b", x: 5, y: 20)
///     let markup = svg.markup
public struct SVG {
    public let width: Double
    public let height: Double
    /// Text of the `<title>` element (read by screen readers and shown as a tooltip).
    public var title: String?
    private var body: [String] = []

    public init(width: Double, height: Double, title: String? = nil) {
        self.width = width
        self.height = height
        self.title = title
    }

    /// A number as SVG wants it: at most two decimals, no exponent.
    public static func number(_ v: Double) -> String {
        guard v.isFinite else { return "0" }
        let r = (v * 100).rounded() / 100
        if r == r.rounded() { return String(Int(r)) }
        return String(format: "%.2f", r).replacingOccurrences(of: #"0+$"#, with: "", options: .regularExpression)
    }

    private static func attributes(_ attrs: [(String, String?)]) -> String {
        attrs.compactMap { k, v in v.map { " \(k)=\"\(XML.escape($0))\"" } }.joined()
    }

    /// An element with attributes and optional text content (escaped) or raw children.
    public mutating func element(_ name: String, _ attrs: [(String, String?)], text: String? = nil, tooltip: String? = nil) {
        let open = "<\(name)\(Self.attributes(attrs))"
        var inner = tooltip.map { "<title>\(XML.escape($0))</title>" } ?? ""
        if let text { inner += XML.escape(text) }
        body.append(inner.isEmpty ? open + "/>" : open + ">" + inner + "</\(name)>")
    }

    public mutating func line(x1: Double, y1: Double, x2: Double, y2: Double, stroke: String, width: Double = 1, dash: String? = nil) {
        element("line", [("x1", Self.number(x1)), ("y1", Self.number(y1)), ("x2", Self.number(x2)), ("y2", Self.number(y2)),
                         ("stroke", stroke), ("stroke-width", Self.number(width)), ("stroke-dasharray", dash)])
    }

    public mutating func rect(x: Double, y: Double, width: Double, height: Double, fill: String, stroke: String? = nil,
                              rx: Double? = nil, tooltip: String? = nil) {
        element("rect", [("x", Self.number(x)), ("y", Self.number(y)), ("width", Self.number(width)), ("height", Self.number(height)),
                         ("rx", rx.map(Self.number)), ("fill", fill), ("stroke", stroke)], tooltip: tooltip)
    }

    public mutating func circle(cx: Double, cy: Double, r: Double, fill: String, stroke: String? = nil, tooltip: String? = nil) {
        element("circle", [("cx", Self.number(cx)), ("cy", Self.number(cy)), ("r", Self.number(r)), ("fill", fill),
                           ("stroke", stroke), ("stroke-width", stroke == nil ? nil : "1.5")], tooltip: tooltip)
    }

    /// A polyline through points (an open path).
    public mutating func polyline(_ points: [(Double, Double)], stroke: String, width: Double = 2, dash: String? = nil) {
        guard !points.isEmpty else { return }
        let d = points.map { "\(Self.number($0.0)),\(Self.number($0.1))" }.joined(separator: " ")
        element("polyline", [("points", d), ("fill", "none"), ("stroke", stroke), ("stroke-width", Self.number(width)),
                             ("stroke-dasharray", dash), ("stroke-linejoin", "round")])
    }

    public mutating func path(_ d: String, stroke: String, fill: String = "none", width: Double = 1.5, markerEnd: String? = nil) {
        element("path", [("d", d), ("fill", fill), ("stroke", stroke), ("stroke-width", Self.number(width)),
                         ("marker-end", markerEnd.map { "url(#\($0))" })])
    }

    public enum Anchor: String { case start, middle, end }

    public mutating func text(_ s: String, x: Double, y: Double, size: Double = 11, anchor: Anchor = .start, weight: String? = nil,
                              fill: String = "#222", rotate: Double? = nil) {
        element("text", [("x", Self.number(x)), ("y", Self.number(y)), ("font-size", Self.number(size)),
                         ("text-anchor", anchor == .start ? nil : anchor.rawValue), ("font-weight", weight), ("fill", fill),
                         ("transform", rotate.map { "rotate(\(Self.number($0)) \(Self.number(x)) \(Self.number(y)))" })],
                text: s)
    }

    /// An arrowhead marker, referenced by `path(markerEnd:)`.
    public mutating func arrowMarker(id: String, fill: String = "#555") {
        body.append("<defs><marker id=\"\(XML.escape(id))\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" "
                    + "markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"\(XML.escape(fill))\"/></marker></defs>")
    }

    /// The document: an `<svg>` element with its namespace, usable inline in HTML or as a file.
    public var markup: String {
        let head = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Self.number(width))\" height=\"\(Self.number(height))\" "
            + "viewBox=\"0 0 \(Self.number(width)) \(Self.number(height))\" font-family=\"Helvetica, Arial, sans-serif\""
            + (title.map { " role=\"img\" aria-label=\"\(XML.escape($0))\"" } ?? "") + ">"
        let t = title.map { "<title>\(XML.escape($0))</title>" } ?? ""
        return head + t + "\n" + body.joined(separator: "\n") + "\n</svg>"
    }
}

/// Colours for series, one per run or method (Tableau 10).
public enum Palette {
    public static let colors = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"]
    public static func color(_ i: Int) -> String { colors[((i % colors.count) + colors.count) % colors.count] }
}
