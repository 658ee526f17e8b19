import Kernels
import XCTest
import _TestSupport

/// ReLU, arithmetic, linear, shape ops, softmax and cross-entropy, dropout.
final class ElementwiseTests: XCTestCase {
    private let t = Tape(recording: false)

    func testHandComputedForwards() throws {
        let a = Variable(tensor([4], [-1, 2, -3, 4]))
        let b = Variable(tensor([4], [1, 1, 1, 1]))
        assertClose(t.relu(a).value.scalars, [0, 2, 0, 4])
        assertClose(try t.add(a, b).value.scalars, [0, 3, -2, 5])
        assertClose(t.scale(a, 0.5).value.scalars, [-0.5, 1, -1.5, 2])
        assertClose(try t.weightedSum([a, b], weights: Variable(tensor([2], [2, -1]))).value.scalars, [-3, 3, -7, 7])
        assertClose(try t.weightedSum([b], weights: Variable(tensor([3], [0, 0, 5])), indices: [2]).value.scalars, [5, 5, 5, 5])
        assertClose(try t.multiply(a, a).value.scalars, [1, 4, 9, 16])
        XCTAssertEqual(t.sumAll(a).value.scalars, [2])
        // [1, 2] x [[1, 0], [0, 1], [1, 1]]ᵀ + [0, 0, 10]
        let lin = try t.linear(Variable(tensor([1, 2], [1, 2])), Variable(tensor([3, 2], [1, 0, 0, 1, 1, 1])),
                               bias: Variable(tensor([3], [0, 0, 10])))
        assertClose(lin.value.scalars, [1, 2, 13])
        assertClose(try t.softmax(Variable(tensor([1, 2], [0, log(2)]))).value.scalars, [1.0 / 3, 2.0 / 3])
        let ce = try t.crossEntropy(Variable(tensor([2, 2], [0, 0, 0, log(3)])), labels: [0, 1])
        XCTAssertEqual(ce.value.scalars[0], Float((log(2.0) + log(4.0 / 3)) / 2), accuracy: 1e-6)
        XCTAssertEqual(correctCount(logits: tensor([2, 2], [0, 1, 0, 1]), labels: [1, 0]), 1)
    }

    func testShapeOpsForward() throws {
        let x = Variable(tensor([1, 2, 2, 2], [1, 2, 3, 4, 5, 6, 7, 8]))
        let y = Variable(tensor([1, 1, 2, 2], [9, 10, 11, 12]))
        assertClose(try t.concatChannels([x, y]).value.scalars, (1...12).map(Float.init))
        assertClose(try t.sliceChannels(x, 1..<2).value.scalars, [5, 6, 7, 8])
        let c = try t.crop(x, top: 1, left: 1, height: 1, width: 1).value
        XCTAssertEqual(c.shape, [1, 2, 1, 1])
        assertClose(c.scalars, [4, 8])
        XCTAssertEqual(try t.reshape(x, [2, 4]).shape, [2, 4])
    }

    func testGradients() throws {
        let a = leaf(randomTensor([2, 3, 2, 2], seed: 40, spaced: true))
        let b = leaf(randomTensor([2, 3, 2, 2], seed: 41))
        let c = leaf(randomTensor([2, 1, 2, 2], seed: 42))
        let w = leaf(randomTensor([3], seed: 43))
        try checkGradients([a]) { $0.relu(a) }
        try checkGradients([a, b]) { try $0.add(a, b) }
        try checkGradients([a]) { $0.scale(a, -1.5) }
        try checkGradients([a, b, w]) { try $0.weightedSum([a, b, a], weights: w) }
        try checkGradients([a, b, w]) { try $0.weightedSum([b, a], weights: w, indices: [2, 0]) }
        try checkGradients([a, b]) { try $0.multiply(a, b) }
        try checkGradients([b]) { $0.sumAll(b) }
        try checkGradients([a, c]) { try $0.concatChannels([a, c, a]) }
        try checkGradients([a]) { try $0.sliceChannels(a, 1..<3) }
        try checkGradients([a]) { try $0.crop(a, top: 1, left: 0, height: 1, width: 2) }
        // A window with a border on every side: first written (zeros around the window), then added.
        let wide = leaf(randomTensor([2, 1, 4, 5], seed: 47))
        try checkGradients([wide]) { try $0.crop(wide, top: 1, left: 2, height: 2, width: 2) }
        try checkGradients([wide]) { t in try t.add(try t.crop(wide, top: 1, left: 2, height: 2, width: 2), try t.crop(wide, top: 0, left: 1, height: 2, width: 2)) }
        try checkGradients([a]) { try $0.reshape(a, [4, 6]) }

        let x = leaf(randomTensor([3, 4], seed: 44))
        let lw = leaf(randomTensor([5, 4], seed: 45))
        let lb = leaf(randomTensor([5], seed: 46))
        try checkGradients([x, lw, lb]) { try $0.linear(x, lw, bias: lb) }
        try checkGradients([x]) { try $0.softmax(x) }
        try checkGradients([x]) { try $0.row(x, 2) }
        try checkGradients([x]) { try $0.crossEntropy(x, labels: [0, 3, 1]) }
    }

