import Kernels
import XCTest
import _TestSupport

/// Results do not depend on `--threads`: every op's forward value and gradients are bit-identical
/// with 1, 2 and 3 intra-op threads.
///
/// `minimumParallelWork` is 0 here, so every op really splits its work over the threads even at
/// these small sizes; batches are not multiples of 2 or 3, so the splits are uneven.
final class ThreadCountTests: XCTestCase {
    private var savedMinimumWork = 0

    override func setUp() {
        savedMinimumWork = Parallel.minimumParallelWork
        Parallel.minimumParallelWork = 0
    }

    override func tearDown() {
        Parallel.minimumParallelWork = savedMinimumWork
        Parallel.setThreads(1)
    }

    /// Runs `f` forward and backward (with a fixed random output gradient) on fresh leaves made
    /// from `inputs`, and returns the output followed by every input's gradient.
    private func run(_ inputs: [Tensor], threads: Int, _ f: (Tape, [Variable]) throws -> Variable) throws -> [[Float]] {
        Parallel.setThreads(threads)
        let leaves = inputs.map(leaf)
        let tape = Tape()
        let y = try f(tape, leaves)
        try tape.backward(y, gradient: randomTensor(y.shape, seed: 777))
        return [y.value.scalars] + leaves.map { $0.grad?.scalars ?? [] }
    }

    /// Asserts that `f` gives the same bits with 2 and 3 threads as with 1.
    private func assertThreadIndependent(_ name: String, _ inputs: [Tensor], file: StaticString = #filePath, line: UInt = #line,
                                         _ f: (Tape, [Variable]) throws -> Variable) throws {
        let reference = try run(inputs, threads: 1, f)
        for threads in [2, 3] {
            let got = try run(inputs, threads: threads, f)
            for (k, (a, b)) in zip(reference, got).enumerated() {
                let what = k == 0 ? "output" : "gradient of input \(k - 1)"
                let differing = zip(a, b).filter { $0.bitPattern != $1.bitPattern }.count
                XCTAssertTrue(a.count == b.count && differing == 0,
                              "\(name): \(differing) of \(a.count) elements of the \(what) differ with \(threads) threads",
                              file: file, line: line)
            }
        }
    }

    /// GEMMs are deterministic only with OpenBLAS on one thread: every thread count keeps it there.
    func testOpenBLASStaysOnOneThread() {
        for threads in [1, 2, 3] {
            Parallel.setThreads(threads)
            XCTAssertEqual(BLAS.threads, 1, "with \(threads) intra-op threads")
        }
    }

    func testPointwiseConvolution() throws {
        try assertThreadIndependent("conv2d 1x1", [randomTensor([7, 16, 10, 10], seed: 1), randomTensor([12, 16, 1, 1], seed: 2)]) { t, v in
            try t.conv2d(v[0], v[1])
        }
    }

    func testIm2colConvolution() throws {
        try assertThreadIndependent("conv2d 3x3 stride 2", [randomTensor([7, 6, 11, 11], seed: 3), randomTensor([8, 6, 3, 3], seed: 4),
                                                             randomTensor([8], seed: 5)]) { t, v in
            try t.conv2d(v[0], v[1], bias: v[2], stride: 2, padding: 1)
        }
        try assertThreadIndependent("conv2d 1x1 stride 2", [randomTensor([5, 8, 9, 9], seed: 6), randomTensor([6, 8, 1, 1], seed: 7)]) { t, v in
            try t.conv2d(v[0], v[1], stride: 2)
        }
    }

    func testGroupedConvolution() throws {
        try assertThreadIndependent("conv2d groups 2", [randomTensor([5, 4, 8, 8], seed: 8), randomTensor([6, 2, 3, 3], seed: 9)]) { t, v in
            try t.conv2d(v[0], v[1], padding: 1, groups: 2)
        }
    }

