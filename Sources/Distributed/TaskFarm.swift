import Foundation

/// Where a task farm's tasks come from and its outcomes go: a search strategy, seen from rank 0.
public protocol TaskSource: AnyObject {
    associatedtype Task: Codable
    associatedtype Outcome: Codable
    /// The next task for `group`, or nil when there is none now (budget given out, or the strategy
    /// waits for results). nil with nothing in flight ends the farm.
    func nextTask(for group: Int) throws -> Task?
    /// A finished task's outcome, on rank 0, in the order outcomes arrive.
    func record(_ outcome: Outcome, of task: Task, group: Int) throws
}

/// Runs independent tasks (candidate architectures to train) on groups of ranks at once.
///
/// All ranks are workers, in groups of `ranksPerTask`: group g is ranks g*k ..< (g+1)*k and its
/// leader is rank g*k. Rank 0 is also the controller: it asks the `TaskSource` for tasks, sends
/// each to a free group's leader (as JSON, tag `taskTag`), and records outcomes as the leaders send
/// them back (tag `outcomeTag`). While its own group works on a task, rank 0 services the other
/// groups from the `poll` closure that `work` calls between steps (a non-blocking probe), so a
/// group that finishes early gets its next task without waiting for group 0. Only the calling
/// thread uses MPI (MPI_THREAD_FUNNELED).
///
/// With one rank (a `LocalCommunicator`) the farm runs the tasks one after the other on rank 0.
///
/// An error thrown by `work` or by the source propagates out of `run` on the rank that threw;
/// the other ranks are then left waiting, so a caller that cannot carry on should `abort` the job.
/// Candidates that may fail should turn the failure into an outcome inside `work`.
public final class TaskFarm {
    /// Rank 0 to a group leader: a task or the stop message (JSON of `Order`).
    static let taskTag = 31_001
    /// A group leader to rank 0: a finished task's outcome (JSON of the source's `Outcome`).
    static let outcomeTag = 31_002

    /// What rank 0 sends a group: one task, or stop.
    enum Order<Task: Codable>: Codable {
        case task(Task)
        case stop
    }

    /// All ranks of the job.
    public let world: Communicator
    /// This rank's group (size `ranksPerTask`), split from `world`; its rank 0 is the group leader.
    public let group: Communicator
    /// This rank's group, in 0..<groupCount.
    public let groupIndex: Int
    /// The number of groups, world.size / ranksPerTask.
    public let groupCount: Int
    /// The ranks that work on one task together.
    public let ranksPerTask: Int

    /// Splits `world` into groups of `ranksPerTask` consecutive ranks. Every rank must call it.
    ///
    /// - Throws: `CommunicatorError` when `ranksPerTask` is less than 1 or does not divide the
    ///   number of ranks.
    public init(world: Communicator, ranksPerTask: Int) throws {
        guard ranksPerTask >= 1 else {
            throw CommunicatorError("ranks per candidate must be at least 1, not \(ranksPerTask)")
        }
        guard world.size % ranksPerTask == 0 else {
            let ranks = world.size == 1 ? "1 rank does" : "\(world.size) ranks do"
            throw CommunicatorError("\(ranks) not divide into groups of \(ranksPerTask) ranks per candidate")
        }
        self.world = world
        self.ranksPerTask = ranksPerTask
        groupIndex = world.rank / ranksPerTask
        groupCount = world.size / ranksPerTask
        group = try world.split(color: groupIndex, key: world.rank)
    }

    /// The world rank that leads `group`.
    public func leader(of group: Int) -> Int { group * ranksPerTask }

    /// Runs on every rank until the controller has no more tasks. `source` is used on rank 0 only
    /// (pass it everywhere; other ranks ignore it). `work` runs on every rank of the group that
    /// got the task, with the group communicator and a `poll` closure to call between steps
    /// (it services the controller on rank 0 and does nothing elsewhere).
    ///
    /// Each task's outcome is the one `work` returns on the group's leader; the other ranks'
    /// results are dropped. On rank 0, `source.record` and `source.nextTask` may be called from
    /// inside `poll`, that is while rank 0's own `work` is part-way through a task.
    ///
    /// - Parameters:
    ///   - source: the tasks and the outcomes' destination (needed on rank 0).
    ///   - work: runs one task on one group and returns its outcome.
    public func run<S: TaskSource>(_ source: S?,
                                   work: (S.Task, _ group: Communicator, _ poll: @escaping () throws -> Void) throws -> S.Outcome) throws {
        if world.rank == 0 {
            guard let source else { throw CommunicatorError("TaskFarm.run: rank 0 needs a task source") }
            try control(source, work: work)
        } else {
            try serve(S.self, work: work)
        }
    }

    // MARK: - Rank 0

    /// The controller's loop on rank 0: keeps every group busy while the source has tasks.
    private func control<S: TaskSource>(_ source: S,
                                        work: (S.Task, Communicator, @escaping () throws -> Void) throws -> S.Outcome) throws {
        var inFlight: [Int: S.Task] = [:]  // other groups' tasks, by group

        /// Hands a task to every free group but group 0.
        func dispatch() throws {
            for g in 1..<groupCount where inFlight[g] == nil {
                guard let task = try source.nextTask(for: g) else { continue }
                try world.send(Order<S.Task>.task(task), to: leader(of: g), tag: Self.taskTag)
                inFlight[g] = task
            }
        }

        /// Receives one outcome that a probe found and records it; its group becomes free.
        func collect(from sender: Int) throws {
            let (outcome, _) = try world.receive(S.Outcome.self, from: sender, tag: Self.outcomeTag)
            let g = sender / ranksPerTask
            guard sender == leader(of: g), let task = inFlight.removeValue(forKey: g) else {
                throw CommunicatorError("TaskFarm: an outcome from rank \(sender), which has no task in flight")
            }
            try source.record(outcome, of: task, group: g)
        }

        /// Between rank 0's own steps: records the outcomes that have arrived and refills their groups.
        func poll() throws {
            var freed = false
            while let message = try world.iprobe(source: nil, tag: Self.outcomeTag) {
                try collect(from: message.source)
                freed = true
            }
            if freed { try dispatch() }
        }

        while true {
            if groupCount > 1 { try dispatch() }
            if let task = try source.nextTask(for: 0) {
                _ = try group.broadcast(value: Order<S.Task>.task(task), root: 0)
                let outcome = try work(task, group, groupCount > 1 ? poll : {})
                try source.record(outcome, of: task, group: 0)
            } else if !inFlight.isEmpty {
                let message = try world.probe(source: nil, tag: Self.outcomeTag)
                try collect(from: message.source)
            } else {
                break
            }
        }
        for g in 1..<groupCount {
            try world.send(Order<S.Task>.stop, to: leader(of: g), tag: Self.taskTag)
        }
        _ = try group.broadcast(value: Order<S.Task>.stop, root: 0)
    }

    // MARK: - Other ranks

    /// A worker's loop: the leader takes orders from rank 0 and passes them to its group.
    private func serve<S: TaskSource>(_: S.Type,
                                      work: (S.Task, Communicator, @escaping () throws -> Void) throws -> S.Outcome) throws {
        while true {
            var order: Order<S.Task>?
            if group.rank == 0 {
                order = try world.receive(Order<S.Task>.self, from: 0, tag: Self.taskTag).value
            }
            switch try group.broadcast(value: order, root: 0) {
            case .stop:
                return
            case .task(let task):
                let outcome = try work(task, group, {})
                if group.rank == 0 { try world.send(outcome, to: 0, tag: Self.outcomeTag) }
            }
        }
    }
}
