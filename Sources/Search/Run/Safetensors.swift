import Foundation
import Kernels

/// The safetensors format (Hugging Face): an 8-byte little-endian header length, a JSON header
/// mapping each name to its dtype, shape and byte range, then the raw little-endian data.
///
/// nas-mpi writes parameters as F32 and BatchNorm's `num_batches_tracked` as I64, under the
/// reference PyTorch modules' state-dict names, so `model.load_state_dict(load_file(path),
/// strict=True)` loads an evaluation network's file into `model.NetworkCIFAR`. A supernet's file
/// also holds `alphas_normal` and `alphas_reduce`, which the reference keeps outside its state
/// dict: pop them into `model.alphas_normal.data` / `model.alphas_reduce.data` before loading.
public enum Safetensors {
    public enum DType: String { case f32 = "F32", i64 = "I64" }

    /// Encodes named tensors; names ending in `num_batches_tracked` are written as I64.
    public static func encode(_ tensors: [(name: String, tensor: Tensor)], metadata: [String: String] = [:]) throws -> Data {
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var body = Data()
        for (name, t) in tensors {
            let begin = body.count
            let dtype: DType = name.hasSuffix("num_batches_tracked") ? .i64 : .f32
            switch dtype {
            case .f32: t.scalars.withUnsafeBytes { body.append(contentsOf: $0) }
            case .i64: for v in t.scalars { withUnsafeBytes(of: Int64(v).littleEndian) { body.append(contentsOf: $0) } }
            }
            header[name] = ["dtype": dtype.rawValue, "shape": t.shape, "data_offsets": [begin, body.count]] as [String: Any]
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(0x20) }
        var out = Data()
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(json)
        out.append(body)
        return out
    }

    /// Decodes a file into named Float tensors (I64 values converted), checking every range.
    public static func decode(_ data: Data, path: String) throws -> [(name: String, tensor: Tensor)] {
        let bytes = [UInt8](data)
        guard bytes.count >= 8 else { throw RunError("\(path) is not a safetensors file (too short)") }
        var n = 0
        for i in 0..<8 { n |= Int(bytes[i]) << (8 * i) }
        guard n > 0, 8 + n <= bytes.count,
              let header = try? JSONSerialization.jsonObject(with: Data(bytes[8..<(8 + n)])) as? [String: Any] else {
            throw RunError("\(path) is not a safetensors file (bad header)")
        }
        let base = 8 + n
        var result: [(String, Tensor)] = []
        for (name, value) in header.sorted(by: { $0.key < $1.key }) where name != "__metadata__" {
            guard let info = value as? [String: Any], let dt = info["dtype"] as? String, let dtype = DType(rawValue: dt),
                  let shape = info["shape"] as? [Int], let offsets = info["data_offsets"] as? [Int], offsets.count == 2 else {
                throw RunError("\(path): tensor '\(name)' has an unsupported entry (nas-mpi reads F32 and I64)")
            }
            let count = shape.reduce(1, *)
            let width = dtype == .f32 ? 4 : 8
            guard offsets[1] - offsets[0] == count * width, offsets[0] >= 0, base + offsets[1] <= bytes.count else {
                throw RunError("\(path): tensor '\(name)' has a bad byte range (truncated file?)")
            }
            var scalars = [Float](repeating: 0, count: count)
            let start = base + offsets[0]
            for i in 0..<count {
                if dtype == .f32 {
                    var bits: UInt32 = 0
                    for k in 0..<4 { bits |= UInt32(bytes[start + 4 * i + k]) << (8 * k) }
                    scalars[i] = Float(bitPattern: bits)
                } else {
                    var v: UInt64 = 0
                    for k in 0..<8 { v |= UInt64(bytes[start + 8 * i + k]) << (8 * k) }
                    scalars[i] = Float(Int64(bitPattern: v))
                }
            }
            result.append((name, try Tensor(shape: shape, scalars: scalars)))
        }
        return result
    }

    /// The tensors of a file as a checkpoint-like table, for `NamedState.restore(from:)`.
    public static func read(_ url: URL) throws -> CheckpointFile {
        guard let data = FileManager.default.contents(atPath: url.path) else { throw RunError("cannot read \(url.path)") }
        var file = CheckpointFile()
        for (name, t) in try decode(data, path: url.path) {
            let bad = t.scalars.reduce(0) { $0 + ($1.isFinite ? 0 : 1) }
            guard bad == 0 else {
                throw RunError("\(url.path): tensor '\(name)' holds \(bad) NaN or infinite value(s) of \(t.count); the file cannot be used as weights")
            }
            file.add(name, t)
        }
        return file
    }

    /// Writes a state (and extra tensors such as alphas) atomically.
    public static func write(_ state: NamedState, extra: [(String, Tensor)] = [], metadata: [String: String] = [:], to url: URL) throws {
        var file = CheckpointFile()
        state.add(to: &file)
        var tensors = file.tensors
        tensors.append(contentsOf: extra.map { (name: $0.0, tensor: $0.1) })
        try AtomicFile.write(try encode(tensors, metadata: metadata), to: url)
    }
}
