import Foundation
import Kernels

/// Everything that defines an evaluation-phase training run (`nas-mpi train`); written to
/// `config.json` in the run directory.
public struct TrainConfig: Codable, Equatable, Sendable {
    public enum Preset: String, Codable, CaseIterable, Sendable {
        /// The DARTS evaluation protocol: C=36, 20 layers, batch 96, 600 epochs, auxiliary 0.4,
        /// drop path 0.2, cutout 16.
        case paper
        /// C=16, 8 layers, batch 32, 10 epochs, no auxiliary head, no cutout.
        case quick
    }

    public var preset: Preset
    /// Where the genotype came from (a built-in name or a file) and the genotype itself.
    public var genotypeSource: String
    public var genotype: Genotype
    public var data: DataSource
    public var channels: Int
    public var layers: Int
    public var epochs: Int
    /// The global batch (split over ranks).
    public var batchSize: Int
    public var learningRate: Float
    public var learningRateMin: Float
    public var momentum: Float
    public var weightDecay: Float
    public var gradClip: Float
    public var auxiliary: Bool
    public var auxiliaryWeight: Float
    /// Final drop-path probability; epoch e uses dropPath * e / epochs.
    public var dropPath: Float
    /// Cutout side in pixels (0: none).
    public var cutout: Int
    public var seed: UInt64
    public var trainLimit: Int?
    public var syncBatchNorm: Bool = false
    /// The share of the (limited) training images held out as a validation set (0 < F < 1), cut
    /// by the search's fixed split (`searchSplit(portion: 1 - F)`: F = 0.5 gives the search's two
    /// halves). With it, every epoch is validated, best.bin is the best validation accuracy and
    /// the test set is evaluated once, at the end, on best.bin. nil: no validation set.
    public var validationSplit: Double? = nil
    /// Whether the test set is evaluated at all (candidate training in a search never looks at it).
    public var evaluateTest: Bool = true
    /// Which cells recompute their activations in backward (`--recompute`; default none).
    public var recompute: RecomputePolicy = .none

    public static func preset(_ p: Preset, genotype: Genotype, source: String) -> TrainConfig {
        switch p {
        case .paper:
            return TrainConfig(preset: p, genotypeSource: source, genotype: genotype,
                               data: DataSource(kind: .synthetic, imageShape: [3, 32, 32]), channels: 36, layers: 20,
                               epochs: 600, batchSize: 96, learningRate: 0.025, learningRateMin: 0, momentum: 0.9,
                               weightDecay: 3e-4, gradClip: 5, auxiliary: true, auxiliaryWeight: 0.4, dropPath: 0.2,
                               cutout: 16, seed: 0, trainLimit: nil)
        case .quick:
            var c = preset(.paper, genotype: genotype, source: source)
            c.preset = .quick
            c.data = DataSource(kind: .synthetic)
            c.channels = 16
            c.layers = 8
            c.epochs = 10
            c.batchSize = 32
            c.auxiliary = false
            c.cutout = 0
            return c
        }
    }

    public func validate() throws {
        func fail(_ m: String) -> SearchConfigError { SearchConfigError(m) }
        for (flag, v) in [("--learning-rate", learningRate), ("--learning-rate-min", learningRateMin), ("--momentum", momentum),
                          ("--weight-decay", weightDecay), ("--grad-clip", gradClip), ("--auxiliary-weight", auxiliaryWeight),
                          ("--drop-path", dropPath)] where !v.isFinite {
            throw fail("\(flag) must be a finite number, got \(v)")
        }
        guard epochs >= 1 else { throw fail("--epochs must be at least 1, got \(epochs)") }
        guard batchSize >= 2 else { throw fail("--batch-size must be at least 2, got \(batchSize)") }
        guard learningRate > 0, learningRateMin >= 0, learningRateMin <= learningRate else {
            throw fail("learning rates must satisfy 0 <= --learning-rate-min <= --learning-rate, 0 < --learning-rate")
        }
        guard momentum >= 0 && momentum < 1, weightDecay >= 0, gradClip > 0 else {
            throw fail("momentum must lie in [0, 1), --weight-decay must be >= 0, --grad-clip must be positive")
        }
        guard dropPath >= 0 && dropPath < 1 else { throw fail("--drop-path must lie in [0, 1), got \(dropPath)") }
        guard auxiliaryWeight >= 0 else { throw fail("--auxiliary-weight must be >= 0") }
        guard cutout >= 0 else { throw fail("--cutout must be >= 0") }
        if let f = validationSplit, !(f > 0 && f < 1) {
            throw fail("--validation-split must lie strictly between 0 and 1 (the share of the training images held out), got \(f)")
        }
        try genotype.validate()
    }
}

