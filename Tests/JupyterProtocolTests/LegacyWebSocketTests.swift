import Foundation
import JupyterProtocol
import Testing

/// The protocol-less WebSocket encoding: JSON text frames, and jupyter_server's
/// `serialize_binary_message` layout when a message has buffers.
@Suite("WebSocket legacy binary")
struct LegacyBinaryTests {
    @Test("frameLegacyBinary equals serialize_binary_message", arguments: Fixtures.legacyBinary)
    func frameMatchesJupyterServer(_ c: LegacyBinaryCase) {
        let frame = WebSocketCodec.frameLegacyBinary(json: c.json.bytes, buffers: c.buffers.map(\.bytes))
        #expect(frame == c.frame.bytes)
    }

    @Test("offset table is u32 big-endian", arguments: Fixtures.legacyBinary)
    func offsetsAreBigEndian(_ c: LegacyBinaryCase) {
        let buffers = c.buffers.map(\.bytes)
        let frame = WebSocketCodec.frameLegacyBinary(json: c.json.bytes, buffers: buffers)
        let nparts = readBE32(frame, 0)
        #expect(nparts == buffers.count + 1)
        var expected = 4 * (nparts + 1)
        #expect(readBE32(frame, 4) == expected)
        #expect(Array(frame[expected..<(expected + c.json.bytes.count)]) == c.json.bytes)
        expected += c.json.bytes.count
        for (i, buffer) in buffers.enumerated() {
            #expect(readBE32(frame, 4 * (i + 2)) == expected)
            expected += buffer.count
        }
        #expect(frame.count == expected)
    }

    @Test("splitLegacyBinary returns the JSON blob and buffers intact", arguments: Fixtures.legacyBinary)
    func splitJupyterServerFrame(_ c: LegacyBinaryCase) throws {
        let parts = try WebSocketCodec.splitLegacyBinary(c.frame.bytes)
        #expect(parts == [c.json.bytes] + c.buffers.map(\.bytes))
    }

    @Test("decode(.binary, .legacy) of jupyter_server frames", arguments: Fixtures.legacyBinary)
    func decodeJupyterServerFrame(_ c: LegacyBinaryCase) throws {
        let (channel, message) = try WebSocketCodec.decode(.binary(c.frame.bytes), protocol: .legacy)
        #expect(channel.rawValue == c.channel)
        #expect(message.msgID == c.msg_id)
        #expect(message.msgType == c.msg_type)
        #expect(message.buffers == c.buffers.map(\.bytes))
        let blob = try parseObject(c.json.bytes)
        #expect(try sameJSON(try #require(blob["header"]), message.header))
        #expect(try sameJSON(try #require(blob["parent_header"]), message.parentHeader))
        #expect(try sameJSON(try #require(blob["metadata"]), message.metadata))
        #expect(try sameJSON(try #require(blob["content"]), message.content))
    }

    /// What jupyter_server's `deserialize_binary_message` needs from our frames: a JSON blob
    /// with the message keys and the channel, buffers after it (it sets `msg["buffers"]`).
    @Test("encodeLegacyBinary output has jupyter_server's shape", arguments: Fixtures.v1)
    func encodeShape(_ c: V1Case) throws {
        let p = c.parts.map(\.bytes)
        let message = try JupyterMessage(header: p[0], parentHeader: p[1], metadata: p[2], content: p[3],
                                         buffers: Array(p[4...]))
        let channel = try #require(Channel(rawValue: c.channel))
        let frame = WebSocketCodec.encodeLegacyBinary(message, channel: channel)
        let split = try WebSocketCodec.splitLegacyBinary(frame)
        #expect(Array(split.dropFirst()) == message.buffers)

        let blob = try parseObject(split[0])
        #expect(Set(blob.keys) == ["header", "parent_header", "metadata", "content", "channel", "msg_id", "msg_type"])
        #expect(blob["buffers"] == nil)
        #expect(blob["channel"] as? String == c.channel)
        #expect(blob["msg_id"] as? String == c.msg_id)
        #expect(blob["msg_type"] as? String == c.msg_type)
        #expect(try sameJSON(try #require(blob["header"]), p[0]))
        #expect(try sameJSON(try #require(blob["parent_header"]), p[1]))
        #expect(try sameJSON(try #require(blob["metadata"]), p[2]))
        #expect(try sameJSON(try #require(blob["content"]), p[3]))

        // Equal, as parsed JSON, to the blob jupyter_server itself builds for this message.
        let reference = try #require(Fixtures.legacyBinary.first { $0.name == c.name })
        #expect(try sameJSON(split[0], reference.json.bytes))

        // And it decodes back to the same message.
        let (channel2, message2) = try WebSocketCodec.decode(.binary(frame), protocol: .legacy)
        #expect(channel2 == channel)
        #expect(message2 == message)
    }

