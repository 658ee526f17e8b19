import Distributed
import Foundation
import Kernels
import Search
import XCTest
import _TestSupport

/// L(w, alpha) = s * sum_i alpha_i * w_i^2 (s from the batch): the architect's hook adds its term
/// to the validation loss in both orders.
private final class LinearInAlphaModel: ArchitectureModel {
    let w = Variable(tensor([3], [0.5, -1, 2]), requiresGrad: true)
    let a = Variable(tensor([3], [0.3, -0.2, 0.7]), requiresGrad: true)
    var weights: [Variable] { [w] }
    var architecture: [Variable] { [a] }
    func loss(on batch: Batch, _ ctx: ForwardContext) throws -> Variable {
        let t = ctx.tape
        return t.sumAll(try t.multiply(t.scale(a, batch.images.scalars[0]), try t.multiply(w, w)))
    }
}

/// The beta-decay and entropy regularisers of the architecture loss, and the architecture
/// gradient clips.
final class ArchitectureRegularizerTests: XCTestCase {
    func testRampSchedules() {
        XCTAssertEqual(ArchitectureRegularizer.ramp(epoch: 0, epochs: 10), 0)
        XCTAssertEqual(ArchitectureRegularizer.ramp(epoch: 5, epochs: 10), 0.5)
        XCTAssertEqual(ArchitectureRegularizer.ramp(epoch: 9, epochs: 10), 0.9)
        let r = ArchitectureRegularizer(betaDecay: 2, entropy: -1)
        XCTAssertEqual(r.betaDecayWeight(epoch: 4, epochs: 8), 1)
        XCTAssertEqual(r.entropyWeight(epoch: 3, epochs: 4), -0.75)
        XCTAssertEqual(r.betaDecayWeight(epoch: 0, epochs: 8), 0, "the first epoch is unregularised")
        var c = SearchConfig.preset(.quick)
        XCTAssertFalse(ArchitectureRegularizer(c).isEnabled)
        c.betaRegularization = 0.5
        c.entropyWeight = -0.1
        XCTAssertEqual(ArchitectureRegularizer(c), ArchitectureRegularizer(betaDecay: 0.5, entropy: -0.1))
    }

    func testTermValueAndGradientsMatchFiniteDifferences() throws {
        let a = Variable(randomTensor([3, 4], seed: 1, scale: 2)), b = Variable(randomTensor([2, 4], seed: 2, scale: 2))
        let betas = Variable(randomTensor([3], seed: 3))
        let r = ArchitectureRegularizer(betaDecay: 1.5, entropy: -0.7)
        // Value: lambda_t * mean lse - w_t * mean H over the 5 rows (epoch 1 of 2: half weights).
        let t = Tape(recording: false)
        let lse = try t.logSumExp(a).value.scalars + t.logSumExp(b).value.scalars
        let h = try t.softmaxEntropy(a).value.scalars + t.softmaxEntropy(b).value.scalars
        let expected = 0.75 * lse.reduce(0, +) / 5 + 0.35 * h.reduce(0, +) / 5
        let value = try r.term([a, b, betas], epoch: 1, epochs: 2, on: t)!.value.scalars[0]
        XCTAssertEqual(value, expected, accuracy: 1e-5)
        try checkGradients([a, b]) { try r.term([a, b, betas], epoch: 1, epochs: 2, on: $0)! }
        try checkGradients([a]) { try ArchitectureRegularizer(betaDecay: 3).term([a], epoch: 2, epochs: 3, on: $0)! }
        try checkGradients([a]) { try ArchitectureRegularizer(entropy: 2).term([a], epoch: 2, epochs: 3, on: $0)! }
        XCTAssertNil(try r.term([a, b], epoch: 0, epochs: 2, on: t), "no term at epoch 0")
        XCTAssertNil(try ArchitectureRegularizer().term([a, b], epoch: 1, epochs: 2, on: t))
    }

    func testArchitectAddsTheTermInBothOrders() throws {
        for secondOrder in [false, true] {
            func gradient(_ term: Float?) throws -> ([Float], Float) {
                let m = LinearInAlphaModel()
                let arch = Architect(model: m)
                if let term { arch.regularization = { t in t.scale(t.sumAll(m.a), term) } }
                let sgd = SGD(parameters: m.weights, learningRate: 0.1, momentum: 0.9, weightDecay: 3e-4)
                let batch = { (s: Float) in Batch(images: tensor([1], [s]), labels: [0]) }
                let loss = try arch.computeGradient(train: batch(1.5), validation: batch(0.8), eta: 0.1, weightOptimizer: sgd,
                                                    secondOrder: secondOrder)
                XCTAssertEqual(m.w.value.scalars, [0.5, -1, 2], "weights unchanged")
                return (m.a.grad!.scalars, loss)
            }
            let (plain, loss) = try gradient(nil)
            let (regularised, regLoss) = try gradient(0.25)
            assertClose(regularised, plain.map { $0 + 0.25 }, tolerance: 1e-5)
            XCTAssertEqual(regLoss, loss, "the returned loss is the plain validation loss")
        }
    }

