import Foundation
import Kernels

/// A batch of normalised images and their labels.
public struct Batch {
    /// [N, C, H, W], normalised.
    public var images: Tensor
    public var labels: [Int]
    public var count: Int { labels.count }

    public init(images: Tensor, labels: [Int]) {
        self.images = images
        self.labels = labels
    }
}

/// An image classification dataset held as 8-bit pixels, normalised per channel when batched.
public struct ImageDataset {
    public let name: String
    /// [C, H, W].
    public let imageShape: [Int]
    public let classes: Int
    /// Pixels 0...255, image after image, CHW within an image.
    public var pixels: [UInt8]
    public var labels: [Int]
    /// Per-channel mean and standard deviation of pixel/255, used for normalisation.
    public var mean: [Float]
    public var std: [Float]
    /// Random crop with this zero padding plus horizontal flip when augmenting (0: none).
    public var cropPadding: Int = 0
    public var horizontalFlip: Bool = false
    /// Cutout (DeVries and Taylor 2017) when augmenting: a square of this side, centred at a random
    /// pixel and clipped to the image, is set to zero after normalisation (0: none).
    public var cutout: Int = 0
    /// How the files were read (pixel range and the like), for the run's log.
    public var notes: [String] = []

    public init(name: String, imageShape: [Int], classes: Int, pixels: [UInt8], labels: [Int],
                mean: [Float]? = nil, std: [Float]? = nil) throws {
        let size = imageShape.reduce(1, *)
        guard imageShape.count == 3, size > 0 else { throw DataError("\(name): image shape must be CxHxW, got \(imageShape)") }
        guard pixels.count == labels.count * size else {
            throw DataError("\(name): \(pixels.count) pixels do not make \(labels.count) images of \(imageShape)")
        }
        if let bad = labels.first(where: { $0 < 0 || $0 >= classes }) {
            throw DataError("\(name): label \(bad) outside 0..<\(classes)")
        }
        self.name = name
        self.imageShape = imageShape
        self.classes = classes
        self.pixels = pixels
        self.labels = labels
        if let mean, let std {
            self.mean = mean
            self.std = std
        } else {
            (self.mean, self.std) = ImageDataset.channelStatistics(pixels: pixels, shape: imageShape)
        }
    }

    public var count: Int { labels.count }
    public var imageSize: Int { imageShape.reduce(1, *) }

    /// Per-channel mean and standard deviation of pixel/255 over all images.
    public static func channelStatistics(pixels: [UInt8], shape: [Int]) -> ([Float], [Float]) {
        let (c, hw) = (shape[0], shape[1] * shape[2])
        let n = pixels.count / max(c * hw, 1)
        var mean = [Float](), std = [Float]()
        for ch in 0..<c {
            var s = 0.0, s2 = 0.0
            for i in 0..<n {
                let base = (i * c + ch) * hw
                for j in 0..<hw { let v = Double(pixels[base + j]) / 255; s += v; s2 += v * v }
            }
            let m = s / Double(max(n * hw, 1))
            mean.append(Float(m))
            std.append(Float(max((s2 / Double(max(n * hw, 1)) - m * m).squareRoot(), 1e-3)))
        }
        return (mean, std)
    }

    /// The same images and labels with another class count and normalisation.
    public func withClasses(_ classes: Int, mean: [Float], std: [Float]) throws -> ImageDataset {
        if classes == self.classes && mean == self.mean && std == self.std { return self }
        var d = try ImageDataset(name: name, imageShape: imageShape, classes: classes, pixels: pixels, labels: labels, mean: mean, std: std)
        (d.cropPadding, d.horizontalFlip, d.cutout, d.notes) = (cropPadding, horizontalFlip, cutout, notes)
        return d
    }

