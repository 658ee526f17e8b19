import Kernels
import XCTest

/// Central finite differences against the tape's backward pass.
///
/// The scalar checked is L = sum(r * f(inputs)) for a fixed random projection r, so every output
/// element takes part. Forward passes run in Float32 and L is accumulated in Double; with
/// step `epsilon` = 1e-2 a derivative passes when |analytic - numeric| <= atol + rtol * max(|a|, |n|)
/// (defaults atol = 1e-3, rtol = 5e-3). Inputs to kinked ops (ReLU, max pooling) should be drawn
/// away from the kinks; `randomTensor(spaced:)` does that.
public func checkGradients(
    _ inputs: [Variable],
    epsilon: Float = 1e-2, atol: Double = 1e-3, rtol: Double = 5e-3,
    maxChecksPerInput: Int = 60,
    file: StaticString = #filePath, line: UInt = #line,
    _ f: (Tape) throws -> Variable
) throws {
    for v in inputs { v.requiresGrad = true; v.zeroGrad() }
    let tape = Tape()
    let out = try f(tape)
    var rng = RandomGenerator(seed: 12345, streamID: 99)
    var r = Tensor(shape: out.shape)
    rng.fillUniform(&r, -1, 1)
    try tape.backward(out, gradient: r)
    let analytic = inputs.map { $0.grad ?? Tensor.zeros(like: $0.value) }

    func loss() throws -> Double {
        let y = try f(Tape(recording: false)).value
        var s = 0.0
        for i in 0..<y.count { s += Double(y.scalars[i]) * Double(r.scalars[i]) }
        return s
    }

    for (k, v) in inputs.enumerated() {
        let n = v.value.count
        let stride = max(1, n / maxChecksPerInput)
        for i in Swift.stride(from: 0, to: n, by: stride) {
            let saved = v.value.scalars[i]
            v.value.scalars[i] = saved + epsilon
            let lp = try loss()
            v.value.scalars[i] = saved - epsilon
            let lm = try loss()
            v.value.scalars[i] = saved
            let numeric = (lp - lm) / (2 * Double(epsilon))
            let a = Double(analytic[k].scalars[i])
            let tol = atol + rtol * max(abs(a), abs(numeric))
            if abs(a - numeric) > tol {
                XCTFail("input \(k) \(v.shape) element \(i): analytic \(a) vs numeric \(numeric)", file: file, line: line)
                return
            }
        }
    }
}

/// A tensor of uniform values in [-1, 1); with `spaced`, values are a shuffled grid whose entries
/// differ by at least 4 * 1e-2 and stay at least 2e-2 away from zero, so finite differences never
/// cross a ReLU kink or change a max-pooling argmax.
public func randomTensor(_ shape: [Int], seed: UInt64, spaced: Bool = false, scale: Float = 1) -> Tensor {
    var t = Tensor(shape: shape)
    var rng = RandomGenerator(seed: seed, streamID: 7)
    if spaced {
        let n = t.count
        let perm = rng.permutation(n)
        let step: Float = 0.05
        for i in 0..<n {
            let v = Float(perm[i] - n / 2) * step
            t.scalars[i] = (v >= 0 ? v + 0.025 : v - 0.025) * scale
        }
    } else {
        rng.fillUniform(&t, -scale, scale)
    }
    return t
}

/// Asserts elementwise |actual - expected| <= tolerance.
public func assertClose(_ actual: [Float], _ expected: [Float], tolerance: Float = 1e-5,
                        file: StaticString = #filePath, line: UInt = #line) {
    guard actual.count == expected.count else {
        XCTFail("count \(actual.count) vs expected \(expected.count)", file: file, line: line)
        return
    }
    for i in 0..<actual.count where !(abs(actual[i] - expected[i]) <= tolerance) {
        XCTFail("element \(i): \(actual[i]) vs expected \(expected[i]) (tolerance \(tolerance))", file: file, line: line)
        return
    }
}

/// Asserts that `body` throws a `KernelError` whose message names `op` and contains every string
/// of `mentions` (typically the offending shapes).
public func assertKernelError(_ op: String, mentions: [String] = [], file: StaticString = #filePath, line: UInt = #line,
                              _ body: () throws -> Any) {
    do {
        _ = try body()
        XCTFail("expected \(op) to throw", file: file, line: line)
    } catch let e as KernelError {
        XCTAssertEqual(e.op, op, "\(e)", file: file, line: line)
        for m in mentions { XCTAssertTrue(e.description.contains(m), "'\(e)' does not mention \(m)", file: file, line: line) }
    } catch {
        XCTFail("unexpected error \(error)", file: file, line: line)
    }
}

/// A leaf variable over a tensor.
public func leaf(_ t: Tensor) -> Variable { Variable(t, requiresGrad: true) }

/// A tensor from literal values.
public func tensor(_ shape: [Int], _ values: [Float]) -> Tensor {
    try! Tensor(shape: shape, scalars: values)
}

/// Runs `body` with the 1x1 convolutions' panel kernel on or off, then puts the setting back.
public func withPanelProduct<T>(_ enabled: Bool, _ body: () throws -> T) rethrows -> T {
    let saved = PanelProduct.isEnabled
    defer { PanelProduct.isEnabled = saved }
    PanelProduct.isEnabled = enabled
    return try body()
}
