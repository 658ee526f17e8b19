import ArgumentParser
import Search

extension DataSource.Kind: ExpressibleByArgument {}
extension CSVDataset.LabelColumn: ExpressibleByArgument {}
extension SearchConfig.Preset: ExpressibleByArgument {}
extension RecomputePolicy: ExpressibleByArgument {
    public init?(argument: String) { self.init(argument) }
    public static var allValueStrings: [String] { ["none", "first", "all", "auto", "N"] }
}
extension SearchMethodKind: ExpressibleByArgument {}
extension BatchNormMode: ExpressibleByArgument {}

/// The supernet's shape, shared by `summary` and `search`.
struct NetworkOptions: ParsableArguments {
    /// Bounds that keep a typo from building a network no machine can hold (the DARTS networks
    /// use 8-20 cells of 16-36 channels).
    static let maxChannels = 1024, maxLayers = 100, maxImageSide = 100_000

    @Option(help: "Initial channels C (paper: 16).") var channels: Int?
    @Option(help: "Cells (paper: 8); reduction cells at layers/3 and 2*layers/3.") var layers: Int?
    @Option(help: "Image shape CxHxW, e.g. 3x32x32 (search: the synthetic or CSV image shape).") var input: String?
    @Option(help: "Classes: of synthetic data; for CSV data, labels must lie below it (default: the largest label + 1).") var classes: Int?
    @Option(help: "Comma-separated primitives restricting the search space (default: all 8 DARTS primitives).") var primitives: String?

    func parsedInput() throws -> [Int]? {
        guard let input else { return nil }
        let parts = input.lowercased().split(separator: "x").map { Int($0) }
        guard parts.count == 3, parts.allSatisfy({ ($0 ?? 0) >= 1 }) else {
            throw ValidationError("--input expects CxHxW with positive integers, e.g. 3x32x32, got '\(input)'")
        }
        guard parts.allSatisfy({ $0! <= Self.maxImageSide }) else {
            throw ValidationError("--input \(input): each size must be at most \(Self.maxImageSide)")
        }
        return parts.map { $0! }
    }

    func parsedPrimitives() throws -> [Primitive]? {
        guard let primitives else { return nil }
        do {
            return try primitives.split(separator: ",").map { try Primitive(name: $0.trimmingCharacters(in: .whitespaces)) }
        } catch {
            throw ValidationError("--primitives: \(error)")
        }
    }

    func validate() throws {
        _ = try parsedInput()
        _ = try parsedPrimitives()
        if let channels, channels < 1 { throw ValidationError("--channels must be at least 1, got \(channels)") }
        if let layers, layers < 1 { throw ValidationError("--layers must be at least 1, got \(layers)") }
        if let classes, classes < 2 { throw ValidationError("--classes must be at least 2, got \(classes)") }
        if let channels, channels > Self.maxChannels { throw ValidationError("--channels must be at most \(Self.maxChannels), got \(channels)") }
        if let layers, layers > Self.maxLayers { throw ValidationError("--layers must be at most \(Self.maxLayers), got \(layers)") }
        if let classes, classes > CSVDataset.maxInferredClasses {
            throw ValidationError("--classes must be at most \(CSVDataset.maxInferredClasses), got \(classes)")
        }
    }
}

/// Where the images come from.
struct DataOptions: ParsableArguments {
    @Option(help: "Dataset: synthetic (embedded default), cifar10, mnist or csv.") var dataset: DataSource.Kind?
    @Option(help: "Data location: the cifar-10-batches-bin or MNIST directory, or the CSV file (stored as an absolute path).") var data: String?
    @Option(help: "CSV: the label column, first or last.") var labelColumn: CSVDataset.LabelColumn?
    @Option(help: "CSV: the value of a white pixel, e.g. 16 for 0-16 data (default: 1 when no value exceeds 1, else 255).") var pixelMax: Float?
    @Option(help: "Synthetic: number of training images.") var syntheticCount: Int?

    func validate() throws {
        if let syntheticCount, syntheticCount < 4 { throw ValidationError("--synthetic-count must be at least 4, got \(syntheticCount)") }
        if let pixelMax, !(pixelMax > 0 && pixelMax.isFinite) { throw ValidationError("--pixel-max must be positive, got \(pixelMax)") }
    }

    /// Checks that the data flags fit together with the network's --input and --classes.
    func validate(with network: NetworkOptions) throws {
        let kind = dataset ?? .synthetic
        if kind == .cifar10 || kind == .mnist {
            if network.input != nil { throw ValidationError("--input applies to --dataset synthetic or csv; \(kind.rawValue) images have a fixed shape") }
            if network.classes != nil { throw ValidationError("--classes applies to --dataset synthetic; \(kind.rawValue) has 10 classes") }
        }
        if kind == .csv, network.input == nil { throw ValidationError("--dataset csv needs --input CxHxW, the image shape of a row") }
        if kind != .synthetic, data == nil { throw ValidationError("--dataset \(kind.rawValue) needs --data PATH") }
        if kind != .synthetic, syntheticCount != nil { throw ValidationError("--synthetic-count applies to --dataset synthetic") }
        if kind != .csv, pixelMax != nil { throw ValidationError("--pixel-max applies to --dataset csv") }
    }

    /// The preset's data source with these flags (and --input, --classes) applied.
    func source(_ preset: DataSource, network: NetworkOptions) throws -> DataSource {
        var d = preset
        let kind = dataset ?? .synthetic
        if kind != .synthetic {
            d = DataSource(kind: kind, path: data.map(DataSource.absolute), imageShape: try network.parsedInput())
        } else if let shape = try network.parsedInput() {
            d.imageShape = shape
        }
        if let v = labelColumn { d.labelColumn = v }
        if let v = syntheticCount { d.syntheticCount = v }
        if let v = network.classes { d.syntheticClasses = v }
        if kind == .csv { (d.classes, d.pixelMax) = (network.classes, pixelMax) }
        return d
    }
}

/// A separate test set for `train` and `evaluate`.
struct TestDataOptions: ParsableArguments {
    @Option(help: "CSV: a test file in the format of --data (default: a fixed tenth of --data is held out, which a search on the same file has seen).")
    var testData: String?

    /// `source` with the test file (absolute) set.
    func apply(to source: DataSource) throws -> DataSource {
        guard let testData else { return source }
        guard source.kind == .csv else { throw ValidationError("--test-data applies to --dataset csv; \(source.kind.rawValue) data brings its own test split") }
        var d = source
        d.testPath = DataSource.absolute(testData)
        return d
    }
}
