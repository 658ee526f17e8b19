import Foundation
import Kernels

extension SearchConfig {
    /// The search's data: the training images put into a fixed shuffled order, the same for every
    /// seed, limited per class to `trainLimit`, then split into the weights' part (`trainPortion`) and the
    /// architecture's validation part; and the data's own test split when it has one.
    ///
    /// The reference splits CIFAR-10's training set into its first and second half. Files sorted by
    /// label (common for CSV) would then give class-disjoint halves, hence the fixed shuffle.
    public func loadSplits() throws -> (weights: ImageDataset, architecture: ImageDataset, test: ImageDataset?) {
        let split = try data.load()
        let (weights, architecture) = split.train.searchSplit(portion: trainPortion, limit: trainLimit)
        return (weights, architecture, split.test)
    }

    /// The supernet this configuration searches, for the given data shape, at its first width
    /// (`channelSchedule`'s, else `channels`).
    public func supernetConfig(inputShape: [Int], classes: Int) -> SupernetConfig {
        var net = SupernetConfig(channels: channelSchedule?.initialChannels ?? channels, layers: layers, inputShape: inputShape, classes: classes, primitives: primitives)
        net.recompute = recompute
        return net
    }
}
