import Foundation

/// The mean and sample standard deviation of a few runs (seeds) of one method.
public struct MeanStd: Equatable, Sendable {
    public let mean: Double
    /// Sample standard deviation (n - 1 in the denominator); nil for a single value.
    public let std: Double?
    public let count: Int

    /// nil when `values` is empty.
    public init?(_ values: [Double]) {
        guard !values.isEmpty else { return nil }
        count = values.count
        mean = values.reduce(0, +) / Double(values.count)
        if values.count > 1 {
            let m = mean
            std = (values.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(values.count - 1)).squareRoot()
        } else {
            std = nil
        }
    }

    /// "96.12 +- 0.31 %" (fractions as percentages) or "1.5 +- 0.2".
    public func formatted(percent: Bool = false, digits: Int = 2) -> String {
        let scale = percent ? 100.0 : 1
        let m = String(format: "%.\(digits)f", mean * scale)
        let s = std.map { " ± " + String(format: "%.\(digits)f", $0 * scale) } ?? ""
        return m + s + (percent ? " %" : "")
    }
}

/// The Pareto front of (cost, accuracy) points: the points no other point beats on both, lower
/// cost and higher accuracy (a point equal on one and better on the other dominates).
public enum ParetoFront {
    /// Indices of the non-dominated points, ordered by increasing cost.
    public static func indices(cost: [Double], accuracy: [Double]) -> [Int] {
        precondition(cost.count == accuracy.count, "one accuracy per cost")
        let order = cost.indices.sorted { cost[$0] != cost[$1] ? cost[$0] < cost[$1] : accuracy[$0] > accuracy[$1] }
        var front: [Int] = []
        var best = -Double.infinity
        for i in order where accuracy[i] > best {
            front.append(i)
            best = accuracy[i]
        }
        return front
    }
}
