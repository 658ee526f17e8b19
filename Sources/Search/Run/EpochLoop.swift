import Distributed
import Foundation
import Kernels

/// The one epoch loop of search and training (reference `train_search.py` and `train.py` share
/// this shape): per epoch a data order, per step this rank's shard of the global batch (and of a
/// validation batch when the task asks), the task's step, one small allreduce of the step's
/// figures (which also carries the stop flag, so a signal on any rank stops all after the same
/// step), progress and ETA, consistency checks; per epoch the BatchNorm statistics averaged over
/// ranks, the task's evaluation, metrics.jsonl, cost.json and the checkpoint.
///
/// Randomness is counter-based: the data order of epoch e and the augmentation of the sample at
/// position p of the epoch come from generators made from (seed, e, p), so a run resumed from a
/// checkpoint taken at any step repeats exactly what the uninterrupted run would have done.
///
/// Data parallel: `batchSize` is the global batch; rank r takes positions
/// step*batch + r*batch/size ..< + batch/size of the epoch's permutation (the same on all ranks).
public final class EpochLoop {
    public let task: EpochTask
    public let comm: Communicator
    public let directory: RunDirectory
    public let averager: GradientAverager
    public let trainSet: ImageDataset
    public let validationSet: ImageDataset?
    public let epochs: Int
    public let batchSize: Int
    public let seed: UInt64
    public let threads: Int

    public var log: (String) -> Void = { print($0) }
    /// Live progress (a terminal line); nil prints nothing between log lines.
    public var progress: ((String) -> Void)?
    /// Log a plain progress line every this many steps when `progress` is nil (0: never).
    public var logEvery = 0
    /// Compare a checksum of the replicated parameters across ranks every this many steps (0: never).
    public var consistencyInterval = 0
    /// Asked after every step whether to stop (checkpoint and return); by default, whether a
    /// SIGINT or SIGTERM arrived. Ranks agree: any rank asking to stop stops all.
    public var stopRequested: () -> Int32? = { Interrupt.received }
    /// Called on every rank after each training step (after the step's allreduce, before the stop
    /// checks): work that must not wait for the end of an epoch, such as a task farm's controller
    /// serving other groups. An error it throws ends the run.
    public var betweenSteps: () throws -> Void = {}
    /// Stop cleanly, with a checkpoint, before this time (`--time-budget`): the loop stops when
    /// the time left would not cover two of the longest steps so far, an evaluation and a
    /// checkpoint write.
    public var deadline: Date?
    /// Also keep each end-of-epoch checkpoint as epochs/epoch-NNN.bin (`--keep-epoch-weights`):
    /// the same bytes as checkpoint.bin at that moment, written atomically by rank 0.
    public var keepEpochCheckpoints = false
    private var longestStep = 0.0, checkpointSeconds = 0.0
    /// Why the run ended early (a task's `EpochReport.stop`); kept in the checkpoint.
    public private(set) var stopReason: String?

    public private(set) var epoch = 0
    public private(set) var stepInEpoch = 0
    public private(set) var metrics: [JSONValue] = []
    private var epochLoss = 0.0, epochCorrect = 0, epochSeen = 0, epochArchLoss = 0.0, epochArchSeen = 0
    /// A step stopped between its parts: its architecture part is done, with this loss (summed
    /// over ranks; nil during warm-up).
    private var architectureDone = false, pendingArchLoss: Double?
    /// Every rank's BatchNorm statistics before the end-of-epoch averaging (several ranks), kept
    /// for a checkpoint written while the epoch's evaluation is interrupted: gathered at rank 0
    /// (nil elsewhere), so whether they were gathered is `evaluating`, the same on every rank.
    private var preAverageStatistics: Tensor?
    /// Whether the end-of-epoch evaluation is running (its stop questions are being asked).
    public private(set) var evaluating = false
    /// The last end-of-epoch evaluation's duration (for the ETA).
    private var evaluationSeconds = 0.0
    private var previousSeconds = 0.0
    private let startTime = Date()

