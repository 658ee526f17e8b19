import Kernels
import Search
import XCTest
import _TestSupport

/// L(w, alpha; batch) = s * sum_i alpha_i * w_i^2, with s read from the batch: every gradient and
/// the mixed second derivative are known in closed form, and the central finite difference of the
/// Hessian-vector product is exact for a quadratic.
private final class QuadraticModel: ArchitectureModel {
    let w: Variable
    let a: Variable
    init(w: [Float], a: [Float]) {
        self.w = Variable(tensor([w.count], w), requiresGrad: true)
        self.a = Variable(tensor([a.count], a), requiresGrad: true)
    }
    var weights: [Variable] { [w] }
    var architecture: [Variable] { [a] }
    func loss(on batch: Batch, _ ctx: ForwardContext) throws -> Variable {
        let t = ctx.tape
        return t.sumAll(try t.multiply(t.scale(a, batch.images.scalars[0]), try t.multiply(w, w)))
    }
}

private func batch(_ s: Float) -> Batch { Batch(images: tensor([1], [s]), labels: [0]) }

final class ArchitectTests: XCTestCase {
    let w0: [Float] = [0.5, -1.0, 2.0]
    let a0: [Float] = [0.3, -0.2, 0.7]
    let (st, sv): (Float, Float) = (1.5, 0.8)

    func testFirstOrderIsValidationGradientAtCurrentWeights() throws {
        let m = QuadraticModel(w: w0, a: a0)
        let arch = Architect(model: m)
        let sgd = SGD(parameters: m.weights, learningRate: 0.1, momentum: 0.9, weightDecay: 3e-4)
        _ = try arch.computeGradient(train: batch(st), validation: batch(sv), eta: 0.1, weightOptimizer: sgd, secondOrder: false)
        assertClose(m.a.grad!.scalars, w0.map { sv * $0 * $0 }, tolerance: 1e-6)
        XCTAssertEqual(m.w.value.scalars, w0, "weights unchanged")
    }

    func testSecondOrderMatchesClosedForm() throws {
        let m = QuadraticModel(w: w0, a: a0)
        let arch = Architect(model: m)
        let (eta, mom, wd): (Float, Float, Float) = (0.1, 0.9, 3e-4)
        let sgd = SGD(parameters: m.weights, learningRate: eta, momentum: mom, weightDecay: wd)
        let buffer: [Float] = [0.2, 0.1, -0.3]
        sgd.momentumBuffers[0] = tensor([3], buffer)
        _ = try arch.computeGradient(train: batch(st), validation: batch(sv), eta: eta, weightOptimizer: sgd, secondOrder: true)

        var expected: [Float] = []
        for i in 0..<3 {
            let (w, a) = (Double(w0[i]), Double(a0[i]))
            let wp = w - Double(eta) * (Double(mom) * Double(buffer[i]) + 2 * Double(st) * a * w + Double(wd) * w)
            let v = 2 * Double(sv) * a * wp
            let hvp = 2 * Double(st) * w * v
            expected.append(Float(Double(sv) * wp * wp - Double(eta) * hvp))
        }
        assertClose(m.a.grad!.scalars, expected, tolerance: 2e-4)
        XCTAssertEqual(m.w.value.scalars, w0, "weights restored after the unrolled step")
        // ... and it differs from the first-order gradient.
        let firstOrder = w0.map { sv * $0 * $0 }
        XCTAssertGreaterThan(zip(expected, firstOrder).map { abs($0 - $1) }.max()!, 0.01)
    }

    func testHessianVectorProductIsExactOnQuadratic() throws {
        let m = QuadraticModel(w: w0, a: a0)
        let arch = Architect(model: m)
        let v: [Float] = [1, -2, 0.5]
        let hvp = try arch.hessianVectorProduct(train: batch(st), vector: [tensor([3], v)])
        // d/dw (grad_alpha L) . v = 2 s w ⊙ v
        assertClose(hvp[0].scalars, (0..<3).map { 2 * st * w0[$0] * v[$0] }, tolerance: 1e-4)
        XCTAssertEqual(m.w.value.scalars, w0)
        let zero = try arch.hessianVectorProduct(train: batch(st), vector: [Tensor(shape: [3])])
        XCTAssertEqual(zero[0].scalars, [0, 0, 0])
    }

