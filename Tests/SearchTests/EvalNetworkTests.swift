import Kernels
import Search
import XCTest
import _TestSupport

final class EvalNetworkTests: XCTestCase {
    func testPublishedDARTSV2ParameterCounts() throws {
        // REFERENCE.md: DARTS_V2 at C=36, 20 layers, CIFAR-10.
        let net = try EvalNetwork(EvalNetworkConfig(channels: 36, layers: 20, inputShape: [3, 32, 32], classes: 10, auxiliary: true),
                                  genotype: .dartsV2, seed: 1)
        XCTAssertEqual(net.parameterCountWithoutAuxiliary, 3_349_342)
        XCTAssertEqual(net.state.parameterCount, 3_825_768)
        let noAux = try EvalNetwork(EvalNetworkConfig(channels: 36, layers: 20, inputShape: [3, 32, 32], classes: 10, auxiliary: false),
                                    genotype: .dartsV2, seed: 1)
        XCTAssertEqual(noAux.state.parameterCount, 3_349_342)
    }

    func testStateDictNames() throws {
        let net = try EvalNetwork(EvalNetworkConfig(channels: 4, layers: 6, inputShape: [3, 32, 32], classes: 10, auxiliary: true),
                                  genotype: .dartsV2, seed: 1)
        let names = Set(net.state.parameters.map(\.name))
        for n in ["stem.0.weight", "stem.1.weight", "cells.0._ops.0.op.1.weight", "cells.0._ops.7.op.2.weight",
                  "cells.2.preprocess1.op.1.weight", "cells.2.preprocess1.op.2.weight", "cells.3.preprocess0.conv_2.weight",
                  "auxiliary_head.features.2.weight", "auxiliary_head.features.3.weight", "auxiliary_head.features.5.weight",
                  "auxiliary_head.features.6.bias", "auxiliary_head.classifier.weight", "classifier.bias"] {
            XCTAssertTrue(names.contains(n), "missing \(n)")
        }
    }

    private func tiny(aux: Bool = true) throws -> EvalNetwork {
        try EvalNetwork(EvalNetworkConfig(channels: 2, layers: 3, inputShape: [1, 32, 32], classes: 3, auxiliary: aux),
                        genotype: .dartsV2, seed: 2)
    }

    func testAuxiliaryHeadOnlyInTrainingAndDropPathOffAtEvaluation() throws {
        let net = try tiny()
        var x = Tensor(shape: [4, 1, 32, 32])
        var g = RandomGenerator(seed: 3)
        g.fillUniform(&x, -1, 1)
        let dp = DropPathSampler(probability: 0.5, generator: RandomGenerator(seed: 4, stream: .dropout))
        let train = try net.forward(Variable(x), ForwardContext(tape: Tape(), training: true, dropPath: dp))
        XCTAssertEqual(train.auxiliary?.shape, [4, 3])
        let eval1 = try net.forward(Variable(x), ForwardContext(tape: Tape(recording: false), training: false, dropPath: dp))
        XCTAssertNil(eval1.auxiliary)
        // Drop path is off at evaluation: the sampler's stream is untouched and outputs are repeatable.
        let before = dp.generator
        let eval2 = try net.forward(Variable(x), ForwardContext(tape: Tape(recording: false), training: false, dropPath: dp))
        XCTAssertEqual(dp.generator, before)
        XCTAssertEqual(eval1.logits.value, eval2.logits.value)
        // In training it draws masks.
        _ = try net.forward(Variable(x), ForwardContext(tape: Tape(), training: true, dropPath: dp))
        XCTAssertNotEqual(dp.generator, before)
    }

    func testAuxiliaryHeadNeedsAnEightByEightMap() {
        XCTAssertThrowsError(try EvalNetwork(EvalNetworkConfig(channels: 4, layers: 5, inputShape: [1, 28, 28], classes: 10, auxiliary: true),
                                             genotype: .dartsV2, seed: 1)) {
            XCTAssertTrue("\($0)".contains("auxiliary head needs at least an 8x8 map"), "\($0)")
        }
    }

    func testGradientsFlowToEveryParameter() throws {
        let net = try tiny()
        var x = Tensor(shape: [4, 1, 32, 32])
        var g = RandomGenerator(seed: 5)
        g.fillUniform(&x, -1, 1)
        let tape = Tape()
        let (logits, aux) = try net.forward(Variable(x), ForwardContext(tape: tape, training: true))
        let loss = try tape.add(try tape.crossEntropy(logits, labels: [0, 1, 2, 0]),
                                tape.scale(try tape.crossEntropy(aux!, labels: [0, 1, 2, 0]), 0.4))
        try tape.backward(loss)
        XCTAssertTrue(net.weights.allSatisfy { $0.grad != nil }, "every parameter, the auxiliary head's included, gets a gradient")
    }
}