    public init(task: EpochTask, comm: Communicator, directory: RunDirectory, averager: GradientAverager,
                trainSet: ImageDataset, validationSet: ImageDataset?, epochs: Int, batchSize: Int, seed: UInt64, threads: Int) {
        self.task = task
        self.comm = comm
        self.directory = directory
        self.averager = averager
        self.trainSet = trainSet
        self.validationSet = validationSet
        self.epochs = epochs
        self.batchSize = batchSize
        self.seed = seed
        self.threads = threads
    }

    public var stepsPerEpoch: Int { trainSet.count / batchSize }
    /// Images per rank per step.
    public var localBatch: Int { batchSize / comm.size }

    /// The position in the epoch's permutation where `rank`'s shard of step `step` starts: the
    /// global batch is positions step*batch ..< (step+1)*batch, split into `ranks` contiguous shards.
    public static func shardStart(step: Int, batch: Int, rank: Int, ranks: Int) -> Int {
        step * batch + rank * (batch / ranks)
    }

    /// Runs the remaining epochs. Returns early after writing a checkpoint when a signal arrives:
    /// after a step, between the architecture and the weight part of a step, or during the
    /// evaluation at the end of an epoch.
    public func run() throws -> LoopOutcome {
        let steps = stepsPerEpoch
        let (b, local) = (batchSize, localBatch)
        // A signal during start-up (data loading) stops before the first step.
        if let stopReason {
            record("the run ended early before (\(stopReason)); nothing left to do")
            return .finished
        }
        if try agreeOnStop() { return try stop(at: "before the first step") }
        if let deadline, try agree(Date() >= deadline) { return try outOfTime(deadline) }
        while epoch < epochs {
            let lr = task.beginEpoch(epoch)
            var orderGenerator = RandomGenerator(seed: seed, streamID: streamID(.dataOrder, epoch, 0))
            let trainOrder = orderGenerator.permutation(trainSet.count)
            let valOrder = task.usesValidationBatches ? orderGenerator.permutation(validationSet?.count ?? 0) : []
            let epochStart = Date()
            let firstStep = stepInEpoch
            averager.resetTimer()
            while stepInEpoch < steps {
                let s = stepInEpoch
                // This rank's shard of the global batch; sample p of the epoch augments from stream (e, p).
                let first = Self.shardStart(step: s, batch: b, rank: comm.rank, ranks: comm.size)
                let e = epoch
                let train = trainSet.batch(Array(trainOrder[first..<(first + local)]), augment: true) { k in
                    RandomGenerator(seed: self.seed, streamID: streamID(.augmentation, e, first + k))
                }
                var validation: Batch?
                if task.usesValidationBatches, let validationSet {
                    validation = validationSet.batch((0..<local).map { valOrder[(first + $0) % valOrder.count] }, augment: true) { k in
                        RandomGenerator(seed: self.seed, streamID: streamID(.augmentation, e, (1 << 23) + first + k))
                    }
                }
                let stepStart = Date()
                let control = StepControl(skipArchitecture: architectureDone, step: s, shouldPause: { [unowned self] in try self.agreeOnStop() })
                let result: StepResult
                do {
                    result = try task.step(StepBatches(train: train, validation: validation), epoch: epoch, step: s,
                                           learningRate: lr, control: control)
                } catch let d as DivergenceError {
                    throw diverged("\(d.description) at epoch \(epoch + 1) step \(stepInEpoch + 1)")
                }
                if result.paused {
                    var a = [(result.architectureLoss ?? 0) * Double(local)]
                    if comm.size > 1 { try comm.allreduceSum(&a) }
                    architectureDone = true
                    pendingArchLoss = result.architectureLoss == nil ? nil : a[0]
                    return try stop(at: "between the architecture and the weight step of epoch \(epoch + 1) step \(stepInEpoch + 1)")
                }

                // Loss, architecture loss and correct count summed over ranks, the stop flag and
                // rank 0's verdict on the time budget.
                longestStep = max(longestStep, Date().timeIntervalSince(stepStart))
                var stats: [Double] = [result.loss * Double(local), (result.architectureLoss ?? 0) * Double(local),
                             Double(result.correct), stopRequested().map(Double.init) ?? 0, comm.rank == 0 && budgetSpent ? 1.0 : 0.0]
                if comm.size > 1 { try comm.allreduceSum(&stats) }
                guard stats[0].isFinite else {
                    throw diverged("the training loss is \(stats[0] / Double(b)) at epoch \(epoch + 1) step \(stepInEpoch + 1)")
                }
                if architectureDone {
                    if let pendingArchLoss { epochArchLoss += pendingArchLoss; epochArchSeen += b }
                    architectureDone = false
                    pendingArchLoss = nil
                } else if result.architectureLoss != nil {
                    guard stats[1].isFinite else {
                        throw diverged("the architecture's validation loss is \(stats[1] / Double(b)) at epoch \(epoch + 1) step \(stepInEpoch + 1)")
                    }
                    epochArchLoss += stats[1]
                    epochArchSeen += b
                }
                epochLoss += stats[0]
                epochCorrect += Int(stats[2])
                epochSeen += b
                stepInEpoch += 1

                if consistencyInterval > 0, (epoch * steps + stepInEpoch) % consistencyInterval == 0 {
                    try checkConsistency()
                }
                let elapsed = Date().timeIntervalSince(epochStart)
                let done = stepInEpoch - firstStep
                // Steps left at this epoch's pace, plus an evaluation per epoch left at the last one's.
                let eta = (Double(steps - stepInEpoch) + Double(epochs - epoch - 1) * Double(steps)) * elapsed / Double(done)
                    + Double(epochs - epoch) * evaluationSeconds
                let line = String(format: "epoch %d/%d step %d/%d loss %.4f acc %.1f%% %.1f img/s ETA %@",
                                  epoch + 1, epochs, stepInEpoch, steps, epochLoss / Double(epochSeen),
                                  100 * Double(epochCorrect) / Double(epochSeen), Double(done * b) / max(elapsed, 1e-9), formatDuration(eta))
                if comm.rank == 0 {
                    if let progress { progress(line) } else if logEvery > 0, stepInEpoch % logEvery == 0 || stepInEpoch == steps { record(line) }
                }
                try betweenSteps()
                if stats[3] > 0 { return try stop(at: "at epoch \(epoch + 1) step \(stepInEpoch)") }
                if stats[4] > 0, let deadline { return try outOfTime(deadline) }
            }
            do {
                try finishEpoch(lr: lr, seconds: Date().timeIntervalSince(epochStart))
            } catch is StopRequested {
                return try stop(at: "during the evaluation at the end of epoch \(epoch + 1) (it is redone on resume)")
            } catch let d as DivergenceError {
                throw diverged(d.description)
            }
            if stopReason != nil { return .finished }
        }
        return .finished
    }

