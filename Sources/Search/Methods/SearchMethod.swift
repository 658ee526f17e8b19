import Distributed
import Kernels

/// A weight-sharing search method: it builds its supernet (choosing the mixed edge and the
/// architecture parameters), owns one search step given a training and a validation batch and
/// the learning rate, decides its warm-up, keeps its named state for checkpoints, and derives the
/// genotype. The epoch loop, data, checkpoints and logs are the same for every method
/// (`Searcher`, `EpochLoop`), so a new method is one new file here and a case in `SearchMethodKind`.
public protocol SearchMethod: AnyObject {
    /// The supernet (weights, BatchNorm buffers, named architecture parameters).
    var network: SearchNetwork { get }
    /// The optimisers and gradient plumbing of the supernet.
    var training: SupernetTraining { get }
    /// One step: (unless warming up) an architecture step on `validation`, then a weight step on
    /// `train`, gradients averaged over ranks; it may pause between the two (`control`). The
    /// default is the DARTS step.
    func step(train: Batch, validation: Batch, epoch: Int, learningRate: Float, control: StepControl) throws -> StepResult
    /// Second-order (unrolled) architecture gradients.
    var secondOrder: Bool { get }
    /// Whether epoch `epoch` trains the weights only (architecture parameters frozen).
    func isWarmUp(epoch: Int) -> Bool
    /// The weight learning rate of epoch `epoch`, for methods with their own schedule (P-DARTS
    /// restarts it each stage); nil (the default): the run's cosine schedule.
    func learningRate(epoch: Int) -> Float?
    /// How the genotype is read off the architecture parameters.
    var derivation: DerivationPolicy { get }
    /// The genotype the supernet stands for now (after each epoch's evaluation); the default
    /// derives it from the architecture parameters under `derivation`.
    func genotype() throws -> Genotype
    /// The genotype the search returns once its epochs are done, called on every rank (it may
    /// communicate); the default is `genotype()`. A method that picks its architecture by
    /// scoring candidates on the trained supernet (random search with weight sharing) does it
    /// here.
    func finalGenotype(_ end: SearchEnd) throws -> Genotype
    /// Adds the method's state to a checkpoint (default: `training`'s) and restores it.
    func addState(to file: inout CheckpointFile)
    func restoreState(from file: CheckpointFile) throws
    /// Restores what evaluating the supernet needs from a checkpoint or an exported file: weights,
    /// BatchNorm buffers and architecture parameters by name (the default), and any setting of
    /// the method's forward pass the file records (DARTS-: beta).
    func restoreForEvaluation(from file: CheckpointFile) throws
}

extension SearchMethod {
    /// The DARTS step: the architecture step (skipped during warm-up), then the weight step.
    public func step(train: Batch, validation: Batch, epoch: Int, learningRate: Float,
                     control: StepControl = StepControl()) throws -> StepResult {
        try dartsStep(train: train, validation: validation, epoch: epoch, learningRate: learningRate, control: control)
    }

    /// The DARTS step with the weight step run through `aroundWeightStep` (given the plain weight
    /// step; default: run it), for methods that change only what the weight step sees. The weight
    /// step has `--op-dropout` on (`SupernetTraining.withOpDropout`); the architecture step never.
    /// First, `--channel-schedule` widens the supernet if the epoch starts a wider stage.
    public func dartsStep(train: Batch, validation: Batch, epoch: Int, learningRate: Float, control: StepControl,
                          aroundWeightStep: (() throws -> StepResult) throws -> StepResult = { try $0() }) throws -> StepResult {
        try training.followChannelSchedule(epoch: epoch)
        var archLoss: Double?
        if !isWarmUp(epoch: epoch) && !control.skipArchitecture {
            archLoss = Double(try training.architectureStep(train: train, validation: validation, learningRate: learningRate,
                                                            secondOrder: secondOrder))
            if try control.shouldPause() { return .pausedAfterArchitecture(loss: archLoss) }
        }
        var result = try aroundWeightStep {
            try training.withOpDropout(epoch: epoch, step: control.step) { try training.weightStep(train, learningRate: learningRate) }
        }
        result.architectureLoss = archLoss
        return result
    }

