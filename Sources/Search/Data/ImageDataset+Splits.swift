import Kernels

/// How search and training cut a dataset into parts: a fixed shuffle (the same for every seed, so
/// a file sorted by label does not give class-disjoint parts), then `--train-limit` taken
/// round-robin over the classes, then the split.
extension ImageDataset {
    /// Images per class, indexed by label.
    public var classCounts: [Int] {
        var counts = [Int](repeating: 0, count: classes)
        for label in labels { counts[label] += 1 }
        return counts
    }

    /// The indices of this dataset in a fixed shuffled order drawn from `salt`; with `limit`
    /// below the count, only `limit` of them, taken stratified: in round `r` the `r`-th image of
    /// every class (in the shuffled order), so each class keeps its share and any prefix of the
    /// result is close to balanced.
    public func shuffledOrder(salt: UInt64, limit: Int? = nil) -> [Int] {
        var g = RandomGenerator(seed: salt, stream: .dataOrder)
        let order = g.permutation(count)
        guard let limit, limit < count else { return order }
        return Self.stratified(order, labels: labels, classes: classes, limit: limit)
    }

    /// The first `limit` entries of a round-robin walk over the classes of `order`.
    static func stratified(_ order: [Int], labels: [Int], classes: Int, limit: Int) -> [Int] {
        var perClass = [[Int]](repeating: [], count: classes)
        for i in order { perClass[labels[i]].append(i) }
        var picked: [Int] = []
        picked.reserveCapacity(limit)
        var round = 0
        while picked.count < limit {
            for members in perClass where round < members.count {
                picked.append(members[round])
                if picked.count == limit { break }
            }
            round += 1
        }
        return picked
    }

    /// The search's two halves: `portion` of the (limited) images train the weights, the rest the
    /// architecture. The salt keeps the order the search has always used without a limit.
    public func searchSplit(portion: Double, limit: Int?) -> (train: ImageDataset, validation: ImageDataset) {
        let order = shuffledOrder(salt: 0x5EA2C4, limit: limit)
        let nTrain = Int((portion * Double(order.count)).rounded(.down))
        return (subset(Array(order[0..<nTrain])), subset(Array(order[nTrain...])))
    }

    /// The training phase's images: with a separate `test` set, the (limited) training images;
    /// without one, a fixed tenth of the (limited) images held out as the test set.
    public func trainTestSplit(test: ImageDataset?, limit: Int?) -> (train: ImageDataset, test: ImageDataset, heldOut: Bool) {
        if let test {
            guard let limit, limit < count else { return (self, test, false) }
            return (subset(shuffledOrder(salt: 0x7E57, limit: limit)), test, false)
        }
        let order = shuffledOrder(salt: 0x7E57, limit: limit)
        let held = max(1, order.count / 10)
        return (subset(Array(order[held...])), subset(Array(order[0..<held])), true)
    }
}
