/// glibc's `mallopt` (declared in malloc.h, which the Glibc module does not export).
@_silgen_name("mallopt")
private func c_mallopt(_ parameter: Int32, _ value: Int32) -> Int32

/// Process-wide allocator settings for training loops.
public enum Allocator {
    /// Keeps freed tensor memory in the heap for reuse instead of returning it to the system.
    ///
    /// glibc serves allocations above 128 KB (most activations) with fresh mmap'd pages and unmaps
    /// them on free, so every step would page-fault all its activations in again. Raising the mmap
    /// threshold to glibc's 32 MB maximum and disabling heap trimming lets the allocator hand the
    /// previous step's blocks to the next step: buffers are reused across steps without an explicit
    /// pool. Called once at start-up by the command line.
    public static func configureForTraining() {
        #if os(Linux)
        let (trimThreshold, topPad, mmapThreshold): (Int32, Int32, Int32) = (-1, -2, -3)  // M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD
        _ = c_mallopt(mmapThreshold, 32 << 20)
        _ = c_mallopt(trimThreshold, Int32.max)
        _ = c_mallopt(topPad, 64 << 20)
        #endif
    }
}