    /// Whether any rank was asked to stop (every rank must call it at the same point).
    private func agreeOnStop() throws -> Bool { try agree(stopRequested() != nil) }

    /// Whether `flag` holds on any rank (every rank must call it at the same point).
    private func agree(_ flag: Bool) throws -> Bool {
        var f = [flag ? 1.0 : 0]
        if comm.size > 1 { try comm.allreduceSum(&f) }
        return f[0] > 0
    }

    /// Whether the time left (rank 0's clock) would not cover two of the longest steps, an
    /// evaluation and a checkpoint write, with 5 s to spare.
    private var budgetSpent: Bool {
        guard let deadline else { return false }
        let margin = 2 * longestStep + evaluationSeconds + 2 * checkpointSeconds + 5
        return Date().addingTimeInterval(margin) >= deadline
    }

    /// Writes the checkpoint when the time budget runs out.
    private func outOfTime(_ deadline: Date) throws -> LoopOutcome {
        try writeCheckpoint()
        record("time budget: stopping at epoch \(epoch + 1) step \(stepInEpoch) with a checkpoint, \(formatDuration(deadline.timeIntervalSinceNow)) before the deadline; continue with --resume")
        return .outOfTime
    }

    /// Writes the checkpoint and reports the stop.
    private func stop(at place: String) throws -> LoopOutcome {
        let sig = stopRequested() ?? SIGTERM
        let hasRun = epoch > 0 || stepInEpoch > 0 || architectureDone
        if hasRun || FileManager.default.fileExists(atPath: directory.checkpoint.path) {
            try writeCheckpoint()
            record("received signal \(sig) \(place): checkpoint written; continue with --resume")
            if comm.rank == 0, let written = lastCheckpoint {
                record(String(format: "checkpoint: %.1f MB written in %.0f ms", Double(written.bytes) / 1e6, 1000 * written.seconds))
            }
        } else {
            record("received signal \(sig) \(place): nothing to save yet; --resume starts the run from its configuration")
        }
        return .interrupted(signal: sig)
    }

