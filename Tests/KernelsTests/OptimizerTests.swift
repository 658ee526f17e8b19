import Kernels
import XCTest
import _TestSupport

/// Optimiser steps against values worked out by hand from PyTorch's update rules.
final class OptimizerTests: XCTestCase {
    func testSGDMomentumWeightDecay() {
        let p = Variable(tensor([1], [1]), requiresGrad: true)
        let opt = SGD(parameters: [p], learningRate: 0.5, momentum: 0.9, weightDecay: 0.1)
        p.grad = tensor([1], [2])
        opt.step()
        // d = 2 + 0.1 * 1 = 2.1; buf = d; p = 1 - 0.5 * 2.1
        XCTAssertEqual(p.value.scalars[0], -0.05, accuracy: 1e-6)
        p.grad = tensor([1], [2])
        opt.step()
        // d = 2 + 0.1 * -0.05 = 1.995; buf = 0.9 * 2.1 + 1.995 = 3.885; p = -0.05 - 0.5 * 3.885
        XCTAssertEqual(p.value.scalars[0], -1.9925, accuracy: 1e-6)
        XCTAssertEqual(opt.momentumBuffers[0]!.scalars[0], 3.885, accuracy: 1e-6)
    }

    func testSGDWithoutMomentumAndSkipsParametersWithoutGradient() {
        let p = Variable(tensor([2], [1, 2]), requiresGrad: true)
        let q = Variable(tensor([1], [5]), requiresGrad: true)
        let opt = SGD(parameters: [p, q], learningRate: 0.1)
        p.grad = tensor([2], [1, -1])
        opt.step()
        assertClose(p.value.scalars, [0.9, 2.1])
        XCTAssertEqual(q.value.scalars, [5])
    }

    func testAdamDARTSArchitectSettings() {
        // betas (0.5, 0.999), weight decay 1e-3, lr 0.03: three steps of gradients 2, -1, 0.5.
        let p = Variable(tensor([1], [1]), requiresGrad: true)
        let opt = Adam(parameters: [p], learningRate: 0.03, beta1: 0.5, beta2: 0.999, weightDecay: 1e-3)
        let expected: [Double] = [0.970000000149925, 0.9699814069952752, 0.9634794747017764]
        for (g, e) in zip([Float(2), -1, 0.5], expected) {
            p.grad = tensor([1], [g])
            opt.step()
            XCTAssertEqual(Double(p.value.scalars[0]), e, accuracy: 2e-6)
        }
        XCTAssertEqual(opt.stepCount, 3)
    }

    func testAdamFirstStepIsLearningRateTimesSign() {
        // With bias correction the first step is lr * g / (|g| + eps).
        let p = Variable(tensor([2], [0, 0]), requiresGrad: true)
        let opt = Adam(parameters: [p], learningRate: 0.1)
        p.grad = tensor([2], [3, -0.5])
        opt.step()
        assertClose(p.value.scalars, [-0.1, 0.1], tolerance: 1e-6)
    }

    func testClipGradientNorm() {
        let a = Variable(tensor([1], [3]), requiresGrad: true)
        let b = Variable(tensor([1], [0]), requiresGrad: true)
        a.grad = tensor([1], [3]); b.grad = tensor([1], [4])
        XCTAssertEqual(clipGradientNorm([a, b], maxNorm: 1), 5, accuracy: 1e-6)
        XCTAssertEqual(a.grad!.scalars[0], 0.6, accuracy: 1e-6)
        XCTAssertEqual(b.grad!.scalars[0], 0.8, accuracy: 1e-6)
        // Below the threshold nothing changes.
        XCTAssertEqual(clipGradientNorm([a, b], maxNorm: 5), 1, accuracy: 1e-5)
        XCTAssertEqual(a.grad!.scalars[0], 0.6, accuracy: 1e-6)
    }

    func testCosineAnnealing() {
        let s = CosineAnnealing(base: 0.025, minimum: 0.001, period: 50)
        XCTAssertEqual(s.learningRate(at: 0), 0.025, accuracy: 1e-7)
        XCTAssertEqual(s.learningRate(at: 25), 0.013, accuracy: 1e-7)
        XCTAssertEqual(s.learningRate(at: 50), 0.001, accuracy: 1e-7)
        // (1 + cos(pi / 5)) / 2 * 0.024 + 0.001
        XCTAssertEqual(s.learningRate(at: 10), Float(0.001 + 0.024 * (1 + cos(Double.pi / 5)) / 2), accuracy: 1e-7)
    }
}
