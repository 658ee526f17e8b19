import Foundation

/// SIGINT/SIGTERM handling: the handler only records the signal; the training loop checks
/// `Interrupt.received` after each step, writes a checkpoint and exits.
public enum Interrupt {
    nonisolated(unsafe) private static var signalNumber: Int32 = 0

    /// Installs the handlers (idempotent).
    public static func install() {
        signal(SIGINT) { Interrupt.signalNumber = $0 }
        signal(SIGTERM) { Interrupt.signalNumber = $0 }
    }

    /// The signal received, or nil.
    public static var received: Int32? { signalNumber == 0 ? nil : signalNumber }

    /// The conventional exit status for a process ended by `signal` (128 + number).
    public static func exitStatus(_ signal: Int32) -> Int32 { 128 + signal }
}
