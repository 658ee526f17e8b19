import Kernels
import XCTest
import _TestSupport

final class PoolingTests: XCTestCase {
    private let t = Tape(recording: false)
    private let grid = Variable(tensor([1, 1, 4, 4], (1...16).map(Float.init)))

    func testMaxPoolHandComputed() throws {
        let y = try t.maxPool2d(grid, kernel: 3, stride: 1, padding: 1).value
        XCTAssertEqual(y.shape, [1, 1, 4, 4])
        assertClose(y.scalars, [6, 7, 8, 8, 10, 11, 12, 12, 14, 15, 16, 16, 14, 15, 16, 16])
        let s2 = try t.maxPool2d(grid, kernel: 3, stride: 2, padding: 1).value
        assertClose(s2.scalars, [6, 8, 14, 16])
    }

    func testStrideTwoPoolingAgainstALoopAndFirstMaximumOnTies() throws {
        // The reduction cells' 3x3 / stride 2 / padding 1 pool (an unrolled kernel inside the
        // plane) against a plain loop, on odd and even sizes; values quantised to eighths so
        // windows hold ties, which must send the gradient to the first maximum in window order.
        for (h, w) in [(9, 10), (8, 8), (7, 5), (2, 3)] {
            var x = randomTensor([2, 3, h, w], seed: UInt64(h * w))
            for i in 0..<x.count { x.scalars[i] = (x.scalars[i] * 4).rounded() / 8 }
            let tape = Tape()
            let xv = leaf(x)
            let y = try tape.maxPool2d(xv, kernel: 3, stride: 2, padding: 1)
            let (oh, ow) = ((h - 1) / 2 + 1, (w - 1) / 2 + 1)
            XCTAssertEqual(y.shape, [2, 3, oh, ow])
            let dy = randomTensor(y.shape, seed: 3)
            try tape.backward(y, gradient: dy)
            var expectedY = [Float](), expectedDx = [Float](repeating: 0, count: x.count)
            for p in 0..<6 {
                for oy in 0..<oh {
                    for ox in 0..<ow {
                        var (best, at) = (-Float.infinity, -1)
                        for iy in max(2 * oy - 1, 0)...min(2 * oy + 1, h - 1) {
                            for ix in max(2 * ox - 1, 0)...min(2 * ox + 1, w - 1) where x.scalars[p * h * w + iy * w + ix] > best {
                                (best, at) = (x.scalars[p * h * w + iy * w + ix], p * h * w + iy * w + ix)
                            }
                        }
                        expectedY.append(best)
                        expectedDx[at] += dy.scalars[expectedY.count - 1]
                    }
                }
            }
            XCTAssertEqual(y.value.scalars, expectedY, "\(h)x\(w)")
            assertClose(xv.grad!.scalars, expectedDx, tolerance: 1e-6)
            // Average pooling, same windows (padding not counted), summed in window order.
            let avg = try Tape(recording: false).avgPool2d(Variable(x), kernel: 3, stride: 2, padding: 1).value.scalars
            var expectedAvg = [Float]()
            for p in 0..<6 {
                for oy in 0..<oh {
                    for ox in 0..<ow {
                        var (s, n): (Float, Int) = (0, 0)
                        for iy in max(2 * oy - 1, 0)...min(2 * oy + 1, h - 1) {
                            for ix in max(2 * ox - 1, 0)...min(2 * ox + 1, w - 1) { s += x.scalars[p * h * w + iy * w + ix]; n += 1 }
                        }
                        expectedAvg.append(s / Float(n))
                    }
                }
            }
            XCTAssertEqual(avg, expectedAvg, "\(h)x\(w) average")
        }
    }

    func testTwoByTwoStrideTwoMaxPoolAgainstALoopWithTies() throws {
        // PC-DARTS's bypass pool (2x2, stride 2, no padding), odd sizes too (the last row or column
        // is left out), ties sending the gradient to the first maximum in window order.
        for (h, w) in [(8, 8), (7, 9), (2, 2)] {
            var x = randomTensor([2, 3, h, w], seed: UInt64(h + w))
            for i in 0..<x.count { x.scalars[i] = (x.scalars[i] * 4).rounded() / 8 }
            let tape = Tape()
            let xv = leaf(x)
            let y = try tape.maxPool2d(xv, kernel: 2, stride: 2)
            let dy = randomTensor(y.shape, seed: 5)
            try tape.backward(y, gradient: dy)
            var expectedY = [Float](), expectedDx = [Float](repeating: 0, count: x.count)
            for p in 0..<6 {
                for oy in 0..<(h / 2) {
                    for ox in 0..<(w / 2) {
                        var (best, at) = (-Float.infinity, -1)
                        for iy in (2 * oy)...(2 * oy + 1) {
                            for ix in (2 * ox)...(2 * ox + 1) where x.scalars[p * h * w + iy * w + ix] > best {
                                (best, at) = (x.scalars[p * h * w + iy * w + ix], p * h * w + iy * w + ix)
                            }
                        }
                        expectedY.append(best)
                        expectedDx[at] += dy.scalars[expectedY.count - 1]
                    }
                }
            }
            XCTAssertEqual(y.value.scalars, expectedY, "\(h)x\(w)")
            assertClose(xv.grad!.scalars, expectedDx, tolerance: 1e-6)
        }
    }

