import Foundation
import JupyterProtocol
import Testing

@Suite("Timestamp")
struct TimestampTests {
    static var format: Regex<Substring> { /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/ }

    @Test func nowMatchesJupyterServerFormat() {
        let stamp = Timestamp.iso8601(Date())
        #expect(stamp.wholeMatch(of: Self.format) != nil, "\(stamp)")
    }

    /// Python `datetime.fromtimestamp(t, utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")`.
    @Test func matchesPythonStrftime() throws {
        let stamps = try #require(Fixtures.misc?.timestamps)
        for s in stamps {
            #expect(Timestamp.iso8601(Date(timeIntervalSince1970: s.epoch)) == s.expected, "epoch \(s.epoch)")
        }
    }

    @Test func manyInstantsKeepTheFormat() {
        var rng = SplitMix64(seed: 7)
        for _ in 0..<2_000 {
            let t = Double.random(in: 0..<4_102_444_800, using: &rng)
            let stamp = Timestamp.iso8601(Date(timeIntervalSince1970: t))
            #expect(stamp.wholeMatch(of: Self.format) != nil, "\(t) -> \(stamp)")
        }
    }
}

@Suite("MessageBuilder")
struct MessageBuilderTests {
    @Test func headerFields() throws {
        let builder = MessageBuilder(session: "sess-1", username: "ganymede")
        let message = builder.message(type: "kernel_info_request")
        let header = try parseObject(message.header)
        #expect(Set(header.keys).isSuperset(of: ["msg_id", "msg_type", "session", "username", "date", "version"]))
        #expect(header["msg_id"] as? String == message.msgID)
        #expect(!message.msgID.isEmpty)
        #expect(header["msg_type"] as? String == "kernel_info_request")
        #expect(message.msgType == "kernel_info_request")
        #expect(header["session"] as? String == "sess-1")
        #expect(message.session == "sess-1")
        #expect(header["username"] as? String == "ganymede")
        #expect(header["version"] as? String == "5.4")
        let date = try #require(header["date"] as? String)
        #expect(date.wholeMatch(of: TimestampTests.format) != nil, "\(date)")
        #expect(try parseObject(message.parentHeader).isEmpty)
        #expect(try parseObject(message.metadata).isEmpty)
        #expect(try parseObject(message.content).isEmpty)
        #expect(message.buffers.isEmpty)
        #expect(message.parentMsgID == nil)
    }

    @Test func idsAreUniqueAndSessionIsStable() {
        let builder = MessageBuilder()
        let a = builder.message(type: "t")
        let b = builder.message(type: "t")
        #expect(a.msgID != b.msgID)
        #expect(a.session == b.session)
        #expect(!a.session.isEmpty)
        #expect(MessageBuilder().session != builder.session)
    }

    @Test func contentAndParentArePassedThrough() throws {
        let parent = utf8(#"{"msg_id":"p-9","msg_type":"execute_request","session":"x"}"#)
        let content = utf8(#"{"code":"ünï \"q\"","silent":true}"#)
        let message = MessageBuilder().message(type: "execute_request", content: content, parentHeader: parent)
        #expect(message.content == content)
        #expect(message.parentHeader == parent)
        #expect(message.parentMsgID == "p-9")
        #expect(message.parentMsgType == "execute_request")
    }

    @Test func oddTypeAndSessionStringsAreEscaped() throws {
        let builder = MessageBuilder(session: "s \"1\" \\ ünï", username: "u\nser")
        let message = builder.message(type: "t\"y\\pe\u{1}")
        let header = try parseObject(message.header)
        #expect(header["msg_type"] as? String == "t\"y\\pe\u{1}")
        #expect(header["session"] as? String == "s \"1\" \\ ünï")
        #expect(header["username"] as? String == "u\nser")
        #expect(message.msgType == "t\"y\\pe\u{1}")
    }

    @Test func status() throws {
        let builder = MessageBuilder()
        let busy = builder.status("busy")
        #expect(busy.msgType == "status")
        let content = try parseObject(busy.content)
        #expect(content["execution_state"] as? String == "busy")
        #expect(content["reason"] == nil)

        let dead = builder.status("dead", reason: "kernel \"died\"\n")
        let c2 = try parseObject(dead.content)
        #expect(c2["execution_state"] as? String == "dead")
        #expect(c2["reason"] as? String == "kernel \"died\"\n")
        #expect(try parseObject(dead.parentHeader).isEmpty)
    }

    @Test func builtMessagesSurviveEveryCodec() throws {
        let message = MessageBuilder().status("restarting")
        let signer = MessageSigner(key: "k")
        #expect(try WireCodec.decode(WireCodec.encode(message, signer: signer), signer: signer) == message)
        for proto in WebSocketProtocol.allCases {
            let (channel, decoded) = try WebSocketCodec.decode(WebSocketCodec.encode(message, channel: .iopub, protocol: proto),
                                                               protocol: proto)
            #expect(channel == .iopub)
            #expect(decoded == message)
        }
    }
}

@Suite("KernelSpecTemplate")
struct KernelSpecTemplateTests {
    /// Cases computed by Python's `string.Template(t).safe_substitute(env)`.
    @Test func substituteEnvironmentMatchesSafeSubstitute() throws {
        let fixture = try #require(Fixtures.template)
        for c in fixture.substitute {
            #expect(KernelSpecTemplate.substituteEnvironment(c.template, environment: c.env) == c.expected,
                    "template \(c.template.debugDescription)")
        }
    }

    /// Cases computed with jupyter_client's `format_kernel_cmd` regex `\{([A-Za-z0-9_]+)\}`,
    /// restricted to values that contain no `{`.
    @Test func formatArgvMatchesJupyterClient() throws {
        let fixture = try #require(Fixtures.template)
        for c in fixture.format_argv where !c.values.values.contains(where: { $0.contains("{") }) {
            #expect(KernelSpecTemplate.formatArgv(c.argv, values: c.values) == c.expected, "argv \(c.argv)")
        }
        #expect(KernelSpecTemplate.formatArgv(["{x}", "{ x }", "{x", "x}", "{X}"], values: ["x": "1"])
            == ["1", "{ x }", "{x", "x}", "{X}"])
        #expect(KernelSpecTemplate.formatArgv([], values: ["x": "1"]).isEmpty)
        #expect(KernelSpecTemplate.formatArgv(["{unknown}"], values: [:]) == ["{unknown}"])
    }

