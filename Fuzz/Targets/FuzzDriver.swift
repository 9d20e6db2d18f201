#if canImport(Glibc)
import Glibc
#endif
import Foundation

#if FUZZING
/// libFuzzer's entry for programs that keep their own `main` (LLVM 11+, `FuzzerDriver.cpp`).
/// SwiftPM links an executable's `main` to `<module>_main`, so each fuzz executable defines that
/// and hands its callback to libFuzzer here.
@_silgen_name("LLVMFuzzerRunDriver")
private func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt
#endif

/// Runs a fuzz target: under libFuzzer when built with `-sanitize=fuzzer -DFUZZING`
/// (Fuzz/run.sh), otherwise as a replayer of the files and directories named on the command
/// line (options starting with `-` are libFuzzer's and are ignored), so a crash input can be
/// reproduced in an ordinary debug build and the seed corpus stays a regression test.
public enum FuzzDriver {
    public typealias Callback = @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt

    public static func run(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?, _ callback: Callback) -> CInt {
        #if FUZZING
        var count = argc
        var vector = argv
        return LLVMFuzzerRunDriver(&count, &vector, callback)
        #else
        var inputs: [String] = []
        for i in 1..<Int(argc) {
            guard let arg = argv?[i].map({ String(cString: $0) }), !arg.hasPrefix("-") else { continue }
            inputs += files(under: arg)
        }
        for path in inputs {
            let bytes = FileManager.default.contents(atPath: path).map { [UInt8]($0) } ?? []
            _ = bytes.withUnsafeBufferPointer { callback($0.baseAddress, $0.count) }
        }
        print("replayed \(inputs.count) input(s) without a crash")
        return 0
        #endif
    }

    /// Regular files at or below `path`, sorted.
    public static func files(under path: String) -> [String] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { return [] }
        guard isDirectory.boolValue else { return [path] }
        let names = (try? FileManager.default.subpathsOfDirectory(atPath: path)) ?? []
        return names.sorted().map { "\(path)/\($0)" }.filter {
            var dir: ObjCBool = false
            return FileManager.default.fileExists(atPath: $0, isDirectory: &dir) && !dir.boolValue
        }
    }

    public static func bytes(_ data: UnsafePointer<UInt8>?, _ size: Int) -> [UInt8] {
        guard let data, size > 0 else { return [] }
        return Array(UnsafeBufferPointer(start: data, count: size))
    }
}
