import Foundation
import Kernels

/// A tensor in a Codable state (a strategy's checkpoint): its shape and its elements' bits,
/// little-endian, in base64, so JSON stores the weights exactly and in a third of the text that
/// decimal numbers take.
struct Base64Tensor: Codable, Equatable {
    var shape: [Int]
    var data: String

    init(_ tensor: Tensor) {
        shape = tensor.shape
        var bits = tensor.scalars.map { $0.bitPattern.littleEndian }
        data = bits.withUnsafeMutableBytes { Data($0) }.base64EncodedString()
    }

    /// The tensor, or a decoding error naming `what` when the data does not fit the shape.
    func tensor(_ what: String) throws -> Tensor {
        let count = shape.reduce(1, *)
        guard shape.allSatisfy({ $0 >= 0 }), let bytes = Data(base64Encoded: data), bytes.count == 4 * count else {
            throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "\(what): data does not hold a tensor of shape \(shape)"))
        }
        var scalars = [Float](repeating: 0, count: count)
        scalars.withUnsafeMutableBytes { _ = bytes.copyBytes(to: $0) }
        for i in 0..<count { scalars[i] = Float(bitPattern: UInt32(littleEndian: scalars[i].bitPattern)) }
        return try Tensor(shape: shape, scalars: scalars)
    }
}
