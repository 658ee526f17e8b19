import Distributed
import Foundation
import Kernels
import Search
import XCTest
import _TestSupport

/// P-DARTS: pruning the op lists between stages, rebuilding a deeper supernet, the skip
/// dropout and its schedule, the per-stage learning rate, the stage in checkpoints, the flags.
final class PDARTSTests: XCTestCase {
    private func config(stages: [Int] = [3, 4], stageOps: [Int] = [8, 2], dropout: [Float] = [0.3, 0.6]) -> SearchConfig {
        var c = SearchConfig.preset(.quick)
        c.method = .pdarts
        c.channels = 4
        c.epochs = 4
        c.warmupEpochs = 1
        c.pdarts = PDARTSSettings(stages: stages, stageOps: stageOps, skipDropout: dropout, maxSkipConnections: 1)
        return c
    }

    private func make(_ c: SearchConfig) throws -> PDARTS {
        try XCTUnwrap(try c.method.make(c, inputShape: [1, 8, 8], classes: 3, averager: GradientAverager(LocalCommunicator())) as? PDARTS)
    }

    private func batch() throws -> Batch {
        let data = try SyntheticDataset.make(count: 8, imageShape: [1, 8, 8], classes: 3, seed: 4)
        var g = RandomGenerator(seed: 1)
        return data.batch(Array(0..<8), augment: false, generator: &g)
    }

    func testPruningKeepsTheStrongestOpsOfEachEdgeInTheirOrder() throws {
        let ops: [Primitive] = [.none, .maxPool3x3, .skipConnect, .sepConv3x3]
        let w = try Tensor(shape: [2, 4], scalars: [0.4, 0.1, 0.3, 0.2,
                                                0.1, 0.3, 0.3, 0.3])
        XCTAssertEqual(try PDARTS.prune([ops, ops], w, keep: 2, dropNone: false),
                       [[.none, .skipConnect], [.maxPool3x3, .skipConnect]], "ties keep the earlier op; kept ops stay in order")
        // The last transition drops none first, even when it is the strongest.
        XCTAssertEqual(try PDARTS.prune([ops, ops], w, keep: 1, dropNone: true), [[.skipConnect], [.maxPool3x3]])
        XCTAssertEqual(try PDARTS.prune([ops, ops], w, keep: 2, dropNone: true), [[.skipConnect, .sepConv3x3], [.maxPool3x3, .skipConnect]])
        XCTAssertThrowsError(try PDARTS.prune([ops], w, keep: 1, dropNone: false))
    }

    func testStageTransitionKeepsTheTopOpsAndBuildsADeeperSupernet() throws {
        let m = try make(config())
        XCTAssertEqual(m.network.cells.count, 3)
        XCTAssertEqual(m.network.alphasNormal.shape, [14, 8])
        // Make op k of edge e strongest for k = (e + 3) % 8 and second for (e + 5) % 8.
        for alphas in [m.network.alphasNormal, m.network.alphasReduce] {
            var t = Tensor(shape: [14, 8])
            for e in 0..<14 { t.scalars[e * 8 + (e + 3) % 8] = 2; t.scalars[e * 8 + (e + 5) % 8] = 1 }
            alphas.value = t
        }
        let old = m.network
        try m.advance(to: 1)
        XCTAssertEqual(m.stage, 1)
        XCTAssertFalse(m.network === old)
        XCTAssertEqual(m.network.cells.count, 4, "the second stage's depth")
        XCTAssertEqual(m.network.alphasNormal.shape, [14, 2])
        XCTAssertEqual(m.network.alphasReduce.shape, [14, 2])
        for e in 0..<14 {
            let expected = [(e + 3) % 8, (e + 5) % 8].sorted().map { Primitive.darts[$0] }
            XCTAssertEqual(m.space.normal[e], expected, "edge \(e)")
            XCTAssertEqual(m.space.reduce[e], expected, "edge \(e)")
        }
        for cell in m.network.cells { for (e, edge) in cell.edges.enumerated() { XCTAssertEqual(edge.primitives, m.space.edges(reduction: cell.reduction)[e]) } }
        // The optimisers are the new network's.
        XCTAssertTrue(m.training.network === m.network)
        XCTAssertEqual(m.training.optimizer.parameters.count, m.network.weights.count)
        XCTAssertTrue(zip(m.training.optimizer.parameters, m.network.weights).allSatisfy { $0 === $1 })
        XCTAssertTrue(zip(m.training.architect.optimizer.parameters, m.network.architecture).allSatisfy { $0 === $1 })
        XCTAssertEqual(m.training.architectureGradClip, 5)
        // A step of stage 1 (epoch 2) runs on the new network; the final op per edge never is none.
        _ = try m.step(train: try batch(), validation: try batch(), epoch: 3, learningRate: 0.01)
        XCTAssertFalse(try m.finalOps().normal.joined().contains(.none))
        XCTAssertTrue(try m.finalOps().normal.allSatisfy { $0.count == 1 })
        XCTAssertLessThanOrEqual(try m.genotype().normal.filter { $0.op == .skipConnect }.count, 1)
    }

