import Foundation
import Kernels

/// What one step of a run gives back to the loop (this rank's shard).
public struct StepResult {
    /// Mean loss over the rank's images.
    public var loss: Double
    /// Correct top-1 predictions among them.
    public var correct: Int
    /// The architecture's validation loss (search methods), if the step took an architecture step.
    public var architectureLoss: Double?
    /// The step stopped after its architecture part because a stop was requested (loss and
    /// correct are then meaningless); it is finished with `StepControl.skipArchitecture` later.
    public var paused = false

    public init(loss: Double, correct: Int, architectureLoss: Double? = nil) {
        self.loss = loss
        self.correct = correct
        self.architectureLoss = architectureLoss
    }

    /// A step stopped between its architecture and its weight part.
    public static func pausedAfterArchitecture(loss: Double?) -> StepResult {
        var r = StepResult(loss: 0, correct: 0, architectureLoss: loss)
        r.paused = true
        return r
    }
}

/// How the loop steers a step that has an architecture part and a weight part.
public struct StepControl {
    /// The architecture part of this step was already done (a run stopped between the parts).
    public var skipArchitecture = false
    /// Asked between the parts (all ranks call it; it communicates): true pauses the step.
    public var shouldPause: () throws -> Bool = { false }
    /// The step's index in its epoch (for randomness that is a function of the step, so a
    /// resumed run draws the same).
    public var step: Int

    public init(skipArchitecture: Bool = false, step: Int = 0, shouldPause: @escaping () throws -> Bool = { false }) {
        self.skipArchitecture = skipArchitecture
        self.step = step
        self.shouldPause = shouldPause
    }
}

/// This rank's shards of one step's batches.
public struct StepBatches {
    public var train: Batch
    /// A validation batch, for tasks that ask for one (architecture steps).
    public var validation: Batch?
}

/// An epoch's training figures, summed over ranks.
public struct EpochSummary {
    public var epoch: Int
    public var learningRate: Float
    public var seconds: Double
    public var trainLoss: Double
    public var trainAccuracy: Double
    /// Mean architecture validation loss over the steps that took an architecture step.
    public var architectureLoss: Double?
    public var images: Int
}

/// What a task reports at the end of an epoch: fields for metrics.jsonl and lines for the log.
public struct EpochReport {
    public var fields: [String: JSONValue]
    public var lines: [String]
    /// Why the run ends after this epoch (early stopping); nil continues. The loop writes the
    /// checkpoint, logs the reason, keeps it in the checkpoint (a resumed run stops at once) and
    /// returns `.finished`.
    public var stop: String?

    public init(fields: [String: JSONValue], lines: [String], stop: String? = nil) {
        self.fields = fields
        self.lines = lines
        self.stop = stop
    }
}

/// A training run the epoch loop drives: a search method's supernet (`Searcher`) or an
/// evaluation network (`Trainer`). The task owns the model, its optimisers and one step; the
/// loop owns everything around the steps.
public protocol EpochTask: AnyObject {
    /// The checkpoint kind ("search", "train").
    var kind: String { get }
    /// Whether each step also needs a validation batch.
    var usesValidationBatches: Bool { get }
    /// Called at the start of every epoch (also a resumed one); returns its learning rate.
    func beginEpoch(_ epoch: Int) -> Float
    /// One training step on this rank's shards; gradients are averaged over ranks inside. A step
    /// may pause between an architecture and a weight part (`StepControl`).
    func step(_ batches: StepBatches, epoch: Int, step: Int, learningRate: Float, control: StepControl) throws -> StepResult
    /// The end of an epoch, on every rank (BatchNorm statistics already averaged): evaluation and
    /// the metrics fields. Rank 0 also writes the task's own files here. Long passes call `stop`
    /// with (batches done, batches in all) before each batch — it shows progress and communicates
    /// — and throw `StopRequested` when it says so. The report's first line follows the loop's
    /// "epoch N/M done in X s: ".
    func finishEpoch(_ summary: EpochSummary, writeFiles: Bool, stop: @escaping (Int, Int) throws -> Bool) throws -> EpochReport
    /// What to tell a user whose run diverged (the options that usually cause it).
    var divergenceAdvice: String { get }
    /// The task's state (model, optimisers, histories) into a checkpoint, and back.
    func addState(to file: inout CheckpointFile) throws
    func restoreState(from file: CheckpointFile) throws
    /// Parameters that must be identical on all ranks (weights and architecture parameters).
    var replicatedTensors: [Tensor] { get }
    /// The BatchNorm running statistics (per rank without synchronised BatchNorm).
    var runningStatistics: NamedState { get }
}

/// Where a stopped run stands.
public enum LoopOutcome: Equatable {
    case finished
    case interrupted(signal: Int32)
    /// Stopped with a checkpoint because the time budget would not cover another step.
    case outOfTime
}