    // MARK: In a search step

    /// A tiny DARTS method with alphas drawn away from uniform, at epoch 1 of 2 (half weights).
    private func method(_ edit: (inout SearchConfig) -> Void) throws -> SearchMethod {
        var c = SearchConfig.preset(.quick)
        c.channels = 4
        c.layers = 3
        c.epochs = 2
        c.archLearningRate = 0.05
        edit(&c)
        let m = try c.method.make(c, inputShape: [1, 8, 8], classes: 3, averager: GradientAverager(LocalCommunicator()))
        for (i, v) in m.network.architecture.enumerated() { v.value = randomTensor(v.shape, seed: UInt64(10 + i)) }
        m.training.epoch = 1
        return m
    }

    private func steps(_ m: SearchMethod, _ n: Int) throws {
        let data = try SyntheticDataset.make(count: 8, imageShape: [1, 8, 8], classes: 3, seed: 4)
        var g = RandomGenerator(seed: 1)
        let batch = data.batch(Array(0..<8), augment: false, generator: &g)
        for _ in 0..<n { _ = try m.step(train: batch, validation: batch, epoch: 1, learningRate: 0.05) }
    }

    private func entropy(_ m: SearchMethod) throws -> Double {
        try CollapseDiagnostics(genotype: try m.genotype(), alphas: m.network.architecture.map(\.value)).alphaEntropy
    }

    func testEntropyWeightSignMovesTheEntropy() throws {
        var result: [Float: Double] = [:]
        for w: Float in [-50, 0, 50] {
            let m = try method { $0.entropyWeight = w }
            let before = try entropy(m)
            try steps(m, 4)
            result[w] = try entropy(m)
            // -w * entropy is added to a loss that is minimised: a negative weight lowers the entropy.
            if w < 0 { XCTAssertLessThan(result[w]!, before, "negative weight sharpens") }
            if w > 0 { XCTAssertGreaterThan(result[w]!, before, "positive weight flattens") }
        }
        XCTAssertLessThan(result[-50]!, result[0]!)
        XCTAssertLessThan(result[0]!, result[50]!)
    }

    func testBetaDecayKeepsTheAlphasSmallInBothOrders() throws {
        for order in [1, 2] {
            func meanLogSumExp(_ beta: Float?) throws -> Float {
                let m = try method { $0.betaRegularization = beta; $0.order = order }
                try steps(m, 3)
                let t = Tape(recording: false)
                let rows = try m.network.architecture.filter { $0.shape.count == 2 }.flatMap { try t.logSumExp($0).value.scalars }
                return rows.reduce(0, +) / Float(rows.count)
            }
            XCTAssertLessThan(try meanLogSumExp(20), try meanLogSumExp(nil), "order \(order)")
        }
    }

    func testArchitectureGradientClips() throws {
        let perEdge = try method { $0.archGradClipPerEdge = 1e-4 }
        try steps(perEdge, 1)
        for v in perEdge.network.architecture {
            let k = v.shape[1], g = v.grad!.scalars
            for r in 0..<v.shape[0] {
                let norm = (0..<k).reduce(0.0) { $0 + Double(g[r * k + $1] * g[r * k + $1]) }.squareRoot()
                XCTAssertLessThanOrEqual(norm, 1.0001e-4, "\(v.name) row \(r)")
            }
        }
        let global = try method { $0.archGradClip = 1e-4 }
        try steps(global, 1)
        let total = global.network.architecture.reduce(0.0) { $0 + $1.grad!.squaredNorm() }.squareRoot()
        XCTAssertLessThanOrEqual(total, 1.0001e-4)
        XCTAssertGreaterThan(total, 0.9e-4, "an unclipped gradient is larger than this")
    }

    func testInvalidValuesAreRefused() {
        let cases: [(WritableKeyPath<SearchConfig, Float?>, Float, String)] = [
            (\.archGradClip, -1, "--arch-grad-clip must be a positive norm"),
            (\.archGradClip, 0, "--arch-grad-clip must be a positive norm"),
            (\.archGradClipPerEdge, -0.5, "--arch-grad-clip-per-edge must be a positive norm"),
            (\.archGradClipPerEdge, .infinity, "--arch-grad-clip-per-edge must be a finite number"),
            (\.betaRegularization, .nan, "--beta-regularization must be a finite number"),
            (\.betaRegularization, -1, "--beta-regularization must be at least 0"),
            (\.entropyWeight, -.infinity, "--entropy-weight must be a finite number"),
        ]
        for (key, value, message) in cases {
            var c = SearchConfig.preset(.quick)
            c[keyPath: key] = value
            XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains(message), "\($0) lacks '\(message)'") }
        }
        var ok = SearchConfig.preset(.quick)
        ok.entropyWeight = -0.5
        ok.betaRegularization = 0
        ok.archGradClip = 5
        XCTAssertNoThrow(try ok.validate())
    }
}