    func testSkipCapTerminatesOnPrunedListsWhereSkipIsAnEdgesOnlyOp() throws {
        // Every edge: [none, skip_connect], skip strongest: node 0 must keep two skips.
        let space = CellSearchSpace.uniform([.none, .skipConnect], edges: 14)
        var w = Tensor(shape: [14, 2])
        for e in 0..<14 { w.scalars[e * 2] = 0.4; w.scalars[e * 2 + 1] = 0.6 }
        let g = try DerivationPolicy(space: space, steps: 4, maxSkipConnections: 1)
            .derive(normal: CellStrengths(ops: w), reduce: CellStrengths(ops: w))
        XCTAssertEqual(g.normal.count, 8, "the cap cannot be met here; derivation still ends")
        // With another op on some edges, the cap is met by switching to it.
        let mixed = CellSearchSpace.uniform([.maxPool3x3, .skipConnect], edges: 14)
        let h = try DerivationPolicy(space: mixed, steps: 4, maxSkipConnections: 1)
            .derive(normal: CellStrengths(ops: w), reduce: CellStrengths(ops: w))
        XCTAssertEqual(h.normal.filter { $0.op == .skipConnect }.count, 1)
        XCTAssertEqual(h.reduce.filter { $0.op == .skipConnect }.count, 8, "the cap is on the normal cell only")
    }

    func testSkipDropoutScheduleAndLearningRateRestartPerStage() throws {
        XCTAssertEqual(SkipDropout.rate(initial: 0.4, epochInStage: 0, stageEpochs: 25, warmUp: 10), 0.4 * 24 / 25, accuracy: 1e-7)
        XCTAssertEqual(SkipDropout.rate(initial: 0.4, epochInStage: 9, stageEpochs: 25, warmUp: 10), 0.4 * 15 / 25, accuracy: 1e-7)
        XCTAssertEqual(SkipDropout.rate(initial: 0.4, epochInStage: 10, stageEpochs: 25, warmUp: 10), 0.4, accuracy: 1e-7)
        XCTAssertEqual(SkipDropout.rate(initial: 0.7, epochInStage: 15, stageEpochs: 25, warmUp: 10), 0.7 * Float(exp(-1.0)), accuracy: 1e-6)
        XCTAssertEqual(SkipDropout.rate(initial: 0, epochInStage: 3, stageEpochs: 25, warmUp: 10), 0)
        let m = try make(config())
        // Epochs 0, 1 are stage 0; 2, 3 stage 1. Warm-up is each stage's first epoch.
        XCTAssertEqual((0..<4).map { m.isWarmUp(epoch: $0) }, [true, false, true, false])
        XCTAssertEqual(m.skipDropoutRate(epoch: 0), 0.3 * 1 / 2, accuracy: 1e-7)
        XCTAssertEqual(m.skipDropoutRate(epoch: 3), 0.6, accuracy: 1e-7)
        let c = config()
        XCTAssertEqual(m.learningRate(epoch: 0), c.learningRate)
        XCTAssertEqual(m.learningRate(epoch: 2), c.learningRate, "the cosine schedule restarts with the stage")
        XCTAssertEqual(m.learningRate(epoch: 1)!, m.learningRate(epoch: 3)!)
        XCTAssertLessThan(m.learningRate(epoch: 1)!, c.learningRate)
    }

