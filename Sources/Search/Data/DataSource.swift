import Foundation

/// Where a command's images come from; chosen on the command line with `--dataset` and `--data`.
public struct DataSource: Codable, Equatable, Sendable {
    public enum Kind: String, Codable, CaseIterable, Sendable { case synthetic, cifar10, mnist, csv }

    public var kind: Kind
    /// Directory (cifar10, mnist) or file (csv); absolute when set from the command line, so
    /// a run's config.json works from any directory.
    public var path: String?
    /// csv: a separate test file in the same format (nil: the test set is held out of `path`).
    public var testPath: String?
    /// csv: image shape; synthetic: generated shape.
    public var imageShape: [Int]?
    public var labelColumn: CSVDataset.LabelColumn = .last
    /// csv: the value of a white pixel (nil: 1 when no value exceeds 1, else 255).
    public var pixelMax: Float?
    /// csv: the number of classes (nil: the largest label + 1).
    public var classes: Int?
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
        if testPath != nil, kind != .csv {
            throw DataError("--test-data applies to --dataset csv; \(kind.rawValue) data brings its own test split")
        }
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
            func read(_ path: String, classes: Int?) throws -> ImageDataset {
                try CSVDataset.load(path: path, imageShape: shape, labelColumn: labelColumn, classes: classes, pixelMax: pixelMax)
            }
            let train = try read(try requirePath(), classes: classes)
            guard let testPath else { return DataSplit(train: train, test: nil) }
            var test = try read(testPath, classes: classes)
            // Both parts get the larger inferred class count, and the training images' normalisation.
            let count = max(train.classes, test.classes)
            test = try test.withClasses(count, mean: train.mean, std: train.std)
            test.notes = []
            return DataSplit(train: try train.withClasses(count, mean: train.mean, std: train.std), test: test)
        }
    }

    /// The image shape before loading (for memory checks; nil when only the files tell).
    public var expectedImageShape: [Int]? {
        switch kind {
        case .synthetic: return imageShape ?? [3, 16, 16]
        case .cifar10: return [3, 32, 32]
        case .mnist: return [1, 28, 28]
        case .csv: return imageShape
        }
    }

    /// Bytes of images generated in memory (synthetic data; files bound the others by their size).
    public var generatedImageBytes: Double {
        guard kind == .synthetic, let shape = expectedImageShape else { return 0 }
        let test = max(syntheticClasses, syntheticCount / 5)
        return Double(syntheticCount + test) * shape.reduce(1.0) { $0 * Double($1) }
    }

    /// `path` made absolute against the current directory.
    public static func absolute(_ path: String) -> String {
        URL(fileURLWithPath: path).standardizedFileURL.path
    }

    private func requirePath() throws -> String {
        guard let path, !path.isEmpty else { throw DataError("--dataset \(kind.rawValue) needs --data PATH") }
        return path
    }
}
