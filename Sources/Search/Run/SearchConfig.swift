import Foundation

/// Everything that defines a search run; written to `config.json` in the run directory and read
/// back on `--resume`.
public struct SearchConfig: Codable, Equatable, Sendable {
    public enum Preset: String, Codable, CaseIterable, Sendable {
        /// DARTS paper settings: C=16, 8 layers, batch 64, 50 epochs.
        case paper
        /// Small settings that finish in minutes on a laptop: C=8, 5 layers, batch 32, 10 epochs.
        case quick
        /// The PC-DARTS paper's CIFAR-10 settings: K=4, batch 256, SGD 0.1 cosine to 0, 50 epochs,
        /// 8 cells, C=16, Adam 6e-4 on alphas and betas, 15 warm-up epochs, first order.
        case pcDarts = "pc-darts"
    }

    /// The search method.
    public var method: SearchMethodKind = .darts
    /// PC-DARTS: 1/K of each edge's channels go through its ops.
    public var partialChannels: Int = 4
    /// Epochs at the start that train the weights only (architecture parameters frozen).
    public var warmupEpochs: Int = 0
    /// β-DARTS beta-decay weight L on the architecture loss, ramped as L * epoch / epochs (nil: off).
    public var betaRegularization: Float?
    /// Weight W of the mean alpha-row entropy on the architecture loss, ramped as W * epoch / epochs;
    /// positive sharpens the op weights (lower entropy), negative flattens them (nil: off).
    public var entropyWeight: Float?
    /// Global norm clip of the architecture gradients (nil: none).
    public var archGradClip: Float?
    /// Norm clip of each edge's alpha-row gradient (nil: none).
    public var archGradClipPerEdge: Float?
    /// Record the dominant eigenvalue of the validation loss's Hessian w.r.t. the alphas every epoch
    /// (nil or false: off).
    public var hessianEigenvalue: Bool?
    /// Rules that end the search early (nil: run every epoch).
    public var earlyStop: [EarlyStopRule]?

    public var preset: Preset
    public var data: DataSource
    public var channels: Int
    public var layers: Int
    public var primitives: [Primitive]
    public var epochs: Int
    /// Images per step (per rank count: see the README).
    public var batchSize: Int
    public var learningRate: Float
    public var learningRateMin: Float
    public var momentum: Float
    public var weightDecay: Float
    public var archLearningRate: Float
    public var archWeightDecay: Float
    public var gradClip: Float
    /// Share of the training set used for weights; the rest is the architecture's validation split.
    public var trainPortion: Double
    /// Architecture gradient order: 1 (first order) or 2 (unrolled, second order).
    public var order: Int
    public var seed: UInt64
    /// Use only the first N training images (nil: all).
    public var trainLimit: Int?
    /// Synchronised BatchNorm: batch statistics over all ranks' shards (default: per rank).
    public var syncBatchNorm: Bool = false
    /// Which supernet cells recompute activations in backward (memory for time).
    public var recompute: RecomputePolicy = .auto
    /// A safetensors file (as `nas-mpi export` writes for a search run) whose weights, and alphas if
    /// present, replace the initial ones.
    public var initWeights: String?
    /// SDARTS-RS: the perturbation bound eps over the epochs (nil: 0.03 to 0.3).
    public var sdartsEpsilon: PerturbationSchedule?
    /// P-DARTS: stages, ops per edge, skip dropout, skip cap (nil: the paper's).
    public var pdarts: PDARTSSettings?
    /// Random search with weight sharing: how the final candidates are scored (nil: the preset's,
    /// `WeightSharingSettings.preset`).
    public var weightSharing: WeightSharingSettings?
    /// Dropout on named ops' outputs in the weight step (nil: none).
    public var opDropout: OpDropoutRates?
    /// The supernet's BatchNorm: running statistics or batch statistics only (nil: running).
    public var bnMode: BatchNormMode?
    /// After the search, reset the supernet's BatchNorm statistics and recompute them as the
    /// cumulative average over this many training batches before the final validation (nil: no).
    public var bnReset: Int?
    /// Progressive channel growth: the supernet's width per epoch, ending at `channels` (nil: C
    /// throughout).
    public var channelSchedule: ChannelSchedule?
    /// Keep the supernet of every epoch: each end-of-epoch checkpoint also goes to
    /// epochs/epoch-NNN.bin (`nas-mpi fidelity` then scores its genotypes on every kept epoch;
    /// nil or false: only checkpoint.bin, the last).
    public var keepEpochWeights: Bool?

