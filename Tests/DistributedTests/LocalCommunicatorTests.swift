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
}
