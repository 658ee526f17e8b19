import Distributed
import XCTest

/// The single-process communicator; the MPI one is tested under mpirun by Tests/MPITests.
final class LocalCommunicatorTests: XCTestCase {
    func testCollectivesAreIdentitiesOnOneRank() throws {
        let c = LocalCommunicator()
        XCTAssertEqual(c.rank, 0)
        XCTAssertEqual(c.size, 1)
        var v: [Float] = [1, 2, 3]
        try c.allreduceSum(&v)
        try c.allreduceMean(&v)
        try c.broadcast(&v, root: 0)
        XCTAssertEqual(v, [1, 2, 3])
        var bytes = Array("abc".utf8)
        try c.broadcast(bytes: &bytes)
        XCTAssertEqual(bytes, Array("abc".utf8))
        try c.requireSameOnAllRanks(5, what: "length")
        try c.barrier()
    }

    func testMisuseIsAnError() {
        let c = LocalCommunicator()
        var v: [Float] = [1]
        XCTAssertThrowsError(try c.broadcast(&v, root: 1))
        XCTAssertThrowsError(try [UInt8](repeating: 0, count: 4).withUnsafeBytes { try c.send($0, to: 1, tag: 0) })
    }

    func testSplitGivesOneRank() throws {
        let c = LocalCommunicator()
        let g = try c.split(color: 3, key: 0)
        XCTAssertTrue(g is LocalCommunicator)
        XCTAssertEqual([g.rank, g.size], [0, 1])
        XCTAssertThrowsError(try c.split(color: -1, key: 0))
    }

    func testNoMessageEverArrives() throws {
        let c = LocalCommunicator()
        XCTAssertNil(try c.iprobe(source: nil, tag: nil))
        XCTAssertThrowsError(try c.probe(source: nil, tag: 1))  // would wait forever
        XCTAssertThrowsError(try c.send(["a": 1], to: 0, tag: 1))
        XCTAssertThrowsError(try c.receive([String: Int].self, from: nil, tag: nil))
    }

    func testBroadcastOfACodableValueReturnsIt() throws {
        struct Task: Codable, Equatable { var id: Int; var name: String }
        let c = LocalCommunicator()
        XCTAssertEqual(try c.broadcast(value: Task(id: 4, name: "cell"), root: 0), Task(id: 4, name: "cell"))
        XCTAssertThrowsError(try c.broadcast(value: nil as Task?, root: 0))
    }
}
