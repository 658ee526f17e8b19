import Distributed
import Foundation
import Kernels

/// What the search and the evaluation-phase trainer share: checkpointing named state, averaging
/// BatchNorm statistics over ranks, sharded evaluation, cost accounting.
extension NamedState {
    /// Adds parameters and BatchNorm buffers (`.running_mean`, `.running_var`,
    /// `.num_batches_tracked`) under their state-dict names.
    public func add(to file: inout CheckpointFile) {
        for (name, v) in parameters { file.add(name, v.value) }
        for (name, s) in statistics {
            file.add(name + ".running_mean", s.runningMean)
            file.add(name + ".running_var", s.runningVar)
            file.add(name + ".num_batches_tracked", Tensor(shape: [], repeating: Float(s.batchesTracked)))
        }
    }

    /// Restores parameters and buffers; a missing name or a shape mismatch (a checkpoint of
    /// another architecture) is an error naming the tensor.
    public func restore(from file: CheckpointFile) throws {
        for (name, v) in parameters { v.value = try file.tensor(name, shape: v.shape) }
        for (name, s) in statistics {
            s.runningMean = try file.tensor(name + ".running_mean", shape: s.runningMean.shape)
            s.runningVar = try file.tensor(name + ".running_var", shape: s.runningVar.shape)
            s.batchesTracked = Int(try file.tensor(name + ".num_batches_tracked", shape: []).scalars[0])
        }
    }

    /// Averages the BatchNorm running statistics over ranks (with per-rank batch statistics each
    /// rank tracked its own shards), so that evaluation and checkpoints see one set.
    public func averageRunningStatistics(_ comm: Communicator) throws {
        guard comm.size > 1 else { return }
        let stats = statistics.map(\.statistics)
        var flat: [Float] = []
        for s in stats { flat += s.runningMean.scalars; flat += s.runningVar.scalars }
        try comm.allreduceMean(&flat)
        var o = 0
        for s in stats {
            let c = s.channels
            s.runningMean.scalars = Array(flat[o..<(o + c)])
            s.runningVar.scalars = Array(flat[(o + c)..<(o + 2 * c)])
            o += 2 * c
        }
    }
}

/// Mean loss and top-1 accuracy of `logits` over a dataset, without augmentation; the images are
/// split over the ranks (rank r takes r, r + size, ...) and the sums allreduced.
///
/// - Parameter stop: called before every batch round with (rounds done, rounds in all) — every
///   rank runs the same number of rounds, so it may communicate and report progress; returning
///   true abandons the pass by throwing `StopRequested`.
public func evaluate(_ data: ImageDataset, batchSize: Int, comm: Communicator, stop: ((Int, Int) throws -> Bool)? = nil,
                     logits: (Batch) throws -> Variable) throws -> (loss: Double, accuracy: Double) {
    var sums = [0.0, 0.0]
    var g = RandomGenerator(seed: 0)
    let mine = Array(stride(from: comm.rank, to: data.count, by: comm.size))
    let perRank = (data.count + comm.size - 1) / comm.size
    let rounds = (perRank + batchSize - 1) / batchSize
    for round in 0..<rounds {
        if let stop, try stop(round, rounds) { throw StopRequested() }
        let start = round * batchSize
        guard start < mine.count else { continue }
        let idx = Array(mine[start..<min(start + batchSize, mine.count)])
        let batch = data.batch(idx, augment: false, generator: &g)
        let out = try logits(batch)
        let loss = try Tape(recording: false).crossEntropy(Variable(out.value), labels: batch.labels)
        sums[0] += Double(loss.value.scalars[0]) * Double(idx.count)
        sums[1] += Double(correctCount(logits: out.value, labels: batch.labels))
    }
    if comm.size > 1 { try comm.allreduceSum(&sums) }
    return (sums[0] / Double(max(data.count, 1)), sums[1] / Double(max(data.count, 1)))
}

/// Thrown when a pass is abandoned because a stop (a signal) was requested.
public struct StopRequested: Error {}

