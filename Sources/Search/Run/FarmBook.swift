import Foundation

/// What the saved state of a farm of candidate trainings holds for its bookkeeping.
public protocol FarmState: Codable {
    /// The trainings handed out and not yet recorded (trained again, from their checkpoints, on resume).
    var inFlight: [CandidateTask] { get set }
    /// Wall seconds over every process of a resumed run (as of the last save).
    var wallSeconds: Double { get set }
    /// CPU seconds of all ranks, summed over the processes that ended cleanly.
    var cpuSeconds: Double { get set }
}

/// Rank 0's bookkeeping of a farm of candidate trainings, shared by its task sources
/// (`CandidateSearch`, `FidelityStudy`): the state, replaced atomically on every save; the wall
/// time over every process of a resumed run; the trainings in flight at a stop, handed out again
/// first on resume; and the stop latch, after which nothing more is handed out and the farm drains.
public final class FarmBook<State: FarmState> {
    public internal(set) var state: State
    public let stateFile: URL
    /// Whether the state was read from `stateFile` (a resume) rather than made afresh.
    public let resumed: Bool
    /// Set once a group reports a stop (signal, or 0: the time budget), or `stopRequested` says so.
    public private(set) var stoppedBy: Int32?
    public var stopRequested: () -> Int32? = { Interrupt.received }
    private let started = Date()
    /// `state.wallSeconds` when this process took over.
    private let previousWall: Double
    /// Trainings in flight when the run was resumed, by id: handed out first.
    private var requeue: [CandidateTask] = []

    /// The state saved in `stateFile` (`resume`), else `fresh()` (not yet saved).
    ///
    /// - Parameter kind: what the state is, for the error on a file that is not one.
    init(stateFile: URL, resume: Bool, kind: String, fresh: () throws -> State) throws {
        self.stateFile = stateFile
        if resume, let data = FileManager.default.contents(atPath: stateFile.path) {
            do { state = try JSONDecoder().decode(State.self, from: data) } catch let e as DecodingError {
                throw RunError("\(stateFile.path) is not a \(kind) state: it \(e.message)")
            }
            resumed = true
        } else {
            state = try fresh()
            resumed = false
        }
        previousWall = resumed ? state.wallSeconds : 0
    }

    /// Seconds the run has taken, over every process of a resumed run.
    public var wallSeconds: Double { previousWall + Date().timeIntervalSince(started) }

    /// Trainings handed out again because they were in flight when the run stopped.
    public var requeued: Int { requeue.count }

    /// Queues the state's trainings in flight to be handed out again, by id (once, on resume).
    func requeueInFlight() { requeue = state.inFlight.sorted { $0.id < $1.id } }

    /// Whether tasks may still be handed out: false once the run has stopped (`stopRequested` is
    /// asked first, and a stop it reports is latched).
    func mayHandOut() -> Bool {
        if stoppedBy == nil, let sig = stopRequested() { stoppedBy = sig }
        return stoppedBy == nil
    }

    /// The next training to hand out again, if one waits.
    func nextRequeued() -> CandidateTask? { requeue.isEmpty ? nil : requeue.removeFirst() }

    /// Records a new task as in flight and saves.
    func handOut(_ task: CandidateTask) throws {
        state.inFlight.append(task)
        try save()
    }

    /// The result of an outcome; nil when it reports a stop, which latches the run's stop (the
    /// training stays in flight and is trained again on resume).
    func result(of outcome: CandidateOutcome) -> CandidateResult? {
        if outcome.result == nil, stoppedBy == nil { stoppedBy = outcome.stoppedBy ?? 0 }
        return outcome.result
    }

    /// Writes the state atomically.
    public func save() throws {
        state.wallSeconds = wallSeconds
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        try AtomicFile.write(try enc.encode(state), to: stateFile)
    }

    /// Adds this process's CPU time to the state, saves it, and writes `directory`'s cost.json:
    /// wall time, ranks, threads, cores held (wall x ranks x threads) and the CPU time of all
    /// ranks, with `extra` (the form `RunManifest.readCost` reads).
    func addCost(cpuSeconds: Double, ranks: Int, threads: Int, directory: RunDirectory, extra: () -> [String: JSONValue]) throws {
        state.cpuSeconds += cpuSeconds
        try save()
        let wall = wallSeconds, cores = Double(ranks * threads)
        var fields: [String: JSONValue] = [
            "wall_seconds": .number(wall), "ranks": .number(Double(ranks)), "threads_per_rank": .number(Double(threads)),
            "core_seconds": .number(wall * cores), "core_hours": .number(wall * cores / 3600),
            "cpu_seconds_all_ranks": .number(state.cpuSeconds), "cpu_seconds_all_ranks_estimate": .number(state.cpuSeconds),
        ]
        fields.merge(extra()) { _, new in new }
        try directory.writeJSON(fields, to: directory.cost)
    }
}

/// A task source that keeps its books in a `FarmBook`: its state, stop and times, read-only.
public protocol FarmBookkeeping: AnyObject {
    associatedtype State: FarmState
    var book: FarmBook<State> { get }
}

extension FarmBookkeeping {
    public var state: State { book.state }
    public var stateFile: URL { book.stateFile }
    /// Set once a group reports a stop, or `stopRequested` says so: no more trainings go out.
    public var stoppedBy: Int32? { book.stoppedBy }
    /// Asked before each task is handed out: a signal number, 0 for the time budget, nil to go on.
    public var stopRequested: () -> Int32? {
        get { book.stopRequested }
        set { book.stopRequested = newValue }
    }
    /// Seconds the run has taken, over every process of a resumed run.
    public var wallSeconds: Double { book.wallSeconds }
    /// Trainings handed out again because they were in flight when the run stopped.
    public var requeued: Int { book.requeued }
    /// Writes the state atomically.
    public func save() throws { try book.save() }
}
