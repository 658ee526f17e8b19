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

/// `--resume`: continue the run in --out (`yes`, also a bare `--resume`), or `auto`: continue it
/// when --out holds a run of the same configuration, start it when --out holds none (one batch
/// script for the first start and every requeue).
enum ResumeMode: String, ExpressibleByArgument, CaseIterable {
    case yes
    case auto

    /// The arguments with a bare `--resume` written `--resume=yes`.
    static func normalised(_ arguments: [String]) -> [String] {
        var out: [String] = []
        for (i, word) in arguments.enumerated() {
            if word == "--resume", i + 1 >= arguments.count || ResumeMode(rawValue: arguments[i + 1]) == nil {
                out.append("--resume=yes")
            } else {
                out.append(word)
            }
        }
        return out
    }
}

/// `--time-budget`: seconds, or a duration such as 90m, 2h, 1h30m, 3600s.
struct TimeBudget: ExpressibleByArgument {
    let seconds: Double

    init?(argument: String) {
        var total = 0.0, number = ""
        for ch in argument.lowercased() {
            if ch.isNumber || ch == "." { number.append(ch); continue }
            guard let v = Double(number), let unit = ["h": 3600.0, "m": 60, "s": 1][String(ch)] else { return nil }
            total += v * unit
            number = ""
        }
        if !number.isEmpty { guard let v = Double(number) else { return nil }; total += v }
        guard total > 0, total.isFinite else { return nil }
        seconds = total
    }
}

/// Shared plumbing of the long-running commands (`search`, `train`).
enum RunSupport {
    /// When the process started (seconds since 1970): --time-budget counts from here.
    static let startTime = Date().timeIntervalSince1970

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

    /// The configuration to run and whether to resume: with `--resume` the saved one (flags may not
    /// change it); with `--resume auto` the flags' one, resumed when --out already holds it (and
    /// refused when --out holds another); otherwise the flags' one, as a new run.
    static func configuration<C: Codable>(_ mode: ResumeMode?, _ dir: RunDirectory, _ comm: Communicator,
                                          saved: () throws -> C, resolved: (C?) throws -> C) throws -> (config: C, resume: Bool) {
        var mode = mode
        if mode == .auto {
            var held: [Float] = [comm.rank == 0 && FileManager.default.fileExists(atPath: dir.config.path) ? 1 : 0]
            if comm.size > 1 { try comm.broadcast(&held, root: 0) }
            mode = held[0] > 0 ? .auto : nil
        }
        switch mode {
        case nil:
            return (try resolved(nil), false)
        case .yes:
            let config = try savedConfig(comm, saved)
            try ConfigurationFlags.requireUnchanged(saved: config, resolved: try resolved(config))
            return (config, true)
        case .auto:
            let config = try savedConfig(comm, saved)
            let changed = try ConfigurationFlags.changes(from: config, to: try resolved(nil))
            guard changed.isEmpty else {
                throw ValidationError("--resume auto: \(dir.url.path) holds a run of another configuration (\(changed.joined(separator: "; "))); use another --out")
            }
            return (config, true)
        }
    }

    /// The exit status of an unfinished run: 128 + signal, or 75 when the time budget ran out.
    ///
    /// Every rank of `comm` calls it once rank 0 has written what the stop leaves behind (the
    /// checkpoint, run.json): the ranks leave together. A launcher ends the whole job as soon as
    /// one rank exits with a non-zero status (`srun --kill-on-bad-exit`, mpirun), and its SIGTERM
    /// is a second signal that makes a rank exit at once, so a rank that left early could cut
    /// rank 0's last writes short. The wait is bounded (10 s): a preempted job must leave within
    /// its grace period even if the ranks are out of step (as a stop during the evaluation left
    /// them until c4d67b3: the other ranks waited in a gather rank 0 never joined).
    static func exitStatus(interruptedBy signal: Int32?, comm: Communicator) -> ExitCode {
        let status = signal.map { Interrupt.exitStatus($0) } ?? Interrupt.outOfTimeStatus
        if comm.size > 1, (try? comm.barrier(within: 10)) != true {
            FileHandle.standardError.write(Data("rank \(comm.rank): the ranks did not meet within 10 s of the stop; leaving (the checkpoint is written)\n".utf8))
        }
        // The checkpoint is written: leave within seconds even if MPI's shutdown waits.
        MPIEnvironment.exitWithin(10, status: status)
        return ExitCode(status)
    }

    /// Ends a farm of candidate trainings that stopped with its exit status (`exitStatus`);
    /// returns when it finished. Every rank of `comm` calls it.
    static func exitIfStopped(_ end: FarmStop, comm: Communicator) throws {
        guard let stop = end.stoppedBy else { return }
        throw exitStatus(interruptedBy: stop == 0 ? nil : stop, comm: comm)
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
