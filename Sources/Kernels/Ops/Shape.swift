/// Ops that move elements without arithmetic: channel concatenation and slicing, spatial crop,
/// reshape.

extension Tape {
    /// Concatenates along dimension 1. Each input: [N, C_i, ...rest] -> [N, sum C_i, ...rest].
    public func concatChannels(_ xs: [Variable]) throws -> Variable {
        try concatChannels(xs, relu: false)
    }

    /// relu(concatChannels(xs)) as one op (a cell's output, which the next cells read only
    /// through a ReLU): the concatenation is never materialised, and backward hands each input
    /// its slice of dy where the output is positive, in one pass. The same values to the bit.
    public func concatChannelsReLU(_ xs: [Variable]) throws -> Variable {
        try concatChannels(xs, relu: true)
    }

    private func concatChannels(_ xs: [Variable], relu: Bool) throws -> Variable {
        let op = relu ? "concatChannelsReLU" : "concatChannels"
        try require(!xs.isEmpty, op, "no inputs")
        let first = xs[0].shape
        try require(first.count >= 2, op, "inputs must have at least 2 dimensions, got \(first)")
        for x in xs {
            try require(x.shape.count == first.count && x.shape[0] == first[0] && Array(x.shape.dropFirst(2)) == Array(first.dropFirst(2)),
                        op, "inputs \(xs.map(\.shape)) differ outside dimension 1")
        }
        let n = first[0]
        let inner = first.dropFirst(2).reduce(1, *)
        let totalC = xs.reduce(0) { $0 + $1.shape[1] }
        var outShape = first
        outShape[1] = totalC
        // Every element is copied below (samples split over the threads): no zero fill first.
        let offsets = xs.reduce(into: [0]) { $0.append($0.last! + $1.shape[1]) }
        let work = n * totalC * inner
        let y = Tensor(uninitializedShape: outShape) { yp in
            withPointers(xs.map(\.value.scalars)) { ps in
                Parallel.forChunks(n, work: work) { _, samples in
                    for i in samples {
                        for (k, x) in xs.enumerated() {
                            let ci = x.shape[1]
                            let (dst, src) = (yp.baseAddress! + (i * totalC + offsets[k]) * inner, ps[k] + i * ci * inner)
                            if relu {
                                for j in 0..<(ci * inner) { dst[j] = max(src[j], 0) }
                            } else {
                                dst.update(from: src, count: ci * inner)
                            }
                        }
                    }
                }
            }
        }
        // With the ReLU, its mask is read from the output.
        return output(y, inputs: xs, op: op, readsInputs: false, readsOutput: relu) { out, dy in
            for (k, x) in xs.enumerated() where x.requiresGrad {
                let ci = x.shape[1]
                x.writeOrAccumulateGrad { dx, accumulate in
                    Parallel.forChunks(n, work: work) { _, samples in
                        for i in samples {
                            let at = (i * totalC + offsets[k]) * inner
                            let src = dy.baseAddress! + at
                            let dst = dx.baseAddress! + i * ci * inner
                            if relu {
                                out.value.scalars.withUnsafeBufferPointer { yp in
                                    Elementwise.passWherePositive(src, gate: yp.baseAddress! + at, into: dst, ci * inner, accumulate: accumulate)
                                }
                            } else if accumulate {
                                for j in 0..<(ci * inner) { dst[j] += src[j] }
                            } else {
                                dst.update(from: src, count: ci * inner)
                            }
                        }
                    }
                }
            }
        }
    }

    /// Channels `range` of x: [N, C, ...rest] -> [N, range.count, ...rest].
    public func sliceChannels(_ x: Variable, _ range: Range<Int>) throws -> Variable {
        let op = "sliceChannels"
        try require(x.shape.count >= 2, op, "input must have at least 2 dimensions, got \(x.shape)")
        let (n, c) = (x.shape[0], x.shape[1])
        try require(range.lowerBound >= 0 && range.upperBound <= c && !range.isEmpty, op,
                    "channels \(range) out of 0..<\(c) for input \(x.shape)")
        let inner = x.shape.dropFirst(2).reduce(1, *)
        var outShape = x.shape
        outShape[1] = range.count
        var y = Tensor(shape: outShape)
        let k = range.count * inner
        y.scalars.withUnsafeMutableBufferPointer { yp in
            x.value.scalars.withUnsafeBufferPointer { xp in
                for i in 0..<n {
                    (yp.baseAddress! + i * k).update(from: xp.baseAddress! + (i * c + range.lowerBound) * inner, count: k)
                }
            }
        }
        return output(y, inputs: [x]) { _, dy in
            x.accumulateGrad { dx in
                for i in 0..<n {
                    let dst = dx.baseAddress! + (i * c + range.lowerBound) * inner
                    let src = dy.baseAddress! + i * k
                    for j in 0..<k { dst[j] += src[j] }
                }
            }
        }
    }

