import Foundation
import XCTest

/// The result of running the built `nas-mpi` binary.
public struct CommandResult {
    public let status: Int32
    public let stdout: String
    public let stderr: String
}

/// The path of the `nas-mpi` binary built beside the test bundle (or `$NASMPI_BINARY`).
public func nasMPIBinary() throws -> URL {
    if let path = ProcessInfo.processInfo.environment["NASMPI_BINARY"] {
        return URL(fileURLWithPath: path)
    }
    let productDir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for dir in [productDir, productDir.deletingLastPathComponent()] {
        let candidate = dir.appendingPathComponent("nas-mpi")
        if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
    }
    throw XCTSkip("nas-mpi binary not found next to \(productDir.path); build it with `swift build` first")
}

/// Runs `nas-mpi` with arguments, as a user would (swift-argument-parser's AssertExecuteCommand
/// idea), and returns its exit status and output.
public func runNasMPI(_ arguments: [String], environment: [String: String] = [:], currentDirectory: URL? = nil,
                      timeout: TimeInterval = 600) throws -> CommandResult {
    try runProgram(try nasMPIBinary(), arguments, environment: environment, currentDirectory: currentDirectory, timeout: timeout)
}

/// `nas-mpi` under `scripts/mpirun-local -np N` (oversubscribed, as root where needed).
public func runNasMPIUnderMPI(ranks: Int, _ arguments: [String], timeout: TimeInterval = 600) throws -> CommandResult {
    try runProgram(packageRoot().appendingPathComponent("scripts/mpirun-local"), ["-np", "\(ranks)", try nasMPIBinary().path] + arguments,
            timeout: timeout)
}

/// The package's root directory (two levels above this file's folder).
public func packageRoot() -> URL {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
}

/// Runs a program; one still running after `timeout` seconds is killed (status 137 is reported).
public func runProgram(_ executable: URL, _ arguments: [String], environment: [String: String] = [:], currentDirectory: URL? = nil,
                timeout: TimeInterval = 600) throws -> CommandResult {
    let process = Process()
    process.executableURL = executable
    process.arguments = arguments
    var env = ProcessInfo.processInfo.environment
    for (k, v) in environment { env[k] = v }
    process.environment = env
    if let currentDirectory { process.currentDirectoryURL = currentDirectory }
    // Output goes to files, so a chatty child never blocks on a full pipe.
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nas-mpi-run-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let outURL = dir.appendingPathComponent("stdout"), errURL = dir.appendingPathComponent("stderr")
    _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
    _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
    process.standardOutput = try FileHandle(forWritingTo: outURL)
    process.standardError = try FileHandle(forWritingTo: errURL)
    process.standardInput = FileHandle.nullDevice
    try process.run()
    let deadline = Date().addingTimeInterval(timeout)
    while process.isRunning && Date() < deadline { usleep(20_000) }
    if process.isRunning {
        kill(-process.processIdentifier, SIGKILL)
        process.terminate()
        kill(process.processIdentifier, SIGKILL)
    }
    process.waitUntilExit()
    let outData = (try? Data(contentsOf: outURL)) ?? Data()
    let errData = (try? Data(contentsOf: errURL)) ?? Data()
    return CommandResult(status: process.terminationStatus,
                         stdout: String(decoding: outData, as: UTF8.self),
                         stderr: String(decoding: errData, as: UTF8.self))
}

/// A fresh temporary directory, removed when the test ends.
public func temporaryDirectory(_ test: XCTestCase) throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("nas-mpi-test-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(at: url) }
    return url
}

/// Starts `nas-mpi` with `arguments` (which must make it log every step into `log`), waits until
/// the log contains `marker`, sends `signal` and returns the exit status.
public func interruptNasMPI(_ arguments: [String], log: URL, after marker: String, signal: Int32) throws -> Int32 {
    let process = Process()
    process.executableURL = try nasMPIBinary()
    process.arguments = arguments
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    let deadline = Date().addingTimeInterval(60)
    while Date() < deadline {
        if let text = try? String(contentsOf: log, encoding: .utf8), text.contains(marker) { break }
        usleep(5_000)
    }
    kill(process.processIdentifier, signal)
    process.waitUntilExit()
    return process.terminationStatus
}

/// Runs `nas-mpi evaluate --run RUN --split validation --json` on a search run and checks that it
/// reproduces the validation loss the run logged for its last epoch (metrics.jsonl): the
/// checkpoint restores everything the forward pass depends on. Returns evaluate's JSON.
@discardableResult
public func assertEvaluateReproducesLastValidationLoss(_ run: URL, file: StaticString = #filePath, line: UInt = #line) throws -> [String: Any] {
    let v = try runNasMPI(["evaluate", "--run", run.path, "--threads", "1", "--split", "validation", "--json"])
    XCTAssertEqual(v.status, 0, v.stderr, file: file, line: line)
    let result = try JSONSerialization.jsonObject(with: Data(v.stdout.utf8)) as? [String: Any] ?? [:]
    let metrics = try String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n")
    let last = try JSONSerialization.jsonObject(with: Data(metrics.last!.utf8)) as? [String: Any] ?? [:]
    XCTAssertEqual(result["loss"] as? Double ?? 0, last["val_loss"] as? Double ?? 1, accuracy: 1e-9, file: file, line: line)
    return result
}