    /// The error a diverged run ends with: where, what, the likely causes, and the checkpoint kept.
    private func diverged(_ what: String) -> DivergenceError {
        let kept = FileManager.default.fileExists(atPath: directory.checkpoint.path)
            ? "the last good checkpoint (\(directory.checkpoint.path)) is kept"
            : "no checkpoint was written yet"
        return DivergenceError("the run diverged: \(what). \(task.divergenceAdvice) Stopped at once; \(kept).")
    }

    /// Evaluation, metrics and checkpoint at the end of an epoch.
    private func finishEpoch(lr: Float, seconds: Double) throws {
        if comm.size > 1 { preAverageStatistics = try gatherRankStatistics() }
        evaluating = true
        defer { evaluating = false }
        try task.runningStatistics.averageRunningStatistics(comm)
        let summary = EpochSummary(epoch: epoch, learningRate: lr, seconds: seconds,
                                   trainLoss: epochLoss / Double(max(epochSeen, 1)),
                                   trainAccuracy: Double(epochCorrect) / Double(max(epochSeen, 1)),
                                   architectureLoss: epochArchSeen > 0 ? epochArchLoss / Double(epochArchSeen) : nil,
                                   images: epochSeen)
        let evaluationStart = Date()
        var lastShown = evaluationStart
        let report = try task.finishEpoch(summary, writeFiles: comm.rank == 0, stop: { [unowned self] done, total in
            if comm.rank == 0, done > 0, Date().timeIntervalSince(lastShown) >= 2 {
                lastShown = Date()
                let line = "epoch \(epoch + 1)/\(epochs) evaluating: batch \(done)/\(total), \(formatDuration(Date().timeIntervalSince(evaluationStart)))"
                if let progress { progress(line) } else if logEvery > 0 { record(line) }
            }
            return try self.agreeOnStop()
        })
        evaluationSeconds = Date().timeIntervalSince(evaluationStart)
        preAverageStatistics = nil
        var fields = report.fields
        fields["epoch"] = .number(Double(epoch + 1))
        fields["lr"] = .number(Double("\(lr)") ?? Double(lr))
        fields["train_loss"] = .number(summary.trainLoss)
        fields["train_acc"] = .number(summary.trainAccuracy)
        fields["seconds"] = .number(seconds + evaluationSeconds)
        fields["evaluation_seconds"] = .number(evaluationSeconds)
        fields["images_per_second"] = .number(Double(epochSeen) / max(seconds, 1e-9))
        fields["communication_seconds"] = .number(averager.communicationSeconds)
        fields["ranks"] = .number(Double(comm.size))
        metrics.append(.object(fields))
        for (k, line) in report.lines.enumerated() {
            record(k > 0 ? line : String(format: "epoch %d/%d done in %.1f s (evaluation %.1f s): ", epoch + 1, epochs,
                                          seconds + evaluationSeconds, evaluationSeconds) + line)
        }
        if let reason = report.stop {
            stopReason = reason
            record(reason)
        }
        epoch += 1
        stepInEpoch = 0
        epochLoss = 0; epochCorrect = 0; epochSeen = 0; epochArchLoss = 0; epochArchSeen = 0
        if comm.rank == 0 { try directory.writeLines(metrics, to: directory.metrics) }
        try writeCheckpoint(alsoTo: keepEpochCheckpoints ? directory.epochCheckpoint(epoch) : nil)
    }

    // MARK: Consistency

