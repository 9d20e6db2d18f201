#if canImport(Glibc)
import Glibc
#endif
import FuzzTargets

/// libFuzzer's callback (its own `main`, linked from the runtime, refers to it by name).
@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    FuzzTargets.wire(FuzzDriver.bytes(data, size))
    return 0
}

/// The executable's `main` (SwiftPM links `main` to `<module>_main`): libFuzzer's driver
/// under Fuzz/run.sh, a corpus replayer in ordinary builds.
@_cdecl("FuzzWire_main")
func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    FuzzDriver.run(argc, argv, fuzzOne)
}
