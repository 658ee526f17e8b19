import Distributed
import Kernels

/// One training step of an evaluation network, as the reference `train.py` takes it: forward with
/// drop path and the auxiliary loss (weight `auxiliaryWeight`), backward, gradients averaged over
/// ranks, norm clipping to `gradClip`, the SGD update. `Trainer` runs it every step and
/// `nas-mpi bench train` times it, so the benchmark measures exactly what training does.
public struct EvalTrainingStep {
    public let network: EvalNetwork
    public let optimizer: SGD
    public let averager: GradientAverager
    public var gradClip: Float
    public var auxiliaryWeight: Float
    /// Averages BatchNorm statistics over ranks (synchronised BatchNorm); nil: per-rank statistics.
    public var statisticsReducer: StatisticsReducer?

    public init(network: EvalNetwork, optimizer: SGD, averager: GradientAverager, gradClip: Float, auxiliaryWeight: Float,
                statisticsReducer: StatisticsReducer? = nil) {
        self.network = network
        self.optimizer = optimizer
        self.averager = averager
        self.gradClip = gradClip
        self.auxiliaryWeight = auxiliaryWeight
        self.statisticsReducer = statisticsReducer
    }

    /// Trains on `batch` (images [N, C, H, W]); drop path draws from `dropPath` (nil or probability 0: off).
    /// - Returns: the batch's loss (with the auxiliary term) and its correct top-1 count.
    public func callAsFunction(_ batch: Batch, dropPath: DropPathSampler?) throws -> StepResult {
        let tape = Tape()
        let ctx = ForwardContext(tape: tape, training: true, statisticsReducer: statisticsReducer, dropPath: dropPath)
        let (logits, aux) = try network.forward(Variable(batch.images), ctx)
        var loss = try tape.crossEntropy(logits, labels: batch.labels)
        if let aux, auxiliaryWeight > 0 {
            loss = try tape.add(loss, tape.scale(try tape.crossEntropy(aux, labels: batch.labels), auxiliaryWeight))
        }
        try tape.backward(loss)
        return try optimizer.finishStep(optimizer.parameters, loss: loss, logits: logits, labels: batch.labels, averager: averager,
                                        gradClip: gradClip)
    }
}
