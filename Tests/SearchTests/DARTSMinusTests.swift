import Distributed
import Kernels
import Search
import XCTest
import _TestSupport

/// DARTS-: the auxiliary skip edge, the beta schedule, derivation without the auxiliary skip.
final class DARTSMinusTests: XCTestCase {
    private func config(epochs: Int = 4) -> SearchConfig {
        var c = SearchConfig.preset(.quick)
        c.method = .dartsMinus
        c.channels = 4
        c.layers = 3
        c.epochs = epochs
        return c
    }

    private func make(_ c: SearchConfig) throws -> SearchMethod {
        try c.method.make(c, inputShape: [1, 8, 8], classes: 3, averager: GradientAverager(LocalCommunicator()))
    }

    func testBetaDecaysLinearlyFromOneToZeroPerEpoch() throws {
        XCTAssertEqual(DARTSMinus.beta(epoch: 0, epochs: 10), 1)
        XCTAssertEqual(DARTSMinus.beta(epoch: 5, epochs: 10), 0.5)
        XCTAssertEqual(DARTSMinus.beta(epoch: 9, epochs: 10), 0.1, accuracy: 1e-7)
        XCTAssertEqual(DARTSMinus.beta(epoch: 10, epochs: 10), 0)
        // The method sets it before each step, from the epoch alone.
        let method = try make(config(epochs: 4)) as! DARTSMinus
        let data = try SyntheticDataset.make(count: 8, imageShape: [1, 8, 8], classes: 3, seed: 4)
        var g = RandomGenerator(seed: 1)
        let batch = data.batch(Array(0..<8), augment: false, generator: &g)
        for (epoch, beta) in [(0, Float(1)), (1, 0.75), (3, 0.25)] {
            _ = try method.step(train: batch, validation: batch, epoch: epoch, learningRate: 0.01)
            XCTAssertEqual(method.coefficient.beta, beta, "epoch \(epoch)")
            XCTAssertTrue(method.network.cells.allSatisfy { $0.edges.allSatisfy { ($0 as! AuxiliarySkipEdge).coefficient === method.coefficient } })
        }
    }

    func testAtBetaZeroTheEdgeIsThePlainMixedOp() throws {
        for stride in [1, 2] {
            var g = RandomGenerator(seed: 7)
            let coefficient = AuxiliarySkipCoefficient(beta: 0)
            let mixed = MixedOp(channels: 4, stride: stride, primitives: Primitive.darts, generator: &g)
            let edge = AuxiliarySkipEdge(mixed, channels: 4, stride: stride, coefficient: coefficient, generator: &g)
            XCTAssertEqual(edge.reduce == nil, stride == 1, "identity at stride 1, FactorizedReduce at stride 2")
            let x = Variable(randomTensor([2, 4, 4, 4], seed: 2))
            let w = Variable(try Tape(recording: false).softmax(Variable(randomTensor([1, 8], seed: 3))).value.reshaped([8]))
            let ctx = ForwardContext(tape: Tape(recording: false), training: false)
            let plain = try edge.edge.forward(x, weights: w, ctx).value
            XCTAssertEqual(try edge.forward(x, weights: w, ctx).value, plain, "stride \(stride): beta 0 gives the mixed op bit for bit")
            coefficient.beta = 0.5
            let skip = try edge.reduce?.forward(x, ctx).value ?? x.value
            let withSkip = try edge.forward(x, weights: w, ctx).value
            assertClose(withSkip.scalars, zip(plain.scalars, skip.scalars).map { $0 + 0.5 * $1 })
        }
    }

    func testAuxiliarySkipIsTrainedButNeverInTheGenotype() throws {
        let c = config()
        let method = try make(c) as! DARTSMinus
        let darts = try SearchMethodKind.darts.make(c, inputShape: [1, 8, 8], classes: 3, averager: GradientAverager(LocalCommunicator()))
        // Same architecture parameters (names, shapes, values): the skip has no alpha.
        XCTAssertEqual(method.network.architecture.map(\.name), ["alphas_normal", "alphas_reduce"])
        XCTAssertEqual(method.network.architecture.map(\.value), darts.network.architecture.map(\.value))
        XCTAssertEqual(try method.genotype(), try darts.genotype())
        // The auxiliary weights: two 1x1 convs on each stride-2 edge (the 8 edges from the cell
        // inputs, 0, 1, 2, 3, 5, 6, 9, 10) of the 2 reduction cells; identity elsewhere.
        let aux = method.network.state.parameters.filter { $0.name.contains("auxiliary_skip") }
        XCTAssertEqual(aux.count, 2 * 8 * 2, aux.map(\.name).joined(separator: ", "))
        XCTAssertEqual(Set(aux.map { $0.name.split(separator: ".")[3] }), ["0", "1", "2", "3", "5", "6", "9", "10"])
        XCTAssertTrue(aux.contains { $0.name == "cells.1._ops.0.auxiliary_skip.conv_1.weight" }, aux.map(\.name).joined(separator: ", "))
        let mixedNames = Set(darts.network.state.parameters.map(\.name))
        XCTAssertTrue(method.network.state.parameters.filter { !$0.name.contains("auxiliary_skip") }.allSatisfy { mixedNames.contains($0.name) },
                      "the wrapped mixed ops keep the DARTS state-dict names")
        // Gradients reach the auxiliary weights (beta 1 at epoch 0).
        let tape = Tape()
        try tape.backward(try method.network.loss(randomTensor([4, 1, 8, 8], seed: 1), [0, 1, 2, 0], ForwardContext(tape: tape, training: true)).loss)
        for (name, v) in aux { XCTAssertGreaterThan(v.grad?.squaredNorm() ?? 0, 0, name) }
        // Training moves the alphas; the genotype still lists only searchable ops.
        let data = try SyntheticDataset.make(count: 8, imageShape: [1, 8, 8], classes: 3, seed: 4)
        var g = RandomGenerator(seed: 1)
        let batch = data.batch(Array(0..<8), augment: false, generator: &g)
        _ = try method.step(train: batch, validation: batch, epoch: 0, learningRate: 0.05)
        let genotype = try method.genotype()
        XCTAssertTrue((genotype.normal + genotype.reduce).allSatisfy { Primitive.darts.contains($0.op) && $0.op != .none })
    }

    func testCheckpointKeepsBeta() throws {
        let method = try make(config(epochs: 4)) as! DARTSMinus
        method.coefficient.beta = 0.25
        var file = CheckpointFile()
        method.addState(to: &file)
        let other = try make(config(epochs: 4)) as! DARTSMinus
        XCTAssertEqual(other.coefficient.beta, 1)
        try (other as SearchMethod).restoreState(from: file)
        XCTAssertEqual(other.coefficient.beta, 0.25)
    }
}
