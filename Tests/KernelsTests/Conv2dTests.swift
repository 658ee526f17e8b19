import Kernels
import XCTest
import _TestSupport

final class Conv2dTests: XCTestCase {
    private let t = Tape(recording: false)

    private func conv(_ x: Tensor, _ w: Tensor, stride: Int = 1, padding: Int = 0, dilation: Int = 1, groups: Int = 1) throws -> Tensor {
        try t.conv2d(Variable(x), Variable(w), stride: stride, padding: padding, dilation: dilation, groups: groups).value
    }

    func testHandComputedValidConvolution() throws {
        let x = tensor([1, 1, 3, 3], (1...9).map(Float.init))
        let y = try conv(x, Tensor(shape: [1, 1, 2, 2], repeating: 1))
        XCTAssertEqual(y.shape, [1, 1, 2, 2])
        assertClose(y.scalars, [12, 16, 24, 28])
    }

    func testHandComputedPaddedStridedConvolution() throws {
        let x = tensor([1, 1, 3, 3], (1...9).map(Float.init))
        let y = try conv(x, Tensor(shape: [1, 1, 3, 3], repeating: 1), stride: 2, padding: 1)
        XCTAssertEqual(y.shape, [1, 1, 2, 2])
        assertClose(y.scalars, [12, 16, 24, 28])
    }

    func testHandComputedDilatedConvolution() throws {
        let x = tensor([1, 1, 5, 5], (1...25).map(Float.init))
        let y = try conv(x, Tensor(shape: [1, 1, 3, 3], repeating: 1), dilation: 2)
        XCTAssertEqual(y.shape, [1, 1, 1, 1])
        assertClose(y.scalars, [1 + 3 + 5 + 11 + 13 + 15 + 21 + 23 + 25])
    }

    func testHandComputedPointwiseAndDepthwise() throws {
        let x = tensor([1, 2, 1, 2], [1, 2, 3, 4])
        assertClose(try conv(x, tensor([1, 2, 1, 1], [1, 10])).scalars, [31, 42])
        assertClose(try conv(x, tensor([2, 1, 1, 1], [2, -1]), groups: 2).scalars, [2, 4, -3, -4])
    }

    func testDepthwiseMatchesPerChannelConvolution() throws {
        // The direct depthwise kernel against the im2col path run one channel at a time.
        for (k, s, p, d) in [(3, 1, 1, 1), (5, 2, 2, 1), (3, 2, 2, 2), (5, 1, 4, 2)] {
            let x = randomTensor([2, 3, 9, 8], seed: 1)
            let w = randomTensor([3, 1, k, k], seed: 2)
            let y = try conv(x, w, stride: s, padding: p, dilation: d, groups: 3)
            for c in 0..<3 {
                let xc = try t.sliceChannels(Variable(x), c..<(c + 1))
                let wc = try t.sliceChannels(Variable(try w.reshaped([1, 3, k, k])), c..<(c + 1)).value.reshaped([1, 1, k, k])
                let yc = try t.conv2d(xc, Variable(wc), stride: s, padding: p, dilation: d)
                let got = try t.sliceChannels(Variable(y), c..<(c + 1)).value
                assertClose(got.scalars, yc.value.scalars, tolerance: 1e-5)
            }
        }
    }

