import Foundation
import Kernels
import Search
import XCTest
import _TestSupport

final class GenotypeTests: XCTestCase {
    private func alphas(_ entries: [(edge: Int, op: Primitive, value: Float)]) -> Tensor {
        var t = Tensor(shape: [14, 8])
        for e in entries { t.scalars[e.edge * 8 + Primitive.darts.firstIndex(of: e.op)!] = e.value }
        return t
    }

    func testDerivationExcludesNoneAndKeepsTopTwoEdges() throws {
        let normal = alphas([
            (0, .none, 5), (0, .maxPool3x3, 1), (1, .sepConv3x3, 2),          // node 0
            (2, .dilConv5x5, 3), (4, .avgPool3x3, 1),                          // node 1: edge 3 uniform, dropped
            (8, .skipConnect, 1), (6, .none, 10), (6, .sepConv5x5, 0.5),      // node 2: none-dominated edge 6 dropped
            (13, .sepConv3x3, 4), (10, .dilConv3x3, 2),                        // node 3
        ])
        let g = try Genotype.derive(normal: normal, reduce: Tensor(shape: [14, 8]), primitives: Primitive.darts, steps: 4)
        XCTAssertEqual(g.normal, [
            .init(.sepConv3x3, 1), .init(.maxPool3x3, 0),
            .init(.dilConv5x5, 0), .init(.avgPool3x3, 2),
            .init(.skipConnect, 3), .init(.maxPool3x3, 0),
            .init(.sepConv3x3, 4), .init(.dilConv3x3, 1),
        ])
        // Uniform alphas: ties go to the lower input and the first non-none op, as Python's stable sort.
        XCTAssertEqual(g.reduce, Array(repeating: [Genotype.Edge(.maxPool3x3, 0), .init(.maxPool3x3, 1)], count: 4).flatMap { $0 })
        XCTAssertEqual(g.normalConcat, [2, 3, 4, 5])
    }

    func testDerivationWithRestrictedPrimitives() throws {
        var a = Tensor(shape: [14, 2])
        a.scalars[1] = 1  // edge 0 prefers sep_conv_3x3
        let g = try Genotype.derive(normal: a, reduce: a, primitives: [.skipConnect, .sepConv3x3], steps: 4)
        XCTAssertEqual(g.normal[0], .init(.sepConv3x3, 0))
        XCTAssertEqual(g.normal[1], .init(.skipConnect, 1))
        XCTAssertThrowsError(try Genotype.derive(normal: Tensor(shape: [14, 8]), reduce: a, primitives: [.skipConnect, .sepConv3x3], steps: 4))
    }

    func testPythonFormRoundTripAndReferenceGenotypes() throws {
        let v2 = Genotype.dartsV2
        XCTAssertEqual(v2.normal.first, .init(.sepConv3x3, 0))
        XCTAssertEqual(v2.normal.last, .init(.dilConv3x3, 2))
        XCTAssertEqual(v2.reduceConcat, [2, 3, 4, 5])
        XCTAssertEqual(try Genotype(python: v2.pythonDescription), v2)
        XCTAssertTrue(v2.pythonDescription.hasPrefix("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1),"))
        XCTAssertTrue(v2.pythonDescription.contains("normal_concat=range(2, 6)"))
        XCTAssertEqual(try Genotype(python: "DARTS_V1 = " + Genotype.dartsV1.pythonDescription), Genotype.dartsV1)
        XCTAssertNotEqual(Genotype.dartsV1, Genotype.dartsV2)
    }

    func testJSONRoundTripAndFiles() throws {
        let dir = try temporaryDirectory(self)
        let json = dir.appendingPathComponent("g.json")
        try JSONEncoder().encode(Genotype.dartsV1).write(to: json)
        XCTAssertEqual(try Genotype.load(json.path), Genotype.dartsV1)
        XCTAssertTrue(String(decoding: try Data(contentsOf: json), as: UTF8.self).contains(#"["sep_conv_3x3",1]"#))
        let py = dir.appendingPathComponent("g.txt")
        try (Genotype.dartsV2.pythonDescription + "\n").write(to: py, atomically: true, encoding: .utf8)
        XCTAssertEqual(try Genotype.load(py.path), Genotype.dartsV2)
        XCTAssertEqual(try Genotype.load("DARTS_V2"), Genotype.dartsV2)
    }

    func testMalformedGenotypesAreRefusedWithAMessage() throws {
        let dir = try temporaryDirectory(self)
        let v2 = Genotype.dartsV2.pythonDescription
        let cases: [(String, String)] = [
            (v2.replacingOccurrences(of: "dil_conv_3x3", with: "conv_9x9"), "unknown operation 'conv_9x9'"),
            (v2.replacingOccurrences(of: "('dil_conv_3x3', 2)", with: "('dil_conv_3x3', 7)"), "does not exist"),
            (v2.replacingOccurrences(of: "('dil_conv_3x3', 2)", with: ""), "two per intermediate node"),
            (String(v2.dropLast(20)), "not a genotype"),
            ("hello", "not a genotype"),
            (#"{"normal": [["sep_conv_3x3", 0]], "normal_concat": [2]}"#, "not a valid genotype"),
            (#"{"normal": "#, "not valid genotype JSON"),
        ]
        for (i, (text, message)) in cases.enumerated() {
            let f = dir.appendingPathComponent("bad\(i).txt")
            try text.write(to: f, atomically: true, encoding: .utf8)
            XCTAssertThrowsError(try Genotype.load(f.path)) { error in
                XCTAssertTrue("\(error)".contains(message), "case \(i): '\(error)' lacks '\(message)'")
                XCTAssertTrue("\(error)".contains(f.path), "case \(i): message names the file")
            }
        }
        XCTAssertThrowsError(try Genotype.load(dir.appendingPathComponent("missing.json").path)) {
            XCTAssertTrue("\($0)".contains("neither a built-in genotype"))
        }
    }

    func testJSONGenotypeErrorsNameTheFieldNotTheDecoder() throws {
        let dir = try temporaryDirectory(self)
        var json = String(decoding: try JSONEncoder().encode(Genotype.dartsV2), as: UTF8.self)
        json = json.replacingOccurrences(of: #"["dil_conv_3x3",2]"#, with: #"["dil_conv_3x3",1e30]"#)
        XCTAssertTrue(json.contains("1e30"))
        let cases: [(String, String)] = [
            (json, "input index 1e+30 of normal edge 7 is out of range (valid inputs: 0...4)"),
            (json.replacingOccurrences(of: "1e30", with: "2.5"), "input index 2.5 of normal edge 7 is not a whole number"),
            (#"{"normal": [["sep_conv_3x3", 0], ["sep_conv_3x3", 1]], "normal_concat": [2]}"#, "lacks the field 'reduce'"),
            (#"{"normal": 3, "normal_concat": [2], "reduce": [], "reduce_concat": [2]}"#, "field 'normal' must be"),
        ]
        for (i, (text, message)) in cases.enumerated() {
            let f = dir.appendingPathComponent("bad\(i).json")
            try text.write(to: f, atomically: true, encoding: .utf8)
            XCTAssertThrowsError(try Genotype.load(f.path)) { error in
                XCTAssertTrue("\(error)".contains(message), "case \(i): '\(error)' lacks '\(message)'")
                XCTAssertFalse("\(error)".contains("not valid genotype JSON"), "case \(i): \(error)")
                XCTAssertFalse("\(error)".contains("CodingKeys"), "case \(i): \(error)")
            }
        }
    }
}