    /// jupyter_client substitutes in one pass (`re.sub`), so a value that itself contains
    /// `{name}` is inserted literally, never substituted again.
    @Test func formatArgvDoesNotResubstituteInsertedValues() throws {
        let fixture = try #require(Fixtures.template)
        let cases = fixture.format_argv.filter { $0.values.values.contains(where: { $0.contains("{") }) }
        #expect(!cases.isEmpty)
        for c in cases {
            #expect(KernelSpecTemplate.formatArgv(c.argv, values: c.values) == c.expected,
                    "argv \(c.argv) values \(c.values)")
        }
    }
}

@Suite("ConnectionInfo")
struct ConnectionInfoTests {
    @Test func decodesJupyterClientConnectionFile() throws {
        let text = try #require(Fixtures.misc?.connection_file)
        let info = try JSONDecoder().decode(ConnectionInfo.self, from: Data(text.utf8))
        #expect(info.shellPort == 50001)
        #expect(info.iopubPort == 50002)
        #expect(info.stdinPort == 50003)
        #expect(info.hbPort == 50004)
        #expect(info.controlPort == 50005)
        #expect(info.ip == "127.0.0.1")
        #expect(info.transport == "tcp")
        #expect(info.signatureScheme == "hmac-sha256")
        #expect(info.key == "a0436f6c-1916-498b-8eb9-e81ab9368e84")
        #expect(info.kernelName == "python3")
        #expect(info.endpoint(info.shellPort) == "tcp://127.0.0.1:50001")
        #expect(info.port(for: .control) == 50005)
        #expect(info.port(for: .iopub) == 50002)
        #expect(info.port(for: .stdin) == 50003)
        #expect(info.port(for: .shell) == 50001)
    }

    @Test func encodesJupyterKeys() throws {
        let info = ConnectionInfo(ports: [1, 2, 3, 4, 5], key: "k", kernelName: "python3")
        let object = try #require(try JSONSerialization.jsonObject(with: info.encoded()) as? [String: Any])
        // The keys jupyter_client's write_connection_file writes.
        let text = try #require(Fixtures.misc?.connection_file)
        let reference = try parseObject(utf8(text))
        #expect(Set(object.keys) == Set(reference.keys))
        #expect(object["shell_port"] as? Int == 1)
        #expect(object["iopub_port"] as? Int == 2)
        #expect(object["stdin_port"] as? Int == 3)
        #expect(object["control_port"] as? Int == 4)
        #expect(object["hb_port"] as? Int == 5)
        #expect(object["signature_scheme"] as? String == "hmac-sha256")
        #expect(object["transport"] as? String == "tcp")
        #expect(try JSONDecoder().decode(ConnectionInfo.self, from: info.encoded()) == info)
    }

    @Test func kernelNameIsOptionalAndExtraKeysAreIgnored() throws {
        let text = #"{"shell_port":1,"iopub_port":2,"stdin_port":3,"control_port":4,"hb_port":5,"ip":"::1","transport":"tcp","signature_scheme":"hmac-sha256","key":"","extra":[1]}"#
        let info = try JSONDecoder().decode(ConnectionInfo.self, from: Data(text.utf8))
        #expect(info.kernelName == nil)
        #expect(info.key.isEmpty)
        #expect(info.endpoint(1) == "tcp://[::1]:1")
    }

    @Test func ipcEndpoint() {
        var info = ConnectionInfo(ports: [1, 2, 3, 4, 5], ip: "/tmp/kernel", key: "k")
        info.transport = "ipc"
        #expect(info.endpoint(3) == "ipc:///tmp/kernel-3")
    }
}