    /// The window rows `top..<top+height`, columns `left..<left+width` of x: [N, C, H, W].
    /// (FactorizedReduce's `x[:, :, 1:, 1:]` is `crop(x, top: 1, left: 1, height: H-1, width: W-1)`.)
    public func crop(_ x: Variable, top: Int, left: Int, height: Int, width: Int) throws -> Variable {
        let op = "crop"
        try require(x.shape.count == 4, op, "input must be [N, C, H, W], got \(x.shape)")
        let (nc, H, W) = (x.shape[0] * x.shape[1], x.shape[2], x.shape[3])
        try require(top >= 0 && left >= 0 && height >= 1 && width >= 1 && top + height <= H && left + width <= W, op,
                    "window rows \(top)..<\(top + height), columns \(left)..<\(left + width) outside input \(x.shape)")
        // Planes split over the threads; every output element is written (no zero fill first).
        let work = nc * H * W
        let y = Tensor(uninitializedShape: [x.shape[0], x.shape[1], height, width]) { yp in
            x.value.scalars.withUnsafeBufferPointer { xp in
                Parallel.forChunks(nc, work: work) { _, planes in
                    for p in planes {
                        for r in 0..<height {
                            (yp.baseAddress! + (p * height + r) * width)
                                .update(from: xp.baseAddress! + p * H * W + (top + r) * W + left, count: width)
                        }
                    }
                }
            }
        }
        return output(y, inputs: [x], op: "crop") { _, dy in
            x.writeOrAccumulateGrad { dx, accumulate in
                Parallel.forChunks(nc, work: work) { _, planes in
                    for p in planes {
                        let plane = dx.baseAddress! + p * H * W
                        if accumulate {
                            for r in 0..<height {
                                let (dst, src) = (plane + (top + r) * W + left, dy.baseAddress! + (p * height + r) * width)
                                for j in 0..<width { dst[j] += src[j] }
                            }
                            continue
                        }
                        // Written for the first time: rows outside the window zeroed, and in the
                        // window's rows the columns outside it zeroed and the window copied.
                        plane.update(repeating: 0, count: top * W)
                        for r in 0..<height {
                            let row = plane + (top + r) * W
                            row.update(repeating: 0, count: left)
                            (row + left).update(from: dy.baseAddress! + (p * height + r) * width, count: width)
                            (row + left + width).update(repeating: 0, count: W - left - width)
                        }
                        (plane + (top + height) * W).update(repeating: 0, count: (H - top - height) * W)
                    }
                }
            }
        }
    }

    /// The same elements under another shape of equal count.
    public func reshape(_ x: Variable, _ shape: [Int]) throws -> Variable {
        try require(shape.reduce(1, *) == x.value.count && shape.allSatisfy { $0 >= 0 }, "reshape",
                    "cannot view \(x.shape) as \(shape)")
        let y = try x.value.reshaped(shape)
        return output(y, inputs: [x]) { _, dy in
            x.accumulateGrad { dx in for i in 0..<dx.count { dx[i] += dy[i] } }
        }
    }
}