    func testAvgPoolExcludesPaddingFromCount() throws {
        let y = try t.avgPool2d(grid, kernel: 3, stride: 1, padding: 1).value
        // Corner: (1 + 2 + 5 + 6) / 4, not / 9. Edge (0, 1): (1+2+3+5+6+7) / 6. Interior (1, 1): 6.
        XCTAssertEqual(y.scalars[0], 3.5, accuracy: 1e-6)
        XCTAssertEqual(y.scalars[1], 4, accuracy: 1e-6)
        XCTAssertEqual(y.scalars[5], 6, accuracy: 1e-6)
        let s2 = try t.avgPool2d(grid, kernel: 3, stride: 2, padding: 1).value
        assertClose(s2.scalars, [3.5, 5, 9.5, 11], tolerance: 1e-5)
    }

    func testGlobalAvgPool() throws {
        let y = try t.globalAvgPool(Variable(tensor([1, 2, 1, 2], [1, 3, 10, 20]))).value
        XCTAssertEqual(y.shape, [1, 2])
        assertClose(y.scalars, [2, 15])
    }

    func testGradients() throws {
        for (k, s, p) in [(3, 1, 1), (3, 2, 1), (2, 2, 0)] {
            let x = leaf(randomTensor([2, 3, 7, 6], seed: 5, spaced: true))
            try checkGradients([x]) { try $0.maxPool2d(x, kernel: k, stride: s, padding: p) }
            let z = leaf(randomTensor([2, 3, 7, 6], seed: 6))
            try checkGradients([z]) { try $0.avgPool2d(z, kernel: k, stride: s, padding: p) }
        }
        let g = leaf(randomTensor([2, 3, 4, 5], seed: 7))
        try checkGradients([g]) { try $0.globalAvgPool(g) }
    }

    func testErrors() {
        assertKernelError("maxPool2d", mentions: ["[1, 4, 4]"]) { try self.t.maxPool2d(Variable(Tensor(shape: [1, 4, 4])), kernel: 3) }
        assertKernelError("avgPool2d", mentions: ["padding 2"]) { try self.t.avgPool2d(self.grid, kernel: 3, padding: 2) }
        assertKernelError("maxPool2d", mentions: ["[1, 1, 2, 2]"]) { try self.t.maxPool2d(Variable(Tensor(shape: [1, 1, 2, 2])), kernel: 3) }
    }

    func testRepeatedPoolIsTheSecondPoolToTheBit() throws {
        // An edge pooling the same input as an earlier one: `repeatOp` on the first output against
        // a second pool call, with other uses of x in between and different upstream gradients;
        // output and x's gradient bit for bit, for the strided, general and whole-plane kernels.
        let x = randomTensor([3, 2, 7, 8], seed: 90, spaced: true)
        for (kind, stride) in [("max", 2), ("max", 1), ("avg", 2), ("avg", 1)] {
            func pool(_ t: Tape, _ v: Variable) throws -> Variable {
                kind == "max" ? try t.maxPool2d(v, kernel: 3, stride: stride, padding: 1) : try t.avgPool2d(v, kernel: 3, stride: stride, padding: 1)
            }
            func run(repeating: Bool) throws -> [[Float]] {
                let t = Tape()
                let xv = leaf(x)
                let a = try pool(t, xv)
                let between = t.scale(xv, 0.5)
                let b = repeating ? try t.repeatOp(a) : try pool(t, xv)
                let out = try t.add(t.scale(a, 1.5), t.scale(b, -0.75))
                try t.backward(try t.sum([t.sumAll(out), t.sumAll(between)]))
                return [a.value.scalars, b.value.scalars, xv.grad!.scalars]
            }
            XCTAssertEqual(try run(repeating: true), try run(repeating: false), "\(kind) stride \(stride)")
        }
        assertKernelError("repeatOp", mentions: ["pooling"]) { try Tape().repeatOp(Tape().relu(leaf(x))) }
    }
}
