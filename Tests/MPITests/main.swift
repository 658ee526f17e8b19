// Multi-rank checks of the MPI communicator, run by scripts/test as
//   mpirun -np 2 .build/debug/mpi-tests    (and -np 4)
// and once without mpirun, where MPI starts as a singleton of one rank.
// Every rank runs every check; the failure count is summed over ranks and rank 0 prints
// "N passed, M failed". The exit status is non-zero when any rank failed a check.
import Distributed
import Foundation

let comm = MPIEnvironment.start()
let (rank, size) = (comm.rank, comm.size)
var passed = 0
var failures: [String] = []

func check(_ name: String, _ condition: @autoclosure () throws -> Bool) {
    do {
        if try condition() { passed += 1 } else { failures.append(name) }
    } catch {
        failures.append("\(name): \(error)")
    }
}

// allreduce of Floats: rank r contributes r + 1 + i.
var values = (0..<1000).map { Float(rank + 1 + $0) }
try comm.allreduceSum(&values)
let rankSum = Float(size * (size + 1) / 2)
check("allreduceSum Float", values.enumerated().allSatisfy { $0.element == rankSum + Float(size * $0.offset) })

// A large fused buffer (2M floats, the size of a DARTS supernet's gradients).
var big = [Float](repeating: Float(rank), count: 2_000_000)
try comm.allreduceSum(&big)
check("allreduceSum 2M floats", big.allSatisfy { $0 == Float(size * (size - 1) / 2) })

var doubles = [Double(rank) + 0.5, 1]
try comm.allreduceSum(&doubles)
check("allreduceSum Double", doubles == [Double(size * (size - 1)) / 2 + 0.5 * Double(size), Double(size)])

var means = [Float(rank * 2)]
try comm.allreduceMean(&means)
check("allreduceMean", abs(means[0] - Float(size - 1)) < 1e-6)

// broadcast from the first and from the last rank.
for root in [0, size - 1] {
    var b = [Float](repeating: Float(rank), count: 17)
    try comm.broadcast(&b, root: root)
    check("broadcast from \(root)", b.allSatisfy { $0 == Float(root) })
}
var bytes: [UInt8] = rank == 0 ? Array("genotype".utf8) : []
try comm.broadcast(bytes: &bytes, root: 0)
check("broadcast bytes", String(decoding: bytes, as: UTF8.self) == "genotype")

// point-to-point around a ring.
if size > 1 {
    let out = [Int64(rank)]
    var incoming = [Int64(-1)]
    let next = (rank + 1) % size, prev = (rank + size - 1) % size
    if rank % 2 == 0 {
        try out.withUnsafeBytes { try comm.send($0, to: next, tag: 7) }
        try incoming.withUnsafeMutableBytes { try comm.receive($0, from: prev, tag: 7) }
    } else {
        try incoming.withUnsafeMutableBytes { try comm.receive($0, from: prev, tag: 7) }
        try out.withUnsafeBytes { try comm.send($0, to: next, tag: 7) }
    }
    check("send/receive ring", incoming[0] == Int64(prev))
}

// gather at the root, in rank order.
if let all = try comm.gather(Double(rank * 10)) {
    check("gather at root", rank == 0 && all == (0..<size).map { Double($0 * 10) })
} else {
    check("gather elsewhere", rank != 0)
}
if let hashes = try comm.gather(UInt64(rank) << 40, root: size - 1) {
    check("gather UInt64 at last rank", hashes == (0..<size).map { UInt64($0) << 40 })
}

// The length check that guards fused allreduces.
check("same length accepted", (try? comm.requireSameOnAllRanks(42, what: "length")) != nil)
if size > 1 {
    var message = ""
    do { try comm.requireSameOnAllRanks(rank == 0 ? 10 : 11, what: "gradient buffer length") } catch { message = "\(error)" }
    check("different lengths refused", message.contains("gradient buffer length differs across ranks"))
}
check("bad root refused", (try? comm.broadcast(&means, root: size)) == nil)
try comm.barrier()

var failed = [Double(failures.count)]
try comm.allreduceSum(&failed)
for f in failures { FileHandle.standardError.write(Data("rank \(rank) failed: \(f)\n".utf8)) }
try comm.barrier()
if rank == 0 {
    print("mpi-tests on \(size) rank(s): \(passed * size - Int(failed[0])) checks passed")
    print("\(passed * size - Int(failed[0])) passed, \(Int(failed[0])) failed")
}
exit(failed[0] == 0 ? 0 : 1)