    func testDepthwiseSamePaddingMatchesDenseInBothPasses() throws {
        // The register-blocked stride-1 kernel (rows computed 8 wide on padded copies) against the
        // dense im2col path one channel at a time, output and both gradients, for even and odd
        // heights (rows are computed in pairs) and widths below (a partial vector spanning rows),
        // at and between multiples of 8 and every DARTS kernel (3x3 and 5x5, dilation 1 and 2).
        // Even kernels with an even dilation (2 x 2 and 4 x 4, dilation 2) also keep the size; they
        // take the whole-plane tap kernel (`DepthwisePlan`) instead of the padded one.
        for (height, width) in [(6, 2), (7, 5), (6, 8), (7, 13), (6, 17), (7, 28), (1, 9)] {
            for (k, d) in [(3, 1), (5, 1), (3, 2), (5, 2), (2, 2), (4, 2)] {
                let p = d * (k - 1) / 2
                let x = randomTensor([2, 3, height, width], seed: UInt64(30 + width))
                let w = randomTensor([3, 1, k, k], seed: 31)
                let tape = Tape()
                let (xv, wv) = (leaf(x), leaf(w))
                let y = try tape.conv2d(xv, wv, padding: p, dilation: d, groups: 3)
                let dy = randomTensor(y.shape, seed: 32)
                try tape.backward(y, gradient: dy)
                for c in 0..<3 {
                    let ref = Tape()
                    let xc = leaf(try t.sliceChannels(Variable(x), c..<(c + 1)).value)
                    let wc = leaf(try t.sliceChannels(Variable(try w.reshaped([1, 3, k, k])), c..<(c + 1)).value.reshaped([1, 1, k, k]))
                    let yc = try ref.conv2d(xc, wc, padding: p, dilation: d)
                    try ref.backward(yc, gradient: try t.sliceChannels(Variable(dy), c..<(c + 1)).value)
                    assertClose(try t.sliceChannels(Variable(y.value), c..<(c + 1)).value.scalars, yc.value.scalars, tolerance: 1e-5)
                    assertClose(try t.sliceChannels(Variable(xv.grad!), c..<(c + 1)).value.scalars, xc.grad!.scalars, tolerance: 1e-5)
                    assertClose(Array(wv.grad!.scalars[(c * k * k)..<((c + 1) * k * k)]), wc.grad!.scalars, tolerance: 1e-4)
                }
            }
        }
    }

    func testStrideTwoDepthwiseMatchesDenseInBothPasses() throws {
        // The phase-split stride-2 kernel against the dense im2col path one channel at a time, on
        // odd and even sizes, every DARTS kernel and padding, and no padding; the input gradient
        // is also added onto an existing one (x used twice). Widths cover the rows split and
        // interleaved 16 and 8 columns at a time (17, 24, 28, 31, 32) and column by column.
        for (h, width) in [(6, 5), (7, 8), (8, 13), (9, 17), (14, 14), (5, 24), (6, 28), (5, 31), (4, 32)] {
            for (k, d, p) in [(3, 1, 1), (5, 1, 2), (3, 2, 2), (5, 2, 4), (3, 1, 0)] {
                guard (h + 2 * p - d * (k - 1) - 1) >= 0, (width + 2 * p - d * (k - 1) - 1) >= 0 else { continue }
                let x = randomTensor([2, 3, h, width], seed: UInt64(60 + width))
                let w = randomTensor([3, 1, k, k], seed: 61)
                let (xv, wv) = (leaf(x), leaf(w))
                for accumulate in [false, true] {
                xv.zeroGrad(); wv.zeroGrad()
                // With `accumulate`, x already holds a gradient (2x, from another use of it).
                if accumulate {
                    let other = Tape()
                    try other.backward(try other.scale(xv, 2), gradient: x)
                }
                let tape = Tape()
                let y = try tape.conv2d(xv, wv, stride: 2, padding: p, dilation: d, groups: 3)
                let dy = randomTensor(y.shape, seed: 62)
                try tape.backward(y, gradient: dy)
                for c in 0..<3 {
                    let ref = Tape()
                    let xc = leaf(try t.sliceChannels(Variable(x), c..<(c + 1)).value)
                    let wc = leaf(try t.sliceChannels(Variable(try w.reshaped([1, 3, k, k])), c..<(c + 1)).value.reshaped([1, 1, k, k]))
                    let yc = try ref.conv2d(xc, wc, stride: 2, padding: p, dilation: d)
                    try ref.backward(yc, gradient: try t.sliceChannels(Variable(dy), c..<(c + 1)).value)
                    let what = "\(h)x\(width) k \(k) d \(d) p \(p) channel \(c)"
                    assertClose(try t.sliceChannels(Variable(y.value), c..<(c + 1)).value.scalars, yc.value.scalars, tolerance: 1e-5)
                    let dx = try t.sliceChannels(Variable(xv.grad!), c..<(c + 1)).value.scalars
                    let prior = try t.sliceChannels(Variable(x), c..<(c + 1)).value.scalars.map { accumulate ? 2 * $0 : 0 }
                    assertClose(zip(dx, prior).map { $0 - $1 }, xc.grad!.scalars, tolerance: 1e-5)
                    XCTAssertEqual(y.shape, [2, 3, (h + 2 * p - d * (k - 1) - 1) / 2 + 1, (width + 2 * p - d * (k - 1) - 1) / 2 + 1], what)
                    assertClose(Array(wv.grad!.scalars[(c * k * k)..<((c + 1) * k * k)]), wc.grad!.scalars, tolerance: 1e-4)
                }
                }
            }
        }
    }

