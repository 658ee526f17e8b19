import Foundation

/// SIGINT/SIGTERM/SIGUSR1 handling (SLURM sends SIGUSR1 ahead of a time limit or preemption with
/// `--signal=USR1@120`). The first signal is only recorded: the loop checks `Interrupt.received`
/// after each step, between the architecture and the weight part of a step, and during long
/// evaluation passes, writes a checkpoint and exits with 128 + signal. A second signal exits at
/// once — after the atomic file write in progress, if any, so no file is ever torn (the last
/// checkpoint stays valid).
public enum Interrupt {
    nonisolated(unsafe) private static var signalNumber: Int32 = 0
    /// Atomic writes in progress, and a second signal that arrived during one.
    nonisolated(unsafe) private static var writesInProgress: Int32 = 0
    nonisolated(unsafe) private static var exitAfterWrite: Int32 = 0

    /// Installs the handlers (idempotent).
    public static func install() {
        signal(SIGINT, handle)
        signal(SIGTERM, handle)
        signal(SIGUSR1, handle)
    }

    private static let handle: @convention(c) (Int32) -> Void = { sig in
        if Interrupt.signalNumber == 0 {
            Interrupt.signalNumber = sig
            return
        }
        // A second signal: leave now (only async-signal-safe calls here).
        if Interrupt.writesInProgress > 0 {
            Interrupt.exitAfterWrite = sig
            return
        }
        let message = "\nsecond signal: exiting at once (the last checkpoint is kept)\n"
        message.withCString { _ = write(STDERR_FILENO, $0, strlen($0)) }
        _exit(128 + sig)
    }

    /// The signal received, or nil.
    public static var received: Int32? { signalNumber == 0 ? nil : signalNumber }

    /// The conventional exit status for a process ended by `signal` (128 + number).
    public static func exitStatus(_ signal: Int32) -> Int32 { 128 + signal }

    /// The exit status of a run that stopped with a checkpoint because its `--time-budget` ran out
    /// (EX_TEMPFAIL: "try again"; a batch script requeues on it).
    public static let outOfTimeStatus: Int32 = 75

    /// Runs an atomic write; a second signal during it takes effect when it is complete.
    static func whileWriting<T>(_ body: () throws -> T) rethrows -> T {
        writesInProgress += 1
        defer {
            writesInProgress -= 1
            if writesInProgress == 0, exitAfterWrite != 0 {
                FileHandle.standardError.write(Data("\nsecond signal: exiting after the write in progress (the new file is complete)\n".utf8))
                _exit(128 + exitAfterWrite)
            }
        }
        return try body()
    }
}
