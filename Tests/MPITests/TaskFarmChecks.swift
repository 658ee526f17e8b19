// Multi-rank checks of TaskFarm, called from main.swift on 1, 2 and 4 ranks.
import Distributed
import Foundation

/// A farm task that sleeps `steps` times for `stepSeconds`, calling `poll` between steps.
struct SleepTask: Codable {
    var id: Int
    var steps: Int
    var stepSeconds: Double
}

/// What a group's leader reports: the task, the group that ran it, and whether every rank of the
/// group saw the same task.
struct SleepOutcome: Codable {
    var id: Int
    var group: Int
    var sameTaskOnAllRanks: Bool
}

/// A task source driven by a plan (the task for a group, given the source's state); it keeps
/// where each task went and what came back, in order.
final class PlannedSource: TaskSource {
    private let plan: (_ group: Int, _ source: PlannedSource) -> SleepTask?
    var handedTo: [Int: Int] = [:]
    var log: [(outcome: SleepOutcome, task: SleepTask, group: Int)] = []
    /// Set by rank 0's `work` while it runs its own group's task.
    var insideOwnWork = false
    var recordedDuringOwnWork = 0

    init(_ plan: @escaping (_ group: Int, _ source: PlannedSource) -> SleepTask?) { self.plan = plan }

    func nextTask(for group: Int) throws -> SleepTask? {
        guard let task = plan(group, self) else { return nil }
        handedTo[task.id] = group
        return task
    }

    func record(_ outcome: SleepOutcome, of task: SleepTask, group: Int) throws {
        if insideOwnWork { recordedDuringOwnWork += 1 }
        log.append((outcome, task, group))
    }

    /// Whether the task `id`'s outcome has been recorded.
    func done(_ id: Int) -> Bool { log.contains { $0.task.id == id } }
}

/// Runs `source` on `farm` with sleeping tasks; returns the wall time and how many tasks this rank worked on.
func runSleepFarm(_ farm: TaskFarm, _ source: PlannedSource) throws -> (seconds: Double, worked: Int) {
    let start = Date()
    var worked = 0
    try farm.run(source) { task, group, poll in
        if farm.world.rank == 0 { source.insideOwnWork = true }
        defer { source.insideOwnWork = false }
        var ids = [Double(task.id), -Double(task.id)]
        try group.allreduceMax(&ids)
        for _ in 0..<task.steps {
            Thread.sleep(forTimeInterval: task.stepSeconds)
            try poll()
        }
        worked += 1
        return SleepOutcome(id: task.id, group: farm.groupIndex, sameTaskOnAllRanks: ids == [Double(task.id), -Double(task.id)])
    }
    return (Date().timeIntervalSince(start), worked)
}

/// The farm's checks for groups of 1 and (where the ranks divide) 2.
func taskFarmChecks(_ comm: Communicator, check: (String, Bool) -> Void) throws {
    let size = comm.size
    var message = ""
    do { _ = try TaskFarm(world: comm, ranksPerTask: 3) } catch { message = "\(error)" }
    if size % 3 != 0 {
        check("farm: \(size) ranks in groups of 3 refused", message.hasSuffix("not divide into groups of 3 ranks per candidate")
              && message.hasPrefix("\(size) rank"))
    }

    for k in [1, 2] where size % k == 0 {
        let farm = try TaskFarm(world: comm, ranksPerTask: k)
        let groups = size / k
        check("farm k=\(k): groups", farm.groupCount == groups && farm.groupIndex == comm.rank / k
              && farm.group.size == k && farm.group.rank == comm.rank % k)

        // Every task exactly once, on the group it was handed to, seen alike by the group's ranks.
        // Tasks long next to a message's latency on an oversubscribed machine (a few ms), in short
        // steps (rank 0 hands out the next task only at its next poll).
        let n = 2 * groups, steps = 4, stepSeconds = 0.05
        var next = 0
        let all = PlannedSource { _, _ in
            defer { next += 1 }
            return next < n ? SleepTask(id: next, steps: steps, stepSeconds: stepSeconds) : nil
        }
        let (seconds, worked) = try runSleepFarm(farm, all)
        var total = [Double(worked)]
        try comm.allreduceSum(&total)
        check("farm k=\(k): each task ran on the \(k) rank(s) of one group (\(Int(total[0])) runs)", Int(total[0]) == n * k)
        if comm.rank == 0 {
            check("farm k=\(k): every task recorded exactly once", all.log.map(\.task.id).sorted() == Array(0..<n))
            check("farm k=\(k): outcomes carry the group that ran them",
                  all.log.allSatisfy { $0.outcome.group == $0.group && all.handedTo[$0.task.id] == $0.group && $0.outcome.id == $0.task.id })
            check("farm k=\(k): every rank of a group saw the same task", all.log.allSatisfy(\.outcome.sameTaskOnAllRanks))
            let serial = Double(n * steps) * stepSeconds
            if groups > 1 {
                print(String(format: "farm k=%d: %d tasks of %.2f s on %d groups in %.2f s", k, n, Double(steps) * stepSeconds, groups, seconds))
                check(String(format: "farm k=%d: %d groups at once (%.2f s for %.2f s of tasks)", k, groups, seconds, serial),
                      seconds < 0.8 * serial)
                check("farm k=\(k): every group got work", Set(all.log.map(\.group)).count == groups)
            }
        }
        guard groups > 1 else { continue }

        // A slow worker does not hold up the others: group 1's first task is long; meanwhile the
        // controller hands short ones to the other groups (group 0 included).
        var shortLeft = 8, longDone: Int?
        let slowWorker = PlannedSource { group, source in
            if group == 1 && source.handedTo[1000] == nil { return SleepTask(id: 1000, steps: 1, stepSeconds: 0.5) }
            guard shortLeft > 0 else { return nil }
            shortLeft -= 1
            return SleepTask(id: shortLeft, steps: 1, stepSeconds: 0.02)
        }
        _ = try runSleepFarm(farm, slowWorker)
        if comm.rank == 0 {
            longDone = slowWorker.log.firstIndex { $0.task.id == 1000 }
            print("farm k=\(k): \(longDone ?? -1) short tasks done while group 1 ran a long one")
            check("farm k=\(k): others finish short tasks while group 1 works on a long one (\(longDone ?? -1) before it)",
                  (longDone ?? 0) >= 3)
        }

        // The controller's own long task does not hold up the others: rank 0 records their
        // outcomes and hands them new tasks from `poll` between its steps.
        shortLeft = 8
        let busyController = PlannedSource { group, source in
            if group == 0 && source.handedTo[1000] == nil { return SleepTask(id: 1000, steps: 25, stepSeconds: 0.02) }
            guard group != 0, shortLeft > 0 else { return nil }
            shortLeft -= 1
            return SleepTask(id: shortLeft, steps: 1, stepSeconds: 0.02)
        }
        _ = try runSleepFarm(farm, busyController)
        if comm.rank == 0 {
            print("farm k=\(k): \(busyController.recordedDuringOwnWork) outcomes recorded from poll during rank 0's own long task")
            check("farm k=\(k): rank 0 services other groups from poll (\(busyController.recordedDuringOwnWork) outcomes during its own task)",
                  busyController.recordedDuringOwnWork >= 3 && busyController.log.count == 9)
        }
    }
}