    public func learningRate(epoch: Int) -> Float? { nil }

    /// The genotype under the method's derivation policy.
    public func genotype() throws -> Genotype { try network.genotype(derivation) }

    public func finalGenotype(_ end: SearchEnd) throws -> Genotype { try genotype() }

    /// The method's state: weights, BatchNorm buffers, architecture parameters and optimiser
    /// state, all by name.
    public func addState(to file: inout CheckpointFile) { training.addState(to: &file) }
    public func restoreState(from file: CheckpointFile) throws { try training.restoreState(from: file) }
    public func restoreForEvaluation(from file: CheckpointFile) throws {
        try training.restoreWidth(from: file)
        try network.state.restore(from: file)
        for v in network.architecture { v.value = try file.tensor(v.name, shape: v.shape) }
    }
}

/// What a method may use at the end of a search (`SearchMethod.finalGenotype`): the data, the
/// ranks and the run directory.
public struct SearchEnd {
    /// The training half (BatchNorm recalibration) and the validation half (scoring).
    public var trainSet: ImageDataset
    public var validationSet: ImageDataset
    /// The global batch: each rank takes batchSize / ranks images of it.
    public var batchSize: Int
    public var comm: Communicator
    public var directory: RunDirectory
    /// A line for the log (written by rank 0 only).
    public var log: (String) -> Void

    public init(trainSet: ImageDataset, validationSet: ImageDataset, batchSize: Int, comm: Communicator,
                directory: RunDirectory, log: @escaping (String) -> Void) {
        self.trainSet = trainSet
        self.validationSet = validationSet
        self.batchSize = batchSize
        self.comm = comm
        self.directory = directory
        self.log = log
    }
}

/// The search methods `nas-mpi search --method` knows.
public enum SearchMethodKind: String, Codable, CaseIterable, Sendable {
    /// DARTS (Liu et al. 2019), first or second order (`--order`).
    case darts
    /// PC-DARTS (Xu et al. 2020): partial channels, edge normalisation, warm-up.
    case pcDarts = "pc-darts"
    /// DARTS- (Chu et al. 2021): an auxiliary skip connection on every edge, decaying to 0.
    case dartsMinus = "darts-minus"
    /// SDARTS-RS (Chen & Hsieh 2020): random smoothing of the op weights in the weight step.
    case sdarts
    /// P-DARTS (Chen et al. 2019): stages of deeper supernets over fewer ops, skip dropout.
    case pdarts = "p-darts"
    /// Random search with weight sharing (Li & Talwalkar 2019): one uniformly sampled
    /// architecture trained per step, candidates scored on the supernet at the end.
    case randomWS = "random-ws"
    /// ENAS (Pham et al. 2018): an LSTM controller samples the architecture each step trains and
    /// learns by REINFORCE from the supernet's validation accuracy of its samples.
    case enas

    /// Whether the method trains one sampled architecture per step (no architecture parameters).
    public var isSinglePath: Bool { self == .randomWS || self == .enas }

    /// Builds the method for a configuration and a data shape.
    public func make(_ config: SearchConfig, inputShape: [Int], classes: Int, averager: GradientAverager) throws -> SearchMethod {
        switch self {
        case .darts: return try DARTS(config, inputShape: inputShape, classes: classes, averager: averager)
        case .pcDarts: return try PCDARTS(config, inputShape: inputShape, classes: classes, averager: averager)
        case .dartsMinus: return try DARTSMinus(config, inputShape: inputShape, classes: classes, averager: averager)
        case .sdarts: return try SDARTS(config, inputShape: inputShape, classes: classes, averager: averager)
        case .pdarts: return try PDARTS(config, inputShape: inputShape, classes: classes, averager: averager)
        case .randomWS: return try RandomWeightSharing(config, inputShape: inputShape, classes: classes, averager: averager)
        case .enas:
            return try RandomWeightSharing(config, inputShape: inputShape, classes: classes, averager: averager,
                                           sampler: try ControllerSampler(seed: config.seed))
        }
    }
}