    func testStepAppliesAdamWithReferenceSettings() throws {
        let m = QuadraticModel(w: w0, a: a0)
        let arch = Architect(model: m)
        XCTAssertEqual(arch.optimizer.learningRate, 3e-4)
        XCTAssertEqual(arch.optimizer.beta1, 0.5)
        XCTAssertEqual(arch.optimizer.beta2, 0.999)
        XCTAssertEqual(arch.optimizer.weightDecay, 1e-3)
        let sgd = SGD(parameters: m.weights, learningRate: 0.1)
        try arch.step(train: batch(st), validation: batch(sv), eta: 0.1, weightOptimizer: sgd, secondOrder: false)
        // First Adam step moves each alpha by lr against the sign of its gradient.
        for i in 0..<3 { XCTAssertEqual(m.a.value.scalars[i], a0[i] - 3e-4, accuracy: 1e-6) }
    }

    func testSecondOrderOnSupernetDiffersFromFirstOrder() throws {
        let config = SupernetConfig(channels: 2, layers: 3, inputShape: [1, 8, 8], classes: 3)
        let data = try SyntheticDataset.make(count: 12, imageShape: [1, 8, 8], classes: 3, seed: 1)
        var g = RandomGenerator(seed: 1)
        let train = data.batch(Array(0..<6), augment: false, generator: &g)
        let val = data.batch(Array(6..<12), augment: false, generator: &g)
        var grads: [[Float]] = []
        for second in [false, true] {
            let net = try SearchNetwork(config, seed: 9)
            let arch = Architect(model: net)
            let sgd = SGD(parameters: net.weights, learningRate: 0.025, momentum: 0.9, weightDecay: 3e-4)
            _ = try arch.computeGradient(train: train, validation: val, eta: 0.025, weightOptimizer: sgd, secondOrder: second)
            grads.append(net.alphasNormal.grad!.scalars)
            XCTAssertTrue(net.weights.allSatisfy { $0.grad == nil })
        }
        let diff = zip(grads[0], grads[1]).map { abs($0 - $1) }.max()!
        XCTAssertGreaterThan(diff, 1e-7)
    }

    func testUnrolledStepPairsMomentumWithWeightsByIdentity() throws {
        let net = try SearchNetwork(SupernetConfig(channels: 2, layers: 3, inputShape: [1, 8, 8], classes: 3), seed: 9)
        let data = try SyntheticDataset.make(count: 8, imageShape: [1, 8, 8], classes: 3, seed: 1)
        var g = RandomGenerator(seed: 1)
        let b = data.batch(Array(0..<8), augment: false, generator: &g)
        let arch = Architect(model: net)
        // An optimiser over the same weights in another order: buffers follow their weights.
        let reversed = SGD(parameters: net.weights.reversed(), learningRate: 0.025, momentum: 0.9)
        let inOrder = SGD(parameters: net.weights, learningRate: 0.025, momentum: 0.9)
        for (k, w) in net.weights.enumerated() {
            var m = Tensor(shape: w.shape)
            m.scalars = (0..<m.count).map { Float(($0 + k) % 7) * 0.01 }
            inOrder.momentumBuffers[k] = m
            reversed.momentumBuffers[net.weights.count - 1 - k] = m
        }
        _ = try arch.computeGradient(train: b, validation: b, eta: 0.025, weightOptimizer: inOrder, secondOrder: true)
        let expected = net.alphasNormal.grad!
        _ = try arch.computeGradient(train: b, validation: b, eta: 0.025, weightOptimizer: reversed, secondOrder: true)
        XCTAssertEqual(net.alphasNormal.grad!, expected)
        // An optimiser that lacks one of the weights is refused, naming it.
        let partial = SGD(parameters: Array(net.weights.dropFirst()), learningRate: 0.025, momentum: 0.9)
        XCTAssertThrowsError(try arch.computeGradient(train: b, validation: b, eta: 0.025, weightOptimizer: partial, secondOrder: true)) {
            XCTAssertTrue("\($0)".contains("is not among the optimiser's"), "\($0)")
        }
    }
}
