import Foundation
import GatewayServer
import JupyterProtocol
import Testing

let ganymedeVersionForTests = ganymedeVersion

/// The channels WebSocket in all three framings, with real kernels.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct WebSocketTests {
    @Test(arguments: [WebSocketProtocol.legacy, .v1])
    func executeRoundTrip(proto: WebSocketProtocol) async throws {
        try await TestGateway.with { gw in
            let id = try await gw.startKernel()
            let client = ChannelsClient(proto: proto)
            try await client.connect(gw, kernel: id)
            let msgID = client.execute("1+1")
            let messages = await client.collect(until: msgID)
            #expect(ChannelsClient.output(messages) == "2")
            let reply = messages.first { $0.0 == .shell && $0.1.msgType == "execute_reply" }
            #expect(reply?.1.parentMsgID == msgID)
            // Framing: legacy uses text frames with the top-level keys; v1 only binary frames.
            for frame in client.frames {
                switch (proto, frame) {
                case (.legacy, .text(let bytes)):
                    let keys = Set(ChannelsClient.object(bytes).keys)
                    #expect(keys.isSuperset(of: ["header", "parent_header", "metadata", "content", "buffers", "channel", "msg_id", "msg_type"]))
                case (.v1, .binary):
                    break
                default:
                    Issue.record("unexpected frame kind for \(proto)")
                }
            }
            client.close()
        }
    }

    /// A comm message carrying binary buffers, from the kernel and to it, in legacy binary
    /// and v1 framing.
    @Test(arguments: [WebSocketProtocol.legacy, .v1])
    func binaryBuffers(proto: WebSocketProtocol) async throws {
        try await TestGateway.with { gw in
            let id = try await gw.startKernel()
            let client = ChannelsClient(proto: proto)
            try await client.connect(gw, kernel: id)
            let code = """
            from ipykernel.comm import Comm
            received = []
            comm = Comm(target_name='ganymede.test', data={'hello': 1}, buffers=[b'\\x00\\x01\\x02\\xff', b''])
            comm.on_msg(lambda msg: received.append([bytes(b) for b in msg['buffers']]))
            """
            let messages = await client.collect(until: client.execute(code))
            let open = try #require(messages.first { $0.1.msgType == "comm_open" })
            #expect(open.1.buffers == [[0x00, 0x01, 0x02, 0xFF], []])
            let rawFrame = client.frames.first { frame in
                if case .binary = frame { return ChannelsClient.decode(frame, proto: proto)?.1.msgType == "comm_open" }
                return false
            }
            #expect(rawFrame != nil, "comm_open with buffers must arrive as a binary frame")
            if proto == .legacy, case .binary(let bytes)? = rawFrame {
                // u32 big-endian part count, then offsets: JSON first, then the buffers.
                #expect(Array(bytes.prefix(4)) == [0, 0, 0, 3])
            }
            // Client → kernel: a comm_msg with a buffer reaches the kernel intact.
            let commID = try #require(ChannelsClient.object(open.1.content)["comm_id"] as? String)
            client.send("comm_msg", content: "{\"comm_id\":\"\(commID)\",\"data\":{}}", buffers: [[9, 8, 7, 0, 255]])
            try await Task.sleep(for: .milliseconds(300))
            let check = await client.collect(until: client.execute("print(received)"))
            #expect(ChannelsClient.output(check).contains(#"[[b'\t\x08\x07\x00\xff']]"#))
            client.close()
        }
    }

    /// Two WebSockets on one kernel share one ZeroMQ connection: iopub goes to both,
    /// the reply only to the client that asked, and stdin requests to the asker.
    @Test func twoClientsOnOneKernel() async throws {
        try await TestGateway.with { gw in
            let id = try await gw.startKernel()
            let a = ChannelsClient(proto: .legacy)
            let b = ChannelsClient(proto: .v1)
            try await a.connect(gw, kernel: id)
            try await b.connect(gw, kernel: id)
            // The upgrade answers before the relay registers the client: wait until both count,
            // otherwise b can miss the first iopub messages it is asked to see.
            var connections = 0
            for _ in 0..<500 {
                connections = (try await gw.request(.GET, "/api/kernels/\(id)")).object["connections"] as? Int ?? 0
                if connections == 2 { break }
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(connections == 2)
            let msgID = a.execute("print('shared output')")
            let fromA = await a.collect(until: msgID)
            let fromB = await b.collect(until: msgID, reply: false)
            #expect(ChannelsClient.output(fromA).contains("shared output"))
            #expect(ChannelsClient.output(fromB).contains("shared output"))
            #expect(fromA.contains { $0.0 == .shell && $0.1.msgType == "execute_reply" })
            #expect(!fromB.contains { $0.0 == .shell })
            // stdin: the input_request goes to the asking client only.
            let ask = b.execute("name = input('who? '); print('hi', name)", allowStdin: true)
            var request: JupyterMessage?
            while let m = await b.next(timeout: .seconds(20)) {
                if m.0 == .stdin && m.1.msgType == "input_request" { request = m.1; break }
            }
            let inputRequest = try #require(request)
            var reply = b.builder.message(type: "input_reply", content: Array(#"{"value":"bob"}"#.utf8), parentHeader: inputRequest.header)
            reply.buffers = []
            b.sendRaw(WebSocketCodec.encode(reply, channel: .stdin, protocol: .v1))
            let rest = await b.collect(until: ask)
            #expect(ChannelsClient.output(rest).contains("hi bob"))
            let seenByA = await a.collect(until: ask, reply: false, timeout: .seconds(10))
            #expect(!seenByA.contains { $0.0 == .stdin })
            a.close()
            b.close()
        }
    }

    @Test func garbageFramesDoNotHurt() async throws {
        try await TestGateway.with { gw in
            let id = try await gw.startKernel()
            for proto in [WebSocketProtocol.legacy, .v1] {
                let client = ChannelsClient(proto: proto)
                try await client.connect(gw, kernel: id)
                let garbage: [WebSocketPayload] = [
                    .text(Array("not json".utf8)), .text(Array("{}".utf8)), .text(Array(#"{"header":5}"#.utf8)),
                    .text(Array(#"{"header":{"msg_id":"x","msg_type":"execute_request"},"channel":"nope"}"#.utf8)),
                    .binary([0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0]), .binary([0, 0, 0, 0]), .binary([]),
                    .binary([7, 0, 0, 0, 0, 0, 0, 0xF0] + [UInt8](repeating: 0xEE, count: 64)),
                ]
                for g in garbage { client.sendRaw(g) }
                #expect(ChannelsClient.output(await client.collect(until: client.execute("6*7"))) == "42")
                client.close()
            }
            #expect(try await gw.request(.GET, "/api").status == 200)
        }
    }

    @Test func deletingAKernelClosesItsWebSockets() async throws {
        try await TestGateway.with { gw in
            let id = try await gw.startKernel()
            let client = ChannelsClient(proto: .legacy)
            try await client.connect(gw, kernel: id)
            #expect(try await gw.request(.DELETE, "/api/kernels/\(id)").status == 204)
            var closed = false
            for _ in 0..<50 {
                if await client.next(timeout: .milliseconds(200)) == nil, await client.isClosed { closed = true; break }
            }
            #expect(closed)
            client.close()
        }
    }
}
