import Foundation
import Kernels
import XCTest
import _TestSupport

/// The LSTM's ops (sigmoid, tanh, embedding lookup, column gather) and the LSTM cell itself.
final class LSTMTests: XCTestCase {
    private let t = Tape(recording: false)

    func testHandComputedForwards() throws {
        let x = Variable(tensor([3], [0, log(3), -log(3)]))
        assertClose(t.sigmoid(x).value.scalars, [0.5, 0.75, 0.25])
        assertClose(t.tanh(Variable(tensor([2], [0, atanh(0.5)]))).value.scalars, [0, 0.5])
        let table = Variable(tensor([3, 2], [1, 2, 3, 4, 5, 6]))
        let e = try t.embedding(table, indices: [2, 0, 2])
        XCTAssertEqual(e.shape, [3, 2])
        assertClose(e.value.scalars, [5, 6, 1, 2, 5, 6])
        let g = try t.gatherColumns(table, [1, 1, 0])
        XCTAssertEqual(g.shape, [3, 3])
        assertClose(g.value.scalars, [2, 2, 1, 4, 4, 3, 6, 6, 5])
    }

    /// Zero weights: every gate's pre-activation is its bias. With zero bias i = f = o = 1/2 and
    /// g = 0, so c' = c / 2 and h' = tanh(c') / 2.
    func testCellHandComputed() throws {
        let state = LSTMState(hidden: Variable(tensor([1, 2], [7, -7])), cell: Variable(tensor([1, 2], [2, -4])))
        let next = try t.lstmCell(Variable(tensor([1, 1], [3])), state,
                                  weight: Variable(Tensor(shape: [8, 3])), bias: Variable(Tensor(shape: [8])))
        assertClose(next.cell.value.scalars, [1, -2])
        assertClose(next.hidden.value.scalars, [0.5 * tanhf(1), 0.5 * tanhf(-2)])
        // Gate order i, f, g, o: a large cell-gate bias (third block) gives g = 1, so c' = c/2 + 1/2.
        var bias = Tensor(shape: [8])
        bias.scalars[4] = 20
        bias.scalars[5] = 20
        let gated = try t.lstmCell(Variable(tensor([1, 1], [3])), state, weight: Variable(Tensor(shape: [8, 3])), bias: Variable(bias))
        assertClose(gated.cell.value.scalars, [1.5, -1.5])
    }

    func testOpGradients() throws {
        let x = leaf(randomTensor([3, 4], seed: 60, scale: 2))
        try checkGradients([x]) { $0.sigmoid(x) }
        try checkGradients([x]) { $0.tanh(x) }
        try checkGradients([x]) { try $0.embedding(x, indices: [2, 0, 2, 1]) }
        try checkGradients([x]) { try $0.gatherColumns(x, [3, 0, 3]) }
    }

    func testCellGradients() throws {
        let (n, i, h) = (2, 3, 4)
        let x = leaf(randomTensor([n, i], seed: 61))
        let h0 = leaf(randomTensor([n, h], seed: 62))
        let c0 = leaf(randomTensor([n, h], seed: 63))
        let w = leaf(randomTensor([4 * h, i + h], seed: 64))
        let b = leaf(randomTensor([4 * h], seed: 65))
        try checkGradients([x, h0, c0, w, b]) { tape in
            let s = try tape.lstmCell(x, LSTMState(hidden: h0, cell: c0), weight: w, bias: b)
            return try tape.concatChannels([s.hidden, s.cell])
        }
    }

    /// Three time steps fed from an embedding table, through the `LSTMCell` layer: the gradient of
    /// the whole unrolled sequence reaches the weights, the table and the initial state.
    func testCellOverTimeStepsGradients() throws {
        var g = RandomGenerator(seed: 66)
        let cell = LSTMCell(inputSize: 3, hiddenSize: 5, generator: &g)
        XCTAssertEqual(cell.weight.shape, [20, 8])
        XCTAssertEqual(cell.inputSize, 3)
        XCTAssertEqual(cell.hiddenSize, 5)
        XCTAssertTrue(cell.weight.value.scalars.allSatisfy { abs($0) <= 1 / sqrtf(5) })
        let table = leaf(randomTensor([4, 3], seed: 67))
        let h0 = leaf(randomTensor([1, 5], seed: 68))
        try checkGradients([cell.weight, cell.bias, table, h0]) { tape in
            var s = LSTMState(hidden: h0, cell: Variable(Tensor(shape: [1, 5])))
            var outputs: [Variable] = []
            for token in [1, 3, 1] {
                s = try cell(try tape.embedding(table, indices: [token]), s, on: tape)
                outputs.append(s.hidden)
            }
            return try tape.concatChannels(outputs)
        }
    }

    func testErrors() {
        let v = Variable(Tensor(shape: [2, 3]))
        assertKernelError("embedding", mentions: ["0..<2"]) { try self.t.embedding(v, indices: [0, 2]) }
        assertKernelError("embedding", mentions: ["[3]"]) { try self.t.embedding(Variable(Tensor(shape: [3])), indices: [0]) }
        assertKernelError("gatherColumns", mentions: ["0..<3"]) { try self.t.gatherColumns(v, [3]) }
        assertKernelError("gatherColumns", mentions: ["[]"]) { try self.t.gatherColumns(v, []) }
        let s = LSTMState.zeros(batch: 2, hiddenSize: 4)
        assertKernelError("lstmCell", mentions: ["[16, 7]", "[12, 7]"]) {
            try self.t.lstmCell(v, s, weight: Variable(Tensor(shape: [12, 7])), bias: Variable(Tensor(shape: [16])))
        }
        assertKernelError("lstmCell", mentions: ["[1, 3]", "[2, 4]"]) {
            try self.t.lstmCell(Variable(Tensor(shape: [1, 3])), s, weight: Variable(Tensor(shape: [16, 7])), bias: Variable(Tensor(shape: [16])))
        }
        assertKernelError("LSTMCell", mentions: ["[8, 2]"]) { try LSTMCell(weight: Tensor(shape: [8, 2]), bias: Tensor(shape: [8])) }
    }
}
