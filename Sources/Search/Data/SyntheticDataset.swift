import Foundation
import Kernels

/// The embedded default dataset: generated in-process, deterministic and learnable, no download.
///
/// Class k of K is an oriented sinusoidal grating: orientation (k mod 5) * 36 degrees, and
/// frequency 1.5 or 3 cycles per image for k < 5 or k >= 5 (for K = 10), with a random phase,
/// random contrast, a class-independent random colour tint and per-pixel noise. A small CNN
/// separates the classes well above chance within an epoch or two; they are not trivially
/// separable by mean colour or brightness.
public enum SyntheticDataset {
    public static func make(count: Int, imageShape: [Int], classes: Int, seed: UInt64, name: String = "synthetic") throws -> ImageDataset {
        guard imageShape.count == 3, imageShape.allSatisfy({ $0 >= 1 }) else {
            throw DataError("synthetic image shape must be CxHxW, got \(imageShape)")
        }
        guard classes >= 2 else { throw DataError("synthetic data needs at least 2 classes, got \(classes)") }
        guard count >= classes else { throw DataError("synthetic data needs at least one image per class (\(count) < \(classes))") }
        let (c, h, w) = (imageShape[0], imageShape[1], imageShape[2])
        var g = RandomGenerator(seed: seed, stream: .synthetic)
        let orientations = max(1, (classes + 1) / 2)
        var pixels = [UInt8](repeating: 0, count: count * c * h * w)
        // Balanced labels in a seeded order.
        let labels = g.permutation(count).map { $0 % classes }
        for i in 0..<count {
            let k = labels[i]
            let theta = Double(k % orientations) * Double.pi / Double(orientations)
            let cycles = k < orientations ? 1.5 : 3.0
            let phase = Double(g.uniform()) * 2 * Double.pi
            let contrast = 20 + 40 * Double(g.uniform())
            let (ct, st) = (cos(theta), sin(theta))
            let tint = (0..<c).map { _ in 0.6 + 0.8 * Double(g.uniform()) }
            for ch in 0..<c {
                for y in 0..<h {
                    for x in 0..<w {
                        let u = (Double(x) / Double(w)) * ct + (Double(y) / Double(h)) * st
                        let v = 128 + contrast * tint[ch] * sin(2 * Double.pi * cycles * u + phase) + 40 * Double(g.normal())
                        pixels[((i * c + ch) * h + y) * w + x] = UInt8(max(0, min(255, v.rounded())))
                    }
                }
            }
        }
        return try ImageDataset(name: name, imageShape: imageShape, classes: classes, pixels: pixels, labels: labels)
    }
}
