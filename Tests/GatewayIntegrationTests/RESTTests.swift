import Foundation
import JupyterProtocol
import NIOHTTP1
import Testing

/// Every REST route against a real gateway with real ipykernel kernels.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct RESTTests {
    @Test func apiKernelspecsAndResources() async throws {
        try await TestGateway.with { gw in
            let api = try await gw.request(.GET, "/api")
            #expect(api.status == 200)
            #expect(api.object["gateway_version"] as? String == ganymedeVersionForTests)
            #expect(api.object["version"] is String)

            let specs = try await gw.request(.GET, "/api/kernelspecs")
            #expect(specs.status == 200)
            #expect(specs.object["default"] as? String == "python3")
            let python = (specs.object["kernelspecs"] as? [String: Any])?["python3"] as? [String: Any]
            let spec = python?["spec"] as? [String: Any]
            #expect(spec?["language"] as? String == "python")
            #expect(Set((spec ?? [:]).keys).isSuperset(of: ["argv", "display_name", "language", "interrupt_mode", "env", "metadata"]))
            let resources = python?["resources"] as? [String: String]
            #expect(resources?["logo-64x64"] == "/kernelspecs/python3/logo-64x64.png")

            let one = try await gw.request(.GET, "/api/kernelspecs/python3")
            #expect(one.status == 200 && one.object["name"] as? String == "python3")
            let missing = try await gw.request(.GET, "/api/kernelspecs/nope")
            #expect(missing.status == 404)
            #expect(missing.object["reason"] is String && missing.object["message"] is String)

            let logo = try await gw.request(.GET, "/kernelspecs/python3/logo-64x64.png")
            #expect(logo.status == 200)
            #expect(Array(logo.body.prefix(4)) == [0x89, 0x50, 0x4E, 0x47])
            #expect(logo.headers.first(name: "content-type") == "image/png")
            let head = try await gw.request(.HEAD, "/kernelspecs/python3/logo-64x64.png")
            #expect(head.status == 200 && head.body.isEmpty)
            for path in ["/kernelspecs/python3/..%2Fpython3%2Fkernel.json", "/kernelspecs/python3/%2e%2e/%2e%2e/etc/passwd",
                         "/kernelspecs/python3/%252e%252e/kernel.json", "/kernelspecs/python3/%2Fetc%2Fpasswd",
                         "/kernelspecs/python3/logo%00.png", "/kernelspecs/python3/..\\kernel.json", "/kernelspecs/python3/"] {
                let r = try await gw.request(.GET, path)
                #expect(r.status == 404, "\(path) gave \(r.status)")
                #expect(r.object["reason"] != nil, "\(path) body is not the JSON error")
            }
            let swaggerJSON = try await gw.request(.GET, "/api/swagger.json")
            #expect(swaggerJSON.status == 200 && (swaggerJSON.object["paths"] as? [String: Any])?["/api/kernels"] != nil)
            let swaggerYAML = try await gw.request(.GET, "/api/swagger.yaml")
            #expect(swaggerYAML.status == 200 && String(decoding: swaggerYAML.body, as: UTF8.self).contains("swagger: \"2.0\""))
            let unknown = try await gw.request(.GET, "/api/nothing-here")
            #expect(unknown.status == 404 && unknown.object["reason"] != nil)
        }
    }

    @Test func kernelLifecycleRoutes() async throws {
        try await TestGateway.with { gw in
            let created = try await gw.request(.POST, "/api/kernels", body: #"{"name":"python3"}"#)
            #expect(created.status == 201)
            let id = try #require(created.object["id"] as? String)
            #expect(created.headers.first(name: "location") == "/api/kernels/\(id)")
            let activity = try #require(created.object["last_activity"] as? String)
            #expect(activity.range(of: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$"#, options: .regularExpression) != nil)
            #expect(created.object["connections"] as? Int == 0)
            #expect(created.object["execution_state"] is String)

            let list = try await gw.request(.GET, "/api/kernels")
            #expect(list.status == 200)
            #expect(((list.json as? [[String: Any]]) ?? []).contains { $0["id"] as? String == id })
            let got = try await gw.request(.GET, "/api/kernels/\(id)")
            #expect(got.status == 200 && got.object["name"] as? String == "python3")

            // Interrupt a long cell: KeyboardInterrupt, and the kernel lives on.
            let client = ChannelsClient(proto: .legacy)
            try await client.connect(gw, kernel: id)
            let sleeper = client.execute("import time\ntime.sleep(30)")
            try await Task.sleep(for: .milliseconds(800))
            let interrupted = try await gw.request(.POST, "/api/kernels/\(id)/interrupt")
            #expect(interrupted.status == 204)
            let out = await client.collect(until: sleeper)
            #expect(ChannelsClient.output(out).contains("KeyboardInterrupt"))

            // Restart keeps the id and forgets state; the open WebSocket keeps working.
            _ = await client.collect(until: client.execute("x = 41"))
            let restarted = try await gw.request(.POST, "/api/kernels/\(id)/restart")
            #expect(restarted.status == 200 && restarted.object["id"] as? String == id)
            let after = await client.collect(until: client.execute("x"))
            #expect(ChannelsClient.output(after).contains("NameError"))
            client.close()

            let deleted = try await gw.request(.DELETE, "/api/kernels/\(id)")
            #expect(deleted.status == 204)
            for (method, path) in [(HTTPMethod.GET, "/api/kernels/\(id)"), (.DELETE, "/api/kernels/\(id)"),
                                   (.POST, "/api/kernels/\(id)/interrupt"), (.POST, "/api/kernels/\(id)/restart")] {
                let r = try await gw.request(method, path)
                #expect(r.status == 404, "\(method) \(path)")
                #expect((r.object["message"] as? String)?.contains(id) == true)
            }
        }
    }

    @Test func sessionsCRUD() async throws {
        try await TestGateway.with { gw in
            let created = try await gw.request(.POST, "/api/sessions", body: #"{"path":"a.ipynb","type":"notebook","name":"a","kernel":{"name":"python3"}}"#)
            #expect(created.status == 201)
            let sid = try #require(created.object["id"] as? String)
            let kernel = try #require((created.object["kernel"] as? [String: Any])?["id"] as? String)
            let list = try await gw.request(.GET, "/api/sessions")
            #expect(((list.json as? [[String: Any]]) ?? []).count == 1)
            let patched = try await gw.request(.PATCH, "/api/sessions/\(sid)", body: #"{"path":"b.ipynb"}"#)
            #expect(patched.status == 200 && patched.object["path"] as? String == "b.ipynb")
            let got = try await gw.request(.GET, "/api/sessions/\(sid)")
            #expect(got.status == 200 && (got.object["kernel"] as? [String: Any])?["id"] as? String == kernel)
            let bad = try await gw.request(.POST, "/api/sessions", body: #"{"type":"notebook"}"#)
            #expect(bad.status == 400)
            let deleted = try await gw.request(.DELETE, "/api/sessions/\(sid)")
            #expect(deleted.status == 204)
            #expect(try await gw.request(.GET, "/api/kernels/\(kernel)").status == 404)
            #expect(try await gw.request(.GET, "/api/sessions/\(sid)").status == 404)
        }
    }

    @Test func badInputIsRejectedAndTheGatewayKeepsServing() async throws {
        try await TestGateway.with { gw in
            let id = try await gw.startKernel()
            let cases: [(String, [UInt8], Int)] = [
                ("{", Array("{".utf8), 400), ("array", Array("[]".utf8), 400), ("string", Array(#""x""#.utf8), 400),
                ("not utf8", [0x7B, 0xFF, 0xFE, 0x7D], 400), ("name not string", Array(#"{"name":5}"#.utf8), 400),
                ("env array", Array(#"{"env":[]}"#.utf8), 400), ("env int value", Array(#"{"env":{"A":1}}"#.utf8), 400),
                ("env NUL", Array(#"{"env":{"KERNEL_X":"a\u0000b"}}"#.utf8), 400),
                ("env newline", Array(#"{"env":{"KERNEL_X":"a\nb"}}"#.utf8), 400),
                ("env bad name", Array(#"{"env":{"A B":"x"}}"#.utf8), 400),
                ("env too long", Array("{\"env\":{\"KERNEL_X\":\"\(String(repeating: "a", count: 5000))\"}}".utf8), 400),
                ("kernel id not uuid", Array(#"{"env":{"KERNEL_ID":"../../etc"}}"#.utf8), 400),
                ("unknown spec", Array(#"{"name":"no-such-kernel"}"#.utf8), 404),
                ("huge body", Array(repeating: 0x20, count: 3 << 20), 413),
            ]
            for (name, body, expected) in cases {
                let r = try await gw.request(.POST, "/api/kernels", bytes: body, headers: [("Content-Type", "application/json")])
                #expect(r.status == expected, "\(name): \(r.status) \(String(decoding: r.body.prefix(200), as: UTF8.self))")
                #expect(r.object["reason"] is String && r.object["message"] is String, "\(name): error body not JSON")
            }
            #expect(try await gw.request(.GET, "/api/kernels/not-a-kernel").status == 404)
            #expect(try await gw.request(.GET, "/api/kernels/\(UUID().uuidString.lowercased())/channels").status == 404)
            #expect(try await gw.request(.GET, "/api/kernels/" + String(repeating: "a", count: 3000)).status == 404)
            // Still serving, and the kernel still executes.
            #expect(try await gw.request(.GET, "/api").status == 200)
            let client = ChannelsClient(proto: .legacy)
            try await client.connect(gw, kernel: id)
            #expect(ChannelsClient.output(await client.collect(until: client.execute("1+1"))) == "2")
            client.close()
        }
    }

    @Test func tokenAuthAndCORS() async throws {
        try await TestGateway.with(configure: { c in
            c.authToken = "s3cret"
            c.allowOrigin = "https://lab.example"
        }) { gw in
            let denied = try await gw.request(.GET, "/api/kernelspecs")
            #expect(denied.status == 401 && denied.object["reason"] as? String == "Unauthorized")
            #expect(try await gw.request(.GET, "/api/kernelspecs", headers: [("Authorization", "token s3cret")]).status == 200)
            #expect(try await gw.request(.GET, "/api/kernelspecs", headers: [("Authorization", "Bearer s3cret")]).status == 200)
            #expect(try await gw.request(.GET, "/api/kernelspecs?token=s3cret").status == 200)
            #expect(try await gw.request(.GET, "/api/kernelspecs", headers: [("Authorization", "token wrong")]).status == 401)
            #expect(try await gw.request(.GET, "/kernelspecs/python3/logo-64x64.png").status == 401)
            let options = try await gw.request(.OPTIONS, "/api/kernels")
            #expect(options.status == 200)
            #expect(options.headers.first(name: "access-control-allow-origin") == "https://lab.example")
            #expect(try await gw.request(.GET, "/api/swagger.json").status == 200)
            // The token never reaches the kernel.
            let id = try await gw.startKernelAuthorized(token: "s3cret")
            let client = ChannelsClient(proto: .legacy)
            try await client.connect(gw, kernel: id, query: "&token=s3cret")
            let out = await client.collect(until: client.execute(
                "import os; print(sorted(k for k, v in os.environ.items() if 's3cret' in v or k.endswith('AUTH_TOKEN')))"))
            #expect(ChannelsClient.output(out).trimmingCharacters(in: .whitespacesAndNewlines) == "[]")
            client.close()
        }
    }

    @Test func listingCanBeDisabled() async throws {
        try await TestGateway.with(configure: { $0.listKernels = false }) { gw in
            let r = try await gw.request(.GET, "/api/kernels")
            #expect(r.status == 403 && r.object["reason"] as? String == "Forbidden")
            #expect(try await gw.request(.GET, "/api/sessions").status == 403)
        }
    }

    @Test func kernelEnvironmentRules() async throws {
        try await TestGateway.with(configure: { $0.clientEnvs = ["ALLOWED_VAR"] }) { gw in
            let chosen = UUID().uuidString.lowercased()
            let id = try await gw.startKernel(env: ["KERNEL_ID": chosen, "KERNEL_USERNAME": "alice", "KERNEL_EXTRA": "k",
                                                    "ALLOWED_VAR": "yes", "OTHER_VAR": "no"])
            #expect(id == chosen)
            let client = ChannelsClient(proto: .legacy)
            try await client.connect(gw, kernel: id)
            let code = "import os, json; print(json.dumps({k: os.environ.get(k) for k in "
                + "['KERNEL_ID','KERNEL_USERNAME','KERNEL_LANGUAGE','KERNEL_GATEWAY','KERNEL_EXTRA','ALLOWED_VAR','OTHER_VAR','GANYMEDE_TEST_SECRET']}))"
            let out = ChannelsClient.output(await client.collect(until: client.execute(code)))
            let env = ChannelsClient.object(Array(out.utf8))
            #expect(env["KERNEL_ID"] as? String == chosen)
            #expect(env["KERNEL_USERNAME"] as? String == "alice")
            #expect(env["KERNEL_LANGUAGE"] as? String == "python")
            #expect(env["KERNEL_GATEWAY"] as? String == "1")
            #expect(env["KERNEL_EXTRA"] as? String == "k")
            #expect(env["ALLOWED_VAR"] as? String == "yes")
            #expect(env["OTHER_VAR"] is NSNull)
            // With env in the request, the gateway's own environment is not inherited.
            #expect(env["GANYMEDE_TEST_SECRET"] is NSNull)
            client.close()
            let dup = try await gw.request(.POST, "/api/kernels", body: "{\"env\":{\"KERNEL_ID\":\"\(chosen)\"}}")
            #expect(dup.status == 409)
        }
    }
}

extension TestGateway {
    func startKernelAuthorized(token: String) async throws -> String {
        let r = try await request(.POST, "/api/kernels", body: #"{"name":"python3"}"#, headers: [("Authorization", "token \(token)")])
        guard r.status == 201, let id = r.object["id"] as? String else { throw TestFailure("start failed: \(r.status)") }
        return id
    }
}
