import Foundation

/// Writes files so that a crash never leaves a torn file that looks complete: the bytes go to a
/// temporary file in the same directory, which is flushed to disk and then renamed over the
/// target (rename is atomic on POSIX file systems); the directory is synced afterwards.
public enum AtomicFile {
    public static func write(_ data: Data, to url: URL) throws {
        try Interrupt.whileWriting { try writeNow(data, to: url) }
    }

    private static func writeNow(_ data: Data, to url: URL) throws {
        let dir = url.deletingLastPathComponent()
        let tmp = dir.appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())")
        let fd = open(tmp.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw RunError("cannot create \(tmp.path): \(String(cString: strerror(errno)))") }
        var ok = true
        data.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = Foundation.write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n <= 0 { ok = false; break }
                offset += n
            }
        }
        if ok { ok = fsync(fd) == 0 }
        close(fd)
        guard ok else {
            unlink(tmp.path)
            throw RunError("cannot write \(url.path): \(String(cString: strerror(errno)))")
        }
        guard rename(tmp.path, url.path) == 0 else {
            unlink(tmp.path)
            throw RunError("cannot rename \(tmp.path) to \(url.path): \(String(cString: strerror(errno)))")
        }
        let dfd = open(dir.path, O_RDONLY)
        if dfd >= 0 { fsync(dfd); close(dfd) }
    }

    public static func write(_ text: String, to url: URL) throws {
        try write(Data(text.utf8), to: url)
    }
}

/// A run-directory problem: an existing run in the way, a missing checkpoint, a file that cannot
/// be written.
public struct RunError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