    func testReLUFusedIntoDepthwiseIsBitIdenticalToTheTwoOps() throws {
        // y = dw(relu(x)) in one op against relu then conv2d: output, input gradient (accumulated
        // onto a second use of x, so both the write and the add paths run) and weight gradient.
        for width in [5, 8, 13, 17] {
            for (k, d) in [(3, 1), (5, 1), (3, 2), (5, 2)] {
                let p = d * (k - 1) / 2
                let x = randomTensor([2, 3, 6, width], seed: UInt64(40 + width))
                let w = randomTensor([3, 1, k, k], seed: 41)
                let dy = randomTensor([2, 3, 6, width], seed: 42)
                func run(fused: Bool, twice: Bool) throws -> (y: [Float], dx: [Float], dw: [Float], macs: Int) {
                    let tape = Tape()
                    let (xv, wv) = (leaf(x), leaf(w))
                    var y = fused ? try tape.reluDepthwiseConv2d(xv, wv, padding: p, dilation: d)
                                  : try tape.conv2d(try tape.relu(xv), wv, padding: p, dilation: d, groups: 3)
                    if twice { y = try tape.add(y, xv) }
                    try tape.backward(y, gradient: dy)
                    return (y.value.scalars, xv.grad!.scalars, wv.grad!.scalars, tape.multiplyAccumulates)
                }
                for twice in [false, true] {
                    let (a, b) = (try run(fused: true, twice: twice), try run(fused: false, twice: twice))
                    XCTAssertEqual(a.y, b.y, "k \(k) d \(d) width \(width)")
                    XCTAssertEqual(a.dx, b.dx, "k \(k) d \(d) width \(width) twice \(twice)")
                    XCTAssertEqual(a.dw, b.dw, "k \(k) d \(d) width \(width)")
                    XCTAssertEqual(a.macs, b.macs)
                }
            }
        }
    }

    func testDepthwisePointwisePerSampleIsBitIdenticalToTheTwoOps() throws {
        // y = 1x1(dw(relu?(x))) one sample at a time against the two (or three) ops: output, input
        // gradient (written, and added onto a second use of x) and both weight gradients, for 3x3
        // and 5x5 kernels, dilated or not, widths on and off the 8-wide vector (and 64: planes the
        // panel kernel takes when it is on), and a batch of 5 (not a multiple of the summation parts).
        for width in [5, 8, 13, 64] {
            for (k, d) in [(3, 1), (5, 1), (3, 2), (5, 2)] {
                let p = d * (k - 1) / 2
                let x = randomTensor([5, 3, 6, width], seed: UInt64(50 + width))
                let wd = randomTensor([3, 1, k, k], seed: 51), wp = randomTensor([4, 3, 1, 1], seed: 52)
                let dy = randomTensor([5, 4, 6, width], seed: 53)
                func run(fused: Bool, relu: Bool, twice: Bool) throws -> [[Float]] {
                    let tape = Tape()
                    let (xv, dv, pv) = (leaf(x), leaf(wd), leaf(wp))
                    var y: Variable
                    if fused {
                        y = try tape.depthwisePointwiseConv2d(xv, depthwise: dv, pointwise: pv, padding: p, dilation: d, reluInput: relu)
                    } else {
                        let h = relu ? try tape.reluDepthwiseConv2d(xv, dv, padding: p, dilation: d)
                            : try tape.conv2d(xv, dv, padding: p, dilation: d, groups: 3)
                        y = try tape.conv2d(h, pv)
                    }
                    if twice { y = try tape.add(y, try tape.sliceChannels(try tape.concatChannels([xv, xv]), 0..<4)) }
                    try tape.backward(y, gradient: dy)
                    return [y.value.scalars, xv.grad!.scalars, dv.grad!.scalars, pv.grad!.scalars, [Float(tape.multiplyAccumulates)]]
                }
                for relu in [false, true] {
                    for twice in [false, true] {
                        XCTAssertEqual(try run(fused: true, relu: relu, twice: twice), try run(fused: false, relu: relu, twice: twice),
                                       "k \(k) d \(d) width \(width) relu \(relu) twice \(twice)")
                    }
                }
            }
        }
    }

