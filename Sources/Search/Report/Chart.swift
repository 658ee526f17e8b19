import Foundation

/// A chart of series on x/y axes (lines, steps or points), drawn with `SVG`: axes with ticks and
/// labels, a legend, and a title. The numbers plotted are the caller's; nothing is smoothed.
public struct Chart {
    public struct Axis {
        public var label: String
        /// Logarithmic (base 10); chosen by `Chart` when the data span more than two decades.
        public var log: Bool?
        /// Tick labels as percentages of a fraction (0.5 -> "50 %").
        public var percent: Bool
        /// Values the axis covers whatever the data (e.g. -1 and 1 for a correlation).
        public var includes: [Double]
        public init(_ label: String, log: Bool? = nil, percent: Bool = false, includes: [Double] = []) {
            self.label = label
            self.log = log
            self.percent = percent
            self.includes = includes
        }
    }

    /// line: a polyline; linePoints: a polyline with a marker per point (for few points, as one
    /// per epoch); step: a staircase with markers; points / hollowPoints: markers only.
    public enum Style { case line, linePoints, step, points, hollowPoints }

    public struct Series {
        public var label: String
        public var points: [(x: Double, y: Double)]
        public var style: Style
        public var color: String
        public var dash: String?
        /// A tooltip per point (same order as `points`), or none.
        public var tooltips: [String]?
        public init(_ label: String, _ points: [(x: Double, y: Double)], style: Style, color: String, dash: String? = nil,
                    tooltips: [String]? = nil) {
            self.label = label
            self.points = points
            self.style = style
            self.color = color
            self.dash = dash
            self.tooltips = tooltips
        }
    }

    public var title: String
    public var x: Axis
    public var y: Axis
    public var series: [Series]
    public var width: Double = 760
    public var height: Double = 380

    public init(title: String, x: Axis, y: Axis, series: [Series]) {
        self.title = title
        self.x = x
        self.y = y
        self.series = series
    }

    // MARK: Scales

    /// "Nice" tick values covering [lo, hi]: steps of 1, 2 or 5 times a power of ten.
    public static func ticks(_ lo: Double, _ hi: Double, count: Int = 6) -> [Double] {
        guard lo.isFinite, hi.isFinite, hi > lo else { return [lo] }
        let raw = (hi - lo) / Double(max(count - 1, 1))
        let magnitude = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? 10 * magnitude
        var t = ceil(lo / step - 1e-9) * step
        var out: [Double] = []
        while t <= hi + step * 1e-9 { out.append(abs(t) < step * 1e-9 ? 0 : t); t += step }
        return out
    }

    /// The axis range: the data's, widened to nice ticks (linear) or whole decades (log).
    static func range(_ values: [Double], log: Bool) -> (Double, Double) {
        let v = values.filter { $0.isFinite && (!log || $0 > 0) }
        guard var lo = v.min(), var hi = v.max() else { return log ? (1, 10) : (0, 1) }
        if log {
            lo = pow(10, floor(log10(lo)))
            hi = pow(10, ceil(log10(hi)))
            if hi <= lo { hi = lo * 10 }
            return (lo, hi)
        }
        if hi == lo { let pad = lo == 0 ? 1 : abs(lo) * 0.1; lo -= pad; hi += pad }
        let t = ticks(lo, hi)
        let step = t.count > 1 ? t[1] - t[0] : 1
        return (floor(lo / step + 1e-9) * step, ceil(hi / step - 1e-9) * step)
    }

    static func label(_ v: Double, percent: Bool) -> String {
        if percent { return SVG.number(v * 100) + " %" }
        if v != 0 && (abs(v) < 1e-3 || abs(v) >= 1e5) { return String(format: "%.0e", v) }
        return String(format: "%g", (v * 1e6).rounded() / 1e6)
    }

    // MARK: Drawing

