import Foundation
@testable import GatewayServer
import JupyterProtocol
import Testing

/// KERNEL_USERNAME against EG_AUTHORIZED_USERS / EG_UNAUTHORIZED_USERS and the kernelspec's
/// `process_proxy.config` lists, as EG's `_enforce_authorization` and `apply_user_filter` do.
@Suite(.timeLimit(.minutes(3)))
struct AuthorizationTests {
    static func spec(authorized: JSONValue? = nil, unauthorized: JSONValue? = nil) throws -> KernelSpec {
        var config: [String: JSONValue] = [:]
        if let authorized { config["authorized_users"] = authorized }
        if let unauthorized { config["unauthorized_users"] = unauthorized }
        let json = try JSONEncoder().encode([
            "argv": JSONValue.array([.string("python3")]), "display_name": .string("Auth Test"), "language": .string("python"),
            "metadata": .object(["process_proxy": .object([
                "class_name": .string("enterprise_gateway.services.processproxies.processproxy.LocalProcessProxy"),
                "config": .object(config),
            ])]),
        ])
        let file = try JSONDecoder().decode(KernelSpec.File.self, from: json)
        return KernelSpec(name: "authorization_test", file: file, resourceDirectory: URL(fileURLWithPath: "/nonexistent"))
    }

    static func refused(_ user: String, _ spec: KernelSpec, _ c: GatewayConfiguration) -> GatewayError? {
        do {
            try KernelAuthorization.checkStart(user: user, spec: spec, configuration: c)
            return nil
        } catch {
            return error
        }
    }

    @Test func rootIsRefusedByDefault() throws {
        let c = GatewayConfiguration()
        let s = try Self.spec()
        let e = try #require(Self.refused("root", s, c))
        #expect(e.status == .forbidden)
        #expect(e.reason == "User 'root' is not authorized to start kernel 'Auth Test'. Ensure KERNEL_USERNAME is set to an appropriate value and retry the request.")
        #expect(Self.refused("bob", s, c) == nil)
    }

    @Test func kernelspecUnauthorizedIsUnionedAndAuthorizedReplaces() throws {
        var c = GatewayConfiguration()
        c.authorizedUsers = ["carol"]
        // EG's itest kernelspec: authorized "bob,alice,bad_guy", unauthorized "bad_guy".
        let s = try Self.spec(authorized: .string("bob,alice,bad_guy"), unauthorized: .string("bad_guy"))
        #expect(Self.refused("bob", s, c) == nil, "the kernelspec list replaces the global one")
        #expect(Self.refused("carol", s, c)?.reason.contains("not in the set of users authorized") == true)
        #expect(Self.refused("bad_guy", s, c)?.reason.contains("is not authorized") == true)
        #expect(Self.refused("root", s, c) != nil, "the global unauthorized list still applies")
        let plain = try Self.spec()
        #expect(Self.refused("carol", plain, c) == nil)
        #expect(Self.refused("bob", plain, c) != nil, "the global authorized list applies without a kernelspec one")
        let arrays = try Self.spec(authorized: .array([.string("dave")]))
        #expect(Self.refused("dave", arrays, c) == nil, "JSON arrays work as well as EG's comma strings")
    }

    @Test func userFilterFollowsApplyUserFilter() throws {
        var c = GatewayConfiguration()
        let s = try Self.spec(authorized: .string("bob, alice"), unauthorized: .string("bad_guy"))
        #expect(KernelAuthorization.isVisible(s, to: "alice", configuration: c))
        #expect(!KernelAuthorization.isVisible(s, to: "bad_guy", configuration: c))
        #expect(!KernelAuthorization.isVisible(s, to: "root", configuration: c))
        #expect(!KernelAuthorization.isVisible(s, to: "eve", configuration: c))
        c.authorizedUsers = ["eve"]
        let plain = try Self.spec()
        #expect(KernelAuthorization.isVisible(plain, to: "eve", configuration: c))
        #expect(!KernelAuthorization.isVisible(plain, to: "bob", configuration: c))
    }

    /// Over HTTP with real kernels: the 403 body, the kernelspec filter and a start that passes.
    @Test func restRoutes() async throws {
        let dir = try TestGateway.makeKernelSpecDirectory(name: "authorization_test", metadata: [
            "process_proxy": [
                "class_name": "enterprise_gateway.services.processproxies.processproxy.LocalProcessProxy",
                "config": ["authorized_users": "bob,alice,bad_guy", "unauthorized_users": "bad_guy"],
            ] as [String: Any],
        ], displayName: "Authorization Test")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await TestGateway.with(configure: {
            $0.kernelSpecDirectories.append(dir)
            $0.unauthorizedUsers = ["root"]
        }) { gw in
            let bad = try await gw.request(.POST, "/api/kernels",
                                           body: #"{"name":"authorization_test","env":{"KERNEL_USERNAME":"bad_guy"}}"#)
            #expect(bad.status == 403)
            #expect(bad.object["reason"] as? String == "User 'bad_guy' is not authorized to start kernel 'Authorization Test'. Ensure KERNEL_USERNAME is set to an appropriate value and retry the request.")
            let stranger = try await gw.request(.POST, "/api/kernels",
                                                body: #"{"name":"authorization_test","env":{"KERNEL_USERNAME":"eve"}}"#)
            #expect(stranger.status == 403)
            let root = try await gw.request(.POST, "/api/kernels", body: #"{"name":"python3","env":{"KERNEL_USERNAME":"root"}}"#)
            #expect(root.status == 403)
            #expect(await gw.gateway.registry.count == 0, "refused starts leave nothing behind")

            let id = try await gw.startKernel(name: "authorization_test", env: ["KERNEL_USERNAME": "bob"])
            #expect(try await gw.request(.DELETE, "/api/kernels/\(id)").status == 204)

            let forBob = try await gw.request(.GET, "/api/kernelspecs?user=bob")
            let bobSpecs = try #require(forBob.object["kernelspecs"] as? [String: Any])
            #expect(bobSpecs["authorization_test"] != nil && bobSpecs["python3"] != nil)
            let forEve = try await gw.request(.GET, "/api/kernelspecs?user=eve")
            let eveSpecs = try #require(forEve.object["kernelspecs"] as? [String: Any])
            #expect(eveSpecs["authorization_test"] == nil && eveSpecs["python3"] != nil)
            let forRoot = try await gw.request(.GET, "/api/kernelspecs?user=root")
            #expect((forRoot.object["kernelspecs"] as? [String: Any])?.isEmpty == true)
            let unfiltered = try await gw.request(.GET, "/api/kernelspecs")
            #expect((unfiltered.object["kernelspecs"] as? [String: Any])?["authorization_test"] != nil)

            let one = try await gw.request(.GET, "/api/kernelspecs/authorization_test?user=eve")
            #expect(one.status == 403)
            #expect(one.object["message"] as? String == "User eve is not authorized to use kernel spec authorization_test")
            #expect(try await gw.request(.GET, "/api/kernelspecs/authorization_test?user=alice").status == 200)
        }
    }
}
