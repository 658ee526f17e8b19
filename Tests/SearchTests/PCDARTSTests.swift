import Distributed
import Kernels
import Search
import XCTest
import _TestSupport

/// PC-DARTS on the plug-in design: partial-channel edges, edge normalisation, derivation with
/// edge weights, warm-up.
final class PCDARTSTests: XCTestCase {
    func testOpsSeeExactlyCOverKChannelsAndTheBypassIsShuffledThrough() throws {
        var g = RandomGenerator(seed: 1)
        let (c, k) = (8, 4)
        let edge = PartialChannelMixedOp(channels: c, stride: 1, primitives: Primitive.darts, partial: k, generator: &g)
        // Every op is built for C/K channels: the first conv of sep_conv_3x3 is depthwise over 2.
        let sep = edge.mixed.ops[Primitive.darts.firstIndex(of: .sepConv3x3)!] as! SepConv
        XCTAssertEqual((sep.op.layers[1] as! Conv2dLayer).weight.shape, [c / k, 1, 3, 3])
        var names = NamedState()
        edge.collect(prefix: "", into: &names)
        XCTAssertTrue(names.statistics.allSatisfy { $0.statistics.channels == c / k }, "every BatchNorm has C/K channels")

        // Weights that select only 'none': the ops contribute 0, so the output is the bypass
        // channels (2...7) shuffled, with zeros where the op channels (0, 1) land.
        let x = randomTensor([2, c, 4, 4], seed: 2)
        var w = Tensor(shape: [Primitive.darts.count])
        w.scalars[0] = 1
        let y = try edge.forward(Variable(x), weights: Variable(w), ForwardContext(tape: Tape(recording: false), training: true)).value
        let hw = 16
        // After concat the channels are [op0, op1, x2, ..., x7]; shuffle(4) takes them in the order 0, 2, 4, 6, 1, 3, 5, 7.
        let source = [0, 2, 4, 6, 1, 3, 5, 7]
        for s in 0..<2 {
            for (o, from) in source.enumerated() {
                let got = Array(y.scalars[((s * c + o) * hw)..<((s * c + o + 1) * hw)])
                if from < c / k {
                    XCTAssertTrue(got.allSatisfy { $0 == 0 }, "op channel \(from) at \(o) is zero under 'none'")
                } else {
                    XCTAssertEqual(got, Array(x.scalars[((s * c + from) * hw)..<((s * c + from + 1) * hw)]), "bypass channel \(from) at \(o)")
                }
            }
        }
    }

    func testReductionEdgesMaxPoolTheBypass() throws {
        var g = RandomGenerator(seed: 1)
        let edge = PartialChannelMixedOp(channels: 4, stride: 2, primitives: Primitive.darts, partial: 2, generator: &g)
        let x = randomTensor([1, 4, 4, 4], seed: 3)
        var w = Tensor(shape: [Primitive.darts.count])
        w.scalars[0] = 1
        let y = try edge.forward(Variable(x), weights: Variable(w), ForwardContext(tape: Tape(recording: false), training: true)).value
        XCTAssertEqual(y.shape, [1, 4, 2, 2])
        let pooled = try Tape(recording: false).maxPool2d(Variable(x), kernel: 2, stride: 2, padding: 0).value
        // concat [op0, op1, x2, x3], shuffle(2): order 0, 2, 1, 3 -> output channels 1 and 3 are x2, x3 pooled.
        for (o, from) in [(1, 2), (3, 3)] {
            XCTAssertEqual(Array(y.scalars[(o * 4)..<(o * 4 + 4)]), Array(pooled.scalars[(from * 4)..<(from * 4 + 4)]))
        }
    }

    func testBetasAreSoftmaxedPerNodeSegment() throws {
        let arch = ArchitectureParameters(steps: 4, opsPerEdge: 8, edgeNormalisation: true, seed: 3)
        XCTAssertEqual(arch.all.map(\.name), ["alphas_normal", "alphas_reduce", "betas_normal", "betas_reduce"])
        arch["betas_normal"]!.value = randomTensor([14], seed: 4, scale: 3)
        let w = try arch.cellWeights(reduction: false, Tape(recording: false))
        let e = w.edges!.value.scalars
        var o = 0
        for n in [2, 3, 4, 5] {
            XCTAssertEqual(e[o..<(o + n)].reduce(0, +), 1, accuracy: 1e-6, "node with \(n) inputs")
            o += n
        }
        // DARTS draws the same alphas from the same seed (the betas come after them).
        let darts = ArchitectureParameters(steps: 4, opsPerEdge: 8, edgeNormalisation: false, seed: 3)
        XCTAssertEqual(darts.alphasNormal.value, arch.alphasNormal.value)
        XCTAssertEqual(darts.all.count, 2)
    }

