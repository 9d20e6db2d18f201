import Foundation
@testable import GatewayServer
import JupyterProtocol
import Provisioning
import Testing

/// The pure parts of kernel sharing: the request body's rules, the relay's per-user session
/// keys, and the persisted record (re-attach keeps the shares; records of earlier versions,
/// without them, still load).
@Suite
struct SharingTests {
    static func list(_ json: String) throws(GatewayError) -> Set<String> {
        let body = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
        return try KernelRoutes.shareList(body)
    }

    @Test func shareListTakesNames() throws {
        #expect(try Self.list(#"{"users": ["bob", "dave", "bob"]}"#) == ["bob", "dave"])
        #expect(try Self.list(#"{"users": []}"#) == [])
    }

    @Test(arguments: [#"{}"#, #"{"users": "bob"}"#, #"{"users": [1]}"#, #"{"users": ["bob", null]}"#,
                      #"{"users": [""]}"#, #"{"users": ["a\nb"]}"#, #"{"users": null}"#])
    func shareListRefuses(_ json: String) {
        #expect(throws: GatewayError.self) { try Self.list(json) }
    }

    @Test func shareListIsBounded() {
        let names = (0...KernelRoutes.maxShares).map { "\"u\($0)\"" }.joined(separator: ",")
        #expect(throws: GatewayError.self) { try Self.list("{\"users\": [\(names)]}") }
    }

    @Test func sessionKeysSeparateUsers() {
        #expect(ChannelsWebSocket.sessionKey("s", user: nil) == "s")
        #expect(ChannelsWebSocket.sessionKey("s", user: "bob") != ChannelsWebSocket.sessionKey("s", user: "alice"))
        // A user name with the separator in it cannot forge another user's key.
        #expect(ChannelsWebSocket.sessionKey("c", user: "a/b") != ChannelsWebSocket.sessionKey("b/c", user: "a"))
    }

    static func record(sharedWith: [String]?) -> KernelSessionRecord {
        KernelSessionRecord(kernelID: "k1", kernelspec: "python3", username: "alice",
                            connection: ConnectionInfo(ports: [1, 2, 3, 4, 5], key: "k"),
                            handle: KernelHandle(backend: "local", pid: 42), clientEnv: nil,
                            sharedWith: sharedWith, savedAt: Date(timeIntervalSince1970: 1_700_000_000))
    }

    @Test func recordKeepsShares() throws {
        let data = try JSONEncoder().encode(Self.record(sharedWith: ["bob"]))
        #expect(String(decoding: data, as: UTF8.self).contains(#""shared_with":["bob"]"#))
        #expect(try JSONDecoder().decode(KernelSessionRecord.self, from: data).sharedWith == ["bob"])
    }

    @Test func recordWithoutSharesStillLoads() throws {
        var object = try #require(JSONSerialization.jsonObject(with: JSONEncoder().encode(Self.record(sharedWith: nil))) as? [String: Any])
        object.removeValue(forKey: "shared_with")
        let decoded = try JSONDecoder().decode(KernelSessionRecord.self, from: JSONSerialization.data(withJSONObject: object))
        #expect(decoded.sharedWith == nil)
        #expect(decoded.username == "alice")
    }
}