    func testDropoutMasksAreSeededAndScaled() throws {
        let x = leaf(Tensor(shape: [1000], repeating: 1))
        var g1 = RandomGenerator(seed: 3, stream: .dropout)
        var g2 = RandomGenerator(seed: 3, stream: .dropout)
        let y1 = try t.dropout(x, p: 0.25, generator: &g1).value
        let y2 = try t.dropout(x, p: 0.25, generator: &g2).value
        XCTAssertEqual(y1, y2)
        XCTAssertTrue(y1.scalars.allSatisfy { $0 == 0 || abs($0 - 4.0 / 3) < 1e-6 })
        let kept = y1.scalars.filter { $0 != 0 }.count
        XCTAssertTrue((700...800).contains(kept), "kept \(kept) of 1000 at p = 0.25")

        let z = leaf(Tensor(shape: [200, 3, 2], repeating: 1))
        var g3 = RandomGenerator(seed: 4, stream: .dropout)
        let dp = try t.dropPath(z, p: 0.5, generator: &g3).value
        for s in 0..<200 {
            let sample = dp.scalars[(s * 6)..<((s + 1) * 6)]
            XCTAssertTrue(sample.allSatisfy { $0 == 0 } || sample.allSatisfy { $0 == 2 }, "sample \(s) not dropped whole")
        }
        // Gradients flow through the same mask.
        try checkGradients([z]) { tape in
            var g = RandomGenerator(seed: 4, stream: .dropout)
            return try tape.dropPath(z, p: 0.5, generator: &g)
        }
        try checkGradients([x]) { tape in
            var g = RandomGenerator(seed: 5, stream: .dropout)
            return try tape.dropout(x, p: 0.3, generator: &g)
        }
    }

    func testConcatChannelsReLUIsReLUOfTheConcatenationToTheBit() throws {
        // A cell's output under its ReLU: three node states (one listed twice, one also used
        // elsewhere so its gradient accumulates), against relu(concatChannels): output and every
        // input gradient bit for bit.
        let (a, b) = (randomTensor([3, 2, 5, 7], seed: 80), randomTensor([3, 4, 5, 7], seed: 81))
        let dy = randomTensor([3, 8, 5, 7], seed: 82)
        func run(fused: Bool) throws -> [[Float]] {
            let tape = Tape()
            let (x, y) = (leaf(a), leaf(b))
            let parts = [x, y, x]
            let out = fused ? try tape.concatChannelsReLU(parts) : tape.relu(try tape.concatChannels(parts))
            let also = try tape.add(try tape.sum([try tape.sliceChannels(out, 0..<4), y]), y)
            try tape.backward(try tape.concatChannels([also, try tape.sliceChannels(out, 4..<8)]), gradient: dy)
            return [out.value.scalars, x.grad!.scalars, y.grad!.scalars]
        }
        XCTAssertEqual(try run(fused: true), try run(fused: false))
        let x = leaf(randomTensor([2, 2, 3, 3], seed: 83, spaced: true)), y = leaf(randomTensor([2, 1, 3, 3], seed: 84, spaced: true))
        try checkGradients([x, y]) { try $0.concatChannelsReLU([x, y, x]) }
    }