    @Test func encodeChoosesBinaryOnlyWithBuffers() throws {
        let plain = try Sample.message()
        guard case .text = WebSocketCodec.encode(plain, channel: .iopub, protocol: .legacy) else {
            Issue.record("a message without buffers must be a text frame")
            return
        }
        let withBuffers = try Sample.message(buffers: [[1, 2, 3]])
        #expect(WebSocketCodec.encode(withBuffers, channel: .iopub, protocol: .legacy)
            == .binary(WebSocketCodec.encodeLegacyBinary(withBuffers, channel: .iopub)))
    }
}

@Suite("WebSocket legacy JSON")
struct LegacyJSONTests {
    @Test("legacyJSON parses to the source parts plus routing keys", arguments: Fixtures.v1)
    func legacyJSONShape(_ c: V1Case) throws {
        let p = c.parts.map(\.bytes)
        let message = try JupyterMessage(header: p[0], parentHeader: p[1], metadata: p[2], content: p[3])
        let channel = try #require(Channel(rawValue: c.channel))
        let text = WebSocketCodec.legacyJSON(message, channel: channel, withBuffers: true)
        let object = try parseObject(text)
        #expect(Set(object.keys) == ["header", "parent_header", "metadata", "content", "channel", "msg_id", "msg_type", "buffers"])
        #expect(try sameJSON(try #require(object["header"]), p[0]))
        #expect(try sameJSON(try #require(object["parent_header"]), p[1]))
        #expect(try sameJSON(try #require(object["metadata"]), p[2]))
        #expect(try sameJSON(try #require(object["content"]), p[3]))
        #expect(object["msg_id"] as? String == c.msg_id)
        #expect(object["msg_type"] as? String == c.msg_type)
        #expect(object["channel"] as? String == c.channel)
        #expect((object["buffers"] as? [Any])?.isEmpty == true)

        #expect(WebSocketCodec.encode(message, channel: channel, protocol: .legacy) == .text(text))

        let noBuffers = try parseObject(WebSocketCodec.legacyJSON(message, channel: channel, withBuffers: false))
        #expect(noBuffers["buffers"] == nil)
    }

    /// jupyter_server's `json.dumps(msg)` text for the same message, compared as parsed JSON.
    @Test("legacyJSON equals jupyter_server's text frame as JSON", arguments: Fixtures.legacyText)
    func matchesJupyterServerText(_ c: LegacyTextCase) throws {
        let source = try #require(Fixtures.v1.first { $0.name == c.name })
        let p = source.parts.map(\.bytes)
        let message = try JupyterMessage(header: p[0], parentHeader: p[1], metadata: p[2], content: p[3])
        let channel = try #require(Channel(rawValue: c.channel))
        #expect(try sameJSON(WebSocketCodec.legacyJSON(message, channel: channel, withBuffers: true), c.text.bytes))
    }

    @Test("decode(.text) of jupyter_server-format text frames", arguments: Fixtures.legacyText)
    func decodeJupyterServerText(_ c: LegacyTextCase) throws {
        let (channel, message) = try WebSocketCodec.decode(.text(c.text.bytes), protocol: .legacy)
        #expect(channel.rawValue == c.channel)
        #expect(message.msgID == c.msg_id)
        #expect(message.msgType == c.msg_type)
        #expect(message.parentMsgID == c.parent_msg_id)
        #expect(message.buffers.isEmpty)
        let object = try parseObject(c.text.bytes)
        #expect(try sameJSON(try #require(object["header"]), message.header))
        #expect(try sameJSON(try #require(object["content"]), message.content))
    }

