import Kernels
import XCTest
import _TestSupport

final class TapeTests: XCTestCase {
    func testGradientsAccumulateOverReuseAndIntermediatesAreReleased() throws {
        let x = leaf(tensor([2], [1, 2]))
        let tape = Tape()
        let h = try tape.add(x, x)          // 2x
        let y = try tape.sum([h, x, h])     // 5x
        let l = try tape.weightedSum([y], weights: Variable(tensor([1], [1])))
        XCTAssertEqual(tape.count, 3)
        try tape.backward(l, gradient: tensor([2], [1, 1]))
        assertClose(x.grad!.scalars, [5, 5])
        XCTAssertNil(h.grad, "non-leaf gradients are released after backward")
        XCTAssertEqual(tape.count, 0)
    }

    func testNonRecordingTapeKeepsNothing() throws {
        let x = leaf(tensor([2], [1, 2]))
        let tape = Tape(recording: false)
        let y = tape.relu(x)
        XCTAssertFalse(y.requiresGrad)
        XCTAssertEqual(tape.count, 0)
        XCTAssertThrowsError(try tape.backward(y, gradient: tensor([2], [1, 1])))
    }

    func testFrozenInputsGetNoGradient() throws {
        let x = leaf(tensor([1, 1, 2, 2], [1, 2, 3, 4]))
        let w = Variable(tensor([1, 1, 1, 1], [2]))
        let tape = Tape()
        let y = try tape.conv2d(x, w)
        try tape.backward(y, gradient: Tensor(shape: y.shape, repeating: 1))
        XCTAssertNil(w.grad)
        assertClose(x.grad!.scalars, [2, 2, 2, 2])
    }

    // MARK: Release

    /// `release` drops a value no backward rule reads (a sum's input, a ReLU's input: it keeps its
    /// output) and keeps one a rule reads (a convolution's input, for its weight gradient);
    /// backward gives the gradients of a tape that keeps everything, bit for bit.
    func testReleaseDropsOnlyValuesNoBackwardRuleReads() throws {
        let x = leaf(randomTensor([2, 3, 4, 4], seed: 1))
        let w = leaf(randomTensor([3, 3, 1, 1], seed: 2))
        let upstream = randomTensor([2, 3, 4, 4], seed: 3)
        var grads: [[Float]] = []
        for releasing in [true, false] {
            [x, w].forEach { $0.zeroGrad() }
            let tape = Tape(releasesValues: releasing)
            let a = try tape.add(x, x)           // read by no rule below
            let r = tape.relu(a)                 // keeps its output, not a
            let c = try tape.conv2d(r, w)        // reads r for the weight gradient
            let y = try tape.add(c, x)
            tape.release(a); tape.release(r); tape.release(c); tape.release(x)
            XCTAssertEqual(a.value.isReleased, releasing, "nothing reads the sum's output in backward")
            XCTAssertFalse(r.value.isReleased, "the convolution and the ReLU read it")
            XCTAssertEqual(c.value.isReleased, releasing, "a sum does not read its inputs")
            XCTAssertFalse(x.value.isReleased, "leaves are never dropped")
            XCTAssertEqual(a.shape, [2, 3, 4, 4], "a dropped value keeps its shape")
            XCTAssertEqual(tape.releasedBytes, releasing ? 2 * 4 * 96 : 0)
            try tape.backward(y, gradient: upstream)
            grads.append(x.grad!.scalars + w.grad!.scalars)
        }
        XCTAssertEqual(grads[0], grads[1])
    }

    /// BatchNorm + ReLU's output, dropped after the depthwise convolution that reads it, is
    /// rebuilt from BatchNorm's input for that convolution's weight gradient: the same values as
    /// the forward's, so every gradient equals the keep-everything tape's, bit for bit.
    func testReleasedBatchNormReLUOutputIsRebuiltForTheConvolutionThatReadsIt() throws {
        let x = leaf(randomTensor([2, 3, 5, 5], seed: 4))
        let gamma = leaf(randomTensor([3], seed: 5))
        let beta = leaf(randomTensor([3], seed: 6))
        let w = leaf(randomTensor([3, 1, 3, 3], seed: 7))
        let upstream = randomTensor([2, 3, 5, 5], seed: 8)
        var grads: [[Float]] = []
        for releasing in [true, false] {
            [x, gamma, beta, w].forEach { $0.zeroGrad() }
            let tape = Tape(releasesValues: releasing)
            let a = try tape.batchNormReLU(x, gamma: gamma, beta: beta, statistics: BatchNormStatistics(channels: 3), training: true)
            let kept = a.value
            let y = try tape.conv2d(a, w, padding: 1, groups: 3)
            tape.release(a)
            XCTAssertEqual(a.value.isReleased, releasing)
            if releasing {
                XCTAssertEqual(a.valueForBackward(), kept, "rebuilt with the forward's arithmetic")
            }
            try tape.backward(y, gradient: upstream)
            grads.append(x.grad!.scalars + gamma.grad!.scalars + beta.grad!.scalars + w.grad!.scalars)
        }
        XCTAssertEqual(grads[0], grads[1])
    }
}
