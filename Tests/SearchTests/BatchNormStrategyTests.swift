import Distributed
import Foundation
import Kernels
import Search
import XCTest
import _TestSupport

/// The supernet's BatchNorm strategies: `--bn-reset` (statistics recomputed as the plain average
/// over training batches) and `--bn-mode batch` (no running statistics), and their flags.
final class BatchNormStrategyTests: XCTestCase {
    private func config(mode: BatchNormMode? = nil) -> SearchConfig {
        var c = SearchConfig.preset(.quick)
        c.channels = 4
        c.layers = 3
        c.epochs = 2
        c.primitives = [.none, .maxPool3x3, .skipConnect, .sepConv3x3]
        c.bnMode = mode
        return c
    }

    private func make(_ c: SearchConfig) throws -> SearchMethod {
        try c.method.make(c, inputShape: [1, 8, 8], classes: 3, averager: GradientAverager(LocalCommunicator()))
    }

    private let data = try! SyntheticDataset.make(count: 20, imageShape: [1, 8, 8], classes: 3, seed: 4)

    private func images(_ idx: [Int]) -> Batch {
        var g = RandomGenerator(seed: 0)
        return data.batch(idx, augment: false, generator: &g)
    }

    /// Fills every running buffer with values no batch would give.
    private func spoil(_ network: SearchNetwork) {
        for (_, s) in network.state.statistics {
            s.runningMean = Tensor(shape: s.runningMean.shape, repeating: 3)
            s.runningVar = Tensor(shape: s.runningVar.shape, repeating: 7)
            s.batchesTracked = 50
        }
    }

    func testResetGivesThePlainAverageOfTheBatchStatistics() throws {
        let m = try make(config())
        let net = m.network
        // Train a step first, then spoil the buffers: the reset must not depend on either.
        _ = try m.step(train: images(Array(0..<8)), validation: images(Array(8..<16)), epoch: 1, learningRate: 0.01, control: StepControl())
        spoil(net)
        let conv = net.stem.layers[0]
        let bn = try XCTUnwrap(net.stem.layers[1] as? BatchNormLayer).statistics
        /// The stem BatchNorm's statistics as the mean over batches of each batch's mean and unbiased variance.
        func explicit(_ batches: [[Int]]) throws -> (mean: [Double], variance: [Double]) {
            var mean = [Double](repeating: 0, count: bn.channels), variance = mean
            for idx in batches {
                let h = try conv.forward(Variable(images(idx).images), ForwardContext(tape: Tape(recording: false), training: true)).value
                let (n, c, hw) = (h.shape[0], h.shape[1], h.shape[2] * h.shape[3])
                for ch in 0..<c {
                    let v = (0..<n).flatMap { i in (0..<hw).map { Double(h.scalars[(i * c + ch) * hw + $0]) } }
                    let mu = v.reduce(0, +) / Double(v.count)
                    mean[ch] += mu / Double(batches.count)
                    variance[ch] += v.map { ($0 - mu) * ($0 - mu) }.reduce(0, +) / Double(v.count - 1) / Double(batches.count)
                }
            }
            return (mean, variance)
        }
        func recalibrate(batches: Int, batchSize: Int, shard: (Int, Int) = (0, 1)) throws {
            try BatchNormRecalibration.run(net.state, data: data, batches: batches, batchSize: batchSize, seed: 9,
                                           comm: LocalCommunicator(), shard: shard) { b in
                _ = try net.forward(Variable(b.images), ForwardContext(tape: Tape(recording: false), training: true))
            }
        }
        var g = RandomGenerator(seed: 9, stream: .dataOrder)
        let order = g.permutation(data.count)
        func check(_ expected: (mean: [Double], variance: [Double]), batches: Int) {
            for ch in 0..<bn.channels {
                XCTAssertEqual(Double(bn.runningMean.scalars[ch]), expected.mean[ch], accuracy: 1e-4 * (1 + abs(expected.mean[ch])))
                XCTAssertEqual(Double(bn.runningVar.scalars[ch]), expected.variance[ch], accuracy: 1e-4 * (1 + expected.variance[ch]))
            }
            XCTAssertEqual(bn.batchesTracked, batches)
            XCTAssertFalse(bn.cumulativeAverage)
        }
        // Three batches of 4 in the seed's order; five batches of 4 wrap around the 20 images.
        try recalibrate(batches: 3, batchSize: 4)
        check(try explicit((0..<3).map { k in Array(order[(4 * k)..<(4 * k + 4)]) }), batches: 3)
        spoil(net)
        try recalibrate(batches: 6, batchSize: 4)
        check(try explicit((0..<6).map { k in (0..<4).map { order[(4 * k + $0) % 20] } }), batches: 6)
        // Rank 1 of 2 takes the second half of each global batch of 2 x 3 images.
        spoil(net)
        try recalibrate(batches: 2, batchSize: 3, shard: (1, 2))
        check(try explicit((0..<2).map { k in Array(order[(6 * k + 3)..<(6 * k + 6)]) }), batches: 2)
    }