    func testFactorizedReduceIsBitIdenticalToTheSeparateOps() throws {
        // FactorizedReduce's two stride-2 1x1 convolutions (the second on x cropped by one row and
        // column) and their concatenation, then a training BatchNorm (which takes its statistics
        // from the op's plane sums), against the separate ops: output, running statistics, every
        // gradient (x's also added onto a second use of x), bit for bit; widths below, on and off
        // the 8-wide vectors (W 16: OW 8; W 18 and 34: a vector and a scalar tail; 16x16: an 8x8
        // output, 64 columns, which the panel kernel takes when it is on), x or the
        // weights alone wanting gradients, and the multiply-adds counted.
        for (height, width) in [(2, 2), (4, 6), (2, 16), (6, 18), (4, 34), (16, 16)] {
            let x = randomTensor([5, 3, height, width], seed: UInt64(90 + width))
            let (w1, w2) = (randomTensor([2, 3, 1, 1], seed: 91), randomTensor([2, 3, 1, 1], seed: 92))
            let dy = randomTensor([5, 4, height / 2, width / 2], seed: 93)
            func run(fused: Bool, twice: Bool, wantsX: Bool, wantsW: Bool, wantsW2: Bool? = nil) throws -> [[Float]] {
                let tape = Tape()
                let (xv, av, bv) = (Variable(x, requiresGrad: wantsX), Variable(w1, requiresGrad: wantsW),
                                    Variable(w2, requiresGrad: wantsW2 ?? wantsW))
                var y: Variable
                if fused {
                    y = try tape.factorizedReduce(xv, av, bv)
                } else {
                    let a = try tape.conv2d(xv, av, stride: 2)
                    let b = try tape.conv2d(try tape.crop(xv, top: 1, left: 1, height: height - 1, width: width - 1), bv, stride: 2)
                    y = try tape.concatChannels([a, b])
                }
                let st = BatchNormStatistics(channels: 4)
                y = try tape.batchNorm(y, statistics: st, training: true)
                if twice {
                    let other = try tape.sliceChannels(try tape.concatChannels([xv, xv]), 0..<4)
                    y = try tape.add(y, try tape.crop(other, top: 0, left: 0, height: height / 2, width: width / 2))
                }
                try tape.backward(y, gradient: dy)
                return [y.value.scalars, st.runningMean.scalars, st.runningVar.scalars, [Float(tape.multiplyAccumulates)]]
                    + [xv, av, bv].filter(\.requiresGrad).map { $0.grad!.scalars }
            }
            for twice in [false, true] {
                for (wantsX, wantsW) in [(true, true), (true, false), (false, true)] {
                    let a = try run(fused: true, twice: twice, wantsX: wantsX, wantsW: wantsW)
                    XCTAssertEqual(a, try run(fused: false, twice: twice, wantsX: wantsX, wantsW: wantsW),
                                   "\(height)x\(width) twice \(twice) x \(wantsX) w \(wantsW)")
                    XCTAssertEqual(a.count, 4 + (wantsX ? 1 : 0) + (wantsW ? 2 : 0))
                }
                // One weight alone wanting its gradient (the other's piece of the partials unused).
                for (first, second) in [(true, false), (false, true)] {
                    XCTAssertEqual(try run(fused: true, twice: twice, wantsX: false, wantsW: first, wantsW2: second),
                                   try run(fused: false, twice: twice, wantsX: false, wantsW: first, wantsW2: second),
                                   "\(height)x\(width) twice \(twice) w1 \(first) w2 \(second)")
                }
            }
        }
    }

    func testGradientFactorizedReduce() throws {
        let x = leaf(randomTensor([3, 2, 4, 18], seed: 94))
        let (w1, w2) = (leaf(randomTensor([3, 2, 1, 1], seed: 95)), leaf(randomTensor([3, 2, 1, 1], seed: 96)))
        try checkGradients([x, w1, w2]) { tape in try tape.factorizedReduce(x, w1, w2) }
    }

