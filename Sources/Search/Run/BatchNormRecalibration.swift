import Distributed
import Kernels

/// Recomputing a trained network's BatchNorm running statistics: reset them, run training-mode
/// forward passes over training batches without augmentation, averaging the batch statistics
/// cumulatively (each batch weighs the same), then average over ranks.
public enum BatchNormRecalibration {
    /// Batches in one pass over `images` images: more would only revisit images, since the
    /// batches are not augmented.
    public static func batchesPerPass(images: Int, batchSize: Int) -> Int {
        max(1, (images + batchSize - 1) / batchSize)
    }

    /// Runs `batches` batches of `batchSize` images of `data` in a fixed order drawn from `seed`
    /// (wrapping around at the end) through `forward`, in training mode.
    ///
    /// - Parameters:
    ///   - shard: this rank's part of each batch: with (r, R), batch k is R x `batchSize` images of
    ///     the order and rank r takes its r-th slice (default: every rank runs the same batches).
    ///   - progress: called after each batch with the number done.
    ///   - forward: runs the network on a batch in training mode (its BatchNorm layers update the statistics).
    public static func run(_ state: NamedState, data: ImageDataset, batches: Int, batchSize: Int, seed: UInt64,
                           comm: Communicator, shard: (rank: Int, ranks: Int) = (0, 1), progress: (Int) -> Void = { _ in },
                           forward: (Batch) throws -> Void) throws {
        for (_, s) in state.statistics { s.reset(); s.cumulativeAverage = true }
        defer { for (_, s) in state.statistics { s.cumulativeAverage = false } }
        var g = RandomGenerator(seed: seed, stream: .dataOrder)
        let order = g.permutation(data.count)
        for k in 0..<batches {
            let start = (k * shard.ranks + shard.rank) * batchSize
            let idx = (0..<batchSize).map { order[(start + $0) % order.count] }
            try forward(data.batch(idx, augment: false, generator: &g))
            progress(k + 1)
        }
        for (_, s) in state.statistics { s.cumulativeAverage = false }
        try state.averageRunningStatistics(comm)
    }
}
