/// Vectorised reductions over contiguous Float runs.
///
/// Swift (like C) does not reassociate floating-point additions, so a plain `acc += a[i] * b[i]`
/// loop runs one element per cycle at best. These accumulate in eight SIMD lanes and add the
/// lanes at the end (a fixed order, so results are deterministic).
public enum Reduce {
    @inline(__always)
    static func load(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
    }

    /// sum of p[0..<n].
    @inline(__always)
    public static func sum(_ p: UnsafePointer<Float>, _ n: Int) -> Float {
        var acc = SIMD8<Float>()
        var i = 0
        while i + 8 <= n { acc += load(p + i); i += 8 }
        var s = acc.sum()
        while i < n { s += p[i]; i += 1 }
        return s
    }

    /// sum of a[i] * b[i].
    @inline(__always)
    public static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
        var acc = SIMD8<Float>()
        var i = 0
        while i + 8 <= n { acc += load(a + i) * load(b + i); i += 8 }
        var s = acc.sum()
        while i < n { s += a[i] * b[i]; i += 1 }
        return s
    }

    /// sum of a[i] * b[i] * c[i].
    @inline(__always)
    public static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafePointer<Float>, _ n: Int) -> Float {
        var acc = SIMD8<Float>()
        var i = 0
        while i + 8 <= n { acc += load(a + i) * load(b + i) * load(c + i); i += 8 }
        var s = acc.sum()
        while i < n { s += a[i] * b[i] * c[i]; i += 1 }
        return s
    }

    /// sum of a[i * stride] * b[i] (a strided, b contiguous).
    @inline(__always)
    public static func dot(_ a: UnsafePointer<Float>, stride: Int, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
        if stride == 1 { return dot(a, b, n) }
        var s0: Float = 0, s1: Float = 0, s2: Float = 0, s3: Float = 0
        var i = 0
        while i + 4 <= n {
            s0 += a[i * stride] * b[i]; s1 += a[(i + 1) * stride] * b[i + 1]
            s2 += a[(i + 2) * stride] * b[i + 2]; s3 += a[(i + 3) * stride] * b[i + 3]
            i += 4
        }
        while i < n { s0 += a[i * stride] * b[i]; i += 1 }
        return (s0 + s1) + (s2 + s3)
    }

    /// (sum of p[i], sum of p[i]^2).
    @inline(__always)
    public static func sumAndSquares(_ p: UnsafePointer<Float>, _ n: Int) -> (Float, Float) {
        var a = SIMD8<Float>(), b = SIMD8<Float>()
        var i = 0
        while i + 8 <= n { let v = load(p + i); a += v; b += v * v; i += 8 }
        var s = a.sum(), s2 = b.sum()
        while i < n { s += p[i]; s2 += p[i] * p[i]; i += 1 }
        return (s, s2)
    }

    /// `sumAndSquares` of each plane of one sample of an [N, C, H, W] tensor y, written as
    /// `Variable.planeSums` holds them: sums[2p], sums[2p + 1] for plane p = sample x C + channel.
    @inline(__always)
    static func planeSums(_ y: UnsafePointer<Float>, sample n: Int, channels c: Int, plane hw: Int,
                          into sums: UnsafeMutablePointer<Float>) {
        for ch in 0..<c {
            let p = n * c + ch
            (sums[2 * p], sums[2 * p + 1]) = sumAndSquares(y + p * hw, hw)
        }
    }

    /// (sum of dy[i], sum of dy[i] * (x[i] - mu)).
    @inline(__always)
    public static func sumAndCenteredDot(_ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>, mean mu: Float, _ n: Int) -> (Float, Float) {
        var a = SIMD8<Float>(), b = SIMD8<Float>()
        let m = SIMD8<Float>(repeating: mu)
        var i = 0
        while i + 8 <= n { let d = load(dy + i); a += d; b += d * (load(x + i) - m); i += 8 }
        var s = a.sum(), s2 = b.sum()
        while i < n { s += dy[i]; s2 += dy[i] * (x[i] - mu); i += 1 }
        return (s, s2)
    }

    /// The same on dy scaled by f, dy[i] * f formed per element as a materialised f * dy would
    /// hold it: equal to the plain version on that product (drop path's per-sample factor
    /// applied inside BatchNorm's backward, `batchNormSum`).
    public static func sumAndCenteredDot(_ dy: UnsafePointer<Float>, scaledBy f: Float, _ x: UnsafePointer<Float>, mean mu: Float,
                                         _ n: Int) -> (Float, Float) {
        var a = SIMD8<Float>(), b = SIMD8<Float>()
        let m = SIMD8<Float>(repeating: mu), f8 = SIMD8<Float>(repeating: f)
        var i = 0
        while i + 8 <= n { let d = load(dy + i) * f8; a += d; b += d * (load(x + i) - m); i += 8 }
        var s = a.sum(), s2 = b.sum()
        while i < n { let d = dy[i] * f; s += d; s2 += d * (x[i] - mu); i += 1 }
        return (s, s2)
    }

    /// The same with dy zeroed where x * gateScale + gateShift is not positive (the backward of
    /// a ReLU fused after BatchNorm, its mask recomputed with the forward's arithmetic): equal
    /// to the plain version on the masked dy.
    public static func sumAndCenteredDot(_ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>, mean mu: Float, _ n: Int,
                                         gateScale gs: Float, gateShift gt: Float) -> (Float, Float) {
        var a = SIMD8<Float>(), b = SIMD8<Float>()
        let m = SIMD8<Float>(repeating: mu), zero = SIMD8<Float>()
        let (s8, t8) = (SIMD8<Float>(repeating: gs), SIMD8<Float>(repeating: gt))
        var i = 0
        while i + 8 <= n {
            let xv = load(x + i)
            let d = zero.replacing(with: load(dy + i), where: xv * s8 + t8 .> 0)
            a += d; b += d * (xv - m); i += 8
        }
        var s = a.sum(), s2 = b.sum()
        while i < n { let d: Float = x[i] * gs + gt > 0 ? dy[i] : 0; s += d; s2 += d * (x[i] - mu); i += 1 }
        return (s, s2)
    }
}