    func testDerivationUsesEdgeWeightsToRankEdges() throws {
        // Node 1 (edges 2, 3, 4 from inputs 0, 1, 2): the alphas alone favour edges 2 and 3; the
        // betas weight edge 4 most and edge 2 least, so with them edges 4 and 3 are kept.
        let k = Primitive.darts.count
        var ops = Tensor(shape: [14, k], repeating: 0.01)
        func set(_ edge: Int, _ p: Primitive, _ v: Float) { ops.scalars[edge * k + Primitive.darts.firstIndex(of: p)!] = v }
        for e in 0..<14 { set(e, .maxPool3x3, 0.2) }
        set(2, .sepConv3x3, 0.9); set(3, .dilConv3x3, 0.8); set(4, .sepConv5x5, 0.5)
        var edges = Tensor(shape: [14], repeating: 0.5)
        edges.scalars[2] = 0.1; edges.scalars[3] = 0.3; edges.scalars[4] = 0.6
        let policy = DerivationPolicy(space: .uniform(Primitive.darts, edges: 14), steps: 4)
        let plain = try policy.derive(normal: CellStrengths(ops: ops), reduce: CellStrengths(ops: ops))
        let weighted = try policy.derive(normal: CellStrengths(ops: ops, edges: edges), reduce: CellStrengths(ops: ops, edges: edges))
        // Without betas: 0.9 (edge 2 = input 0) and 0.8 (edge 3 = input 1).
        XCTAssertEqual(Array(plain.normal[2...3]), [Genotype.Edge(.sepConv3x3, 0), Genotype.Edge(.dilConv3x3, 1)])
        // With betas: 0.5*0.6 = 0.30 (input 2) and 0.8*0.3 = 0.24 (input 1) beat 0.9*0.1 = 0.09 (input 0).
        XCTAssertEqual(Array(weighted.normal[2...3]), [Genotype.Edge(.sepConv5x5, 2), Genotype.Edge(.dilConv3x3, 1)])
    }

    func testSkipCapZerosTheWeakestSkipAndDerivesAgain() throws {
        let k = Primitive.darts.count
        var ops = Tensor(shape: [14, k], repeating: 0.01)
        let skip = Primitive.darts.firstIndex(of: .skipConnect)!, sep = Primitive.darts.firstIndex(of: .sepConv3x3)!
        for e in 0..<14 { ops.scalars[e * k + skip] = 0.5 + Float(e) * 0.01; ops.scalars[e * k + sep] = 0.3 }
        let policy = DerivationPolicy(space: .uniform(Primitive.darts, edges: 14), steps: 4, maxSkipConnections: 2)
        let g = try policy.derive(normal: CellStrengths(ops: ops), reduce: CellStrengths(ops: ops))
        XCTAssertEqual(g.normal.filter { $0.op == .skipConnect }.count, 2)
        XCTAssertEqual(g.reduce.filter { $0.op == .skipConnect }.count, 8, "the cap applies to the normal cell only")
        // The two skips kept are the strongest ones (edges 12 and 13, inputs 3 and 4 of node 3).
        XCTAssertEqual(Array(g.normal[6...7]), [Genotype.Edge(.skipConnect, 4), Genotype.Edge(.skipConnect, 3)])
    }

    func testWarmUpLeavesAlphasAndBetasBitUnchanged() throws {
        var config = SearchConfig.preset(.quick)
        config.method = .pcDarts
        config.channels = 4
        config.layers = 3
        config.partialChannels = 2
        config.warmupEpochs = 1
        config.epochs = 2
        let method = try config.method.make(config, inputShape: [1, 8, 8], classes: 3, averager: GradientAverager(LocalCommunicator()))
        XCTAssertEqual(method.network.architecture.map(\.name), ["alphas_normal", "alphas_reduce", "betas_normal", "betas_reduce"])
        let data = try SyntheticDataset.make(count: 8, imageShape: [1, 8, 8], classes: 3, seed: 4)
        var g = RandomGenerator(seed: 1)
        let batch = data.batch(Array(0..<8), augment: false, generator: &g)
        let before = method.network.architecture.map(\.value)
        let weightsBefore = method.network.weights.map(\.value)
        let r0 = try method.step(train: batch, validation: batch, epoch: 0, learningRate: 0.1)
        XCTAssertNil(r0.architectureLoss)
        XCTAssertEqual(method.network.architecture.map(\.value), before, "warm-up: architecture frozen bit for bit")
        XCTAssertNotEqual(method.network.weights.map(\.value), weightsBefore, "warm-up still trains the weights")
        let r1 = try method.step(train: batch, validation: batch, epoch: 1, learningRate: 0.1)
        XCTAssertNotNil(r1.architectureLoss)
        for (a, b) in zip(method.network.architecture, before) { XCTAssertNotEqual(a.value, b, "\(a.name) moves after warm-up") }
    }

    func testPCDARTSGradientsReachBetas() throws {
        let net = try SearchNetwork(SupernetConfig(channels: 4, layers: 3, inputShape: [1, 8, 8], classes: 3), seed: 3,
                                    makeEdge: PartialChannelMixedOp.factory(partial: 2), edgeNormalisation: true)
        let x = randomTensor([4, 1, 8, 8], seed: 1)
        let tape = Tape()
        try tape.backward(try net.loss(x, [0, 1, 2, 0], ForwardContext(tape: tape, training: true)).loss)
        for v in net.architecture { XCTAssertGreaterThan(v.grad!.squaredNorm(), 0, v.name) }
        XCTAssertTrue(net.weights.allSatisfy { $0.grad != nil })
        let darts = try SearchNetwork(SupernetConfig(channels: 4, layers: 3, inputShape: [1, 8, 8], classes: 3), seed: 3)
        XCTAssertLessThan(net.state.parameterCount, darts.state.parameterCount)
    }

    func testPCDARTSSupernetParameterCountMatchesTheReference() throws {
        // The reference PC-DARTS Network(16, 10, 8) has 299,578 parameters (counted with the
        // reference code and PyTorch; the DARTS supernet has 1,930,618).
        let net = try SearchNetwork(SupernetConfig(channels: 16, layers: 8, inputShape: [3, 32, 32], classes: 10), seed: 1,
                                    makeEdge: PartialChannelMixedOp.factory(partial: 4), edgeNormalisation: true)
        XCTAssertEqual(net.state.parameterCount, 299_578)
    }
}