extension Tape {
    /// Channel shuffle with `groups` groups (ShuffleNet; PC-DARTS after each partial-channel edge):
    /// the channels, seen as a [groups, C/groups] matrix, are transposed, so output channel
    /// i * groups + j is input channel j * (C/groups) + i — the reference's
    /// `x.view(N, groups, C/groups, H, W).transpose(1, 2).contiguous().view(N, C, H, W)`.
    ///
    /// x: [N, C, H, W] with C divisible by groups -> [N, C, H, W].
    public func channelShuffle(_ x: Variable, groups: Int) throws -> Variable {
        let op = "channelShuffle"
        try require(x.shape.count == 4, op, "input must be [N, C, H, W], got \(x.shape)")
        let (n, c) = (x.shape[0], x.shape[1])
        try requireArgument(groups >= 1 && c % groups == 0, op, "\(c) channels cannot be split into \(groups) groups")
        let inner = x.shape[2] * x.shape[3]
        let perGroup = c / groups
        /// source[o]: the input channel that output channel o takes.
        let source = (0..<c).map { o in (o % groups) * perGroup + o / groups }
        var y = Tensor(shape: x.shape)
        y.scalars.withUnsafeMutableBufferPointer { yp in
            x.value.scalars.withUnsafeBufferPointer { xp in
                for s in 0..<n {
                    for o in 0..<c {
                        (yp.baseAddress! + (s * c + o) * inner).update(from: xp.baseAddress! + (s * c + source[o]) * inner, count: inner)
                    }
                }
            }
        }
        return output(y, inputs: [x]) { _, dy in
            x.accumulateGrad { dx in
                for s in 0..<n {
                    for o in 0..<c {
                        let (src, dst) = (dy.baseAddress! + (s * c + o) * inner, dx.baseAddress! + (s * c + source[o]) * inner)
                        for j in 0..<inner { dst[j] += src[j] }
                    }
                }
            }
        }
    }
}

extension Tape {
    /// Channel ranges of several inputs concatenated, then shuffled with `groups` groups, in one
    /// pass: `channelShuffle(concatChannels(parts.map { slice($0.input, $0.channels) }), groups)`
    /// without the slices and the concatenation in memory. PC-DARTS's edge output is this, with the
    /// ops' output on the first C/K channels and the input's other channels as the bypass.
    ///
    /// parts: inputs [N, C_i, H, W] (same N, H, W) with a channel range each -> [N, sum of range
    /// lengths, H, W].
    public func concatShuffled(_ parts: [(input: Variable, channels: Range<Int>)], groups: Int) throws -> Variable {
        let op = "concatShuffled"
        try require(!parts.isEmpty, op, "no inputs")
        let first = parts[0].input.shape
        try require(first.count == 4, op, "inputs must be [N, C, H, W], got \(first)")
        for (x, r) in parts {
            try require(x.shape.count == 4 && x.shape[0] == first[0] && x.shape[2] == first[2] && x.shape[3] == first[3], op,
                        "inputs \(parts.map(\.input.shape)) differ outside dimension 1")
            try require(r.lowerBound >= 0 && r.upperBound <= x.shape[1] && !r.isEmpty, op, "channels \(r) out of 0..<\(x.shape[1])")
        }
        let c = parts.reduce(0) { $0 + $1.channels.count }
        try requireArgument(groups >= 1 && c % groups == 0, op, "\(c) channels cannot be split into \(groups) groups")
        let (n, inner) = (first[0], first[2] * first[3])
        // Concatenated channel j comes from (part, channel); output channel o takes concatenated
        // channel (o % groups) * (c / groups) + o / groups.
        var concatSource: [(part: Int, channel: Int)] = []
        for (k, p) in parts.enumerated() { for ch in p.channels { concatSource.append((k, ch)) } }
        let perGroup = c / groups
        let source = (0..<c).map { o in concatSource[(o % groups) * perGroup + o / groups] }
        var y = Tensor(shape: [n, c, first[2], first[3]])
        let values = parts.map(\.input.value.scalars)
        let channelsOf = parts.map { $0.input.shape[1] }
        y.scalars.withUnsafeMutableBufferPointer { yp in
            withPointers(values) { xs in
                for s in 0..<n {
                    for o in 0..<c {
                        let (k, ch) = source[o]
                        (yp.baseAddress! + (s * c + o) * inner).update(from: xs[k] + (s * channelsOf[k] + ch) * inner, count: inner)
                    }
                }
            }
        }
        return output(y, inputs: parts.map(\.input)) { _, dy in
            for (k, p) in parts.enumerated() where p.input.requiresGrad {
                p.input.accumulateGrad { dx in
                    for s in 0..<n {
                        for o in 0..<c where source[o].part == k {
                            let (src, dst) = (dy.baseAddress! + (s * c + o) * inner, dx.baseAddress! + (s * channelsOf[k] + source[o].channel) * inner)
                            for j in 0..<inner { dst[j] += src[j] }
                        }
                    }
                }
            }
        }
    }
}