    func testDepthwiseConvolution() throws {
        try assertThreadIndependent("depthwise same", [randomTensor([5, 6, 9, 9], seed: 10), randomTensor([6, 1, 5, 5], seed: 11)]) { t, v in
            try t.conv2d(v[0], v[1], padding: 4, dilation: 2, groups: 6)
        }
        try assertThreadIndependent("depthwise strided", [randomTensor([5, 6, 9, 9], seed: 12), randomTensor([6, 1, 3, 3], seed: 13)]) { t, v in
            try t.conv2d(v[0], v[1], stride: 2, padding: 1, groups: 6)
        }
        // Rows wide enough for the 16- and 8-column phase split and interleave (28 = 16 + 8 + 4).
        try assertThreadIndependent("depthwise strided wide", [randomTensor([5, 6, 7, 28], seed: 14), randomTensor([6, 1, 5, 5], seed: 15)]) { t, v in
            try t.conv2d(v[0], v[1], stride: 2, padding: 2, groups: 6)
        }
    }

    func testReLUFusedDepthwise() throws {
        try assertThreadIndependent("relu+depthwise", [randomTensor([5, 6, 9, 9], seed: 17), randomTensor([6, 1, 3, 3], seed: 18)]) { t, v in
            try t.reluDepthwiseConv2d(v[0], v[1], padding: 1)
        }
    }

    func testDepthwisePointwise() throws {
        let inputs = [randomTensor([7, 6, 9, 9], seed: 19), randomTensor([6, 1, 3, 3], seed: 20), randomTensor([5, 6, 1, 1], seed: 21)]
        for relu in [false, true] {
            try assertThreadIndependent("depthwise+1x1 relu \(relu)", inputs) { t, v in
                try t.depthwisePointwiseConv2d(v[0], depthwise: v[1], pointwise: v[2], padding: 1, reluInput: relu)
            }
        }
    }

    /// The 1x1 products on the panel kernel (planes of 64 and 128 columns; a debug build of the
    /// tests leaves it off unless asked).
    func testProductsOnThePanelKernel() throws {
        try withPanelProduct(true) {
            try assertThreadIndependent("conv2d 1x1, panel", [randomTensor([7, 16, 8, 8], seed: 50), randomTensor([13, 16, 1, 1], seed: 51)]) { t, v in
                try t.conv2d(v[0], v[1])
            }
            let inputs = [randomTensor([5, 6, 8, 16], seed: 52), randomTensor([6, 1, 3, 3], seed: 53), randomTensor([7, 6, 1, 1], seed: 54)]
            try assertThreadIndependent("depthwise+1x1, panel", inputs) { t, v in
                try t.depthwisePointwiseConv2d(v[0], depthwise: v[1], pointwise: v[2], padding: 1, reluInput: true)
            }
            let reduce = [randomTensor([5, 6, 16, 16], seed: 55), randomTensor([4, 6, 1, 1], seed: 56), randomTensor([4, 6, 1, 1], seed: 57)]
            try assertThreadIndependent("factorizedReduce, panel", reduce) { t, v in try t.factorizedReduce(v[0], v[1], v[2]) }
            // Weight gradients on the transposed kernel (Cout x Cin x HW above 10^6), the last
            // one with 20 columns: a full tile and a tile of four rows and twelve zero rows.
            try assertThreadIndependent("conv2d 1x1 weight gradient, panel", [randomTensor([5, 64, 32, 32], seed: 58),
                                                                             randomTensor([17, 64, 1, 1], seed: 59)]) { t, v in
                try t.conv2d(v[0], v[1])
            }
            let fused = [randomTensor([3, 20, 32, 32], seed: 60), randomTensor([20, 1, 3, 3], seed: 61), randomTensor([52, 20, 1, 1], seed: 62)]
            try assertThreadIndependent("depthwise+1x1 weight gradient, panel", fused) { t, v in
                try t.depthwisePointwiseConv2d(v[0], depthwise: v[1], pointwise: v[2], padding: 1, reluInput: true)
            }
        }
    }

    func testFactorizedReduce() throws {
        let inputs = [randomTensor([30, 6, 8, 18], seed: 27), randomTensor([4, 6, 1, 1], seed: 28), randomTensor([4, 6, 1, 1], seed: 29)]
        try assertThreadIndependent("factorizedReduce", inputs) { t, v in try t.factorizedReduce(v[0], v[1], v[2]) }
    }

    func testBatchNormReLUDepthwisePointwise() throws {
        let inputs = [randomTensor([7, 6, 9, 9], seed: 22), randomTensor([6, 1, 3, 3], seed: 23), randomTensor([5, 6, 1, 1], seed: 24),
                      randomTensor([6], seed: 25), randomTensor([6], seed: 26)]
        try assertThreadIndependent("batchNormReLU+depthwise+1x1", inputs) { t, v in
            let bn = BatchNormApplication(gamma: v[3], beta: v[4], statistics: BatchNormStatistics(channels: 6), training: true)
            return try t.batchNormReLUDepthwisePointwiseConv2d(v[0], batchNorm: bn, depthwise: v[1], pointwise: v[2], padding: 1)
        }
    }