    func testFactorizedReduceRejectsOddSizesAndMismatchedWeights() {
        let w = leaf(randomTensor([2, 3, 1, 1], seed: 97))
        XCTAssertThrowsError(try t.factorizedReduce(leaf(randomTensor([1, 3, 5, 4], seed: 98)), w, leaf(randomTensor([2, 3, 1, 1], seed: 99)))) {
            XCTAssertTrue("\($0)".contains("even height and width"), "\($0)")
        }
        XCTAssertThrowsError(try t.factorizedReduce(leaf(randomTensor([1, 3, 4, 4], seed: 98)), w, leaf(randomTensor([2, 2, 1, 1], seed: 99))))
        XCTAssertThrowsError(try t.factorizedReduce(leaf(randomTensor([1, 2, 4, 4], seed: 98)), w, leaf(randomTensor([2, 3, 1, 1], seed: 97))))
        XCTAssertThrowsError(try t.factorizedReduce(leaf(randomTensor([1, 3, 4, 4], seed: 98)), w, w)) {
            XCTAssertTrue("\($0)".contains("two weights"), "\($0)")
        }
    }

    func testGradientDepthwisePointwise() throws {
        let x = leaf(randomTensor([3, 2, 5, 6], seed: 54, spaced: true))
        let wd = leaf(randomTensor([2, 1, 3, 3], seed: 55)), wp = leaf(randomTensor([3, 2, 1, 1], seed: 56))
        for relu in [false, true] {
            try checkGradients([x, wd, wp]) { tape in
                try tape.depthwisePointwiseConv2d(x, depthwise: wd, pointwise: wp, padding: 2, dilation: 2, reluInput: relu)
            }
        }
        // A geometry the fused kernels do not take (an even kernel) runs the separate ops.
        let w2 = leaf(randomTensor([2, 1, 2, 2], seed: 57))
        try checkGradients([x, w2, wp]) { tape in
            try tape.depthwisePointwiseConv2d(x, depthwise: w2, pointwise: wp, padding: 0, reluInput: true)
        }
    }

    func testBatchNormReLUDepthwisePointwiseIsBitIdenticalToTheSeparateOps() throws {
        // The middle of a sep_conv, BatchNorm + ReLU then depthwise and 1x1 as one op, against
        // batchNormReLU and depthwisePointwiseConv2d: output, every gradient (x's also added onto
        // a second use of x), the running statistics and what the ranks' reducer sees (it doubles
        // the sums, as two ranks with the same data), bit for bit; affine or not, training or
        // eval, widths on and off the 8-wide vector, dilated or not, and an even kernel (which
        // the fused kernels do not take).
        for width in [5, 8, 13, 64] {
            for (k, d) in [(3, 1), (5, 2), (2, 1)] {
                let p = k == 2 ? 0 : d * (k - 1) / 2
                let x = randomTensor([5, 3, 6, width], seed: UInt64(80 + width))
                let wd = randomTensor([3, 1, k, k], seed: 81), wp = randomTensor([4, 3, 1, 1], seed: 82)
                let (gamma, beta) = (randomTensor([3], seed: 83), randomTensor([3], seed: 84))
                let dy = randomTensor([5, 4, 6 + 2 * p - d * (k - 1), width + 2 * p - d * (k - 1)], seed: 85)
                func run(fused: Bool, affine: Bool, training: Bool, twice: Bool) throws -> [[Float]] {
                    let tape = Tape()
                    let (xv, dv, pv, gv, bv) = (leaf(x), leaf(wd), leaf(wp), leaf(gamma), leaf(beta))
                    let st = BatchNormStatistics(channels: 3)
                    st.runningMean = tensor([3], [0.1, -0.2, 0.3])
                    var reduced: [Double] = []
                    let bn = BatchNormApplication(gamma: affine ? gv : nil, beta: affine ? bv : nil, statistics: st, training: training,
                                                  reducer: { sums in
                                                      for i in sums.indices { sums[i] *= 2 }
                                                      reduced += sums
                                                  })
                    var y: Variable
                    if fused {
                        y = try tape.batchNormReLUDepthwisePointwiseConv2d(xv, batchNorm: bn, depthwise: dv, pointwise: pv, padding: p,
                                                                           dilation: d)
                    } else {
                        let a = try tape.batchNormReLU(xv, gamma: bn.gamma, beta: bn.beta, statistics: st, training: training,
                                                       reducer: bn.reducer)
                        y = try tape.depthwisePointwiseConv2d(a, depthwise: dv, pointwise: pv, padding: p, dilation: d, reluInput: false)
                    }
                    if twice { y = try tape.add(y, try tape.sliceChannels(try tape.concatChannels([xv, xv]), 0..<4)) }
                    try tape.backward(y, gradient: dy)
                    let grads = [xv, dv, pv] + (affine ? [gv, bv] : [])
                    return [y.value.scalars] + grads.map { $0.grad!.scalars }
                        + [st.runningMean.scalars, st.runningVar.scalars, [Float(st.batchesTracked), Float(tape.multiplyAccumulates)],
                           reduced.map { Float($0) }]
                }
                for affine in [false, true] {
                    for training in [false, true] {
                        for twice in k == 2 ? [false] : [false, true] {  // the even kernel's output is smaller than x
                            let a = try run(fused: true, affine: affine, training: training, twice: twice)
                            XCTAssertEqual(a, try run(fused: false, affine: affine, training: training, twice: twice),
                                           "k \(k) d \(d) width \(width) affine \(affine) training \(training) twice \(twice)")
                            XCTAssertEqual(a.last!.isEmpty, !training, "the reducer runs in training only")
                        }
                    }
                }
            }
        }
    }