    func testMaskedSumIsTheSumOfDropPathsToTheBit() throws {
        // A cell node: two ops' outputs, drop path on both, on one, or none, summed. The fused op
        // against dropPath + add with the same generator: output and both input gradients, with
        // the second input also used elsewhere (its gradient accumulates).
        let (a, b) = (randomTensor([5, 3, 7, 6], seed: 50), randomTensor([5, 3, 7, 6], seed: 51))
        let dy = randomTensor([5, 3, 7, 6], seed: 52)
        for dropped in [[true, true], [true, false], [false, true]] {
            func run(fused: Bool) throws -> [[Float]] {
                var g = RandomGenerator(seed: 9, stream: .dropout)
                let tape = Tape()
                let (x, y) = (leaf(a), leaf(b))
                var out: Variable
                if fused {
                    let masks = try dropped.map { $0 ? try tape.dropPathMask(samples: 5, p: 0.4, generator: &g) : nil }
                    out = try tape.maskedSum([x, y], masks: masks)
                } else {
                    let h = try [x, y].enumerated().map { k, v in dropped[k] ? try tape.dropPath(v, p: 0.4, generator: &g) : v }
                    out = try tape.add(h[0], h[1])
                }
                out = try tape.add(out, y)
                try tape.backward(out, gradient: dy)
                return [out.value.scalars, x.grad!.scalars, y.grad!.scalars]
            }
            XCTAssertEqual(try run(fused: true), try run(fused: false), "\(dropped)")
        }
        let x = leaf(randomTensor([4, 2, 3, 3], seed: 53)), y = leaf(randomTensor([4, 2, 3, 3], seed: 54))
        let m = tensor([4], [2, 0, 2, 2])
        try checkGradients([x, y]) { try $0.maskedSum([x, y], masks: [m, nil]) }
        assertKernelError("maskedSum", mentions: ["one value per sample"]) { try self.t.maskedSum([x, y], masks: [tensor([2], [1, 1]), nil]) }
    }

    func testErrors() {
        let v = Variable(Tensor(shape: [2, 3]))
        assertKernelError("add", mentions: []) { try self.t.add(v, Variable(Tensor(shape: [3, 2]))) }
        assertKernelError("sum", mentions: ["[2, 3]", "[3, 2]"]) { try self.t.sum([v, Variable(Tensor(shape: [3, 2]))]) }
        assertKernelError("linear", mentions: ["[2, 3]", "[4, 2]"]) { try self.t.linear(v, Variable(Tensor(shape: [4, 2]))) }
        assertKernelError("crossEntropy", mentions: ["[2, 3]", "3 labels"]) { try self.t.crossEntropy(v, labels: [0, 1, 2]) }
        assertKernelError("crossEntropy", mentions: ["0..<3"]) { try self.t.crossEntropy(v, labels: [0, 3]) }
        assertKernelError("weightedSum", mentions: ["[1]"]) { try self.t.weightedSum([v, v], weights: Variable(Tensor(shape: [1]))) }
        assertKernelError("weightedSum", mentions: ["[0, 5]"]) { try self.t.weightedSum([v, v], weights: Variable(Tensor(shape: [3])), indices: [0, 5]) }
        assertKernelError("multiply", mentions: ["[2, 3]", "[3, 2]"]) { try self.t.multiply(v, Variable(Tensor(shape: [3, 2]))) }
        assertKernelError("sliceChannels", mentions: ["2..<4"]) { try self.t.sliceChannels(v, 2..<4) }
        assertKernelError("concatChannels", mentions: ["[2, 3]", "[3, 3]"]) { try self.t.concatChannels([v, Variable(Tensor(shape: [3, 3]))]) }
        assertKernelError("crop", mentions: ["[1, 1, 2, 2]"]) {
            try self.t.crop(Variable(Tensor(shape: [1, 1, 2, 2])), top: 1, left: 1, height: 2, width: 1)
        }
        assertKernelError("reshape", mentions: ["[2, 3]", "[4]"]) { try self.t.reshape(v, [4]) }
        var g = RandomGenerator(seed: 1)
        assertKernelError("dropout", mentions: ["1.0"]) { try self.t.dropout(v, p: 1, generator: &g) }
        assertKernelError("backward", mentions: ["[2, 3]"]) { try Tape().backward(v) }
    }
}
