import Distributed
import Foundation
import Kernels

/// What training one candidate architecture gave (one line of a full-training search's
/// candidates.jsonl): its fitness, size, cost and where it ran.
public struct CandidateResult: Codable, Equatable, Sendable {
    public enum Status: String, Codable, Sendable {
        case ok
        /// The candidate could not be trained (a diverged loss, a network the data does not fit);
        /// `reason` says why. The search goes on without it.
        case failed
    }

    public var status: Status
    public var reason: String?
    /// The best validation accuracy over its epochs (the epoch its best.bin holds) and that
    /// epoch's validation loss: the fitness. nil when it failed.
    public var validationAccuracy: Double?
    public var validationLoss: Double?
    /// Parameters and multiply-accumulates per image of its network, without the auxiliary head
    /// (nil when the network could not be built).
    public var parameters: Int?
    public var macs: Int?
    /// Epochs trained.
    public var epochs: Int
    public var wallSeconds: Double
    /// CPU seconds (user + system) used during the candidate, summed over the group's ranks.
    public var coreSeconds: Double
    /// The world ranks of the group that trained it.
    public var ranks: [Int]

    enum CodingKeys: String, CodingKey {
        case status, reason, parameters, macs, epochs, ranks
        case validationAccuracy = "validation_accuracy"
        case validationLoss = "validation_loss"
        case wallSeconds = "wall_seconds"
        case coreSeconds = "core_seconds"
    }

    public init(status: Status, reason: String? = nil, validationAccuracy: Double? = nil, validationLoss: Double? = nil,
                parameters: Int? = nil, macs: Int? = nil, epochs: Int = 0, wallSeconds: Double = 0, coreSeconds: Double = 0,
                ranks: [Int] = []) {
        self.status = status
        self.reason = reason
        self.validationAccuracy = validationAccuracy
        self.validationLoss = validationLoss
        self.parameters = parameters
        self.macs = macs
        self.epochs = epochs
        self.wallSeconds = wallSeconds
        self.coreSeconds = coreSeconds
        self.ranks = ranks
    }
}

/// A candidate's training stopped by a signal (`signal`) or the time budget (nil), with a
/// checkpoint in its directory: not a result. The caller saves its own state and exits.
public struct CandidateStopped: Error, CustomStringConvertible {
    public let signal: Int32?
    public init(signal: Int32?) { self.signal = signal }
    public var description: String {
        signal.map { "candidate training stopped by signal \($0)" } ?? "candidate training stopped: the time budget ran out"
    }
}

/// Trains one genotype's network from scratch on a group of ranks (the evaluation trainer,
/// data parallel over the group) and measures its fitness on the validation images, never on the
/// test set: the worker side of a full-training search (regularized evolution, RL, random search).
public enum CandidateTrainer {
    /// Trains `genotype` with `config` (its genotype is replaced; the test set is never loaded).
    ///
    /// A diverged loss (NaN, inf) and errors of the candidate itself (a network the data does not
    /// fit, a configuration it breaks) are returned as a `failed` result with the reason; a stop
    /// (signal, time budget) is thrown as `CandidateStopped`; other errors (files, communication)
    /// are thrown. Every rank of the group calls it and gets the same result.
    ///
    /// - Parameters:
    ///   - config: the training settings; `validationSplit` is required (the fitness is measured on it).
    ///   - group: the group's communicator (data parallel over its ranks).
    ///   - worldRank: this rank's rank in the world (the result lists the group's).
    ///   - directory: the candidate's run directory (config.json, metrics.jsonl, checkpoints, log.txt).
    ///   - resume: continue the run `directory` holds (it must be of the same configuration) from
    ///     its checkpoint; a directory without one starts afresh.
    ///   - poll: called on every rank after each training step and before each evaluation batch
    ///     (a task farm's controller serves other groups here); an error it throws is rethrown.
    ///   - log: the log lines (rank 0 of the group; log.txt gets them anyway).
    public static func train(_ genotype: Genotype, config: TrainConfig, group: Communicator, worldRank: Int,
                             directory: RunDirectory, resume: Bool = false, threads: Int = Parallel.threads,
                             deadline: Date? = nil, poll: @escaping () throws -> Void = {},
                             log: @escaping (String) -> Void = { _ in }) throws -> CandidateResult {
        guard config.validationSplit != nil else {
            throw RunError("candidate training needs a validation split (TrainConfig.validationSplit): the fitness is measured on it")
        }
        var config = config
        config.genotype = genotype
        config.genotypeSource = "candidate"
        config.evaluateTest = false
        let start = Date()
        let cpuStart = RunCost.processCPUSeconds()
        var result = CandidateResult(status: .failed)
        var trainer: Trainer?
        do {
            let continuing = resume ? try holdsRun(directory, of: config, group) : false
            let t = try Trainer(config: config, directory: directory, resume: continuing, communicator: group, threads: threads)
            trainer = t
            t.log = log
            t.deadline = deadline
            t.betweenSteps = poll
            result.parameters = t.network.parameterCountWithoutAuxiliary
            result.macs = t.network.multiplyAccumulates
            switch try t.run() {
            case .finished(let r):
                result.status = .ok
                result.validationAccuracy = r.validationAccuracy
                result.validationLoss = r.validationLoss
            case .interrupted(let sig):
                throw CandidateStopped(signal: sig)
            case .outOfTime:
                throw CandidateStopped(signal: nil)
            }
        } catch let e where isCandidateFailure(e) {
            result.reason = "\(e)"
            if group.rank == 0, FileManager.default.fileExists(atPath: directory.url.path) {
                directory.appendLog("candidate failed: \(e)")
            }
        }
        result.epochs = trainer?.epoch ?? 0
        result.wallSeconds = Date().timeIntervalSince(start)
        var figures = [Double](repeating: 0, count: group.size + 1)
        figures[0] = RunCost.processCPUSeconds() - cpuStart
        figures[1 + group.rank] = Double(worldRank)
        if group.size > 1 { try group.allreduceSum(&figures) }
        result.coreSeconds = figures[0]
        result.ranks = figures[1...].map { Int($0) }
        return result
    }

    /// Whether an error is the candidate's own (a failed result) rather than the run's.
    static func isCandidateFailure(_ error: Error) -> Bool {
        switch error {
        case is DivergenceError, is SearchConfigError, is DataError, is GenotypeError, is KernelError, is SearchSpaceError: return true
        default: return false
        }
    }

    /// Whether `directory` holds a run to continue (rank 0 of the group looks; all ranks learn it).
    /// A run of another configuration is refused.
    private static func holdsRun(_ directory: RunDirectory, of config: TrainConfig, _ group: Communicator) throws -> Bool {
        var held: [Float] = [0]
        if group.rank == 0, FileManager.default.fileExists(atPath: directory.config.path) {
            let saved = try Trainer.savedConfig(directory, forResume: true)
            guard saved == config else {
                throw RunError("\(directory.url.path) holds a run of another configuration than this candidate's")
            }
            held[0] = 1
        }
        if group.size > 1 { try group.broadcast(&held, root: 0) }
        return held[0] > 0
    }
}
