import Foundation
import Kernels
import Search
import XCTest
import _TestSupport

final class CheckpointTests: XCTestCase {
    func testRoundTripAndCorruption() throws {
        let dir = try temporaryDirectory(self)
        let url = dir.appendingPathComponent("c.bin")
        var f = CheckpointFile(metadata: ["epoch": .number(3), "note": .string("x")])
        f.add("a", tensor([2, 2], [1, 2, 3, 4]))
        f.add("b", Tensor(shape: [], repeating: 7))
        try f.write(to: url)
        let back = try CheckpointFile.read(from: url)
        XCTAssertEqual(back.metadata["epoch"]?.int, 3)
        XCTAssertEqual(try back.tensor("a", shape: [2, 2]).scalars, [1, 2, 3, 4])
        XCTAssertEqual(try back.tensor("b", shape: []).scalars, [7])
        XCTAssertThrowsError(try back.tensor("a", shape: [4])) { XCTAssertTrue("\($0)".contains("shape [2, 2]"), "\($0)") }
        XCTAssertThrowsError(try back.tensor("c", shape: [1])) { XCTAssertTrue("\($0)".contains("no tensor 'c'"), "\($0)") }
        // No temporary file is left behind.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["c.bin"])

        var bytes = try Data(contentsOf: url)
        try bytes.prefix(bytes.count - 7).write(to: url)
        XCTAssertThrowsError(try CheckpointFile.read(from: url)) { XCTAssertTrue("\($0)".contains("corrupt or truncated"), "\($0)") }
        bytes[bytes.count - 9] ^= 0x40
        try bytes.write(to: url)
        XCTAssertThrowsError(try CheckpointFile.read(from: url)) { XCTAssertTrue("\($0)".contains("corrupt or truncated"), "\($0)") }
        try Data("hello world, not a checkpoint".utf8).write(to: url)
        XCTAssertThrowsError(try CheckpointFile.read(from: url)) { XCTAssertTrue("\($0)".contains("not a nas-mpi checkpoint"), "\($0)") }
    }
}

final class SafetensorsTests: XCTestCase {
    func testSupernetRoundTripRestoresEveryTensor() throws {
        let config = SupernetConfig(channels: 2, layers: 3, inputShape: [1, 8, 8], classes: 3)
        let a = try SearchNetwork(config, seed: 1)
        a.state.statistics.forEach { $0.statistics.batchesTracked = 7 }
        let url = try temporaryDirectory(self).appendingPathComponent("s.safetensors")
        try Safetensors.write(a.state, extra: [("alphas_normal", a.alphasNormal.value)], to: url)
        let b = try SearchNetwork(config, seed: 2)
        XCTAssertNotEqual(a.weights.first!.value, b.weights.first!.value)
        let file = try Safetensors.read(url)
        try b.state.restore(from: file)
        for (x, y) in zip(a.weights, b.weights) { XCTAssertEqual(x.value, y.value) }
        XCTAssertEqual(b.state.statistics.first!.statistics.batchesTracked, 7)
        XCTAssertEqual(try file.tensor("alphas_normal", shape: [14, 8]), a.alphasNormal.value)
        // A truncated file is refused.
        let data = try Data(contentsOf: url)
        try data.prefix(data.count - 16).write(to: url)
        XCTAssertThrowsError(try Safetensors.read(url)) { XCTAssertTrue("\($0)".contains("bad byte range"), "\($0)") }
    }
}