    func testGradientBatchNormReLUDepthwisePointwise() throws {
        // Eval mode, running statistics 0 and 1: x is spaced (values +-0.025 + 0.05 k), and
        // 2x + 0.1 and 0.5x - 0.025 have their kinks at -0.05 and 0.05, halfway between two
        // values, so finite differences of x do not straddle the ReLU's kink. (The bit-identity
        // test above covers gamma's and beta's gradients.)
        let x = leaf(randomTensor([3, 2, 5, 6], seed: 86, spaced: true))
        let wd = leaf(randomTensor([2, 1, 3, 3], seed: 87)), wp = leaf(randomTensor([3, 2, 1, 1], seed: 88))
        let gamma = leaf(tensor([2], [2, 0.5])), beta = leaf(tensor([2], [0.1, -0.025]))
        let st = BatchNormStatistics(channels: 2)
        try checkGradients([x, wd, wp]) { tape in
            try tape.batchNormReLUDepthwisePointwiseConv2d(x, batchNorm: BatchNormApplication(gamma: gamma, beta: beta, statistics: st,
                                                                                               training: false),
                                                           depthwise: wd, pointwise: wp, padding: 2, dilation: 2)
        }
    }

    func testGradientReLUDepthwise() throws {
        let x = leaf(randomTensor([2, 3, 6, 9], seed: 43, spaced: true))
        let w = leaf(randomTensor([3, 1, 3, 3], seed: 44))
        try checkGradients([x, w]) { tape in try tape.reluDepthwiseConv2d(x, w, padding: 2, dilation: 2) }
        // A geometry the fused kernel does not take (an even kernel) runs the two ops.
        let w2 = leaf(randomTensor([3, 1, 2, 2], seed: 45))
        try checkGradients([x, w2]) { tape in try tape.reluDepthwiseConv2d(x, w2, padding: 0) }
    }

    func testGroupedMatchesSlicedConvolution() throws {
        let x = randomTensor([2, 4, 6, 6], seed: 3)
        let w = randomTensor([6, 2, 3, 3], seed: 4)
        let y = try conv(x, w, padding: 1, groups: 2)
        for grp in 0..<2 {
            let xg = try t.sliceChannels(Variable(x), (2 * grp)..<(2 * grp + 2))
            let wg = try t.sliceChannels(Variable(try w.reshaped([1, 6, 2 * 9])), (3 * grp)..<(3 * grp + 3)).value.reshaped([3, 2, 3, 3])
            let yg = try t.conv2d(xg, Variable(wg), padding: 1)
            assertClose(try t.sliceChannels(Variable(y), (3 * grp)..<(3 * grp + 3)).value.scalars, yg.value.scalars, tolerance: 1e-5)
        }
    }

    func testBiasIsAddedPerChannel() throws {
        let x = Variable(Tensor(shape: [1, 1, 2, 2], repeating: 1))
        let y = try t.conv2d(x, Variable(tensor([2, 1, 1, 1], [1, 2])), bias: Variable(tensor([2], [10, 20])))
        assertClose(y.value.scalars, [11, 11, 11, 11, 22, 22, 22, 22])
    }