    /// The chart as an SVG document.
    public var svg: String {
        let all = series.flatMap(\.points)
        let xLog = x.log ?? Self.prefersLog(all.map(\.x))
        let yLog = y.log ?? false
        let (x0, x1) = Self.range(all.map(\.x) + x.includes, log: xLog)
        let (y0, y1) = Self.range(all.map(\.y) + y.includes, log: yLog)
        let legendWidth = series.isEmpty ? 0.0 : min(220, Double(series.map(\.label.count).max() ?? 0) * 6.5 + 30)
        let left = 62.0, right = 16.0 + legendWidth, top = 34.0, bottom = 48.0
        let pw = width - left - right, ph = height - top - bottom
        func sx(_ v: Double) -> Double {
            let t = xLog ? (log10(max(v, x0)) - log10(x0)) / (log10(x1) - log10(x0)) : (v - x0) / (x1 - x0)
            return left + t * pw
        }
        func sy(_ v: Double) -> Double {
            let t = yLog ? (log10(max(v, y0)) - log10(y0)) / (log10(y1) - log10(y0)) : (v - y0) / (y1 - y0)
            return top + ph - t * ph
        }
        var s = SVG(width: width, height: height, title: title)
        s.rect(x: 0, y: 0, width: width, height: height, fill: "#ffffff")
        s.text(title, x: left, y: 20, size: 13, weight: "bold")
        // Grid and ticks.
        let xt = xLog ? Self.decades(x0, x1) : Self.ticks(x0, x1)
        let yt = yLog ? Self.decades(y0, y1) : Self.ticks(y0, y1)
        for t in xt where t >= x0 && t <= x1 {
            s.line(x1: sx(t), y1: top, x2: sx(t), y2: top + ph, stroke: "#e6e6e6")
            s.line(x1: sx(t), y1: top + ph, x2: sx(t), y2: top + ph + 4, stroke: "#333")
            s.text(Self.label(t, percent: x.percent), x: sx(t), y: top + ph + 16, size: 10, anchor: .middle)
        }
        for t in yt where t >= y0 && t <= y1 {
            s.line(x1: left, y1: sy(t), x2: left + pw, y2: sy(t), stroke: "#e6e6e6")
            s.line(x1: left - 4, y1: sy(t), x2: left, y2: sy(t), stroke: "#333")
            s.text(Self.label(t, percent: y.percent), x: left - 7, y: sy(t) + 3.5, size: 10, anchor: .end)
        }
        s.line(x1: left, y1: top + ph, x2: left + pw, y2: top + ph, stroke: "#333")
        s.line(x1: left, y1: top, x2: left, y2: top + ph, stroke: "#333")
        s.text(x.label + (xLog ? " (log scale)" : ""), x: left + pw / 2, y: height - 10, size: 11, anchor: .middle)
        s.text(y.label, x: 14, y: top + ph / 2, size: 11, anchor: .middle, rotate: -90)
        if all.isEmpty {
            s.text("no data", x: left + pw / 2, y: top + ph / 2, size: 12, anchor: .middle, fill: "#888")
        }
        // Series.
        for series in self.series {
            let pts = series.points.filter { $0.x.isFinite && $0.y.isFinite && (!xLog || $0.x > 0) }.map { (sx($0.x), sy($0.y)) }
            switch series.style {
            case .line:
                s.polyline(pts, stroke: series.color, dash: series.dash)
            case .linePoints:
                s.polyline(pts, stroke: series.color, dash: series.dash)
                for (i, p) in pts.enumerated() { s.circle(cx: p.0, cy: p.1, r: 3.5, fill: series.color, tooltip: series.tooltips?[safe: i]) }
            case .step:
                var stepped: [(Double, Double)] = []
                for (i, p) in pts.enumerated() {
                    if i > 0 { stepped.append((p.0, pts[i - 1].1)) }
                    stepped.append(p)
                }
                s.polyline(stepped, stroke: series.color, dash: series.dash)
                for p in pts { s.circle(cx: p.0, cy: p.1, r: 2.5, fill: series.color) }
            case .points, .hollowPoints:
                for (i, p) in pts.enumerated() {
                    s.circle(cx: p.0, cy: p.1, r: 4.5, fill: series.style == .points ? series.color : "#ffffff",
                             stroke: series.color, tooltip: series.tooltips?[safe: i])
                }
            }
        }
        // Legend.
        for (i, series) in self.series.enumerated() {
            let ly = top + 8 + Double(i) * 17, lx = left + pw + 14
            switch series.style {
            case .line, .step: s.line(x1: lx, y1: ly, x2: lx + 18, y2: ly, stroke: series.color, width: 2, dash: series.dash)
            case .linePoints:
                s.line(x1: lx, y1: ly, x2: lx + 18, y2: ly, stroke: series.color, width: 2, dash: series.dash)
                s.circle(cx: lx + 9, cy: ly, r: 3.5, fill: series.color)
            case .points: s.circle(cx: lx + 9, cy: ly, r: 4.5, fill: series.color)
            case .hollowPoints: s.circle(cx: lx + 9, cy: ly, r: 4.5, fill: "#ffffff", stroke: series.color)
            }
            s.text(series.label, x: lx + 24, y: ly + 4, size: 10)
        }
        return s.markup
    }

    static func prefersLog(_ values: [Double]) -> Bool {
        let v = values.filter { $0 > 0 && $0.isFinite }
        guard let lo = v.min(), let hi = v.max() else { return false }
        return hi / lo > 300
    }

    static func decades(_ lo: Double, _ hi: Double) -> [Double] {
        var out: [Double] = []
        var t = lo
        while t <= hi * 1.0001 { out.append(t); t *= 10 }
        return out
    }
}

extension Array {
    subscript(safe i: Int) -> Element? { indices.contains(i) ? self[i] : nil }
}
