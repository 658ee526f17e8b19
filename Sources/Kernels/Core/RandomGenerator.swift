import Foundation

/// The one seeded random number generator of nas-mpi: xoshiro256** seeded through SplitMix64.
///
/// Every consumer of randomness (initialisation, data order, augmentation, dropout) owns a
/// generator made from the run's seed and a `RandomStream`, so each stream's sequence does not
/// depend on how much the others drew. The state is four `UInt64`s that a checkpoint stores, so a
/// resumed run continues the exact sequence. The same seed gives bit-identical results on every
/// platform: no value depends on the system's generator or on floating-point library calls other
/// than `log`, `cos` and `sqrt` in `normal()`.
public struct RandomGenerator: RandomNumberGenerator, Equatable, Codable, Sendable {
    /// The generator state (never all zero).
    public private(set) var state: (UInt64, UInt64, UInt64, UInt64)

    /// A generator for `seed` on one stream.
    public init(seed: UInt64, stream: RandomStream = .initialisation) {
        self.init(seed: seed, streamID: stream.rawValue)
    }

    /// A generator for `seed` on a numbered stream (for example one per rank or per candidate).
    public init(seed: UInt64, streamID: UInt64) {
        var sm = seed ^ (streamID &* 0xD1B5_4A32_D192_ED03)
        func next() -> UInt64 {
            sm &+= 0x9E37_79B9_7F4A_7C15
            var z = sm
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        state = (next(), next(), next(), next())
        if state == (0, 0, 0, 0) { state.0 = 1 }
    }

    /// Restores a generator from a saved state.
    public init(state: (UInt64, UInt64, UInt64, UInt64)) {
        precondition(state != (0, 0, 0, 0), "RandomGenerator: the all-zero state is invalid")
        self.state = state
    }

    @inline(__always)
    private static func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    /// The next 64 random bits.
    @inline(__always)
    public mutating func next() -> UInt64 {
        let result = Self.rotl(state.1 &* 5, 7) &* 9
        let t = state.1 << 17
        state.2 ^= state.0
        state.3 ^= state.1
        state.1 ^= state.2
        state.0 ^= state.3
        state.2 ^= t
        state.3 = Self.rotl(state.3, 45)
        return result
    }

    /// A uniform Float in [0, 1) with 24 random bits.
    @inline(__always)
    public mutating func uniform() -> Float {
        Float(next() >> 40) * (1.0 / 16_777_216.0)
    }

    /// A uniform Float in [low, high).
    @inline(__always)
    public mutating func uniform(_ low: Float, _ high: Float) -> Float {
        low + (high - low) * uniform()
    }

    /// A standard normal sample (Box-Muller, computed in Double).
    public mutating func normal() -> Float {
        let u1 = (Double(next() >> 11) + 1) * (1.0 / 9_007_199_254_740_993.0)  // (0, 1]
        let u2 = Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
        return Float(sqrt(-2 * log(u1)) * cos(2 * Double.pi * u2))
    }

    /// A uniform integer in 0..<bound, without modulo bias (Lemire's method).
    public mutating func int(below bound: Int) -> Int {
        precondition(bound > 0, "RandomGenerator.int(below:): bound must be positive, got \(bound)")
        let b = UInt64(bound)
        var m = next().multipliedFullWidth(by: b)
        if m.low < b {
            let threshold = (0 &- b) % b
            while m.low < threshold { m = next().multipliedFullWidth(by: b) }
        }
        return Int(m.high)
    }

    /// A Bernoulli sample with probability `p` of `true`.
    public mutating func bernoulli(_ p: Float) -> Bool { uniform() < p }

    /// A random permutation of 0..<n (Fisher-Yates).
    public mutating func permutation(_ n: Int) -> [Int] {
        var a = Array(0..<n)
        if n > 1 {
            for i in stride(from: n - 1, to: 0, by: -1) {
                a.swapAt(i, int(below: i + 1))
            }
        }
        return a
    }

    /// Fills `tensor` with uniform values in [low, high).
    public mutating func fillUniform(_ tensor: inout Tensor, _ low: Float, _ high: Float) {
        tensor.scalars.withUnsafeMutableBufferPointer { p in
            for i in p.indices { p[i] = uniform(low, high) }
        }
    }

    /// Fills `tensor` with normal values of the given mean and standard deviation.
    public mutating func fillNormal(_ tensor: inout Tensor, mean: Float = 0, std: Float = 1) {
        tensor.scalars.withUnsafeMutableBufferPointer { p in
            for i in p.indices { p[i] = mean + std * normal() }
        }
    }

    // MARK: Equatable and Codable over the tuple state

    public static func == (a: Self, b: Self) -> Bool { a.state == b.state }

    private enum CodingKeys: String, CodingKey { case state }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let s = try c.decode([UInt64].self, forKey: .state)
        guard s.count == 4, s != [0, 0, 0, 0] else {
            throw DecodingError.dataCorruptedError(forKey: .state, in: c, debugDescription: "RandomGenerator state must be 4 words, not all zero")
        }
        state = (s[0], s[1], s[2], s[3])
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode([state.0, state.1, state.2, state.3], forKey: .state)
    }
}

/// The independent random streams of a run.
public enum RandomStream: UInt64, Sendable, CaseIterable {
    case initialisation = 1
    case dataOrder = 2
    case augmentation = 3
    case dropout = 4
    case architecture = 5
    case synthetic = 6
    /// Perturbations of the architecture weights (SDARTS-RS), one stream per step.
    case perturbation = 7
    /// The start vector of the Hessian's power iteration (`--hessian-eigenvalue`).
    case hessian = 8
    /// Dropout on the supernet's op outputs (P-DARTS's skip dropout, `--op-dropout`), one stream
    /// per step and edge.
    case skipDropout = 9
    /// Genotypes drawn by the discrete search strategies (regularized evolution, random sampling):
    /// samples and mutations.
    case evolution = 10
    /// The RL controller's sampling of architectures (REINFORCE).
    case controller = 11
    /// Architectures sampled in a weight-sharing search (random search with weight sharing):
    /// one stream per step, and one for the final scoring.
    case architectureSample = 12
}