    func testSkipDropoutActsOnlyOnStrideOneIdentityInTrainingWhileActive() throws {
        let m = try make(config())
        let cells = m.network.cells
        // Reduction cells' edges from the cell inputs (stride 2) have FactorizedReduce, no identity.
        let reduction = try XCTUnwrap(cells.first { $0.reduction })
        for (e, edge) in reduction.edges.enumerated() {
            let d = try XCTUnwrap(edge as? SkipDropoutEdge)
            XCTAssertEqual(d.identityIndex == nil, [0, 1, 2, 3, 5, 6, 9, 10].contains(e), "edge \(e)")
        }
        let edge = try XCTUnwrap(cells[0].edges[0] as? SkipDropoutEdge)
        XCTAssertEqual(edge.identityIndex, 3)
        let x = Variable(randomTensor([2, 4, 8, 8], seed: 2))
        var onehot = Tensor(shape: [8]); onehot.scalars[3] = 1
        let w = Variable(onehot)
        func run(training: Bool, rate: Float, step: Int = 0) throws -> Tensor {
            try m.skipDropout.during(rate: rate, epoch: 1, step: step) {
                try edge.forward(x, weights: w, ForwardContext(tape: Tape(recording: false), training: training)).value
            }
        }
        XCTAssertEqual(try run(training: true, rate: 0), x.value)
        XCTAssertEqual(try run(training: false, rate: 0.5), x.value, "no dropout in evaluation")
        let dropped = try run(training: true, rate: 0.5)
        let zeros = dropped.scalars.filter { $0 == 0 }.count
        XCTAssertGreaterThan(zeros, dropped.count / 4)
        XCTAssertLessThan(zeros, 3 * dropped.count / 4)
        for (y, v) in zip(dropped.scalars, x.value.scalars) where y != 0 { XCTAssertEqual(y, 2 * v, accuracy: 1e-6) }
        XCTAssertEqual(try run(training: true, rate: 0.5), dropped, "the mask is a function of (seed, epoch, step, edge)")
        XCTAssertNotEqual(try run(training: true, rate: 0.5, step: 1), dropped)
        // Outside `during` nothing is dropped.
        XCTAssertEqual(try edge.forward(x, weights: w, ForwardContext(tape: Tape(recording: false), training: true)).value, x.value)
        // Other ops than the skip are untouched: a one-hot on sep_conv_3x3 gives the same output either way.
        var sep = Tensor(shape: [8]); sep.scalars[4] = 1
        let plain = try edge.forward(x, weights: Variable(sep), ForwardContext(tape: Tape(recording: false), training: true)).value
        let during = try m.skipDropout.during(rate: 0.5, epoch: 1, step: 0) {
            try edge.forward(x, weights: Variable(sep), ForwardContext(tape: Tape(recording: false), training: true)).value
        }
        XCTAssertEqual(plain, during)
    }

