import Foundation
import Kernels

extension SearchConfig {
    /// The search's data: the training images (the first `trainLimit`) put into a fixed shuffled
    /// order, the same for every seed, then split into the weights' part (`trainPortion`) and the
    /// architecture's validation part; and the data's own test split when it has one.
    ///
    /// The reference splits CIFAR-10's training set into its first and second half. Files sorted by
    /// label (common for CSV) would then give class-disjoint halves, hence the fixed shuffle.
    public func loadSplits() throws -> (weights: ImageDataset, architecture: ImageDataset, test: ImageDataset?) {
        let split = try data.load()
        var full = split.train
        if let limit = trainLimit, limit < full.count { full = full.subset(Array(0..<limit)) }
        var splitGenerator = RandomGenerator(seed: 0x5EA2C4, stream: .dataOrder)
        let order = splitGenerator.permutation(full.count)
        let nTrain = Int((trainPortion * Double(full.count)).rounded(.down))
        return (full.subset(Array(order[0..<nTrain])), full.subset(Array(order[nTrain...])), split.test)
    }

    /// The supernet this configuration searches, for the given data shape.
    public func supernetConfig(inputShape: [Int], classes: Int) -> SupernetConfig {
        var net = SupernetConfig(channels: channels, layers: layers, inputShape: inputShape, classes: classes, primitives: primitives)
        net.recompute = recompute
        return net
    }
}