    // MARK: Gradients

    private func gradCheck(x xs: [Int], w ws: [Int], stride: Int = 1, padding: Int = 0, dilation: Int = 1, groups: Int = 1, bias: Bool = false,
                           line: UInt = #line) throws {
        let x = leaf(randomTensor(xs, seed: 10))
        let w = leaf(randomTensor(ws, seed: 11))
        let b = leaf(randomTensor([ws[0]], seed: 12))
        var inputs = [x, w]
        if bias { inputs.append(b) }
        try checkGradients(inputs, line: line) { tape in
            try tape.conv2d(x, w, bias: bias ? b : nil, stride: stride, padding: padding, dilation: dilation, groups: groups)
        }
    }

    func testGradientPointwise() throws { try gradCheck(x: [2, 3, 4, 5], w: [4, 3, 1, 1], bias: true) }
    func testGradientPointwiseWithoutBias() throws { try gradCheck(x: [2, 3, 4, 5], w: [4, 3, 1, 1]) }

    /// Without a bias the tape runs both pointwise gradients in one pass over the batch
    /// (`backwardPointwise`): the same values as the input and weight gradient kernels run one
    /// after the other, bit for bit, for a written and for an accumulated input gradient, and
    /// with either gradient alone.
    func testPointwiseGradientsInOnePassEqualTheSeparateKernels() throws {
        let (x, w) = (randomTensor([30, 12, 5, 7], seed: 13), randomTensor([20, 12, 1, 1], seed: 14))
        let dy = randomTensor([30, 20, 5, 7], seed: 15)
        let prior = randomTensor([30, 12, 5, 7], seed: 16)
        let g = try ConvGeometry(input: x.shape, weight: w.shape, stride: (1, 1), padding: (0, 0), dilation: 1, groups: 1)
        for accumulate in [false, true] {
            var (dxA, dwA) = (prior, Tensor(shape: w.shape)), (dxB, dwB) = (prior, Tensor(shape: w.shape))
            var (dxOnly, dwOnly) = (prior, Tensor(shape: w.shape))
            x.scalars.withUnsafeBufferPointer { xp in w.scalars.withUnsafeBufferPointer { wp in dy.scalars.withUnsafeBufferPointer { gp in
                let (xb, wb, gb) = (xp.baseAddress!, wp.baseAddress!, gp.baseAddress!)
                dxA.scalars.withUnsafeMutableBufferPointer { dx in dwA.scalars.withUnsafeMutableBufferPointer { dw in
                    Conv2dKernels.backwardPointwise(g, dy: gb, w: wb, x: xb, dx: dx.baseAddress!, accumulate: accumulate, dw: dw.baseAddress!)
                } }
                dxB.scalars.withUnsafeMutableBufferPointer { Conv2dKernels.backwardInput(g, dy: gb, w: wb, dx: $0.baseAddress!, accumulate: accumulate) }
                dwB.scalars.withUnsafeMutableBufferPointer { Conv2dKernels.backwardWeight(g, dy: gb, x: xb, dw: $0.baseAddress!) }
                dxOnly.scalars.withUnsafeMutableBufferPointer {
                    Conv2dKernels.backwardPointwise(g, dy: gb, w: wb, x: nil, dx: $0.baseAddress!, accumulate: accumulate, dw: nil)
                }
                dwOnly.scalars.withUnsafeMutableBufferPointer {
                    Conv2dKernels.backwardPointwise(g, dy: gb, w: wb, x: xb, dx: nil, accumulate: accumulate, dw: $0.baseAddress!)
                }
            } } }
            XCTAssertEqual(dxA, dxB, "accumulate \(accumulate)")
            XCTAssertEqual(dwA, dwB)
            XCTAssertEqual(dxOnly, dxB)
            XCTAssertEqual(dwOnly, dwB)
            XCTAssertNotEqual(dxA, prior)
        }
    }
    func testGradientPointwiseStride2() throws { try gradCheck(x: [2, 3, 5, 5], w: [2, 3, 1, 1], stride: 2) }
    func testGradientGeneral3x3() throws { try gradCheck(x: [2, 3, 5, 6], w: [4, 3, 3, 3], padding: 1, bias: true) }
    func testGradientStrided() throws { try gradCheck(x: [2, 2, 7, 7], w: [3, 2, 3, 3], stride: 2, padding: 1) }
    func testGradientDilated() throws { try gradCheck(x: [2, 2, 7, 7], w: [2, 2, 3, 3], padding: 2, dilation: 2) }
    func testGradientGrouped() throws { try gradCheck(x: [2, 4, 5, 5], w: [6, 2, 3, 3], padding: 1, groups: 2) }
    func testGradientDepthwise3x3() throws { try gradCheck(x: [2, 3, 6, 6], w: [3, 1, 3, 3], padding: 1, groups: 3) }
    func testGradientDepthwise5x5Strided() throws { try gradCheck(x: [2, 3, 8, 7], w: [3, 1, 5, 5], stride: 2, padding: 2, groups: 3) }
    func testGradientDepthwiseDilated() throws { try gradCheck(x: [2, 2, 9, 9], w: [2, 1, 3, 3], stride: 2, padding: 2, dilation: 2, groups: 2) }
    func testGradientDepthwiseDilated5x5() throws { try gradCheck(x: [1, 2, 10, 10], w: [2, 1, 5, 5], padding: 4, dilation: 2, groups: 2) }
    func testGradientDepthwiseEvenKernelSameSize() throws { try gradCheck(x: [2, 2, 6, 7], w: [2, 1, 2, 2], padding: 1, dilation: 2, groups: 2) }

