import Kernels

/// Path-level BatchNorm: the running statistics recomputed for single paths of one supernet's
/// weights, kept by path, so that a path scored again (a candidate re-scored on the whole
/// validation half, a genotype drawn twice, two genotypes that differ only in the order of a
/// node's inputs) gets its own statistics back instead of a second recalibration — and never the
/// supernet's statistics, which mix every path it trained.
///
/// An entry holds the layers the recalibration touched (those on the path: every layer is reset
/// before it, and only a layer that ran counts batches), so it is a fraction of the supernet's
/// buffers. Restoring resets every layer and writes the path's, which leaves the buffers exactly
/// as a fresh recalibration would: scores with and without the cache are bit-identical.
///
/// Valid for one set of weights and one recalibration protocol (batches, seed, ranks): its owner
/// (`SupernetScoring`, one per checkpoint) makes a new cache when either changes. Bounded by
/// `byteLimit`; the oldest entries go first.
public final class PathStatisticsCache {
    private struct Entry {
        /// (index into `NamedState.statistics`, mean, variance, batches tracked) per touched layer.
        var layers: [(index: Int, mean: Tensor, variance: Tensor, tracked: Int)]
        var bytes: Int
    }

    public let byteLimit: Int
    private var entries: [SupernetPath: Entry] = [:]
    private var insertion: [SupernetPath] = []
    public private(set) var bytes = 0
    /// Lookups that found the path, and paths stored (each one recalibration).
    public private(set) var hits = 0, stores = 0
    /// Entries dropped to stay within `byteLimit`.
    public private(set) var evictions = 0

    /// - Parameter byteLimit: the most bytes of statistics kept (default 256 MiB: about 5,000
    ///   paths of a C=16, 8-cell supernet).
    public init(byteLimit: Int = 256 << 20) {
        self.byteLimit = byteLimit
    }

    public var count: Int { entries.count }

    /// Puts the statistics stored for `path` on `state` (every layer reset, then the path's
    /// layers written) and returns true; false, touching nothing, when the path is not stored.
    public func restore(_ path: SupernetPath, into state: NamedState) -> Bool {
        guard let entry = entries[path] else { return false }
        hits += 1
        for (_, s) in state.statistics { s.reset() }
        for layer in entry.layers {
            let s = state.statistics[layer.index].statistics
            s.runningMean = layer.mean
            s.runningVar = layer.variance
            s.batchesTracked = layer.tracked
        }
        return true
    }

    /// Stores the statistics a recalibration of `path` just left on `state`: the layers that
    /// counted batches.
    public func store(_ path: SupernetPath, from state: NamedState) {
        var layers: [(index: Int, mean: Tensor, variance: Tensor, tracked: Int)] = []
        var size = 0
        for (i, (_, s)) in state.statistics.enumerated() where s.batchesTracked > 0 {
            layers.append((i, s.runningMean, s.runningVar, s.batchesTracked))
            size += 4 * (s.runningMean.count + s.runningVar.count) + 32
        }
        stores += 1
        if let old = entries.removeValue(forKey: path) {
            bytes -= old.bytes
            insertion.removeAll { $0 == path }
        }
        guard size <= byteLimit else { return }
        while bytes + size > byteLimit, !insertion.isEmpty {
            let oldest = insertion.removeFirst()
            bytes -= entries.removeValue(forKey: oldest)?.bytes ?? 0
            evictions += 1
        }
        entries[path] = Entry(layers: layers, bytes: size)
        insertion.append(path)
        bytes += size
    }

    /// "12 recomputed, 10 reused", for the log.
    public var summary: String {
        "\(stores) recomputed, \(hits) reused" + (evictions > 0 ? ", \(evictions) dropped to stay within \(byteLimit >> 20) MiB" : "")
    }
}
