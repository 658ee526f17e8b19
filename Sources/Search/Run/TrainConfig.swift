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
        try genotype.validate()
    }
}

extension TrainConfig {
    /// The training images and the test images: the data's test split (or --test-data), or, when
    /// it has none (CSV), a fixed tenth of the (limited) training images held out.
    public func loadData() throws -> (train: ImageDataset, test: ImageDataset, heldOut: Bool) {
        let split = try data.load()
        let parts = split.train.trainTestSplit(test: split.test, limit: trainLimit)
        var (train, test) = (parts.train, parts.test)
        train.cutout = cutout
        test.cutout = 0
        return (train, test, parts.heldOut)
    }

    /// The network this configuration trains, for the given data shape.
    public func networkConfig(inputShape: [Int], classes: Int) -> EvalNetworkConfig {
        EvalNetworkConfig(channels: channels, layers: layers, inputShape: inputShape, classes: classes, auxiliary: auxiliary)
    }
}
