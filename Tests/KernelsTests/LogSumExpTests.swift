import Foundation
import Kernels
import XCTest
import _TestSupport

/// Row reductions of logits: log-sum-exp and softmax entropy; per-row gradient clipping.
final class LogSumExpTests: XCTestCase {
    private let t = Tape(recording: false)

    func testHandComputedRows() throws {
        let x = Variable(tensor([2, 2], [0, log(3), 0, 0]))
        // log(1 + 3) and log 2.
        assertClose(try t.logSumExp(x).value.scalars, [Float(log(4.0)), Float(log(2.0))])
        // p = (1/4, 3/4): H = -(1/4 log 1/4 + 3/4 log 3/4); uniform over two: log 2.
        let h = -(0.25 * log(0.25) + 0.75 * log(0.75))
        assertClose(try t.softmaxEntropy(x).value.scalars, [Float(h), Float(log(2.0))])
        XCTAssertEqual(try t.logSumExp(x).shape, [2])
        XCTAssertEqual(try t.softmaxEntropy(Variable(tensor([3], [1, 2, 3]))).shape, [])
        // Large logits: stabilised, a one-hot row has entropy 0.
        assertClose(try t.logSumExp(Variable(tensor([2], [1000, 0]))).value.scalars, [1000])
        assertClose(try t.softmaxEntropy(Variable(tensor([2], [1000, 0]))).value.scalars, [0])
    }

    func testGradientsMatchFiniteDifferences() throws {
        let x = Variable(randomTensor([5, 8], seed: 3, scale: 2))
        try checkGradients([x]) { try $0.logSumExp(x) }
        try checkGradients([x]) { try $0.softmaxEntropy(x) }
        let v = Variable(randomTensor([7], seed: 4))
        try checkGradients([v]) { try $0.softmaxEntropy(v) }
    }

    func testShapeErrors() {
        XCTAssertThrowsError(try t.logSumExp(Variable(Tensor(shape: [3, 0]))))
        XCTAssertThrowsError(try t.softmaxEntropy(Variable(Tensor(shape: []))))
    }

    func testClipGradientRowNormsClipsEachRowAlone() {
        let a = Variable(tensor([2, 2], [0, 0, 0, 0]), requiresGrad: true)
        a.grad = tensor([2, 2], [3, 4, 0.3, 0.4])
        let v = Variable(tensor([2], [0, 0]), requiresGrad: true)
        v.grad = tensor([2], [30, 40])
        XCTAssertEqual(clipGradientRowNorms([a, v], maxNorm: 1), 5, accuracy: 1e-5)
        assertClose(a.grad!.scalars, [0.6, 0.8, 0.3, 0.4], tolerance: 1e-5)
        XCTAssertEqual(v.grad!.scalars, [30, 40], "vectors are not rows")
    }
}