    func testCheckpointRestoresTheStageAndItsOpLists() throws {
        let a = try make(config())
        _ = try a.step(train: try batch(), validation: try batch(), epoch: 1, learningRate: 0.01)
        _ = try a.step(train: try batch(), validation: try batch(), epoch: 2, learningRate: 0.01)
        XCTAssertEqual(a.stage, 1)
        var file = CheckpointFile(metadata: [:])
        a.addState(to: &file)
        let b = try make(config())
        try b.restoreState(from: file)
        XCTAssertEqual(b.stage, 1)
        XCTAssertEqual(b.space, a.space)
        XCTAssertEqual(b.network.cells.count, 4)
        XCTAssertTrue(b.training.network === b.network)
        var again = CheckpointFile(metadata: [:])
        b.addState(to: &again)
        XCTAssertEqual(file.tensors.map(\.name), again.tensors.map(\.name))
        for ((name, x), (_, y)) in zip(file.tensors, again.tensors) { XCTAssertEqual(x, y, name) }
        // Both continue identically.
        let ra = try a.step(train: try batch(), validation: try batch(), epoch: 3, learningRate: 0.01)
        let rb = try b.step(train: try batch(), validation: try batch(), epoch: 3, learningRate: 0.01)
        XCTAssertEqual(ra.loss, rb.loss)
        XCTAssertEqual(a.network.alphasNormal.value, b.network.alphasNormal.value)
    }

    func testRunResumedBeforeAStageBoundaryEntersTheSameNextStage() throws {
        let a = try make(config())
        _ = try a.step(train: try batch(), validation: try batch(), epoch: 1, learningRate: 0.01)
        var file = CheckpointFile(metadata: [:])
        a.addState(to: &file)
        let b = try make(config())
        try b.restoreState(from: file)
        XCTAssertEqual(b.stage, 0)
        for m in [a, b] { _ = try m.step(train: try batch(), validation: try batch(), epoch: 2, learningRate: 0.01) }
        XCTAssertEqual(b.stage, 1)
        XCTAssertEqual(a.space, b.space)
        var fa = CheckpointFile(metadata: [:]), fb = CheckpointFile(metadata: [:])
        a.addState(to: &fa)
        b.addState(to: &fb)
        XCTAssertEqual(fa.tensors.map(\.name), fb.tensors.map(\.name))
        for ((name, x), (_, y)) in zip(fa.tensors, fb.tensors) { XCTAssertEqual(x, y, name) }
    }