    /// Compares a hash of every rank's replicated parameters with rank 0's.
    /// - Throws: `RunError` naming the rank that diverged.
    public func checkConsistency() throws {
        guard comm.size > 1 else { return }
        let hash = stateHash()
        var verdict: [Float] = [-1]
        if let all = try comm.gather(hash), let first = all.indices.first(where: { all[$0] != all[0] }) {
            verdict[0] = Float(first)
        }
        try comm.broadcast(&verdict, root: 0)
        if verdict[0] >= 0 {
            throw RunError("ranks diverged at epoch \(epoch + 1) step \(stepInEpoch): rank \(Int(verdict[0]))'s weights and architecture parameters differ from rank 0's")
        }
    }

    /// FNV-1a over the bit patterns of the replicated parameters. (BatchNorm running statistics
    /// differ between ranks without --sync-bn; they are averaged before each evaluation.)
    public func stateHash() -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for t in task.replicatedTensors {
            t.scalars.withUnsafeBufferPointer { p in
                for v in p { h = (h ^ UInt64(v.bitPattern)) &* 0x100_0000_01b3 }
            }
        }
        return h
    }

    // MARK: Checkpoints

    /// Starts the run on every rank: a new run writes config.json (rank 0) and sends rank 0's
    /// initial state to all; `resume` restores the checkpoint on all ranks.
    public func start<C: Encodable>(resume: Bool, config: C, prepare: () throws -> Void = {}) throws {
        try startRun(comm, directory: directory, resume: resume, config: config, prepare: prepare,
                     makeState: { try makeCheckpoint(rankStatistics: nil) }, apply: { try apply($0, announce: resume) },
                     log: { [unowned self] in self.record($0) })
    }

    /// Writes the checkpoint (rank 0) and cost.json. Mid-epoch, every rank's own BatchNorm running
    /// statistics go into it too, so that a resumed run continues each rank's statistics exactly.
    /// The size and write time (serialising, writing, fsync, rename) of the last checkpoint.
    private var lastCheckpoint: (bytes: Int, seconds: Double)?

    /// `copy`: a second file the same checkpoint goes to (an epoch's kept weights).
    private func writeCheckpoint(alsoTo copy: URL? = nil) throws {
        let midEpoch = (stepInEpoch > 0 || architectureDone) && comm.size > 1
        // During the evaluation the statistics were gathered before the averaging (rank 0 holds
        // them): gathering again on the other ranks alone would leave them waiting for rank 0.
        let statistics = midEpoch ? try (evaluating ? preAverageStatistics : gatherRankStatistics()) : nil
        guard comm.rank == 0 else { return }
        let start = Date()
        let bytes = try makeCheckpoint(rankStatistics: statistics).encoded()
        try AtomicFile.write(bytes, to: directory.checkpoint)
        if let copy {
            try RunDirectory.makeDirectories(copy.deletingLastPathComponent(), purpose: "folder of the epochs' weights")
            try AtomicFile.write(bytes, to: copy)
        }
        let seconds = Date().timeIntervalSince(start)
        checkpointSeconds = max(checkpointSeconds, seconds)
        lastCheckpoint = (bytes.count, seconds)
        try directory.writeCost(seconds: totalSeconds, ranks: comm.size, threads: threads, epochs: epoch)
    }

    /// The complete state: the loop's counters and sums, and the task's state.
    private func makeCheckpoint(rankStatistics: Tensor?) throws -> CheckpointFile {
        var file = CheckpointFile(metadata: [
            "kind": .string(task.kind),
            "epoch": .number(Double(epoch)),
            "step": .number(Double(stepInEpoch)),
            "seed": .number(Double(seed)),
            "ranks": .number(Double(comm.size)),
            "epoch_loss": .number(epochLoss), "epoch_arch_loss": .number(epochArchLoss),
            "epoch_arch_seen": .number(Double(epochArchSeen)),
            "epoch_correct": .number(Double(epochCorrect)), "epoch_seen": .number(Double(epochSeen)),
            "metrics": .array(metrics),
            "seconds": .number(totalSeconds),
            "architecture_done": .bool(architectureDone),
        ])
        if let pendingArchLoss { file.metadata["pending_arch_loss"] = .number(pendingArchLoss) }
        if let stopReason { file.metadata["stop_reason"] = .string(stopReason) }
        try task.addState(to: &file)
        if let rankStatistics { file.add("loop.rank_batchnorm_statistics", rankStatistics) }
        return file
    }

    /// Restores the loop and the task from a checkpoint.
    private func apply(_ file: CheckpointFile, announce: Bool) throws {
        guard file.metadata["kind"]?.string == task.kind else {
            throw RunError("\(directory.checkpoint.path) is not a \(task.kind) checkpoint")
        }
        try task.restoreState(from: file)
        let m = file.metadata
        epoch = m["epoch"]?.int ?? 0
        stepInEpoch = m["step"]?.int ?? 0
        epochLoss = m["epoch_loss"]?.double ?? 0
        epochArchLoss = m["epoch_arch_loss"]?.double ?? 0
        epochArchSeen = m["epoch_arch_seen"]?.int ?? 0
        epochCorrect = m["epoch_correct"]?.int ?? 0
        epochSeen = m["epoch_seen"]?.int ?? 0
        metrics = m["metrics"]?.array ?? []
        previousSeconds = m["seconds"]?.double ?? 0
        architectureDone = m["architecture_done"] == .bool(true)
        pendingArchLoss = m["pending_arch_loss"]?.double
        stopReason = m["stop_reason"]?.string
        let ranks = m["ranks"]?.int ?? comm.size
        if ranks == comm.size, file.contains("loop.rank_batchnorm_statistics") {
            try restoreRankStatistics(try file.tensor("loop.rank_batchnorm_statistics", shape: [comm.size, statisticsLength]))
        }
        if announce {
            record("resumed from \(directory.checkpoint.path) at epoch \(epoch + 1) step \(stepInEpoch)"
                   + (ranks != comm.size ? " (saved by \(ranks) ranks, continuing on \(comm.size): not bit-identical to an uninterrupted run)" : ""))
        }
    }

    /// Floats per rank in the gathered BatchNorm statistics: means, variances and batch counts.
    private var statisticsLength: Int {
        task.runningStatistics.statistics.reduce(0) { $0 + 2 * $1.statistics.channels + 1 }
    }

    /// Every rank's running statistics, [ranks, statisticsLength] on rank 0 (nil elsewhere).
    private func gatherRankStatistics() throws -> Tensor? {
        var mine: [Float] = []
        mine.reserveCapacity(statisticsLength)
        for (_, s) in task.runningStatistics.statistics {
            mine += s.runningMean.scalars
            mine += s.runningVar.scalars
            mine.append(Float(s.batchesTracked))
        }
        var all = [Float](repeating: 0, count: comm.rank == 0 ? mine.count * comm.size : 0)
        try mine.withUnsafeBytes { src in
            try all.withUnsafeMutableBytes { dst in
                try comm.gather(src, into: comm.rank == 0 ? dst : nil, root: 0)
            }
        }
        return comm.rank == 0 ? try Tensor(shape: [comm.size, mine.count], scalars: all) : nil
    }

    private func restoreRankStatistics(_ t: Tensor) throws {
        var o = comm.rank * statisticsLength
        for (_, s) in task.runningStatistics.statistics {
            let c = s.channels
            s.runningMean.scalars = Array(t.scalars[o..<(o + c)])
            s.runningVar.scalars = Array(t.scalars[(o + c)..<(o + 2 * c)])
            s.batchesTracked = Int(t.scalars[o + 2 * c])
            o += 2 * c + 1
        }
    }

    // MARK: Helpers

    /// Rewrites cost.json with the time so far, for work after the last epoch (a BatchNorm reset,
    /// a method's final scoring of candidates), which the search's cost includes.
    public func updateCost() throws {
        guard comm.rank == 0 else { return }
        try directory.writeCost(seconds: totalSeconds, ranks: comm.size, threads: threads, epochs: epoch)
    }

    private var totalSeconds: Double { previousSeconds + Date().timeIntervalSince(startTime) }

    /// Adds a line to metrics.jsonl after the epochs (rank 0 writes the file).
    public func appendMetrics(_ fields: [String: JSONValue]) throws {
        metrics.append(.object(fields))
        if comm.rank == 0 { try directory.writeLines(metrics, to: directory.metrics) }
    }

    /// A log line (rank 0): standard output and log.txt.
    public func record(_ line: String) {
        guard comm.rank == 0 else { return }
        log(line)
        directory.appendLog(line)
    }
}
