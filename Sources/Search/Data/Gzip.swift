import CZlib

/// Decompresses a gzip stream with zlib.
/// - Throws: `DataError` when the stream is corrupt or truncated.
func gunzip(_ input: [UInt8], path: String) throws -> [UInt8] {
    var stream = z_stream()
    // 15 + 16: a gzip header rather than a raw zlib one.
    guard inflateInit2_(&stream, 15 + 16, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
        throw DataError("\(path): cannot initialise zlib")
    }
    defer { inflateEnd(&stream) }
    var output = [UInt8]()
    output.reserveCapacity(input.count * 4)
    var chunk = [UInt8](repeating: 0, count: 1 << 20)
    var input = input
    var status: Int32 = Z_OK
    try input.withUnsafeMutableBufferPointer { inp in
        stream.next_in = inp.baseAddress
        stream.avail_in = UInt32(inp.count)
        repeat {
            try chunk.withUnsafeMutableBufferPointer { out in
                stream.next_out = out.baseAddress
                stream.avail_out = UInt32(out.count)
                status = inflate(&stream, Z_NO_FLUSH)
                guard status == Z_OK || status == Z_STREAM_END else {
                    throw DataError("\(path): corrupt gzip data (zlib status \(status))")
                }
                output.append(contentsOf: out[0..<(out.count - Int(stream.avail_out))])
            }
            if status == Z_OK && stream.avail_in == 0 && stream.avail_out != 0 {
                throw DataError("\(path): truncated gzip data")
            }
        } while status != Z_STREAM_END
    }
    return output
}
