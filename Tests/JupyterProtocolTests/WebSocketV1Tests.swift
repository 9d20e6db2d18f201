import Foundation
import JupyterProtocol
import Testing

/// `v1.kernel.websocket.jupyter.org` against jupyter_server's `serialize_msg_to_ws_v1`.
@Suite("WebSocket v1")
struct WebSocketV1Tests {
    @Test("frameV1 equals serialize_msg_to_ws_v1 byte for byte", arguments: Fixtures.v1)
    func frameMatchesJupyterServer(_ c: V1Case) {
        let frame = WebSocketCodec.frameV1(channel: utf8(c.channel), parts: c.parts.map(\.bytes))
        #expect(frame == c.frame.bytes)
    }

    @Test("decodeV1 of jupyter_server frames yields the original parts", arguments: Fixtures.v1)
    func decodeJupyterServerFrame(_ c: V1Case) throws {
        let (channel, message) = try WebSocketCodec.decodeV1(c.frame.bytes)
        #expect(channel.rawValue == c.channel)
        #expect(message.allParts == c.parts.map(\.bytes))
        #expect(message.msgID == c.msg_id)
        #expect(message.msgType == c.msg_type)

        let (channel2, message2) = try WebSocketCodec.decode(.binary(c.frame.bytes), protocol: .v1)
        #expect(channel2 == channel)
        #expect(message2 == message)
    }

    @Test("encode(.v1) of a decoded message reproduces the frame", arguments: Fixtures.v1)
    func encodeRoundTrip(_ c: V1Case) throws {
        let p = c.parts.map(\.bytes)
        let message = try JupyterMessage(header: p[0], parentHeader: p[1], metadata: p[2], content: p[3],
                                         buffers: Array(p[4...]))
        let channel = try #require(Channel(rawValue: c.channel))
        #expect(WebSocketCodec.encodeV1(message, channel: channel) == c.frame.bytes)
        #expect(WebSocketCodec.encode(message, channel: channel, protocol: .v1) == .binary(c.frame.bytes))
    }

    @Test func offsetTableLayout() {
        let parts: [[UInt8]] = Sample.parts + [utf8("abc"), [], [0xFF]]
        let frame = WebSocketCodec.frameV1(channel: utf8("iopub"), parts: parts)
        let n = Int(readLE64(frame, 0))
        #expect(n == parts.count + 2)
        var expected = 8 * (n + 1)
        #expect(readLE64(frame, 8) == UInt64(expected))
        expected += 5
        #expect(readLE64(frame, 16) == UInt64(expected))
        for (i, part) in parts.enumerated() {
            expected += part.count
            #expect(readLE64(frame, 8 * (i + 3)) == UInt64(expected))
        }
        #expect(frame.count == expected)
    }

    @Test func textFrameIsRejectedOnV1() throws {
        let text = WebSocketCodec.legacyJSON(try Sample.message(), channel: .shell, withBuffers: true)
        #expect(throws: ProtocolError.self) { try WebSocketCodec.decode(.text(text), protocol: .v1) }
    }

    @Test func negotiation() {
        #expect(WebSocketProtocol.negotiate(offered: []) == .legacy)
        #expect(WebSocketProtocol.negotiate(offered: ["v1.kernel.websocket.jupyter.org"]) == .v1)
        #expect(WebSocketProtocol.negotiate(offered: ["other", "v1.kernel.websocket.jupyter.org"]) == .v1)
        #expect(WebSocketProtocol.negotiate(offered: ["v1"]) == .legacy)
        #expect(WebSocketProtocol.negotiate(offered: ["V1.KERNEL.WEBSOCKET.JUPYTER.ORG"]) == .legacy)
        #expect(WebSocketProtocol.v1.rawValue == "v1.kernel.websocket.jupyter.org")
    }
}
