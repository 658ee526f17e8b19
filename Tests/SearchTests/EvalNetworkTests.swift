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

    private func tiny(_ genotype: Genotype = .dartsV2, aux: Bool = true, layers: Int = 3) throws -> EvalNetwork {
        try EvalNetwork(EvalNetworkConfig(channels: 2, layers: layers, inputShape: [1, 32, 32], classes: 3, auxiliary: aux),
                        genotype: genotype, seed: 2)
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

    // MARK: Recomputation

    /// One training step's loss, gradients, running statistics and drop-path generator, from a
    /// fresh network with the given recomputation.
    private func step(recompute: RecomputePolicy, releasing: Bool = true, fused: Bool = true, genotype: Genotype? = nil, layers: Int = 3)
        throws -> (loss: Float, grads: [[Float]], statistics: [[Float]], generator: RandomGenerator, releasedBytes: Int) {
        let net = try tiny(genotype ?? .dartsV2, layers: layers)
        net.recompute = recompute
        var x = Tensor(shape: [4, 1, 32, 32])
        var g = RandomGenerator(seed: 5)
        g.fillUniform(&x, -1, 1)
        let dp = DropPathSampler(probability: 0.4, generator: RandomGenerator(seed: 9, stream: .dropout))
        let tape = Tape(releasesValues: releasing)
        var ctx = ForwardContext(tape: tape, training: true, dropPath: dp)
        ctx.fusesOps = fused
        let (logits, aux) = try net.forward(Variable(x), ctx)
        let loss = try tape.add(try tape.crossEntropy(logits, labels: [0, 1, 2, 0]),
                                tape.scale(try tape.crossEntropy(aux!, labels: [0, 1, 2, 0]), 0.4))
        let released = tape.releasedBytes
        try tape.backward(loss)
        return (loss.value.scalars[0], net.weights.map { $0.grad?.scalars ?? [] },
                net.state.statistics.flatMap { [$0.statistics.runningMean.scalars, $0.statistics.runningVar.scalars] }, dp.generator,
                released)
    }

    /// Cells with average and max pools, skips on FactorizedReduce, 5x5 convolutions.
    static let poolsGenotype = try! Genotype(python: "Genotype(normal=[('avg_pool_3x3', 0), ('sep_conv_5x5', 1), ('dil_conv_5x5', 0), ('skip_connect', 2), ('max_pool_3x3', 1), ('sep_conv_3x3', 3), ('avg_pool_3x3', 2), ('skip_connect', 0)], normal_concat=[2, 3, 4, 5], reduce=[('skip_connect', 0), ('avg_pool_3x3', 1), ('sep_conv_3x3', 0), ('dil_conv_3x3', 2), ('skip_connect', 1), ('max_pool_3x3', 3), ('sep_conv_5x5', 4), ('skip_connect', 0)], reduce_concat=[2, 3, 4, 5])")

    /// Dropping the values no backward rule reads (op outputs summed into a node, node sums read
    /// by the concatenation only, the concatenation under its ReLU) and rebuilding SepConv's
    /// middle BatchNorm + ReLU output for its depthwise weight gradient changes nothing: the
    /// same loss, gradients and running statistics, bit for bit, on the DARTS_V2 cells (sep and
    /// dil convs, max pools, skips) and on cells with average pools and FactorizedReduce skips.
    func testDroppingUnreadValuesGivesTheSameStepBitForBit() throws {
        for genotype in [nil, Self.poolsGenotype] {
            for policy in [RecomputePolicy.none, .leading(1)] {
                let dropped = try step(recompute: policy, releasing: true, genotype: genotype)
                let kept = try step(recompute: policy, releasing: false, genotype: genotype)
                XCTAssertGreaterThan(dropped.releasedBytes, 0)
                XCTAssertEqual(kept.releasedBytes, 0)
                XCTAssertEqual(dropped.loss, kept.loss)
                XCTAssertEqual(dropped.grads, kept.grads, "\(policy): gradients bit for bit")
                XCTAssertEqual(dropped.statistics, kept.statistics)
            }
        }
    }

    /// The fused ops give the step of separate ops, bit for bit: a sep_conv's or dil_conv's
    /// depthwise and 1x1 convolutions per sample (`depthwisePointwiseConv2d`), the BatchNorm
    /// ending it applied inside its node's sum (`batchNormSum`), and a cell output's ReLU inside
    /// its concatenation, and a pool that an earlier edge of the cell applied to the same input
    /// repeated (`repeatOp`: DARTS_V2's reduction cell); on DARTS_V2 (two fused terms, or one
    /// beside a skip) and on cells whose fused terms sit beside pools, skips and FactorizedReduce,
    /// 5x5 and stride-2 convolutions, with and without recomputation (a recomputed cell's output
    /// is its ReLU).
    func testFusedCellOpsGiveTheSameStepBitForBit() throws {
        // 3 cells: the auxiliary head on the last; 5 cells: on cell 3, a reduction whose output the
        // last cell and the head read, with cell outputs handed on as node states to the 1x1
        // preprocessing (`reluConcatConv2d`) and formed for FactorizedReduce (cell 2's, read by cell 4).
        for layers in [3, 5] {
            for genotype in [nil, Self.poolsGenotype] {
                for policy in [RecomputePolicy.none, .leading(1), .leading(3)] where layers == 5 || policy != .leading(3) {
                    let fused = try step(recompute: policy, fused: true, genotype: genotype, layers: layers)
                    let separate = try step(recompute: policy, fused: false, genotype: genotype, layers: layers)
                    XCTAssertEqual(fused.loss, separate.loss)
                    XCTAssertEqual(fused.grads, separate.grads, "\(layers) cells, \(policy): gradients bit for bit")
                    XCTAssertEqual(fused.statistics, separate.statistics)
                    XCTAssertEqual(fused.generator, separate.generator)
                }
            }
        }
    }

    /// Recomputed cells give the step of a network that keeps every activation: the same drop-path
    /// masks (the generator is rewound for the second run), gradients to float summation order,
    /// running statistics updated once.
    func testRecomputedCellsGiveTheSameStepWithTheSameDroppedPaths() throws {
        let kept = try step(recompute: .none)
        XCTAssertTrue(try tiny().recomputedCells(batch: 4).isEmpty)
        for policy in [RecomputePolicy.first, .all, .leading(1)] {
            let net = try tiny()
            net.recompute = policy
            let expected = policy == .all ? Set(net.cells.indices) : policy == .leading(1) ? [0] : Set(0..<(net.config.layers / 3))
            XCTAssertEqual(net.recomputedCells(batch: 4), expected)
            let again = try step(recompute: policy)
            XCTAssertEqual(again.loss, kept.loss, "\(policy): the forward pass is the same")
            XCTAssertEqual(again.statistics, kept.statistics, "\(policy): running statistics updated once, as without recomputation")
            XCTAssertEqual(again.generator, kept.generator, "\(policy): the drop-path generator ends where it would")
            XCTAssertEqual(again.grads.count, kept.grads.count)
            for (a, b) in zip(again.grads, kept.grads) { assertClose(a, b, tolerance: 2e-5) }
        }
    }

    // MARK: Multiply-accumulates

    func testMultiplyAccumulatesOfASmallNetworkByHand() throws {
        // Normal cell: skip connections only; reduction cell: 3x3 max pools only. Neither costs a
        // MAC, so the count is the stem, the cells' preprocessing and the classifier.
        let skip = Array(repeating: [Genotype.Edge(.skipConnect, 0), Genotype.Edge(.skipConnect, 1)], count: 4).flatMap { $0 }
        let pool = Array(repeating: [Genotype.Edge(.maxPool3x3, 0), Genotype.Edge(.maxPool3x3, 1)], count: 4).flatMap { $0 }
        let g = try Genotype(normal: skip, normalConcat: [2, 3, 4, 5], reduce: pool, reduceConcat: [2, 3, 4, 5])
        // C=2, 3 layers (cell 0 normal, cells 1 and 2 reductions), one 8x8 grey image, 3 classes.
        let net = try EvalNetwork(EvalNetworkConfig(channels: 2, layers: 3, inputShape: [1, 8, 8], classes: 3, auxiliary: false),
                                  genotype: g, seed: 1)
        // stem: 3x3 conv 1 -> 6 on 8x8:                         6 * 8*8 * 1*9 =  3456
        // cell 0 (normal, C=2): two 1x1 convs 6 -> 2 on 8x8:    2 * (2 * 64 * 6) =  1536; out 8 ch 8x8
        // cell 1 (reduce, C=4): 1x1 6 -> 4 and 8 -> 4 on 8x8:   4*64*6 + 4*64*8 =  3584; out 16 ch 4x4
        // cell 2 (reduce, C=8): FactorizedReduce 8 -> 8 of cell 0's 8x8 output: two 1x1 stride-2
        //   convs 8 -> 4 (on 8x8 and on the shifted 7x7), each giving 4x4: 2 * 4*16*8 = 1024;
        //   1x1 16 -> 8 on 4x4: 8*16*16 = 2048;                                 =  3072; out 32 ch 2x2
        // classifier: 32 -> 3:                                                  =    96
        XCTAssertEqual(net.multiplyAccumulates, 3456 + 1536 + 3584 + 3072 + 96)
        XCTAssertEqual(net.multiplyAccumulates, 11744)
    }

    func testMultiplyAccumulatesMatchTheForwardPassCount() throws {
        // Every op of the search space, strides 1 and 2, dilations and FactorizedReduce (DARTS_V2,
        // AmoebaNet: sep_conv_7x7, conv_7x1_1x7), against the kernels' own count of a forward pass.
        for g in [Genotype.dartsV2, .dartsV1, .amoebaNet] {
            let net = try EvalNetwork(EvalNetworkConfig(channels: 4, layers: 5, inputShape: [3, 16, 16], classes: 10, auxiliary: false),
                                      genotype: g, seed: 1)
            let tape = Tape(recording: false)
            _ = try net.forward(Variable(Tensor(shape: [1, 3, 16, 16])), ForwardContext(tape: tape, training: false))
            XCTAssertEqual(net.multiplyAccumulates, tape.multiplyAccumulates, g.pythonDescription)
        }
        // The auxiliary head (training only) is not counted.
        let withHead = try EvalNetwork(EvalNetworkConfig(channels: 4, layers: 5, inputShape: [3, 32, 32], classes: 10, auxiliary: true),
                                       genotype: .dartsV2, seed: 1)
        let without = try EvalNetwork(EvalNetworkConfig(channels: 4, layers: 5, inputShape: [3, 32, 32], classes: 10, auxiliary: false),
                                      genotype: .dartsV2, seed: 1)
        XCTAssertEqual(withHead.multiplyAccumulates, without.multiplyAccumulates)
        XCTAssertEqual(without.auxiliaryMultiplyAccumulates, 0)
        // ... it is counted apart, and a training pass (two images, no drop path) runs both.
        let tape = Tape(recording: false)
        _ = try withHead.forward(Variable(Tensor(shape: [2, 3, 32, 32])), ForwardContext(tape: tape, training: true))
        XCTAssertGreaterThan(withHead.auxiliaryMultiplyAccumulates, 0)
        XCTAssertEqual(withHead.multiplyAccumulates + withHead.auxiliaryMultiplyAccumulates, tape.multiplyAccumulates / 2)
    }
}