    // MARK: Errors

    func testShapeErrorsNameOpAndShapes() {
        assertKernelError("conv2d", mentions: ["[2, 3, 8, 8]", "[4, 2, 3, 3]"]) {
            try self.conv(Tensor(shape: [2, 3, 8, 8]), Tensor(shape: [4, 2, 3, 3]))
        }
        assertKernelError("conv2d", mentions: ["[1, 1, 2, 2]"]) {
            try self.conv(Tensor(shape: [1, 1, 2, 2]), Tensor(shape: [1, 1, 3, 3]))
        }
        assertKernelError("conv2d", mentions: ["[3, 8, 8]"]) {
            try self.conv(Tensor(shape: [3, 8, 8]), Tensor(shape: [1, 3, 3, 3]))
        }
        assertKernelError("conv2d", mentions: ["stride 0"]) {
            try self.conv(Tensor(shape: [1, 1, 4, 4]), Tensor(shape: [1, 1, 3, 3]), stride: 0)
        }
        assertKernelError("conv2d", mentions: ["groups 2"]) {
            try self.conv(Tensor(shape: [1, 3, 4, 4]), Tensor(shape: [2, 1, 3, 3]), groups: 2)
        }
        assertKernelError("conv2d", mentions: ["bias [3]"]) {
            try self.t.conv2d(Variable(Tensor(shape: [1, 1, 4, 4])), Variable(Tensor(shape: [2, 1, 1, 1])), bias: Variable(Tensor(shape: [3])))
        }
    }

    func testMultiThreadedMatchesSingleThreaded() throws {
        let x = randomTensor([5, 4, 9, 9], seed: 20)
        let cases: [(w: [Int], s: Int, p: Int, d: Int, g: Int)] = [([6, 4, 1, 1], 1, 0, 1, 1), ([4, 1, 3, 3], 1, 1, 1, 4), ([6, 4, 3, 3], 2, 1, 1, 1)]
        for c in cases {
            let w = randomTensor(c.w, seed: 21)
            var results: [(Tensor, Tensor, Tensor)] = []
            for threads in [1, 3] {
                Parallel.setThreads(threads)
                let xv = leaf(x), wv = leaf(w)
                let tape = Tape()
                let y = try tape.conv2d(xv, wv, stride: c.s, padding: c.p, dilation: c.d, groups: c.g)
                try tape.backward(y, gradient: randomTensor(y.shape, seed: 22))
                results.append((y.value, xv.grad!, wv.grad!))
            }
            Parallel.setThreads(1)
            assertClose(results[0].0.scalars, results[1].0.scalars, tolerance: 1e-5)
            assertClose(results[0].1.scalars, results[1].1.scalars, tolerance: 1e-5)
            assertClose(results[0].2.scalars, results[1].2.scalars, tolerance: 1e-4)
        }
    }
}
