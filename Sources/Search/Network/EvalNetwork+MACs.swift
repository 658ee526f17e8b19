import Kernels

/// The analytic cost of an evaluation network, from its layers' shapes alone (no forward pass).
///
/// Counted: the multiply-accumulates of every convolution (output channels x output height x
/// output width x input channels per group x kernel height x kernel width) and of the classifier
/// (inputs x outputs). Not counted: BatchNorm, ReLU, pooling, the sums of a node's two inputs,
/// drop path, global average pooling and the linear layer's bias: elementwise work or comparisons,
/// a few percent of the total, which papers' "MACs" / "multi-adds" leave out too. The count equals
/// `Tape.multiplyAccumulates` after a forward pass of one image in eval mode.
extension EvalNetwork {
    /// Multiply-accumulates of one forward pass of one image, without the auxiliary head.
    public var multiplyAccumulates: Int {
        var total = 0
        _ = cellOutputs(into: &total)
        return total + classifier.weight.shape[0] * classifier.weight.shape[1]
    }

    /// Multiply-accumulates of the auxiliary head for one image (0 without a head): it runs in
    /// training only, on the output of cell `config.auxiliaryCell`.
    public var auxiliaryMultiplyAccumulates: Int {
        guard let head = auxiliaryHead else { return 0 }
        var ignored = 0, total = 0
        let input = cellOutputs(into: &ignored)[config.auxiliaryCell]
        _ = head.features.multiplyAccumulates(input, into: &total)
        return total + head.classifier.weight.shape[0] * head.classifier.weight.shape[1]
    }

    /// Adds the stem's and the cells' MACs to `total`; returns each cell's output shape.
    private func cellOutputs(into total: inout Int) -> [MapShape] {
        let input = MapShape(channels: config.inputShape[0], height: config.inputShape[1], width: config.inputShape[2])
        let s = stem.multiplyAccumulates(input, into: &total)
        var (s0, s1) = (s, s)
        var outputs: [MapShape] = []
        for cell in cells {
            (s0, s1) = (s1, cell.multiplyAccumulates(s0, s1, into: &total))
            outputs.append(s1)
        }
        return outputs
    }
}

/// A feature map's shape for one image.
struct MapShape: Equatable {
    var channels: Int, height: Int, width: Int
}

extension EvalCell {
    /// Adds the cell's MACs to `total`; returns its output shape.
    func multiplyAccumulates(_ s0: MapShape, _ s1: MapShape, into total: inout Int) -> MapShape {
        var states = [preprocess0.multiplyAccumulates(s0, into: &total), preprocess1.multiplyAccumulates(s1, into: &total)]
        for i in 0..<(ops.count / 2) {
            let a = ops[2 * i].multiplyAccumulates(states[inputs[2 * i]], into: &total)
            _ = ops[2 * i + 1].multiplyAccumulates(states[inputs[2 * i + 1]], into: &total)
            states.append(a)
        }
        let outputs = concat.map { states[$0] }
        return MapShape(channels: outputs.reduce(0) { $0 + $1.channels }, height: outputs[0].height, width: outputs[0].width)
    }
}

extension Layer {
    /// Adds the layer's MACs on an input of shape `x` to `total`; returns the output shape.
    func multiplyAccumulates(_ x: MapShape, into total: inout Int) -> MapShape {
        switch self {
        case let conv as Conv2dLayer:
            let w = conv.weight.shape  // [out, in / groups, kh, kw]
            let out = MapShape(channels: w[0],
                               height: (x.height + 2 * conv.padding.0 - conv.dilation * (w[2] - 1) - 1) / conv.stride.0 + 1,
                               width: (x.width + 2 * conv.padding.1 - conv.dilation * (w[3] - 1) - 1) / conv.stride.1 + 1)
            total += out.channels * out.height * out.width * w[1] * w[2] * w[3]
            return out
        case let linear as LinearLayer:
            total += linear.weight.shape[0] * linear.weight.shape[1]
            return MapShape(channels: linear.weight.shape[0], height: 1, width: 1)
        case let sequence as Sequential:
            return sequence.layers.reduce(x) { $1.multiplyAccumulates($0, into: &total) }
        case let op as ReLUConvBN: return op.op.multiplyAccumulates(x, into: &total)
        case let op as DilConv: return op.op.multiplyAccumulates(x, into: &total)
        case let op as SepConv: return op.op.multiplyAccumulates(x, into: &total)
        case let op as Conv7x1And1x7: return op.op.multiplyAccumulates(x, into: &total)
        case let reduce as FactorizedReduce:
            // The second convolution sees the input shifted by one pixel (cropped to H-1 x W-1).
            let a = reduce.conv1.multiplyAccumulates(x, into: &total)
            let b = reduce.conv2.multiplyAccumulates(MapShape(channels: x.channels, height: x.height - 1, width: x.width - 1), into: &total)
            return MapShape(channels: a.channels + b.channels, height: a.height, width: a.width)
        case let pool as PoolLayer:  // 3x3, padding 1
            return MapShape(channels: x.channels, height: (x.height - 1) / pool.stride + 1, width: (x.width - 1) / pool.stride + 1)
        case let pool as AvgPoolLayer:  // no padding (the auxiliary head's)
            return MapShape(channels: x.channels, height: (x.height - pool.kernel) / pool.stride + 1,
                            width: (x.width - pool.kernel) / pool.stride + 1)
        case is BatchNormLayer, is ReLULayer, is Identity:
            return x
        default:
            preconditionFailure("no MAC count for \(type(of: self))")
        }
    }
}
