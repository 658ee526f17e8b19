import Foundation
import Kernels
import Search
import XCTest
import _TestSupport

/// The ENAS controller: valid samples, decisions <-> genotypes, log-probability and entropy with
/// gradients checked against finite differences.
final class ControllerLSTMTests: XCTestCase {
    func testSampledGenotypesAreValidAndCoverTheSpace() throws {
        var g = RandomGenerator(seed: 1, stream: .controller)
        let controller = try ControllerLSTM(generator: &g)
        XCTAssertEqual(controller.hiddenSize, 64)
        XCTAssertEqual(controller.decisionCount, 32)
        XCTAssertEqual(ControllerLSTM.operations.count, 7)
        var seenOps = Set<Primitive>()
        var seenInputs = Set<Int>()
        for _ in 0..<120 {
            let s = try controller.sample(using: &g)
            try s.genotype.validate()
            XCTAssertEqual(s.genotype.normalConcat, [2, 3, 4, 5])
            XCTAssertEqual(s.genotype.reduceConcat, [2, 3, 4, 5])
            for edges in [s.genotype.normal, s.genotype.reduce] {
                XCTAssertEqual(edges.count, 8)
                for node in 0..<4 {
                    XCTAssertNotEqual(edges[2 * node].input, edges[2 * node + 1].input, "node \(node + 2) of \(s.genotype.pythonDescription)")
                }
                for e in edges {
                    XCTAssertNotEqual(e.op, Primitive.none)
                    seenOps.insert(e.op)
                    seenInputs.insert(e.input)
                }
            }
            XCTAssertEqual(try controller.decisions(of: s.genotype), s.decisions)
            XCTAssertEqual(try controller.genotype(of: s.decisions), s.genotype)
            XCTAssertLessThan(s.logProbability.value.scalars[0], 0)
            XCTAssertGreaterThan(s.entropy.value.scalars[0], 0)
        }
        XCTAssertEqual(seenOps, Set(ControllerLSTM.operations))
        XCTAssertEqual(seenInputs, Set(0...4))
    }

    /// Scoring the sampled decisions reproduces the log-probability and entropy of the draw. With
    /// one node per cell the entropy is known: a uniform controller (zero weights) has for each
    /// cell ln 2 (first input among 2; the second is forced) plus 2 ln 7 (two ops among 7).
    func testScoreMatchesSampleAndUniformEntropy() throws {
        var g = RandomGenerator(seed: 2, stream: .controller)
        let controller = try ControllerLSTM(generator: &g)
        let s = try controller.sample(using: &g, on: Tape())
        let (logP, entropy) = try controller.score(s.decisions, on: Tape(recording: false))
        XCTAssertEqual(logP.value.scalars[0], s.logProbability.value.scalars[0], accuracy: 1e-5)
        XCTAssertEqual(entropy.value.scalars[0], s.entropy.value.scalars[0], accuracy: 1e-5)
        XCTAssertEqual(logP.shape, [])
        XCTAssertEqual(entropy.shape, [])

        let zeros = ControllerLSTM.parameterShapes(steps: 1, hiddenSize: 3).map { Tensor(shape: $0) }
        let uniform = try ControllerLSTM(steps: 1, parameters: zeros)
        let u = try uniform.sample(using: &g)
        XCTAssertEqual(Double(u.entropy.value.scalars[0]), 2 * (log(2) + 2 * log(7)), accuracy: 1e-5)
        XCTAssertEqual(Double(u.logProbability.value.scalars[0]), -2 * (log(2) + 2 * log(7)), accuracy: 1e-5)
    }

    /// d(log p + entropy)/d(weights) of fixed decisions against central differences, on a small
    /// controller (2 nodes per cell, 6 units) so every weight matrix is checked in many places.
    func testGradientsAgainstFiniteDifferences() throws {
        var g = RandomGenerator(seed: 3, stream: .controller)
        let controller = try ControllerLSTM(steps: 2, hiddenSize: 6, generator: &g)
        // Larger weights than the ±0.1 initialisation, so the gates and tanh work off their linear range.
        for p in controller.parameters { p.value = randomTensor(p.shape, seed: UInt64(p.value.count), scale: 0.8) }
        let decisions = try controller.sample(using: &g).decisions
        try checkGradients(controller.parameters, maxChecksPerInput: 30) { tape in
            let (logP, entropy) = try controller.score(decisions, on: tape)
            return try tape.add(logP, tape.scale(entropy, 0.5))
        }
    }

    func testDecisionsOfPublishedGenotypesAndErrors() throws {
        var g = RandomGenerator(seed: 4, stream: .controller)
        let controller = try ControllerLSTM(generator: &g)
        let d = try controller.decisions(of: .dartsV2)
        // Node 2 of DARTS_V2's normal cell: ('sep_conv_3x3', 0), ('sep_conv_3x3', 1).
        XCTAssertEqual(Array(d.prefix(4)), [0, 1, 3, 3])
        XCTAssertEqual(try controller.genotype(of: d), .dartsV2)
        XCTAssertThrowsError(try controller.decisions(of: .nasnet)) { XCTAssertTrue("\($0)".contains("5 nodes"), "\($0)") }
        var same = d
        same[1] = same[0]
        XCTAssertThrowsError(try controller.genotype(of: same)) { XCTAssertTrue("\($0)".contains("must differ"), "\($0)") }
        var badOp = d
        badOp[2] = 7
        XCTAssertThrowsError(try controller.genotype(of: badOp)) { XCTAssertTrue("\($0)".contains("0..<7"), "\($0)") }
        XCTAssertThrowsError(try controller.genotype(of: Array(d.prefix(31)))) { XCTAssertTrue("\($0)".contains("31 decisions"), "\($0)") }
        XCTAssertThrowsError(try ControllerLSTM(steps: 4, parameters: [Tensor(shape: [4])])) { XCTAssertTrue("\($0)".contains("[4H, 2H]"), "\($0)") }
    }

    func testCodableKeepsWeightsExactly() throws {
        var g = RandomGenerator(seed: 5, stream: .controller)
        let controller = try ControllerLSTM(steps: 3, hiddenSize: 8, generator: &g)
        let back = try JSONDecoder().decode(ControllerLSTM.self, from: try JSONEncoder().encode(controller))
        XCTAssertEqual(back.steps, 3)
        XCTAssertEqual(back.parameters.map(\.value), controller.parameters.map(\.value))
    }
}
