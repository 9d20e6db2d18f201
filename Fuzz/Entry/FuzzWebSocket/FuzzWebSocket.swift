#if canImport(Glibc)
import Glibc
#endif
import FuzzTargets

/// The fuzz executable's `main` (SwiftPM links `main` to `<module>_main`): libFuzzer under
/// Fuzz/run.sh, a corpus replayer in ordinary builds.
@_cdecl("FuzzWebSocket_main")
func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    FuzzDriver.run(argc, argv) { data, size in
        FuzzTargets.webSocket(FuzzDriver.bytes(data, size))
        return 0
    }
}