    /// The preset's values with the embedded synthetic dataset.
    public static func preset(_ p: Preset) -> SearchConfig {
        switch p {
        case .paper:
            return SearchConfig(preset: p, data: DataSource(kind: .synthetic, imageShape: [3, 32, 32]), channels: 16, layers: 8,
                                primitives: Primitive.darts, epochs: 50, batchSize: 64, learningRate: 0.025,
                                learningRateMin: 0.001, momentum: 0.9, weightDecay: 3e-4, archLearningRate: 3e-4,
                                archWeightDecay: 1e-3, gradClip: 5, trainPortion: 0.5, order: 1, seed: 2, trainLimit: nil)
        case .quick:
            var c = preset(.paper)
            c.preset = .quick
            c.data = DataSource(kind: .synthetic)
            c.channels = 8
            c.layers = 5
            c.epochs = 10
            c.batchSize = 32
            c.archLearningRate = 3e-3
            return c
        case .pcDarts:
            var c = preset(.paper)
            c.preset = .pcDarts
            c.method = .pcDarts
            c.partialChannels = 4
            c.batchSize = 256
            c.learningRate = 0.1
            c.learningRateMin = 0
            c.archLearningRate = 6e-4
            c.warmupEpochs = 15
            return c
        }
    }

    /// Checks values a user can set; messages name the flag.
    public func validate() throws {
        func fail(_ m: String) -> SearchConfigError { SearchConfigError(m) }
        for (flag, v) in [("--learning-rate", Double(learningRate)), ("--learning-rate-min", Double(learningRateMin)),
                          ("--momentum", Double(momentum)), ("--weight-decay", Double(weightDecay)),
                          ("--arch-learning-rate", Double(archLearningRate)), ("--arch-weight-decay", Double(archWeightDecay)),
                          ("--grad-clip", Double(gradClip)), ("--train-portion", trainPortion)] where !v.isFinite {
            throw fail("\(flag) must be a finite number, got \(v)")
        }
        for (flag, v) in [("--beta-regularization", betaRegularization), ("--entropy-weight", entropyWeight),
                          ("--arch-grad-clip", archGradClip), ("--arch-grad-clip-per-edge", archGradClipPerEdge)] {
            if let v, !v.isFinite { throw fail("\(flag) must be a finite number, got \(v)") }
        }
        if let v = betaRegularization, v < 0 {
            throw fail("--beta-regularization must be at least 0 (a negative weight would reward growing alphas), got \(v)")
        }
        for (flag, v) in [("--arch-grad-clip", archGradClip), ("--arch-grad-clip-per-edge", archGradClipPerEdge)] {
            if let v, v <= 0 { throw fail("\(flag) must be a positive norm, got \(v) (leave it out for no clipping)") }
        }
        guard epochs >= 1 else { throw fail("--epochs must be at least 1, got \(epochs)") }
        guard batchSize >= 2 else { throw fail("--batch-size must be at least 2 (BatchNorm needs two images), got \(batchSize)") }
        guard order == 1 || order == 2 else { throw fail("--order must be 1 or 2, got \(order)") }
        guard trainPortion > 0 && trainPortion < 1 else { throw fail("--train-portion must lie strictly between 0 and 1, got \(trainPortion)") }
        guard learningRate > 0, learningRateMin >= 0, learningRateMin <= learningRate else {
            throw fail("learning rates must satisfy 0 <= --learning-rate-min <= --learning-rate, 0 < --learning-rate")
        }
        guard archLearningRate > 0 else { throw fail("--arch-learning-rate must be positive") }
        guard momentum >= 0 && momentum < 1, weightDecay >= 0, archWeightDecay >= 0, gradClip > 0 else {
            throw fail("momentum must lie in [0, 1), weight decays must be >= 0, --grad-clip must be positive")
        }
        if let trainLimit { guard trainLimit >= 4 else { throw fail("--train-limit must be at least 4, got \(trainLimit)") } }
        guard warmupEpochs >= 0 else { throw fail("--warmup-epochs must be at least 0, got \(warmupEpochs)") }
        if warmupEpochs >= epochs {
            throw fail("--warmup-epochs \(warmupEpochs) leaves no epoch for the architecture (--epochs \(epochs))")
        }
        if let e = sdartsEpsilon {
            guard method == .sdarts else { throw fail("--sdarts-epsilon applies to --method sdarts (the method is \(method.rawValue))") }
            guard e.start.isFinite, e.end.isFinite, e.start >= 0, e.end >= 0 else {
                throw fail("--sdarts-epsilon must be two finite numbers >= 0 (start:end), got \(e.start):\(e.end)")
            }
        }
        if let rules = earlyStop {
            for rule in rules {
                switch rule {
                case .skips(let n), .stable(let n):
                    guard n >= 1 else { throw fail("--early-stop \(rule): the count must be at least 1") }
                case .eigenvalue:
                    guard hessianEigenvalue == true else {
                        throw fail("--early-stop eigenvalue needs --hessian-eigenvalue (the rule reads the eigenvalue recorded each epoch)")
                    }
                }
            }
        }
        if pdarts != nil, method != .pdarts {
            throw fail("--stages, --stage-ops, --skip-dropout and --max-skip apply to --method p-darts (the method is \(method.rawValue))")
        }
        if method == .pdarts { try (pdarts ?? .paper).validate(self) }
        if weightSharing != nil, !method.isSinglePath {
            throw fail("--ws-samples, --ws-top, --ws-batches and --ws-bn-batches apply to --method random-ws and enas (the method is \(method.rawValue))")
        }
        if method.isSinglePath {
            try (weightSharing ?? .preset(preset)).validate()
            guard order == 1, earlyStop == nil, hessianEigenvalue != true, warmupEpochs == 0 else {
                throw fail("--method \(method.rawValue) trains no architecture parameters: --order 2, --warmup-epochs, --early-stop and --hessian-eigenvalue do not apply")
            }
        }
        if let o = opDropout {
            guard method != .pcDarts && !method.isSinglePath else {
                throw fail("--op-dropout applies to the methods with full mixed edges (darts, sdarts, darts-minus, p-darts); pc-darts's partial-channel edges and the single-path methods (random-ws, enas) are not supported")
            }
            for name in o.rates.keys where name != "all" && !primitives.contains(where: { $0.name == name }) {
                throw fail("--op-dropout: \(name) is not in the search space (\(primitives.map(\.name).joined(separator: ", ")))")
            }
            if method == .pdarts, o.rates[Primitive.skipConnect.name] != nil {
                throw fail("--op-dropout skip_connect: p-darts schedules the skip connection's dropout itself; set it with --skip-dropout")
            }
        }
        if let n = bnReset {
            guard n >= 1 else { throw fail("--bn-reset must be at least 1 batch, got \(n)") }
            guard bnMode != .batch else {
                throw fail("--bn-reset recomputes running statistics, which --bn-mode batch does not keep; use one of them")
            }
        }
        if let schedule = channelSchedule {
            guard [.darts, .sdarts, .dartsMinus].contains(method) else {
                throw fail("--channel-schedule widens the supernet of darts, sdarts and darts-minus; --method \(method.rawValue) is not supported ("
                           + (method == .pcDarts ? "PC-DARTS's partial channels and channel shuffle would move the old channels, so a widening could not keep the function"
                              : method == .pdarts ? "P-DARTS rebuilds its supernet per stage"
                              : "widening is not implemented for the single-path methods") + ")")
            }
            try schedule.validate(epochs: epochs, channels: channels)
        }
        if method == .pcDarts {
            guard partialChannels >= 1, channels % partialChannels == 0 else {
                throw fail("--partial-channels \(partialChannels) must be at least 1 and divide --channels \(channels)")
            }
        }
    }
}
