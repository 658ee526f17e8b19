import Foundation

/// Where a command's images come from; chosen on the command line with `--dataset` and `--data`.
public struct DataSource: Codable, Equatable, Sendable {
    public enum Kind: String, Codable, CaseIterable, Sendable { case synthetic, cifar10, mnist, csv }

    public var kind: Kind
    /// Directory (cifar10, mnist) or file (csv).
    public var path: String?
    /// csv: image shape; synthetic: generated shape.
    public var imageShape: [Int]?
    public var labelColumn: CSVDataset.LabelColumn = .last
    /// synthetic: images in the training set (and a fifth as many test images), classes.
    public var syntheticCount: Int = 1200
    public var syntheticClasses: Int = 10
    /// synthetic: generator seed (fixed, independent of the run seed, so every run sees one dataset).
    public var syntheticSeed: UInt64 = 20190101

    public init(kind: Kind, path: String? = nil, imageShape: [Int]? = nil) {
        self.kind = kind
        self.path = path
        self.imageShape = imageShape
    }

    /// Loads the data; errors name the file and what is wrong with it.
    public func load() throws -> DataSplit {
        switch kind {
        case .synthetic:
            let shape = imageShape ?? [3, 16, 16]
            let train = try SyntheticDataset.make(count: syntheticCount, imageShape: shape, classes: syntheticClasses,
                                                  seed: syntheticSeed, name: "synthetic-train")
            var test = try SyntheticDataset.make(count: max(syntheticClasses, syntheticCount / 5), imageShape: shape,
                                                 classes: syntheticClasses, seed: syntheticSeed &+ 1, name: "synthetic-test")
            (test.mean, test.std) = (train.mean, train.std)
            return DataSplit(train: train, test: test)
        case .cifar10:
            return try CIFAR10.load(directory: try requirePath())
        case .mnist:
            return try MNIST.load(directory: try requirePath())
        case .csv:
            guard let shape = imageShape else { throw DataError("--dataset csv needs --image-shape CxHxW") }
            return DataSplit(train: try CSVDataset.load(path: try requirePath(), imageShape: shape, labelColumn: labelColumn), test: nil)
        }
    }

    private func requirePath() throws -> String {
        guard let path, !path.isEmpty else { throw DataError("--dataset \(kind.rawValue) needs --data PATH") }
        return path
    }
}
