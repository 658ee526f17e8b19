/// A 1x1 convolution of ReLU(concatenation of tensors along channels), without the concatenation.
///
/// A DARTS cell's output is the concatenation of its node states, and the next two cells read it
/// only through their preprocessing, ReLU then a 1x1 convolution. As `concatChannelsReLU` and
/// `conv2d`, the concatenation (4C channels) is written, then read by each 1x1; in backward each
/// 1x1 writes or adds its input gradient into the concatenation's, which is read back once more to
/// hand each state its slice where the output was positive. Here each sample's ReLU'd input is
/// gathered from the states into a per-thread buffer (at most 590 KB at the paper's sizes: it
/// stays in L2) right before its product, and its input gradient goes from such a buffer straight
/// into the states' gradients, gated by the states. Per reader, the states are read once in
/// forward (where the concatenation was written once and read by both readers) and the
/// concatenation's gradient is never formed.
///
/// The values are the separate ops' to the bit: the same products on the same operands, the same
/// weight-gradient parts. Each state's gradient receives each reader's gated input gradient in
/// the readers' backward order; the separate ops add the readers' gradients first and gate the
/// sum, which is the same sum (a gate passes or zeroes both terms alike) where the state has no
/// gradient before its first reader's backward runs. In a network the node states are read by
/// later ops of their own cell, which come after the next cells' readers in backward; a state
/// already holding a gradient gets the same terms added in another association.

extension Tape {
    /// conv2d(relu(concatChannels(xs)), w): xs [N, C_k, H, W], distinct, with equal N, H, W; w
    /// [Cout, sum C_k, 1, 1] -> [N, Cout, H, W]. The output carries its plane sums (BatchNorm's
    /// statistics), as `conv2d`'s does.
    public func reluConcatConv2d(_ xs: [Variable], _ w: Variable) throws -> Variable {
        let op = "relu+concat+1x1"
        try require(!xs.isEmpty, op, "no inputs")
        let first = xs[0].shape
        try require(first.count == 4, op, "inputs must be [N, C, H, W], got \(first)")
        for x in xs {
            try require(x.shape.count == 4 && x.shape[0] == first[0] && x.shape[2] == first[2] && x.shape[3] == first[3],
                        op, "inputs \(xs.map(\.shape)) differ outside dimension 1")
        }
        for (i, x) in xs.enumerated() {
            try require(!xs[..<i].contains { $0 === x }, op, "input \(i) repeats an earlier one (concatenate it explicitly)")
        }
        let channels = xs.map { $0.shape[1] }
        let cin = channels.reduce(0, +)
        let g = try ConvGeometry(input: [first[0], cin, first[2], first[3]], weight: w.shape, stride: 1, padding: 0,
                                 dilation: 1, groups: 1)
        try require(g.isPointwise, op, "weight \(w.shape) is not a 1x1 convolution")
        multiplyAccumulates += g.macs
        let kernel = Conv2dKernels.ReLUConcatPointwise(geometry: g, channels: channels)
        var sums = [Float](repeating: 0, count: 2 * g.batch * g.outChannels)
        let y = Tensor(uninitializedShape: [g.batch, g.outChannels, g.height, g.width]) { yp in
            withPointers(xs.map(\.value.scalars)) { ps in
                w.value.scalars.withUnsafeBufferPointer { wp in
                    sums.withUnsafeMutableBufferPointer { sp in
                        kernel.forward(xs: ps, w: wp.baseAddress!, y: yp.baseAddress!, planeSums: sp.baseAddress!)
                    }
                }
            }
        }
        let out = output(y, inputs: xs + [w], op: op, readsOutput: false) { _, dy in
            let values = xs.map { $0.valueForBackward().scalars }
            w.value.scalars.withUnsafeBufferPointer { wp in
                withPointers(values) { ps in
                    withGradients(xs) { dxs, accumulate in
                        guard w.requiresGrad else {
                            kernel.backward(xs: ps, w: wp.baseAddress!, dy: dy.baseAddress!, dxs: dxs, accumulate: accumulate, dw: nil)
                            return
                        }
                        w.accumulateGrad { dw in
                            kernel.backward(xs: ps, w: wp.baseAddress!, dy: dy.baseAddress!, dxs: dxs, accumulate: accumulate,
                                            dw: dw.baseAddress!)
                        }
                    }
                }
            }
        }
        out.planeSums = sums
        return out
    }
}

