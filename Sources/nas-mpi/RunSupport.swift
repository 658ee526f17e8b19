import ArgumentParser
import Distributed
import Foundation
import Search

extension TrainConfig.Preset: ExpressibleByArgument {}

/// How a long run reports progress.
enum ProgressStyle: String, ExpressibleByArgument, CaseIterable {
    /// A live line when standard output is a terminal, else plain lines.
    case auto
    /// A live line rewritten in place.
    case live
    /// Plain log lines every --log-every steps (for files and batch logs; OpenMPI gives ranks a
    /// pseudo-terminal even when mpirun's own output goes to a file).
    case lines
}

/// Shared plumbing of the long-running commands (`search`, `train`).
enum RunSupport {
    /// Runs `body`; on an error under mpirun the whole job is aborted at once, naming the rank.
    static func abortingOnError(_ comm: Communicator, _ body: () throws -> Void) throws {
        do {
            try body()
        } catch let exit as ExitCode {
            throw exit
        } catch {
            if comm.size > 1 { comm.abort(code: 1, message: "error: \(error)") }
            throw error
        }
    }

    /// The run directory, chosen by rank 0 (a default name holds the time) and sent to all ranks.
    static func directory(_ out: String?, kind: String, _ comm: Communicator) throws -> RunDirectory {
        try checkOut(out, naming: "the run directory")
        var bytes = Array((out ?? "runs/\(kind)-" + timestamp()).utf8)
        try comm.broadcast(bytes: &bytes)
        return RunDirectory(String(decoding: bytes, as: UTF8.self))
    }

    /// The saved configuration of a run, read by rank 0 and sent to all ranks.
    static func savedConfig<T: Codable>(_ comm: Communicator, _ read: () throws -> T) throws -> T {
        var bytes: [UInt8] = comm.rank == 0 ? Array(try JSONEncoder().encode(try read())) : []
        try comm.broadcast(bytes: &bytes)
        return try JSONDecoder().decode(T.self, from: Data(bytes))
    }

    /// Log and progress closures: a live line on a terminal, plain lines every `every` steps otherwise.
    static func attachOutput(log: inout (String) -> Void, progress: inout ((String) -> Void)?, logEvery: inout Int,
                             every: Int?, stepsPerEpoch: Int, style: ProgressStyle) {
        final class Shown { var value = false }
        let shown = Shown()
        log = { line in
            if shown.value { print("\r\u{1B}[K", terminator: ""); shown.value = false }
            print(line)
            fflush(stdout)
        }
        if style == .live || (style == .auto && isatty(STDOUT_FILENO) == 1) {
            progress = { line in
                print("\r\u{1B}[K" + line, terminator: "")
                fflush(stdout)
                shown.value = true
            }
        } else {
            logEvery = every ?? max(1, stepsPerEpoch / 10)
        }
    }

    /// Refuses an empty --out, which would otherwise mean the current directory.
    static func checkOut(_ out: String?, naming what: String) throws {
        if let out, out.trimmingCharacters(in: .whitespaces).isEmpty {
            throw ValidationError("--out is empty; give \(what) (an empty path would write into the current directory)")
        }
    }

    /// Logs how the data was read and its images per class (stdout and log.txt); warnings also go
    /// to standard error.
    static func logData(_ report: DataReport, log: (String) -> Void, directory: RunDirectory) {
        for line in report.lines + report.warnings {
            log(line)
            directory.appendLog(line)
        }
        for line in report.warnings { FileHandle.standardError.write(Data((line + "\n").utf8)) }
    }

    static func timestamp() -> String {
        let f = DateFormatter()
        f.dateFormat = "yyyyMMdd-HHmmss"
        return f.string(from: Date())
    }

    /// Loads a genotype (built-in name, JSON or Python form) as a validation error on failure.
    static func genotype(_ nameOrPath: String) throws -> Genotype {
        do { return try Genotype.load(nameOrPath) } catch { throw ValidationError("--genotype: \(error)") }
    }
}
