import Foundation
@testable import GatewayServer
import NIOHTTP1
import Testing

/// `GET /status` and `/status.json` against real kernels, and the history behind their charts.
@Suite(.timeLimit(.minutes(3)))
struct StatusPageTests {
    static let hostileUser = "<script>alert(1)</script>"

    @Test func absentFieldsAreNullNotMissing() throws {
        let k = StatusSnapshot.Kernel(id: "k", name: "python3", displayName: "Python 3", user: "u", executionState: "idle",
                                      connections: 0, lastActivity: "t", idleSeconds: 0, provisioner: "SSHProvisioner",
                                      host: nil, process: "p", resources: "1 CPU", reason: nil)
        let json = try #require(String(data: try JSONEncoder().encode(k), encoding: .utf8))
        #expect(json.contains("\"host\":null") && json.contains("\"reason\":null") && json.contains("\"resources\":\"1 CPU\""))
    }

    @Test func pageListsKernelsEscapedAndNeedsTheToken() async throws {
        // A token with characters that must be percent-encoded in links and escaped in HTML.
        let token = "s3cret&<x>"
        let encoded = "s3cret%26%3Cx%3E"
        try await TestGateway.with(configure: { $0.authToken = token }) { gw in
            let auth = [("Authorization", "token \(token)")]
            func start(_ user: String, _ extra: [String: String] = [:]) async throws -> String {
                let env = extra.merging(["KERNEL_USERNAME": user]) { a, _ in a }
                let body = try JSONSerialization.data(withJSONObject: ["name": "python3", "env": env])
                let r = try await gw.request(.POST, "/api/kernels", body: String(decoding: body, as: UTF8.self), headers: auth)
                #expect(r.status == 201)
                return try #require(r.object["id"] as? String)
            }
            let hostile = try await start(Self.hostileUser)
            let alice = try await start("alice", ["KERNEL_CPUS": "500m"])

            for path in ["/status", "/status.json", "/status?token=wrong"] {
                let denied = try await gw.request(.GET, path)
                #expect(denied.status == 401, "\(path) without a valid token")
                #expect(denied.headers.first(name: "Content-Type") == "application/json")
                #expect(denied.object["reason"] as? String == "Unauthorized")
            }

            let r = try await gw.request(.GET, "/status?token=\(encoded)")
            #expect(r.status == 200)
            #expect(r.headers.first(name: "Content-Type") == "text/html; charset=utf-8")
            #expect(r.headers.first(name: "Content-Security-Policy")?.hasPrefix("default-src 'none'") == true)
            let html = String(decoding: r.body, as: UTF8.self)
            #expect(html.hasPrefix("<!doctype html>"))
            #expect(html.contains(hostile) && html.contains(alice))
            #expect(html.contains(#"<td class="user">alice</td>"#))
            #expect(html.contains(#"<td class="user">&lt;script&gt;alert(1)&lt;/script&gt;</td>"#))
            #expect(!html.lowercased().contains("<script"), "no script element, and the hostile user name is escaped")
            #expect(html.contains(#"id="kernel-count"><div class="label">Kernels</div><div class="value">2</div>"#))
            #expect(html.contains(#"href="/status.json?token=\#(encoded)""#), "links keep the page's token")
            #expect(html.contains(#"href="/api/kernels/\#(alice)?token=\#(encoded)""#))
            #expect(!html.contains(token), "the raw token never appears unencoded")
            #expect(html.contains("<svg") && html.contains(#"id="chart-messages""#))

            // With the token in a header, links carry none (a header cannot be put in a link).
            let viaHeader = String(decoding: try await gw.request(.GET, "/status", headers: auth).body, as: UTF8.self)
            #expect(viaHeader.contains(#"href="/status.json""#))
            #expect(!viaHeader.contains("token="))

            let j = try await gw.request(.GET, "/status.json", headers: auth)
            #expect(j.status == 200)
            #expect(j.headers.first(name: "Content-Type") == "application/json")
            let kernels = try #require(j.object["kernels"] as? [[String: Any]])
            #expect(Set(kernels.compactMap { $0["id"] as? String }) == [hostile, alice])
            let row = try #require(kernels.first { $0["id"] as? String == hostile })
            #expect(row["user"] as? String == Self.hostileUser, "JSON carries the name as given")
            #expect(row["name"] as? String == "python3")
            #expect(row["provisioner"] as? String == "LocalProvisioner")
            #expect((row["process"] as? String)?.hasPrefix("local pid ") == true)
            #expect(row["host"] is String)
            #expect(row["resources"] is NSNull, "asked for no resources")
            let aliceRow = try #require(kernels.first { $0["id"] as? String == alice })
            #expect((aliceRow["resources"] as? String)?.contains("CPU") == true, "the granted profile")
            #expect(["idle", "busy", "starting"].contains(row["execution_state"] as? String ?? ""))
            let summary = try #require(j.object["gateway"] as? [String: Any])
            #expect(summary["kernels"] as? Int == 2)
            #expect(summary["users"] as? Int == 2)
            #expect((summary["sample_interval_seconds"] as? NSNumber)?.doubleValue == 10)

            #expect(try await gw.request(.DELETE, "/api/kernels/\(hostile)", headers: auth).status == 204)
            let after = try await gw.request(.GET, "/status.json", headers: auth)
            #expect((after.object["kernels"] as? [Any])?.count == 1)
        }
    }