    func testSumAndConcat() throws {
        // 3 x 8 x 60 x 60 = 86400 elements: above the 65536-element grain of range splitting.
        let xs = (0..<2).map { randomTensor([3, 8, 60, 60], seed: 40 + UInt64($0)) }
        try assertThreadIndependent("sum", xs) { t, v in try t.sum([v[0], v[1], v[0]]) }
        try assertThreadIndependent("concatChannels", xs) { t, v in try t.concatChannels([v[0], v[1], v[0]]) }
        try assertThreadIndependent("concatChannelsReLU", xs) { t, v in try t.concatChannelsReLU([v[0], v[1], v[0]]) }
        try assertThreadIndependent("relu+concat+1x1", xs + [randomTensor([5, 16, 1, 1], seed: 42)]) { t, v in
            try t.reluConcatConv2d([v[0], v[1]], v[2])
        }
        try assertThreadIndependent("crop", xs) { t, v in try t.add(try t.crop(v[0], top: 1, left: 1, height: 59, width: 59),
                                                                      try t.crop(v[0], top: 0, left: 0, height: 59, width: 59)) }
        let mask = tensor([3], [2, 0, 2])
        try assertThreadIndependent("maskedSum", xs) { t, v in try t.maskedSum([v[0], v[1]], masks: [mask, nil]) }
        try assertThreadIndependent("batchNormSum", xs) { t, v in
            try t.batchNormSum([v[0], v[1]], batchNorms: [BatchNormApplication(gamma: nil, beta: nil, statistics: BatchNormStatistics(channels: xs[0].shape[1]),
                                                                                training: true), nil], masks: [mask, nil])
        }
    }

    func testBatchNorm() throws {
        let inputs = [randomTensor([7, 5, 6, 6], seed: 14), randomTensor([5], seed: 15), randomTensor([5], seed: 16)]
        for relu in [false, true] {
            try assertThreadIndependent("batchNorm relu \(relu)", inputs) { t, v in
                let st = BatchNormStatistics(channels: 5)
                return relu ? try t.batchNormReLU(v[0], gamma: v[1], beta: v[2], statistics: st, training: true)
                            : try t.batchNorm(v[0], gamma: v[1], beta: v[2], statistics: st, training: true)
            }
        }
    }

    func testWeightedSum() throws {
        // 3 * 5 * 30 * 30 = 13500 elements: four blocks of the alpha-gradient reduction.
        let xs = (0..<3).map { randomTensor([3, 5, 30, 30], seed: 20 + UInt64($0)) }
        try assertThreadIndependent("weightedSum", xs + [randomTensor([4], seed: 30)]) { t, v in
            try t.weightedSum(Array(v[0..<3]), weights: v[3], indices: [0, 2, 3])
        }
        try assertThreadIndependent("weightedBatchNormSum", xs + [randomTensor([4], seed: 30)]) { t, v in
            let bn = BatchNormApplication(gamma: nil, beta: nil, statistics: BatchNormStatistics(channels: v[0].shape[1]), training: true)
            return try t.weightedBatchNormSum(Array(v[0..<3]), weights: v[3], indices: [0, 2, 3], batchNorms: [bn, nil, bn])
        }
    }

    func testPoolingAndLinear() throws {
        let x = randomTensor([5, 4, 8, 8], seed: 31, spaced: true)
        for (kind, stride) in [("max", 1), ("max", 2), ("avg", 1), ("avg", 2)] {
            try assertThreadIndependent("\(kind)Pool2d stride \(stride)", [x]) { t, v in
                kind == "max" ? try t.maxPool2d(v[0], kernel: 3, stride: stride, padding: 1)
                              : try t.avgPool2d(v[0], kernel: 3, stride: stride, padding: 1)
            }
        }
        try assertThreadIndependent("linear", [randomTensor([7, 40], seed: 32), randomTensor([10, 40], seed: 33),
                                                randomTensor([10], seed: 34)]) { t, v in
            try t.linear(v[0], v[1], bias: v[2])
        }
    }
}
