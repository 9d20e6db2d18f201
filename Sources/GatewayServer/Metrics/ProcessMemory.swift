import CAllocator
import Foundation

/// The gateway process's memory as the kernel and glibc's allocator see it.
///
/// Resident set size alone cannot tell a leak from fragmentation: `heapInUseBytes` is what live
/// allocations hold (`mallinfo2`, through `CAllocator`: `uordblks` in the arenas plus `hblkhd` in separate mmaps),
/// `heapFreeBytes` what the allocator has freed but still keeps in its arenas (`fordblks`).
enum ProcessMemory {
    struct Sample: Sendable {
        var residentBytes: Int
        var heapInUseBytes: Int
        var heapFreeBytes: Int
    }

    static func sample() -> Sample {
        var inUse = 0, free = 0
        ganymede_heap_stats(&inUse, &free)
        return Sample(residentBytes: residentBytes(), heapInUseBytes: inUse, heapFreeBytes: free)
    }

    /// Hands freed heap memory back to the system (`malloc_trim(0)`); a few milliseconds at most,
    /// so it is for moments after much was freed (a kernel deleted), not for the message path.
    static func trim() {
        _ = ganymede_heap_trim()
    }

    /// `/proc/self/statm`'s second field (resident pages) times the page size; 0 off Linux.
    static func residentBytes() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let fields = text.split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}
