import Kernels
import XCTest
import _TestSupport

/// The ops PC-DARTS and the reference's conv_7x1_1x7 added: channel shuffle, segment softmax and
/// convolutions with a different stride and padding per axis.
final class PartialChannelOpsTests: XCTestCase {
    func testChannelShuffleMatchesTheReferenceViewTransposeView() throws {
        // x.view(N, g, C/g, H, W).transpose(1, 2).view(N, C, H, W) with C = 8, g = 4 puts input
        // channels in the order 0, 2, 4, 6, 1, 3, 5, 7 (worked out by hand from the strides).
        let (n, c, hw) = (2, 8, 3)
        let x = try Tensor(shape: [n, c, 1, hw], scalars: (0..<(n * c * hw)).map(Float.init))
        let y = try Tape(recording: false).channelShuffle(Variable(x), groups: 4).value
        for s in 0..<n {
            for (o, source) in [0, 2, 4, 6, 1, 3, 5, 7].enumerated() {
                for j in 0..<hw { XCTAssertEqual(y.scalars[(s * c + o) * hw + j], x.scalars[(s * c + source) * hw + j]) }
            }
        }
    }

    func testChannelShuffleIsAPermutationAndItsGradientChecks() throws {
        let x = randomTensor([2, 12, 3, 3], seed: 3)
        let y = try Tape(recording: false).channelShuffle(Variable(x), groups: 3).value
        XCTAssertEqual(y.scalars.sorted(), x.scalars.sorted(), "same multiset of values")
        XCTAssertNotEqual(y.scalars, x.scalars)
        // groups 1 and groups C are the identity.
        XCTAssertEqual(try Tape(recording: false).channelShuffle(Variable(x), groups: 1).value.scalars, x.scalars)
        XCTAssertEqual(try Tape(recording: false).channelShuffle(Variable(x), groups: 12).value.scalars, x.scalars)
        let v = leaf(x)
        try checkGradients([v]) { try $0.channelShuffle(v, groups: 4) }
        assertKernelError("channelShuffle", mentions: ["12 channels", "5 groups"]) {
            _ = try Tape().channelShuffle(Variable(x), groups: 5)
        }
    }

    func testConcatShuffledEqualsSliceConcatShuffle() throws {
        let a = leaf(randomTensor([2, 2, 3, 3], seed: 12)), x = leaf(randomTensor([2, 8, 3, 3], seed: 13))
        let t = Tape(recording: false)
        let fused = try t.concatShuffled([(a, 0..<2), (x, 2..<8)], groups: 4).value
        let composed = try t.channelShuffle(try t.concatChannels([a, try t.sliceChannels(x, 2..<8)]), groups: 4).value
        XCTAssertEqual(fused, composed)
        try checkGradients([a, x]) { try $0.concatShuffled([(a, 0..<2), (x, 2..<8)], groups: 4) }
        assertKernelError("concatShuffled", mentions: ["9 channels", "4 groups"]) {
            _ = try Tape().concatShuffled([(a, 0..<2), (x, 1..<8)], groups: 4)
        }
    }

    func testSegmentSoftmaxNormalisesEachSegment() throws {
        let x = randomTensor([14], seed: 5, scale: 2)
        let y = try Tape(recording: false).segmentSoftmax(Variable(x), segments: [2, 3, 4, 5]).value
        var o = 0
        for n in [2, 3, 4, 5] {
            let seg = Array(y.scalars[o..<(o + n)])
            XCTAssertEqual(seg.reduce(0, +), 1, accuracy: 1e-6)
            // Each segment equals the plain softmax of that segment.
            let ref = try Tape(recording: false).softmax(Variable(try Tensor(shape: [n], scalars: Array(x.scalars[o..<(o + n)])))).value
            assertClose(seg, ref.scalars, tolerance: 1e-7)
            o += n
        }
        let v = leaf(x)
        try checkGradients([v]) { try $0.segmentSoftmax(v, segments: [2, 3, 4, 5]) }
        assertKernelError("segmentSoftmax", mentions: ["[2, 3]"]) {
            _ = try Tape().segmentSoftmax(Variable(x), segments: [2, 3])
        }
    }

    func testAnisotropicConvolutionMatchesHandComputedValues() throws {
        // A 1x3 kernel with stride (1, 2) and padding (0, 1) on a 2x5 image: each output is the
        // dot product of the kernel with columns 2*ox-1 ... 2*ox+1 of the same row (0 outside).
        let x = try Tensor(shape: [1, 1, 2, 5], scalars: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
        let w = try Tensor(shape: [1, 1, 1, 3], scalars: [1, 10, 100])
        let y = try Tape(recording: false).conv2d(Variable(x), Variable(w), stride: (1, 2), padding: (0, 1)).value
        XCTAssertEqual(y.shape, [1, 1, 2, 3])
        let expected: [Float] = [210, 432, 54, 760, 987, 109]  // 0+10+200, 2+30+400, 4+50+0, 0+60+700, 7+80+900, 9+100+0
        XCTAssertEqual(y.scalars, expected)
    }

    func testAnisotropicConvolutionGradients() throws {
        // The reference conv_7x1_1x7 at stride 2: (1, 7) with stride (1, 2), padding (0, 3), then
        // (7, 1) with stride (2, 1), padding (3, 0).
        let x = leaf(randomTensor([2, 3, 8, 8], seed: 7))
        let w1 = leaf(randomTensor([3, 3, 1, 7], seed: 8, scale: 0.3))
        let w2 = leaf(randomTensor([3, 3, 7, 1], seed: 9, scale: 0.3))
        try checkGradients([x, w1, w2]) { t in
            let a = try t.conv2d(x, w1, stride: (1, 2), padding: (0, 3))
            XCTAssertEqual(a.shape, [2, 3, 8, 4])
            let b = try t.conv2d(a, w2, stride: (2, 1), padding: (3, 0))
            XCTAssertEqual(b.shape, [2, 3, 4, 4])
            return b
        }
        // A depthwise anisotropic convolution takes the general path and agrees with it.
        let xd = leaf(randomTensor([1, 4, 6, 6], seed: 10))
        let wd = leaf(randomTensor([4, 1, 1, 5], seed: 11))
        try checkGradients([xd, wd]) { try $0.conv2d(xd, wd, stride: (1, 2), padding: (0, 2), groups: 4) }
    }
}
