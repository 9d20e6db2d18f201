import Benchmark
import JupyterProtocol

// Per-message cost of the gateway's codecs (issue #13): ZeroMQ wire sign+encode and decode+verify
// (WireCodec/MessageSigner, as jupyter_client's Session), and WebSocket legacy JSON / v1 encode and decode
// (WebSocketCodec, as jupyter_server's serialize_msg_to_ws_v1 and the legacy JSON framing).
// Messages are the shapes that dominate real traffic: an `execute_request` from a client and a `stream`
// line from a kernel's iopub.

private func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

private let key = "5ca1ab1e-0b5e-4c0d-9e7a-6d1f2c3b4a59"
private let signer = MessageSigner(key: key)

private let executeRequest = try! JupyterMessage(
    header: bytes(#"{"msg_id":"6f1d3c0a9b2e4c7d8e5f1a2b3c4d5e6f","username":"bench","session":"0b7e1f2a3c4d5e6f7a8b9c0d1e2f3a4b","date":"2026-11-23T23:59:59.123456Z","msg_type":"execute_request","version":"5.3"}"#),
    parentHeader: bytes("{}"),
    metadata: bytes("{}"),
    content: bytes(#"{"code":"1+1","silent":false,"store_history":true,"user_expressions":{},"allow_stdin":false,"stop_on_error":true}"#)
)

private let streamLine = try! JupyterMessage(
    header: bytes(#"{"msg_id":"a1b2c3d4-e5f60718293a4b5c6d7e8f90_1234_56","msg_type":"stream","username":"bench","session":"a1b2c3d4-e5f60718293a4b5c6d7e8f90","date":"2026-11-23T23:59:59.223456Z","version":"5.3"}"#),
    parentHeader: bytes(#"{"msg_id":"6f1d3c0a9b2e4c7d8e5f1a2b3c4d5e6f","username":"bench","session":"0b7e1f2a3c4d5e6f7a8b9c0d1e2f3a4b","date":"2026-11-23T23:59:59.123456Z","msg_type":"execute_request","version":"5.3"}"#),
    metadata: bytes("{}"),
    content: bytes(#"{"name":"stdout","text":"12345\n"}"#)
)

/// What a kernel sends: identity (iopub topic), delimiter, signature, four parts.
private let streamFrames: [[UInt8]] = [bytes("kernel.a1b2.stream")] + WireCodec.encode(streamLine, signer: signer)

private let legacyExecute = WebSocketCodec.legacyJSON(executeRequest, channel: .shell, withBuffers: true)
private let v1Execute = WebSocketCodec.encodeV1(executeRequest, channel: .shell)

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .cpuTotal, .throughput, .mallocCountTotal],
        scalingFactor: .kilo,
        maxDuration: .seconds(3),
        maxIterations: 100_000
    )

    Benchmark("wire: sign+encode execute_request (to kernel)") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(WireCodec.encode(executeRequest, signer: signer))
        }
    }
    Benchmark("wire: decode+verify stream line (from kernel)") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try WireCodec.decode(streamFrames, signer: signer))
        }
    }
    Benchmark("ws legacy: encode stream line (to client)") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(WebSocketCodec.encode(streamLine, channel: .iopub, protocol: .legacy))
        }
    }
    Benchmark("ws v1: encode stream line (to client)") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(WebSocketCodec.encode(streamLine, channel: .iopub, protocol: .v1))
        }
    }
    Benchmark("ws legacy: decode execute_request (from client)") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try WebSocketCodec.decode(.text(legacyExecute), protocol: .legacy))
        }
    }
    Benchmark("ws v1: decode execute_request (from client)") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try WebSocketCodec.decode(.binary(v1Execute), protocol: .v1))
        }
    }
    Benchmark("relay path: kernel stream line -> decode+verify -> ws legacy + v1 encode") { benchmark in
        for _ in benchmark.scaledIterations {
            let m = try WireCodec.decode(streamFrames, signer: signer)
            blackHole(WebSocketCodec.encode(m, channel: .iopub, protocol: .legacy))
            blackHole(WebSocketCodec.encode(m, channel: .iopub, protocol: .v1))
        }
    }
    Benchmark("client path: ws legacy decode -> sign+encode to kernel") { benchmark in
        for _ in benchmark.scaledIterations {
            let (_, m) = try WebSocketCodec.decode(.text(legacyExecute), protocol: .legacy)
            blackHole(WireCodec.encode(m, signer: signer))
        }
    }
}