    func testBatchModeEvaluatesWithBatchStatisticsAndNeverTouchesTheBuffers() throws {
        let m = try make(config(mode: .batch))
        let net = m.network
        XCTAssertEqual(net.batchNormMode, .batch)
        XCTAssertEqual(try make(config()).network.batchNormMode, .running)
        let x = images(Array(0..<6))
        func logits(training: Bool) throws -> Tensor {
            try net.forward(Variable(x.images), ForwardContext(tape: Tape(recording: false), training: training)).value
        }
        let evaluation = try logits(training: false)
        XCTAssertEqual(evaluation, try logits(training: true), "evaluation normalises as training does, with the batch's statistics")
        // A search step updates no buffer.
        _ = try m.step(train: images(Array(0..<8)), validation: images(Array(8..<16)), epoch: 1, learningRate: 0.01, control: StepControl())
        for (name, s) in net.state.statistics {
            XCTAssertEqual(s.runningMean, Tensor(shape: s.runningMean.shape, repeating: 0), name)
            XCTAssertEqual(s.runningVar, Tensor(shape: s.runningVar.shape, repeating: 1), name)
            XCTAssertEqual(s.batchesTracked, 0, name)
        }
        // Evaluation does not read the buffers.
        let after = try logits(training: false)
        spoil(net)
        XCTAssertEqual(try logits(training: false), after)
        // In running mode it does.
        let running = try make(config())
        let y = try running.network.forward(Variable(x.images), ForwardContext(tape: Tape(recording: false), training: false)).value
        spoil(running.network)
        XCTAssertNotEqual(try running.network.forward(Variable(x.images), ForwardContext(tape: Tape(recording: false), training: false)).value, y)
    }

    func testBatchModeGradientsMatchTheTrainingModeOnes() throws {
        // The kernel: without running statistics, eval mode is training mode (forward and backward).
        let st = BatchNormStatistics(channels: 3)
        st.tracksRunningStatistics = false
        let x0 = randomTensor([4, 3, 2, 2], seed: 1)
        var results: [(Tensor, Tensor)] = []
        for training in [true, false] {
            let x = Variable(x0, requiresGrad: true)
            let tape = Tape()
            let y = try tape.batchNorm(x, statistics: st, training: training)
            try tape.backward(tape.sumAll(try tape.multiply(y, Variable(randomTensor([4, 3, 2, 2], seed: 2)))))
            results.append((y.value, try XCTUnwrap(x.grad)))
        }
        XCTAssertEqual(results[0].0, results[1].0)
        XCTAssertEqual(results[0].1, results[1].1)
        XCTAssertEqual(st.runningMean, Tensor(shape: [3], repeating: 0))
        XCTAssertEqual(st.batchesTracked, 0)
    }

    func testFlagsAreChecked() throws {
        func message(_ c: SearchConfig) -> String {
            do { try c.validate(); return "" } catch { return "\(error)" }
        }
        var c = config()
        c.bnReset = 4
        XCTAssertEqual(message(c), "")
        c.bnReset = 0
        XCTAssertTrue(message(c).contains("--bn-reset must be at least 1"))
        c.bnReset = 2
        c.bnMode = .batch
        XCTAssertTrue(message(c).contains("--bn-mode batch"))
        // Older configurations (without the fields) read as running statistics, no reset.
        var object = try JSONDecoder().decode([String: JSONValue].self, from: try JSONEncoder().encode(config(mode: .batch)))
        XCTAssertEqual(object["bnMode"], .string("batch"))
        object["bnMode"] = nil
        let old = try JSONDecoder().decode(SearchConfig.self, from: try JSONEncoder().encode(object))
        XCTAssertNil(old.bnMode)
        XCTAssertNil(old.bnReset)
    }
}