    @Test func missingChannelDefaultsToShell() throws {
        let text = utf8(#"{"header":{"msg_id":"a","msg_type":"execute_request"},"parent_header":{},"metadata":{},"content":{"code":"1"}}"#)
        let (channel, message) = try WebSocketCodec.decode(.text(text), protocol: .legacy)
        #expect(channel == .shell)
        #expect(message.msgID == "a")
        #expect(message.content == utf8(#"{"code":"1"}"#))
    }

    @Test(arguments: ["hb", "heartbeat", "Shell", "", "iopub "])
    func unknownChannel(_ name: String) {
        let text = utf8(#"{"header":{"msg_id":"a","msg_type":"t"},"channel":""# + name + #""}"#)
        #expect(throws: ProtocolError.unknownChannel(name)) {
            try WebSocketCodec.decode(.text(text), protocol: .legacy)
        }
    }

    @Test func nonStringChannelIsRejected() {
        for channel in ["5", "null", "[]", "{}", "true"] {
            let text = utf8(#"{"header":{"msg_id":"a","msg_type":"t"},"channel":"# + channel + "}")
            #expect(throws: ProtocolError.self) { try WebSocketCodec.decode(.text(text), protocol: .legacy) }
        }
    }

    @Test func missingHeaderIsAnError() {
        let text = utf8(#"{"parent_header":{},"metadata":{},"content":{},"channel":"shell"}"#)
        #expect(throws: ProtocolError.missingField("header")) {
            try WebSocketCodec.decode(.text(text), protocol: .legacy)
        }
    }

    @Test func headerWithoutRoutingFieldsIsAnError() {
        for header in [#"{}"#, #"{"msg_type":"t"}"#, #"{"msg_id":"a"}"#, #"{"msg_id":"","msg_type":"t"}"#,
                       #"{"msg_id":5,"msg_type":"t"}"#, "null", "[]", #""h""#] {
            let text = utf8(#"{"header":"# + header + "}")
            #expect(throws: ProtocolError.self, "header \(header)") {
                try WebSocketCodec.decode(.text(text), protocol: .legacy)
            }
        }
    }

    @Test func nullPartsAreTolerated() throws {
        let text = utf8(#"{"header":{"msg_id":"a","msg_type":"t"},"parent_header":null,"metadata":null,"content":null,"channel":"control"}"#)
        let (channel, message) = try WebSocketCodec.decode(.text(text), protocol: .legacy)
        #expect(channel == .control)
        #expect(message.parentHeader == utf8("{}"))
        #expect(message.metadata == utf8("{}"))
        #expect(message.content == utf8("{}"))
        #expect(message.parentMsgID == nil)

        let minimal = utf8(#"{"header":{"msg_id":"a","msg_type":"t"}}"#)
        let (_, m2) = try WebSocketCodec.decode(.text(minimal), protocol: .legacy)
        #expect(m2.parentHeader == utf8("{}") && m2.metadata == utf8("{}") && m2.content == utf8("{}"))
    }

    @Test func nonObjectPartsAreRejected() {
        for (key, value) in [("parent_header", "[]"), ("metadata", "1"), ("content", #""x""#), ("content", "[1]"),
                             ("parent_header", "true")] {
            let text = utf8(#"{"header":{"msg_id":"a","msg_type":"t"},""# + key + #"":"# + value + "}")
            #expect(throws: ProtocolError.self, "\(key): \(value)") {
                try WebSocketCodec.decode(.text(text), protocol: .legacy)
            }
        }
    }

    @Test func parentFieldsAndWhitespace() throws {
        let text = utf8(" \n{ \"header\" : {\"msg_type\":\"t\" , \"msg_id\":\"a\\u00e9\"} ,\r\n \"parent_header\":{\"msg_id\":\"p\",\"msg_type\":\"pt\"}\t} \n")
        let (_, message) = try WebSocketCodec.decode(.text(text), protocol: .legacy)
        #expect(message.msgID == "aé")
        #expect(message.parentMsgID == "p")
        #expect(message.parentMsgType == "pt")
    }

    @Test func routingKeysAreEscapedInLegacyJSON() throws {
        let id = "id \"quoted\" \\ back\nnew\u{01}ctl ünï 😀 \u{2028}"
        let header = utf8(#"{"msg_id":"#) + JSONScanner.quoted(id) + utf8(#","msg_type":"t\"y"}"#)
        let message = try JupyterMessage(header: header, parentHeader: utf8("{}"), metadata: utf8("{}"), content: utf8("{}"))
        #expect(message.msgID == id)
        #expect(message.msgType == "t\"y")
        let object = try parseObject(WebSocketCodec.legacyJSON(message, channel: .stdin, withBuffers: true))
        #expect(object["msg_id"] as? String == id)
        #expect(object["msg_type"] as? String == "t\"y")
    }
}
