import Foundation
import Kernels

/// What heads each process's part of a run's log.txt: the program version, the command line as
/// typed and the start time. Set once by the command line (`RunLogHeader.set`); library users that
/// never set it get the command line without a version.
public enum RunLogHeader {
    private final class State: @unchecked Sendable {
        let lock = NSLock()
        var version: String?
        var arguments = Array(CommandLine.arguments.dropFirst())
        var started = Date()
        /// Log files this process has already headed.
        var headed: Set<String> = []
    }
    private static let state = State()

    /// Records the version and the arguments (without the program name) the process was started with.
    public static func set(version: String, arguments: [String]) {
        state.lock.lock(); defer { state.lock.unlock() }
        state.version = version
        state.arguments = arguments
        state.started = Date()
    }

    /// The header lines for `path` the first time this process writes to it, else nothing.
    static func linesIfNew(for path: String) -> [String] {
        state.lock.lock(); defer { state.lock.unlock() }
        guard state.headed.insert(path).inserted else { return [] }
        let host = ProcessInfo.processInfo.hostName
        return [
            "# nas-mpi" + (state.version.map { " " + $0 } ?? ""),
            "# command: " + (["nas-mpi"] + state.arguments).map(shellQuoted).joined(separator: " "),
            "# started: \(RunLogHeader.timestamp(state.started)) on \(host), pid \(getpid())",
            "# blas: " + BLAS.kernelDescription,
        ]
    }

    /// ISO 8601 in UTC with milliseconds: 2025-01-31T12:00:00.250Z.
    static func timestamp(_ date: Date = Date()) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: date)
    }

    /// A word as a POSIX shell reads it back: bare when it is plain, else in single quotes.
    static func shellQuoted(_ word: String) -> String {
        let plain = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./:=,+@%")
        if !word.isEmpty, word.unicodeScalars.allSatisfy(plain.contains) { return word }
        return "'" + word.replacingOccurrences(of: "'", with: #"'\''"#) + "'"
    }
}

extension RunDirectory {
    /// Appends a line to log.txt, prefixed with an ISO 8601 timestamp; the first line this process
    /// writes to the file is preceded by the header (version, command line, start time), so a
    /// resumed run's log shows where each process took over.
    public func appendLog(_ line: String) {
        let fd = open(log.path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        guard fd >= 0 else { return }
        defer { close(fd) }
        let stamp = RunLogHeader.timestamp()
        let text = RunLogHeader.linesIfNew(for: log.path).map { $0 + "\n" }.joined()
            + line.split(separator: "\n", omittingEmptySubsequences: false).map { "\(stamp) \($0)\n" }.joined()
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
    }
}