/// A run that produced a non-finite loss or gradient. A task throws it with what went wrong; the
/// loop throws one that adds where, the likely causes and the checkpoint kept ("the run diverged:
/// ..."), so a caller can tell a diverged run from other errors (a candidate that failed).
public struct DivergenceError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension SGD {
    /// The end of every weight step (evaluation network and supernet): `parameters`' gradients
    /// averaged over ranks and clipped to norm `gradClip`, a `DivergenceError` on a non-finite
    /// loss or gradient (before anything changes), then the SGD step and cleared gradients.
    /// - Parameter gradient: how the error names the gradient ("gradient", "weight gradient").
    func finishStep(_ parameters: [Variable], loss: Variable, logits: Variable, labels: [Int], averager: GradientAverager,
                    gradClip: Float, gradient: String = "gradient") throws -> StepResult {
        try averager.average(parameters)
        let norm = clipGradientNorm(parameters, maxNorm: gradClip)
        let value = loss.value.scalars[0]
        guard norm.isFinite, value.isFinite else {
            throw DivergenceError("the training loss is \(value) and the \(gradient)'s norm \(norm)")
        }
        step()
        zeroGrad()
        return StepResult(loss: Double(value), correct: correctCount(logits: logits.value, labels: labels))
    }
}

/// A stream id for (kind, epoch, index): counter-based randomness.
func streamID(_ kind: RandomStream, _ epoch: Int, _ index: Int) -> UInt64 {
    kind.rawValue << 48 | UInt64(epoch & 0xFFFFFF) << 24 | UInt64(index & 0xFFFFFF)
}

/// A duration as "1h02m", "3m05s" or "7s".
func formatDuration(_ s: Double) -> String {
    guard s.isFinite else { return "?" }
    let t = Int(s.rounded())
    return t >= 3600 ? "\(t / 3600)h\(String(format: "%02d", t / 60 % 60))m" : t >= 60 ? "\(t / 60)m\(String(format: "%02d", t % 60))s" : "\(t)s"
}

/// Starts a run on every rank: rank 0 reads the checkpoint (resume) or creates the run directory
/// and writes the configuration (new run); then rank 0's state goes to all ranks, so every rank
/// starts from identical weights. With one rank and a new run nothing needs sending.
///
/// - Parameters:
///   - prepare: on rank 0 of a new run, before the directory exists (checks that may fail).
///   - makeState: the current state as a checkpoint (rank 0, new run, several ranks).
///   - apply: restores a state on every rank.
func startRun<C: Encodable>(_ comm: Communicator, directory: RunDirectory, resume: Bool, config: C,
                            prepare: () throws -> Void = {}, makeState: () throws -> CheckpointFile,
                            apply: (CheckpointFile) throws -> Void, log: (String) -> Void = { _ in }) throws {
    var state: [UInt8] = []
    // [has a checkpoint to restore]: a run that died before its first checkpoint is resumed by
    // starting its saved configuration from the beginning.
    var restore: [Float] = [0]
    if comm.rank == 0 {
        let stale = directory.removeStaleTemporaries()
        if !stale.isEmpty { log("removed temporary files left by a killed run: \(stale.joined(separator: ", "))") }
        if resume, let data = FileManager.default.contents(atPath: directory.checkpoint.path) {
            state = [UInt8](data)
            restore[0] = 1
        } else {
            try prepare()
            if resume {
                log("\(directory.url.path) holds the configuration but no checkpoint yet (the run stopped before its first one): starting it from the beginning")
            } else {
                try directory.create()
            }
            try directory.writeJSON(config, to: directory.config)
            if comm.size > 1 { state = [UInt8](try makeState().encoded()) }
        }
    }
    if comm.size > 1 { try comm.broadcast(&restore, root: 0) }
    if restore[0] > 0 || comm.size > 1 {
        try comm.broadcast(bytes: &state)
        try apply(try CheckpointFile(data: Data(state), path: directory.checkpoint.path))
    }
}

extension SGD {
    /// Adds the momentum buffers that exist, named `optimizer.momentum_buffer.<parameter name>`.
    func addMomentum(to file: inout CheckpointFile, names: [String]) {
        for (name, buffer) in zip(names, momentumBuffers) {
            if let buffer { file.add("optimizer.momentum_buffer." + name, buffer) }
        }
    }

    /// Restores the momentum buffers a checkpoint holds.
    func restoreMomentum(from file: CheckpointFile, names: [String]) throws {
        for (i, (name, p)) in zip(names, parameters).enumerated() where file.contains("optimizer.momentum_buffer." + name) {
            momentumBuffers[i] = try file.tensor("optimizer.momentum_buffer." + name, shape: p.shape)
        }
    }
}