    /// A whole two-stage search (4 ops, 3 then 4 cells, one warm-up epoch per stage) and the same
    /// search stopped in the second stage, in its warm-up (after epoch 3's second step: the stage's
    /// supernet built, the alphas frozen) and after it (between the halves of epoch 4's second
    /// step), then resumed: the stage, the kept op lists, every tensor, the metrics, the alphas
    /// and the genotype match the uninterrupted run.
    func testSearchResumedInTheSecondStagesWarmUpAndAfterItIsBitIdentical() throws {
        var c = config(stages: [3, 4], stageOps: [4, 2], dropout: [0.2, 0.5])
        c.primitives = [.none, .maxPool3x3, .skipConnect, .sepConv3x3]
        c.channels = 2
        c.data = DataSource(kind: .synthetic, imageShape: [1, 8, 8])
        c.data.syntheticCount = 64
        c.batchSize = 8
        c.seed = 7
        let base = try temporaryDirectory(self)
        let whole = RunDirectory(base.appendingPathComponent("whole").path)
        let w = try Searcher(config: c, directory: whole, resume: false, threads: 1)
        w.log = { _ in }
        _ = try w.run()
        let x = try CheckpointFile.read(from: whole.checkpoint)
        XCTAssertEqual(x.metadata["pdarts_stage"], .number(1))
        for (name, epoch, step, betweenHalves) in [("warm-up", 2, 2, false), ("after", 3, 1, true)] {
            let cut = RunDirectory(base.appendingPathComponent(name).path)
            let a = try Searcher(config: c, directory: cut, resume: false, threads: 1)
            a.log = { _ in }
            // Epoch `epoch` (from 0), step index 1: in the warm-up the first question is after
            // the step, later the one between its halves.
            a.stopRequested = { [unowned a] in a.loop.epoch == epoch && a.loop.stepInEpoch == 1 ? SIGTERM : nil }
            XCTAssertEqual(try a.run(), .interrupted(signal: SIGTERM), name)
            let saved = try CheckpointFile.read(from: cut.checkpoint)
            XCTAssertEqual(saved.metadata["pdarts_stage"], .number(1), name)
            XCTAssertEqual(saved.metadata["epoch"], .number(Double(epoch)), name)
            XCTAssertEqual(saved.metadata["step"], .number(Double(step)), name)
            XCTAssertEqual(saved.metadata["architecture_done"], .bool(betweenHalves), name)
            let b = try Searcher(config: c, directory: cut, resume: true, threads: 1)
            b.log = { _ in }
            _ = try b.run()
            XCTAssertEqual(b.stateHash(), w.stateHash(), name)
            let y = try CheckpointFile.read(from: cut.checkpoint)
            XCTAssertNotNil(x.metadata["pdarts_ops"])
            XCTAssertEqual(x.metadata["pdarts_ops"], y.metadata["pdarts_ops"], "the kept op lists (\(name))")
            XCTAssertEqual(x.tensors.map(\.name), y.tensors.map(\.name), name)
            for ((t, p), (_, q)) in zip(x.tensors, y.tensors) { XCTAssertEqual(p, q, "\(name): \(t)") }
            func validation(_ d: RunDirectory) throws -> [String] {
                try String(contentsOf: d.metrics, encoding: .utf8).split(separator: "\n").map { line in
                    let o = try JSONDecoder().decode([String: JSONValue].self, from: Data(line.utf8))
                    return "\(o["val_loss"]?.double ?? -1) \(o["val_acc"]?.double ?? -1) \(o["train_loss"]?.double ?? -1) \(o["warm_up"] ?? .null)"
                }
            }
            XCTAssertEqual(try validation(whole), try validation(cut), name)
            for file in [whole.alphas, whole.genotypeText] {
                let other = cut.url.appendingPathComponent(file.lastPathComponent)
                XCTAssertEqual(try String(contentsOf: file, encoding: .utf8), try String(contentsOf: other, encoding: .utf8),
                               "\(name): \(file.lastPathComponent)")
            }
        }
    }

    func testFlagsAreChecked() throws {
        XCTAssertNoThrow(try config().validate())
        func message(_ c: SearchConfig) -> String {
            do { try c.validate(); return "" } catch { return "\(error)" }
        }
        XCTAssertTrue(message(config(stages: [3], stageOps: [8, 2])).contains("one value per stage"))
        XCTAssertTrue(message(config(stageOps: [9, 2])).contains("all 8 primitives"))
        XCTAssertTrue(message(config(stageOps: [8, 9])).contains("between 2 and the previous"))
        XCTAssertTrue(message(config(stageOps: [8, 1])).contains("between 2 and the previous"))
        XCTAssertTrue(message(config(dropout: [0, 1])).contains("[0, 1)"))
        XCTAssertTrue(message(config(dropout: [-0.1, 0])).contains("[0, 1)"))
        XCTAssertTrue(message(config(stages: [0, 4])).contains("at least 1 cell"))
        var c = config()
        c.epochs = 5
        XCTAssertTrue(message(c).contains("multiple of the 2 stages"))
        c.epochs = 4
        c.warmupEpochs = 2
        XCTAssertTrue(message(c).contains("per stage"))
        c = config()
        c.method = .darts
        XCTAssertTrue(message(c).contains("apply to --method p-darts"))
        // A stage deeper than the input can be halved for.
        var odd = config()
        odd.pdarts?.stages = [3, 4]
        XCTAssertThrowsError(try odd.method.make(odd, inputShape: [1, 6, 6], classes: 3, averager: GradientAverager(LocalCommunicator()))) {
            XCTAssertTrue("\($0)".contains("--stages"), "\($0)")
        }
    }
}