/// The images of a training run.
public struct TrainData {
    /// The images the weights are trained on.
    public var train: ImageDataset
    /// The held-out validation images (with `TrainConfig.validationSplit`).
    public var validation: ImageDataset?
    /// The test images; nil when a validation split is asked for and the data has no test split
    /// (pass --test-data), or when the test set is not evaluated.
    public var test: ImageDataset?
    /// The test images are a held-out tenth of the training file (data without a test split).
    public var heldOut: Bool
}

extension TrainConfig {
    /// The training, validation and test images. Without a validation split: the (limited)
    /// training images, and the data's test split (or --test-data), or, when it has none (CSV), a
    /// fixed tenth of the (limited) training images held out as the test set. With a validation
    /// split F: the search's fixed split of the (limited) training images into 1 - F for training
    /// and F for validation, and the data's test split (none when it has none: a held-out tenth
    /// would overlap the validation images).
    public func loadData() throws -> TrainData {
        let split = try data.load()
        var parts: TrainData
        if let f = validationSplit {
            let (train, validation) = split.train.searchSplit(portion: 1 - f, limit: trainLimit)
            guard train.count > 0, validation.count > 0 else {
                throw SearchConfigError("--validation-split \(f) of \(train.count + validation.count) training images leaves \(train.count == 0 ? "no training" : "no validation") images")
            }
            parts = TrainData(train: train, validation: validation, test: split.test, heldOut: false)
        } else {
            let p = split.train.trainTestSplit(test: split.test, limit: trainLimit)
            parts = TrainData(train: p.train, validation: nil, test: p.test, heldOut: p.heldOut)
        }
        if !evaluateTest { parts.test = nil }
        parts.train.cutout = cutout
        parts.validation?.cutout = 0
        parts.test?.cutout = 0
        return parts
    }

    /// The network this configuration trains, for the given data shape.
    public func networkConfig(inputShape: [Int], classes: Int) -> EvalNetworkConfig {
        EvalNetworkConfig(channels: channels, layers: layers, inputShape: inputShape, classes: classes, auxiliary: auxiliary)
    }
}

extension TrainConfig {
    /// Decodes config.json, also one written before `validationSplit`, `evaluateTest`,
    /// `syncBatchNorm` and `recompute` existed (their defaults then apply).
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        preset = try c.decode(Preset.self, forKey: .preset)
        genotypeSource = try c.decode(String.self, forKey: .genotypeSource)
        genotype = try c.decode(Genotype.self, forKey: .genotype)
        data = try c.decode(DataSource.self, forKey: .data)
        channels = try c.decode(Int.self, forKey: .channels)
        layers = try c.decode(Int.self, forKey: .layers)
        epochs = try c.decode(Int.self, forKey: .epochs)
        batchSize = try c.decode(Int.self, forKey: .batchSize)
        learningRate = try c.decode(Float.self, forKey: .learningRate)
        learningRateMin = try c.decode(Float.self, forKey: .learningRateMin)
        momentum = try c.decode(Float.self, forKey: .momentum)
        weightDecay = try c.decode(Float.self, forKey: .weightDecay)
        gradClip = try c.decode(Float.self, forKey: .gradClip)
        auxiliary = try c.decode(Bool.self, forKey: .auxiliary)
        auxiliaryWeight = try c.decode(Float.self, forKey: .auxiliaryWeight)
        dropPath = try c.decode(Float.self, forKey: .dropPath)
        cutout = try c.decode(Int.self, forKey: .cutout)
        seed = try c.decode(UInt64.self, forKey: .seed)
        trainLimit = try c.decodeIfPresent(Int.self, forKey: .trainLimit)
        syncBatchNorm = try c.decodeIfPresent(Bool.self, forKey: .syncBatchNorm) ?? false
        validationSplit = try c.decodeIfPresent(Double.self, forKey: .validationSplit)
        evaluateTest = try c.decodeIfPresent(Bool.self, forKey: .evaluateTest) ?? true
        recompute = try c.decodeIfPresent(RecomputePolicy.self, forKey: .recompute) ?? .none
    }
}