    @Test func otherMethodsGetAJSONError() async throws {
        try await TestGateway.with { gw in
            for method in [HTTPMethod.POST, .DELETE, .PUT] {
                let r = try await gw.request(method, "/status")
                #expect([404, 405].contains(r.status), "\(method) /status")
                #expect(r.headers.first(name: "Content-Type") == "application/json")
                #expect(r.object["message"] is String)
            }
            let empty = String(decoding: try await gw.request(.GET, "/status").body, as: UTF8.self)
            #expect(empty.contains("No kernels are running."))
            #expect(empty.contains("collecting: a sample every 10 s"), "no chart data before the first sample")
        }
    }

    @Test func baseURLPrefixesThePageAndItsLinks() async throws {
        try await TestGateway.with(configure: { $0.baseURL = "/gw/" }) { gw in
            #expect(try await gw.request(.GET, "/status").status == 404)
            let r = try await gw.request(.GET, "/gw/status")
            #expect(r.status == 200)
            let html = String(decoding: r.body, as: UTF8.self)
            #expect(html.contains(#"href="/gw/status.json""#) && html.contains(#"href="/gw/metrics""#))
        }
    }

    @Test func samplerRecordsKernelsAndMessageRate() async throws {
        try await TestGateway.with(configure: { $0.statusSampleInterval = .milliseconds(200) }) { gw in
            let id = try await gw.startKernel()
            let client = ChannelsClient(proto: .v1)
            try await client.connect(gw, kernel: id)
            for i in 0..<3 {
                _ = await client.collect(until: client.execute("print(\(i))"))
            }
            let history = gw.gateway.statusHistory
            var busy: StatusSample?
            let deadline = ContinuousClock.now + .seconds(10)
            while ContinuousClock.now < deadline {
                if let s = history.samples.last(where: { $0.kernels == 1 && $0.messagesPerSecond > 0 }) {
                    busy = s
                    break
                }
                try await Task.sleep(for: .milliseconds(100))
            }
            let sample = try #require(busy, "a sample with the kernel and a message rate")
            #expect(sample.idle + sample.busy + sample.other == 1)
            client.close()

            // Quiet again: a later sample falls to zero (nothing is relayed without clients).
            let quietBy = ContinuousClock.now + .seconds(10)
            while ContinuousClock.now < quietBy, history.samples.last?.messagesPerSecond != 0 {
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(history.samples.last?.messagesPerSecond == 0)

            let j = try await gw.request(.GET, "/status.json")
            let points = try #require(j.object["history"] as? [[String: Any]])
            #expect(points.count >= 2)
            #expect(points.contains { (($0["messages_per_second"] as? NSNumber)?.doubleValue ?? 0) > 0 && $0["kernels"] as? Int == 1 })
            #expect((points.last?["time"] as? String)?.hasSuffix("Z") == true)
            let html = String(decoding: try await gw.request(.GET, "/status").body, as: UTF8.self)
            #expect(html.contains(#"<path class="s-kernels area""#) && html.contains(#"<path class="s-rate line""#))
            #expect(!html.contains("collecting: a sample"))
            #expect(try await gw.request(.DELETE, "/api/kernels/\(id)").status == 204)
        }
    }

    // MARK: Pure parts

    @Test func ringKeepsTheLastHourOnly() {
        let history = StatusHistory()
        #expect(history.capacity == 360)
        let t0 = Date(timeIntervalSince1970: 1_700_000_000)
        for i in 0..<1000 {
            history.record(StatusSample(time: t0.addingTimeInterval(Double(i) * 10), kernels: i, busy: 0, idle: i, other: 0,
                                        messagesPerSecond: 0))
            if i == 9 { #expect(history.samples.map(\.kernels) == Array(0...9), "partly filled: in order") }
        }
        let samples = history.samples
        #expect(samples.count == 360)
        #expect(samples.map(\.kernels) == Array(640..<1000), "the newest 360, oldest first")
        let small = StatusHistory(capacity: 3)
        for i in 0..<4 { small.record(StatusSample(time: t0, kernels: i, busy: 0, idle: 0, other: 0, messagesPerSecond: 0)) }
        #expect(small.samples.map(\.kernels) == [1, 2, 3])
    }

    @Test func samplerRateArithmetic() {
        let t0 = ContinuousClock.now
        var sampler = StatusSampler(total: 100, at: t0)
        let a = sampler.sample(states: ["idle", "busy", "busy", "starting"], total: 150, at: t0 + .seconds(10), time: Date())
        #expect(a.kernels == 4 && a.busy == 2 && a.idle == 1 && a.other == 1)
        #expect(a.messagesPerSecond == 5)
        let b = sampler.sample(states: [], total: 150, at: t0 + .seconds(20), time: Date())
        #expect(b.kernels == 0 && b.messagesPerSecond == 0)
        let c = sampler.sample(states: [], total: 140, at: t0 + .seconds(30), time: Date())
        #expect(c.messagesPerSecond == 0, "a counter that went back is not negative traffic")
        let d = sampler.sample(states: [], total: 160, at: t0 + .seconds(30), time: Date())
        #expect(d.messagesPerSecond == 0, "no time elapsed: no division by zero")
    }

    @Test func chartScalesAndWindows() {
        #expect(StatusChart.niceCeiling(0) == 1)
        #expect(StatusChart.niceCeiling(1) == 1)
        #expect(StatusChart.niceCeiling(3) == 5)
        #expect(StatusChart.niceCeiling(7.5) == 10)
        #expect(StatusChart.niceCeiling(11) == 20)
        #expect(StatusChart.niceCeiling(.infinity) == 1)
        #expect(StatusChart.number(2) == "2")
        #expect(StatusChart.number(1.26) == "1.3")
        #expect(StatusChart.number(123.4) == "123")
        let now = Date(timeIntervalSince1970: 1_700_000_000)
        let old = now.addingTimeInterval(-4000)
        let empty = StatusChart(title: "t <b>", series: [.init(name: "n", cssClass: "c", points: [(old, 5)])], now: now,
                                emptyNote: "nothing")
        let svg = empty.svg()
        #expect(svg.contains(">nothing</text>"), "samples older than the window are not drawn")
        #expect(svg.contains("t &lt;b&gt;") && !svg.contains("<b>"))
        let full = StatusChart(title: "k", series: [.init(name: "n", cssClass: "c", points: [
            (now.addingTimeInterval(-3600), 0), (now.addingTimeInterval(-1800), 4), (now, 3),
        ])], now: now)
        let drawn = full.svg()
        // Plot area x from 44 to 552, y from 10 (top = 5) to 130 (0): the peak is at (298, 33.999…).
        #expect(drawn.contains("M44.0,130.0 L44.0,130.0 L298.0,34.0 L552.0,58.0 L552.0,130.0 Z"))
        #expect(drawn.contains(">5</text>") && drawn.contains(">now</text>"))
    }

    @Test func durationsAndEscaping() {
        #expect(StatusPage.duration(5) == "5 s")
        #expect(StatusPage.duration(125) == "2 min")
        #expect(StatusPage.duration(3600) == "1 h")
        #expect(StatusPage.duration(3 * 3600 + 5 * 60) == "3 h 5 min")
        #expect(StatusPage.duration(2 * 86_400 + 4 * 3600) == "2 d 4 h")
        #expect(HTML.escape(#"<a href="x" title='y'>&</a>"#) == "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;")
        #expect(HTML.queryValue("a b&c=d/é") == "a%20b%26c%3Dd%2F%C3%A9")
        #expect(StatusPage.stateClass("<x>") == "st-other")
    }
}