/// Lends `body` each variable's gradient buffer (nil where none is wanted) and whether it is
/// added to (the gradient existed) or written: `writeOrAccumulateGrad` over several variables.
private func withGradients(_ xs: [Variable], _ body: ([UnsafeMutablePointer<Float>?], [Bool]) -> Void) {
    func next(_ i: Int, _ pointers: [UnsafeMutablePointer<Float>?], _ accumulate: [Bool]) {
        guard i < xs.count else { return body(pointers, accumulate) }
        guard xs[i].requiresGrad else { return next(i + 1, pointers + [nil], accumulate + [false]) }
        xs[i].writeOrAccumulateGrad { grad, added in next(i + 1, pointers + [grad.baseAddress!], accumulate + [added]) }
    }
    next(0, [], [])
}

extension Conv2dKernels {
    /// The kernels of `Tape.reluConcatConv2d`: the 1x1 convolution's per-sample products
    /// (`pointwiseSample`, `backwardPointwise`'s) on a gathered ReLU'd input.
    struct ReLUConcatPointwise {
        /// The 1x1 convolution over the whole concatenation.
        let geometry: ConvGeometry
        /// Channels of each input.
        let channels: [Int]

        var plane: Int { geometry.height * geometry.width }
        /// Floats of one sample's concatenated input.
        var inputFloats: Int { geometry.inChannels * plane }

        /// Writes ReLU of sample n's channels of every input, concatenated, into `into`.
        @inline(__always)
        func gather(_ xs: [UnsafePointer<Float>], sample n: Int, into: UnsafeMutablePointer<Float>) {
            var at = into
            for (k, x) in xs.enumerated() {
                let count = channels[k] * plane
                let src = x + n * count
                for j in 0..<count { at[j] = max(src[j], 0) }  // as `relu`: NaN stays NaN
                at += count
            }
        }

        func forward(xs: [UnsafePointer<Float>], w: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>,
                     planeSums: UnsafeMutablePointer<Float>) {
            let g = geometry
            let outPlane = g.outChannels * plane
            let chunks = Parallel.chunks(g.batch, work: g.macs)
            ScratchPool.shared.withBuffers(chunks, size: inputFloats) { buffers in
                Parallel.forChunks(g.batch, work: g.macs) { worker, samples in
                    let input = buffers[worker]
                    for n in samples {
                        gather(xs, sample: n, into: input)
                        pointwiseSample(g, x: input, w: w, y: y + n * outPlane)
                        Reduce.planeSums(y, sample: n, channels: g.outChannels, plane: plane, into: planeSums)
                    }
                }
            }
        }

        /// Each input's gradient (where `dxs` has one: written, or added with `accumulate`) from
        /// dx = Wᵀ dy gated by the input, and dw += dy ReLU(x)ᵀ, in `backwardPointwise`'s batch
        /// parts and order.
        func backward(xs: [UnsafePointer<Float>], w: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                      dxs: [UnsafeMutablePointer<Float>?], accumulate: [Bool], dw: UnsafeMutablePointer<Float>?) {
            let g = geometry
            let outPlane = g.outChannels * plane
            // Per worker: the sample's input gradient, then (for the weight gradient) its ReLU'd input.
            let inputGradient = dxs.contains { $0 != nil } ? { (n: Int, wt: UnsafePointer<Float>, d: UnsafeMutablePointer<Float>) in
                pointwiseInputGradient(g, dy: dy + n * outPlane, wt: wt, into: d, accumulate: false)
                var at = UnsafePointer(d)
                for (k, x) in xs.enumerated() {
                    let count = channels[k] * plane
                    if let dx = dxs[k] {
                        Elementwise.passWherePositive(at, gate: x + n * count, into: dx + n * count, count, accumulate: accumulate[k])
                    }
                    at += count
                }
            } : nil
            backwardPointwise(g, dy: dy, w: w, scratchFloats: 2 * inputFloats, inputGradient: inputGradient, dw: dw) { n, scratch in
                gather(xs, sample: n, into: scratch + inputFloats)
                return UnsafePointer(scratch + inputFloats)
            }
        }
    }
}
