import Foundation

/// Rank agreement between two scorings of the same architectures (a supernet's accuracy and
/// standalone training's): Kendall tau-b, Spearman rho, sparse Kendall tau and top-k overlap.
///
/// Kendall tau-b (Kendall 1945, ties handled): over the n(n-1)/2 pairs, with C concordant pairs,
/// D discordant pairs, Tx pairs tied in x and Ty pairs tied in y (a pair tied in both counts in
/// both and in neither C nor D),
///
///     tau_b = (C - D) / sqrt((n0 - Tx) * (n0 - Ty)),   n0 = n(n-1)/2,
///
/// which is scipy.stats.kendalltau's default. Spearman rho is the Pearson correlation of the
/// ranks, tied values taking the average of the ranks they span (scipy.stats.spearmanr).
///
/// Sparse Kendall tau (Yu et al., "Evaluating the Search Phase of Neural Architecture Search",
/// ICLR 2020, s-KdT; used with NAS-Bench-201's accuracies): architectures whose accuracies differ
/// by no more than a threshold (0.1 percentage point) are the same rank, so a supernet is not
/// charged for ordering networks the measurement cannot tell apart. Here a pair is tied in x when
/// |x_i - x_j| <= threshold (and likewise in y), and tau-b is computed with those pairwise ties,
/// in both scorings. With threshold 0 it is tau-b.
public enum RankCorrelation {
    /// Sparse Kendall tau's tie threshold on accuracies as fractions: 0.1 percentage point.
    public static let sparseThreshold = 0.001

    /// Kendall tau-b of x and y; nil when fewer than 2 points or when every pair is tied in x or
    /// in y (the denominator is 0).
    ///
    /// - Parameter tieThreshold: pairs closer than or as close as this are ties (0: exact ties only).
    public static func kendallTau(_ x: [Double], _ y: [Double], tieThreshold: Double = 0) -> Double? {
        precondition(x.count == y.count, "one y per x")
        let n = x.count
        guard n >= 2 else { return nil }
        // A hair above the threshold, so 0.101 - 0.1 (0.001000000000000001 in binary) is a tie.
        let eps = tieThreshold > 0 ? tieThreshold * (1 + 1e-9) : 0
        var concordant = 0.0, discordant = 0.0, tiedX = 0.0, tiedY = 0.0
        for i in 0..<n {
            for j in (i + 1)..<n {
                let dx = x[i] - x[j], dy = y[i] - y[j]
                let tx = abs(dx) <= eps, ty = abs(dy) <= eps
                if tx { tiedX += 1 }
                if ty { tiedY += 1 }
                if tx || ty { continue }
                if (dx > 0) == (dy > 0) { concordant += 1 } else { discordant += 1 }
            }
        }
        let n0 = Double(n * (n - 1) / 2)
        let denominator = ((n0 - tiedX) * (n0 - tiedY)).squareRoot()
        guard denominator > 0 else { return nil }
        return (concordant - discordant) / denominator
    }

    /// Sparse Kendall tau: tau-b with accuracies within `threshold` (default 0.1 point) tied.
    public static func sparseKendallTau(_ x: [Double], _ y: [Double], threshold: Double = sparseThreshold) -> Double? {
        kendallTau(x, y, tieThreshold: threshold)
    }

    /// Ranks 1...n, ascending, ties sharing the average of the ranks they span.
    public static func averageRanks(_ v: [Double]) -> [Double] {
        let order = v.indices.sorted { v[$0] < v[$1] }
        var ranks = [Double](repeating: 0, count: v.count)
        var start = 0
        while start < order.count {
            var end = start
            while end + 1 < order.count && v[order[end + 1]] == v[order[start]] { end += 1 }
            let average = Double(start + end + 2) / 2
            for k in start...end { ranks[order[k]] = average }
            start = end + 1
        }
        return ranks
    }

    /// Spearman rho of x and y: the Pearson correlation of their average ranks; nil when fewer
    /// than 2 points or when either is constant.
    public static func spearmanRho(_ x: [Double], _ y: [Double]) -> Double? {
        precondition(x.count == y.count, "one y per x")
        guard x.count >= 2 else { return nil }
        return pearson(averageRanks(x), averageRanks(y))
    }

    /// The Pearson correlation; nil when either is constant.
    public static func pearson(_ x: [Double], _ y: [Double]) -> Double? {
        let n = Double(x.count)
        let mx = x.reduce(0, +) / n, my = y.reduce(0, +) / n
        var sxy = 0.0, sxx = 0.0, syy = 0.0
        for (a, b) in zip(x, y) {
            sxy += (a - mx) * (b - my)
            sxx += (a - mx) * (a - mx)
            syy += (b - my) * (b - my)
        }
        guard sxx > 0, syy > 0 else { return nil }
        return sxy / (sxx * syy).squareRoot()
    }

    /// The indices of the `k` largest values, ties at the cut broken by the lower index.
    public static func top(_ k: Int, of v: [Double]) -> [Int] {
        Array(v.indices.sorted { v[$0] != v[$1] ? v[$0] > v[$1] : $0 < $1 }.prefix(k))
    }

    /// How many of x's top k are among y's top k (ties at the cut broken by the lower index).
    public static func topKOverlap(_ x: [Double], _ y: [Double], k: Int) -> Int {
        precondition(x.count == y.count, "one y per x")
        return Set(top(k, of: x)).intersection(top(k, of: y)).count
    }

    /// The k of the top-k overlaps for n architectures: 5 and 10 where below n, else n / 2
    /// (at least 1).
    public static func overlapSizes(n: Int) -> [Int] {
        let ks = [5, 10].filter { $0 < n }
        return ks.isEmpty ? [max(1, n / 2)] : ks
    }
}
