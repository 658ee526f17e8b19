import Kernels
import Search
import XCTest
import _TestSupport

final class SearchNetworkTests: XCTestCase {
    func testReferenceParameterCounts() throws {
        // REFERENCE.md: the reference supernet at 10 classes, 3 input channels.
        let paper = try SearchNetwork(SupernetConfig(channels: 16, layers: 8, inputShape: [3, 32, 32], classes: 10), seed: 1)
        XCTAssertEqual(paper.state.parameterCount, 1_930_618)
        let small = try SearchNetwork(SupernetConfig(channels: 8, layers: 5, inputShape: [3, 32, 32], classes: 10), seed: 1)
        XCTAssertEqual(small.state.parameterCount, 394_210)
    }

    func testStateDictNamesFollowTheReference() throws {
        let net = try SearchNetwork(SupernetConfig(channels: 4, layers: 3, inputShape: [3, 8, 8], classes: 10), seed: 1)
        let names = Set(net.state.parameters.map(\.name))
        for n in ["stem.0.weight", "stem.1.weight", "stem.1.bias", "cells.0.preprocess0.op.1.weight",
                  "cells.0._ops.0._ops.4.op.1.weight", "cells.0._ops.0._ops.4.op.6.weight", "cells.0._ops.13._ops.7.op.2.weight",
                  "cells.1._ops.0._ops.3.conv_1.weight", "cells.2.preprocess0.conv_2.weight", "classifier.weight", "classifier.bias"] {
            XCTAssertTrue(names.contains(n), "missing \(n)")
        }
        XCTAssertTrue(net.state.statistics.map(\.name).contains("cells.0._ops.0._ops.1.1"))
        XCTAssertFalse(names.contains { $0.contains("_ops.0._ops.0.") }, "none has no parameters")
        XCTAssertEqual(net.alphasNormal.shape, [14, 8])
    }

    func testForwardMACsMatchReference() throws {
        let net = try SearchNetwork(SupernetConfig(channels: 16, layers: 8, inputShape: [3, 32, 32], classes: 10), seed: 1)
        let tape = Tape(recording: false)
        _ = try net.forward(Variable(Tensor(shape: [1, 3, 32, 32])), ForwardContext(tape: tape, training: false))
        // REFERENCE.md: 300.3 M conv + linear multiply-accumulates per 32x32 image.
        XCTAssertEqual(Double(tape.multiplyAccumulates) / 1e6, 300.3, accuracy: 0.05)
    }

    func testInvalidConfigurations() {
        for (config, message) in [
            (SupernetConfig(channels: 8, layers: 0, inputShape: [3, 32, 32], classes: 10), "layers must be at least 1"),
            (SupernetConfig(channels: 0, layers: 5, inputShape: [3, 32, 32], classes: 10), "channels must be at least 1"),
            (SupernetConfig(channels: 8, layers: 5, inputShape: [3, 30, 30], classes: 10), "cannot be halved"),
            (SupernetConfig(channels: 8, layers: 5, inputShape: [3, 32, 32], classes: 1), "classes must be at least 2"),
            (SupernetConfig(channels: 8, layers: 5, inputShape: [3, 32, 32], classes: 10, primitives: [.none]), "other than none"),
        ] {
            XCTAssertThrowsError(try SearchNetwork(config, seed: 1)) { XCTAssertTrue("\($0)".contains(message), "\($0)") }
        }
    }

    func testGradientsReachAlphasAndWeights() throws {
        let net = try SearchNetwork(SupernetConfig(channels: 2, layers: 3, inputShape: [1, 8, 8], classes: 3), seed: 3)
        var x = Tensor(shape: [4, 1, 8, 8])
        var g = RandomGenerator(seed: 1)
        g.fillUniform(&x, -1, 1)
        let tape = Tape()
        let (loss, _) = try net.loss(x, [0, 1, 2, 0], ForwardContext(tape: tape, training: true))
        try tape.backward(loss)
        XCTAssertGreaterThan(net.alphasNormal.grad!.squaredNorm(), 0)
        XCTAssertGreaterThan(net.alphasReduce.grad!.squaredNorm(), 0)
        XCTAssertTrue(net.weights.allSatisfy { $0.grad != nil }, "every weight gets a gradient")
    }

    /// The fused ops give the step of separate ops, bit for bit: a mixed edge's sep_conv, dil_conv
    /// and pooling BatchNorms applied inside its weighted sum (`weightedBatchNormSum`), a sep_conv's
    /// middle BatchNorm and ReLU inside its second depthwise+1x1, the depthwise and 1x1
    /// convolutions per sample: loss, every weight's and alpha's gradient, running statistics, in
    /// training and in eval mode, with and without recomputed cells.
    func testFusedMixedEdgesGiveTheSameStepBitForBit() throws {
        let config = SupernetConfig(channels: 4, layers: 3, inputShape: [1, 12, 12], classes: 3)
        var x = Tensor(shape: [3, 1, 12, 12])
        var g = RandomGenerator(seed: 6)
        g.fillUniform(&x, -1, 1)
        for training in [true, false] {
            for policy in [RecomputePolicy.none, .first] {
                var results: [[[Float]]] = []
                for fused in [true, false] {
                    let net = try SearchNetwork(config, seed: 7)
                    net.recompute = policy
                    let tape = Tape()
                    var ctx = ForwardContext(tape: tape, training: training)
                    ctx.fusesOps = fused
                    let (loss, _) = try net.loss(x, [0, 1, 2], ctx)
                    try tape.backward(loss)
                    results.append([loss.value.scalars] + (net.weights + net.architecture).map { $0.grad?.scalars ?? [] }
                                   + net.state.statistics.flatMap { [$0.statistics.runningMean.scalars, $0.statistics.runningVar.scalars] })
                }
                XCTAssertEqual(results[0], results[1], "training \(training), \(policy)")
            }
        }
    }

