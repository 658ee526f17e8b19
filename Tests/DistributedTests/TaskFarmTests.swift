import Distributed
import XCTest

/// The task farm on one rank (a `LocalCommunicator`); several groups are tested under mpirun by
/// Tests/MPITests.
final class TaskFarmTests: XCTestCase {
    /// Hands out `tasks` in order, optionally saying "none now" at chosen calls, and keeps what it is told.
    final class ListSource: TaskSource {
        var tasks: [Int]
        /// Calls of `nextTask` (0-based) that return nil although tasks remain.
        var nilAt: Set<Int>
        var calls = 0
        var recorded: [(outcome: String, task: Int, group: Int)] = []

        init(_ tasks: [Int], nilAt: Set<Int> = []) {
            self.tasks = tasks
            self.nilAt = nilAt
        }

        func nextTask(for group: Int) throws -> Int? {
            defer { calls += 1 }
            if nilAt.contains(calls) || tasks.isEmpty { return nil }
            return tasks.removeFirst()
        }

        func record(_ outcome: String, of task: Int, group: Int) throws {
            recorded.append((outcome, task, group))
        }
    }

    func testOneRankRunsTheTasksInOrderAndRecordsEachOutcome() throws {
        let farm = try TaskFarm(world: LocalCommunicator(), ranksPerTask: 1)
        XCTAssertEqual([farm.groupIndex, farm.groupCount, farm.ranksPerTask, farm.group.size], [0, 1, 1, 1])
        let source = ListSource([3, 1, 2])
        var ran: [Int] = []
        try farm.run(source) { task, group, poll in
            XCTAssertEqual(group.size, 1)
            try poll()  // does nothing on one rank
            ran.append(task)
            return "done \(task)"
        }
        XCTAssertEqual(ran, [3, 1, 2])
        XCTAssertEqual(source.recorded.map(\.task), [3, 1, 2])
        XCTAssertEqual(source.recorded.map(\.outcome), ["done 3", "done 1", "done 2"])
        XCTAssertEqual(source.recorded.map(\.group), [0, 0, 0])
    }

    func testNilWithNothingInFlightEndsTheFarm() throws {
        let farm = try TaskFarm(world: LocalCommunicator(), ranksPerTask: 1)
        let empty = ListSource([])
        try farm.run(empty) { _, _, _ in XCTFail("no task to run"); return "" }
        XCTAssertEqual(empty.calls, 1)
        XCTAssertTrue(empty.recorded.isEmpty)

        // A "none now" after the first task ends a one-rank farm: nothing is in flight to wait for.
        let waiting = ListSource([1, 2, 3], nilAt: [1])
        try farm.run(waiting) { task, _, _ in "\(task)" }
        XCTAssertEqual(waiting.recorded.map(\.task), [1])
        XCTAssertEqual(waiting.tasks, [2, 3])
    }

    func testAnErrorFromWorkPropagates() throws {
        struct Failed: Error {}
        let farm = try TaskFarm(world: LocalCommunicator(), ranksPerTask: 1)
        let source = ListSource([1, 2])
        XCTAssertThrowsError(try farm.run(source) { task, _, _ in
            if task == 2 { throw Failed() }
            return "ok"
        }) { XCTAssertTrue($0 is Failed) }
        XCTAssertEqual(source.recorded.map(\.task), [1])
    }

    func testGroupSizesThatDoNotDivideTheRanksAreRefused() {
        XCTAssertThrowsError(try TaskFarm(world: LocalCommunicator(), ranksPerTask: 3)) {
            XCTAssertEqual("\($0)", "1 rank does not divide into groups of 3 ranks per candidate")
        }
        XCTAssertThrowsError(try TaskFarm(world: LocalCommunicator(), ranksPerTask: 0)) {
            XCTAssertEqual("\($0)", "ranks per candidate must be at least 1, not 0")
        }
    }

    func testRankZeroNeedsASource() throws {
        let farm = try TaskFarm(world: LocalCommunicator(), ranksPerTask: 1)
        XCTAssertThrowsError(try farm.run(nil as ListSource?) { _, _, _ in "" })
    }
}
