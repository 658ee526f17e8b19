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
}
