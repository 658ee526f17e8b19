import Foundation

/// The softmaxed architecture weights of one cell at one epoch as a heatmap: one row per edge
/// (labelled "node <- input"), one column per op, darker for a larger weight, the value in each
/// cell's tooltip.
public struct AlphaHeatmap {
    /// [edges][ops], each row a softmax (sums to 1).
    public let weights: [[Double]]
    public let primitives: [String]
    public let title: String

    public init(weights: [[Double]], primitives: [String], title: String) {
        self.weights = weights
        self.primitives = primitives
        self.title = title
    }

    /// Edge labels of a cell with `edges` edges: node i has inputs c_{k-2}, c_{k-1}, 0..i-1.
    public static func edgeLabels(edges: Int) -> [(node: Int, input: Int, label: String)] {
        var out: [(Int, Int, String)] = []
        var node = 0
        while out.count < edges {
            for input in 0..<(node + 2) where out.count < edges {
                out.append((node, input, "\(node) ← \(CellDiagram.inputName(input))"))
            }
            node += 1
        }
        return out
    }

    /// White (0) to dark blue (1).
    static func color(_ v: Double) -> String {
        let t = max(0, min(1, v))
        let (r, g, b) = (255 - t * (255 - 8), 255 - t * (255 - 48), 255 - t * (255 - 107))
        return String(format: "#%02x%02x%02x", Int(r.rounded()), Int(g.rounded()), Int(b.rounded()))
    }

    public var svg: String {
        let cell = 16.0, labelW = 82.0, top = 24.0, headerH = 78.0
        let width = labelW + cell * Double(primitives.count) + 44
        let height = top + headerH + cell * Double(weights.count) + 8
        var s = SVG(width: width, height: height, title: title)
        s.rect(x: 0, y: 0, width: width, height: height, fill: "#ffffff")
        s.text(title, x: 4, y: 15, size: 11, weight: "bold")
        for (j, name) in primitives.enumerated() {
            let x = labelW + cell * (Double(j) + 0.5) + 3
            s.text(name, x: x, y: top + headerH - 4, size: 9, rotate: -60)
        }
        let labels = Self.edgeLabels(edges: weights.count)
        for (i, row) in weights.enumerated() {
            let y = top + headerH + cell * Double(i)
            s.text(labels[i].label, x: labelW - 4, y: y + cell * 0.7, size: 9, anchor: .end)
            for (j, v) in row.enumerated() {
                s.rect(x: labelW + cell * Double(j), y: y, width: cell - 1, height: cell - 1, fill: Self.color(v),
                       tooltip: String(format: "%@, %@: %.3f", labels[i].label, primitives[safe: j] ?? "op \(j)", v))
            }
        }
        return s.markup
    }

    /// A horizontal colour scale from 0 to 1.
    public static var legend: String {
        var s = SVG(width: 220, height: 34, title: "colour scale of the heatmaps")
        for k in 0..<20 {
            s.rect(x: 10 + Double(k) * 10, y: 4, width: 10, height: 12, fill: color(Double(k) / 19))
        }
        s.text("0", x: 10, y: 29, size: 9)
        s.text("softmax weight", x: 110, y: 29, size: 9, anchor: .middle)
        s.text("1", x: 210, y: 29, size: 9, anchor: .end)
        return s.markup
    }
}
