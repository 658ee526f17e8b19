import Distributed
import Foundation
import Kernels

extension CandidateTrainer {
    /// Candidate trainings as a `TaskFarm`'s work (the searches `evolve`, `rl`, `random` and the
    /// standalone trainings of `fidelity`), on every rank: each task trained with its own seed,
    /// continuing from its checkpoint, and a stop (signal, time budget) turned into an outcome and
    /// remembered, so that after the farm the ranks can agree how the run ended (`agree`).
    public final class FarmWork {
        private let training: TrainConfig
        private let worldRank: Int
        private let threads: Int
        private let deadline: Date?
        private let prepare: (CandidateTask, inout TrainConfig) throws -> RunDirectory
        /// The stop a training on this rank reported: nil when none stopped here, 0 when the time
        /// budget ran out, else the signal.
        public private(set) var stoppedHere: Int32?

        /// - Parameters:
        ///   - training: the protocol of every task; a task's seed replaces its seed.
        ///   - worldRank: this rank's rank in the world.
        ///   - deadline: when the time budget runs out (the trainings stop with a checkpoint).
        ///   - prepare: a task's run directory; it may also change the task's settings.
        public init(training: TrainConfig, worldRank: Int, threads: Int, deadline: Date?,
                    prepare: @escaping (CandidateTask, inout TrainConfig) throws -> RunDirectory) {
            self.training = training
            self.worldRank = worldRank
            self.threads = threads
            self.deadline = deadline
            self.prepare = prepare
        }

        /// Trains `task` on `group` (pass it to `TaskFarm.run` as its `work`): a result, or the
        /// stop that interrupted the training (which then resumes from its checkpoint).
        public func run(_ task: CandidateTask, group: Communicator, poll: @escaping () throws -> Void) throws -> CandidateOutcome {
            var config = training
            config.seed = task.seed
            let directory = try prepare(task, &config)
            do {
                let result = try CandidateTrainer.train(task.genotype, config: config, group: group, worldRank: worldRank,
                                                        directory: directory, resume: true, threads: threads, deadline: deadline,
                                                        poll: poll)
                return CandidateOutcome(result: result, stoppedBy: nil)
            } catch let stop as CandidateStopped {
                stoppedHere = stop.signal ?? 0
                return CandidateOutcome(result: nil, stoppedBy: stop.signal ?? 0)
            }
        }

        /// After `TaskFarm.run`, on every rank: how the run ended, agreed over `comm`, and the CPU
        /// seconds of every rank's process (all of them trained candidates).
        ///
        /// - Parameter sourceStop: rank 0's task source's stop (`stoppedBy`), which stands for
        ///   this rank's own when set; nil elsewhere.
        public func agree(comm: Communicator, sourceStop: Int32?) throws -> FarmStop {
            try FarmStop.agree(sourceStop ?? stoppedHere, comm: comm)
        }
    }
}

/// How a farm of candidate trainings ended, as every rank agrees after it.
public struct FarmStop: Equatable, Sendable {
    /// nil: every task finished; 0: the time budget ran out; else the signal that stopped the run.
    public var stoppedBy: Int32?
    /// CPU seconds (user + system) of every rank's process so far, summed.
    public var cpuSeconds: Double

    public init(stoppedBy: Int32?, cpuSeconds: Double) {
        self.stoppedBy = stoppedBy
        self.cpuSeconds = cpuSeconds
    }

    /// The stop of the run from each rank's `local` stop (the largest wins: a signal over the time
    /// budget over finished), and the ranks' CPU seconds. Every rank of `comm` calls it.
    public static func agree(_ local: Int32?, comm: Communicator) throws -> FarmStop {
        // -1: finished; 1: out of time; else the signal that stopped the run.
        var status = [local.map { $0 == 0 ? 1 : Double($0) } ?? -1]
        try comm.allreduceMax(&status)
        var cpu = [RunCost.processCPUSeconds()]
        try comm.allreduceSum(&cpu)
        return FarmStop(stoppedBy: status[0] < 0 ? nil : status[0] == 1 ? 0 : Int32(status[0]), cpuSeconds: cpu[0])
    }
}