    /// A mixed edge hands its pooling ops' BatchNorms (`PoolBatchNorm`) to its weighted sum when it
    /// fuses ops, and runs them as separate BatchNorms when it does not.
    func testMixedEdgeFoldsItsPoolingBatchNorms() throws {
        var g = RandomGenerator(seed: 3)
        let edge = MixedOp(channels: 2, stride: 1, primitives: [.maxPool3x3, .avgPool3x3], generator: &g)
        XCTAssertTrue(edge.ops.allSatisfy { $0 is PoolBatchNorm })
        var x = Tensor(shape: [2, 2, 5, 5])
        g.fillUniform(&x, -1, 1)
        let profile = OpProfile.shared
        let wasEnabled = profile.isEnabled
        defer {
            profile.isEnabled = wasEnabled
            profile.reset()
        }
        var outputs: [[Float]] = []
        for fused in [true, false] {
            profile.reset()
            profile.isEnabled = true
            let tape = Tape()
            var ctx = ForwardContext(tape: tape, training: true)
            ctx.fusesOps = fused
            let weights = Variable(try Tensor(shape: [2], scalars: [0.25, 0.75]), requiresGrad: true)
            outputs.append(try edge.forward(Variable(x), weights: weights, ctx).value.scalars)
            profile.isEnabled = false
            let calls = profile.entries.mapValues(\.calls)
            if fused {
                XCTAssertEqual(calls["weightedBatchNormSum"], 1, "\(calls)")
                XCTAssertNil(calls["batchNorm"], "\(calls)")
            } else {
                XCTAssertEqual(calls["batchNorm"], 2, "\(calls)")
                XCTAssertEqual(calls["weightedSum"], 1, "\(calls)")
            }
        }
        XCTAssertEqual(outputs[0], outputs[1])
    }

    func testAlphaGradientMatchesFiniteDifference() throws {
        // End-to-end check of the supernet's alpha gradient (eval-mode BN keeps the loss smooth).
        let net = try SearchNetwork(SupernetConfig(channels: 2, layers: 3, inputShape: [1, 8, 8], classes: 3,
                                                   primitives: [.none, .avgPool3x3, .skipConnect, .sepConv3x3]), seed: 5)
        var x = Tensor(shape: [2, 1, 8, 8])
        var g = RandomGenerator(seed: 2)
        g.fillUniform(&x, -1, 1)
        net.alphasNormal.value.scalars = net.alphasNormal.value.scalars.map { $0 * 500 }
        try checkGradients([net.alphasNormal, net.alphasReduce], epsilon: 1e-2, maxChecksPerInput: 12) { tape in
            try net.loss(x, [0, 2], ForwardContext(tape: tape, training: false)).loss
        }
    }
}

final class RecomputeTests: XCTestCase {
    /// Gradients with recomputed cells equal those of a plain pass up to the order in which a cell
    /// input's gradient contributions are summed; BatchNorm statistics are updated once, identically.
    func testRecomputedCellsGiveIdenticalGradients() throws {
        let config = SupernetConfig(channels: 2, layers: 3, inputShape: [1, 8, 8], classes: 3)
        var x = Tensor(shape: [4, 1, 8, 8])
        var g = RandomGenerator(seed: 8)
        g.fillUniform(&x, -1, 1)
        var results: [([Tensor], [Tensor], Int)] = []
        for policy in [RecomputePolicy.none, .first, .all] {
            let net = try SearchNetwork(config, seed: 4)
            net.recompute = policy
            let tape = Tape()
            let (loss, _) = try net.loss(x, [0, 1, 2, 1], ForwardContext(tape: tape, training: true))
            let recorded = tape.count
            try tape.backward(loss)
            let grads = (net.weights + net.architecture).map { $0.grad! }
            let stats = net.state.statistics.flatMap { [$0.statistics.runningMean, $0.statistics.runningVar] }
            results.append((grads, stats, recorded))
        }
        for k in 1..<3 {
            for (a, b) in zip(results[k].0, results[0].0) {
                let scale = max(b.scalars.map(abs).max() ?? 0, 1e-3)
                assertClose(a.scalars, b.scalars, tolerance: 1e-5 * scale)
            }
            XCTAssertEqual(results[k].1, results[0].1, "running statistics updated once, with policy \(k)")
        }
        XCTAssertLessThan(results[2].2, results[1].2)
        XCTAssertLessThan(results[1].2, results[0].2, "recomputed cells keep fewer ops on the tape")
    }
}