    /// The images at `indices`, as a dataset of its own (same normalisation).
    public func subset(_ indices: [Int]) -> ImageDataset {
        var p = [UInt8](); p.reserveCapacity(indices.count * imageSize)
        for i in indices { p.append(contentsOf: pixels[(i * imageSize)..<((i + 1) * imageSize)]) }
        var d = self
        d.pixels = p
        d.labels = indices.map { labels[$0] }
        return d
    }

    /// A normalised batch; with `augment`, random crop (zero padding) and horizontal flip drawn
    /// from `generator`.
    public func batch(_ indices: [Int], augment: Bool, generator: inout RandomGenerator) -> Batch {
        var g = generator
        defer { generator = g }
        return batch(indices, augment: augment) { _, draw in draw(&g) }
    }

    /// A normalised batch whose sample k draws its augmentation from `generatorFor(k)` (per-sample
    /// streams make a rank's shard of a global batch identical to the same rows of the whole batch).
    public func batch(_ indices: [Int], augment: Bool, generatorFor: (Int) -> RandomGenerator) -> Batch {
        batch(indices, augment: augment) { k, draw in
            var g = generatorFor(k)
            draw(&g)
        }
    }

    private func batch(_ indices: [Int], augment: Bool,
                       withGenerator: (Int, (inout RandomGenerator) -> Void) -> Void) -> Batch {
        let (c, h, w) = (imageShape[0], imageShape[1], imageShape[2])
        var images = Tensor(shape: [indices.count, c, h, w])
        let pad = augment ? cropPadding : 0
        images.scalars.withUnsafeMutableBufferPointer { out in
            pixels.withUnsafeBufferPointer { px in
                for (b, idx) in indices.enumerated() {
                    var (dy, dx, flip) = (0, 0, false)
                    var (cy, cx) = (-1, -1)
                    if augment && (pad > 0 || horizontalFlip || cutout > 0) {
                        withGenerator(b) { g in
                            if pad > 0 {
                                dy = g.int(below: 2 * pad + 1) - pad
                                dx = g.int(below: 2 * pad + 1) - pad
                            }
                            flip = horizontalFlip && g.bernoulli(0.5)
                            if cutout > 0 { cy = g.int(below: h); cx = g.int(below: w) }
                        }
                    }
                    for ch in 0..<c {
                        let scale = 1 / (255 * std[ch])
                        let shift = -mean[ch] / std[ch]
                        let src = idx * c * h * w + ch * h * w
                        let dst = ((b * c) + ch) * h * w
                        for y in 0..<h {
                            let sy = y + dy
                            for x in 0..<w {
                                let sx0 = x + dx
                                let sx = flip ? w - 1 - sx0 : sx0
                                let raw: Float = (sy >= 0 && sy < h && sx >= 0 && sx < w) ? Float(px[src + sy * w + sx]) : 0
                                out[dst + y * w + x] = raw * scale + shift
                            }
                        }
                        if cy >= 0 {
                            for y in max(0, cy - cutout / 2)..<min(h, cy + cutout / 2) {
                                for x in max(0, cx - cutout / 2)..<min(w, cx + cutout / 2) { out[dst + y * w + x] = 0 }
                            }
                        }
                    }
                }
            }
        }
        return Batch(images: images, labels: indices.map { labels[$0] })
    }
}

/// A training set and a test set.
public struct DataSplit {
    public var train: ImageDataset
    public var test: ImageDataset?
}

/// A data file that is missing, truncated or corrupt.
public struct DataError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Reads a whole file, gunzipping it when its name ends in .gz or it starts with the gzip magic.
func readDataFile(_ path: String) throws -> [UInt8] {
    guard FileManager.default.fileExists(atPath: path) else { throw DataError("data file not found: \(path)") }
    guard let data = FileManager.default.contents(atPath: path) else { throw DataError("cannot read data file \(path)") }
    let bytes = [UInt8](data)
    if bytes.count >= 2, bytes[0] == 0x1f, bytes[1] == 0x8b {
        return try gunzip(bytes, path: path)
    }
    return bytes
}
