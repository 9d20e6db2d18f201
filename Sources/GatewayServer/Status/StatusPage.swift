import Foundation

/// The HTML of `GET /status`: one self-contained page (inline CSS and SVG, no script) that
/// reloads itself. Every dynamic string is escaped with `HTML.escape`.
struct StatusPage {
    let snapshot: StatusSnapshot
    /// The base URL without its trailing slash ("" or "/prefix").
    let base: String
    /// The `?token=` the page was requested with, kept on its links (a browser cannot send an
    /// `Authorization` header when following a link). Nil when the token came in a header.
    let token: String?
    let refreshSeconds: Int

    func render() -> String {
        let s = snapshot.summary
        var html = """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <meta http-equiv="refresh" content="\(refreshSeconds)">
        <meta name="referrer" content="no-referrer">
        <title>Ganymede status</title>
        <style>\(Self.css)</style></head>
        <body>
        <header><h1>Ganymede</h1><p class="meta">gateway \(HTML.escape(s.gatewayVersion)) · up \(Self.duration(s.uptimeSeconds)) · \
        generated <time datetime="\(HTML.escape(s.generatedAt))">\(HTML.escape(s.generatedAt))</time> · refreshes every \(refreshSeconds) s</p></header>

        """
        html += #"<section class="cards">"#
        html += card("Kernels", "\(s.kernels)", "\(s.busy) busy · \(s.idle) idle · \(s.other) other", id: "kernel-count")
        html += card("Connections", "\(s.connections)", "open WebSockets", id: "connection-count")
        html += card("Users", "\(s.users)", "with kernels", id: "user-count")
        html += card("Messages/s", s.messagesPerSecond.map { StatusChart.number($0) } ?? "—",
                     "over the last \(StatusChart.number(s.sampleIntervalSeconds)) s", id: "message-rate")
        html += "</section>\n"
        html += charts()
        html += kernelTable()
        html += """
        <footer><a href="\(link("status.json"))">status.json</a> · <a href="\(link("metrics"))">metrics</a> · \
        <a href="\(link("api/kernels"))">api/kernels</a> · <a href="\(link("api/health/ready"))">readiness</a></footer>
        </body></html>

        """
        return html
    }

    private func card(_ title: String, _ value: String, _ detail: String, id: String) -> String {
        #"<div class="card" id="\#(id)"><div class="label">\#(HTML.escape(title))</div>"#
            + #"<div class="value">\#(HTML.escape(value))</div><div class="detail">\#(HTML.escape(detail))</div></div>"#
    }

    private func charts() -> String {
        let samples = snapshot.samples
        let interval = StatusChart.number(snapshot.summary.sampleIntervalSeconds)
        let note = "collecting: a sample every \(interval) s"
        let window = snapshot.summary.historyWindowSeconds
        let span = Self.duration(Int(window.rounded()))
        let kernels = StatusChart(
            title: "Kernels over the last \(span)",
            series: [
                .init(name: "kernels", cssClass: "s-kernels", points: samples.map { ($0.time, Double($0.kernels)) }),
                .init(name: "busy", cssClass: "s-busy", points: samples.map { ($0.time, Double($0.busy)) }),
            ],
            now: snapshot.now, window: window, emptyNote: note)
        let rate = StatusChart(
            title: "Messages per second over the last \(span)",
            series: [.init(name: "messages/s", cssClass: "s-rate", points: samples.map { ($0.time, $0.messagesPerSecond) })],
            now: snapshot.now, window: window, emptyNote: note)
        return """
        <section class="charts">
        <figure id="chart-kernels"><figcaption>Kernels, last \(span) <span class="key s-kernels">all</span> <span class="key s-busy">busy</span></figcaption>\(kernels.svg())</figure>
        <figure id="chart-messages"><figcaption>Messages per second, last \(span) <span class="key s-rate">relayed, both directions</span></figcaption>\(rate.svg())</figure>
        </section>

        """
    }

    private func kernelTable() -> String {
        var html = """
        <section><h2>Kernels</h2>
        <table id="kernels"><thead><tr><th>Kernel</th><th>Kernelspec</th><th>User</th><th>State</th><th>Connections</th>\
        <th>Last activity</th><th>Provisioner</th><th>Host</th><th>Resources</th></tr></thead><tbody>

        """
        if snapshot.kernels.isEmpty {
            html += #"<tr><td colspan="9" class="empty">No kernels are running.</td></tr>"# + "\n"
        }
        for k in snapshot.kernels {
            let state = Self.stateClass(k.executionState)
            var stateCell = #"<span class="state \#(state)">\#(HTML.escape(k.executionState))</span>"#
            if let reason = k.reason { stateCell += #"<div class="reason">\#(HTML.escape(reason))</div>"# }
            let host = k.host.map { HTML.escape($0) + "<br>" } ?? ""
            html += "<tr>"
            html += #"<td class="id"><a href="\#(link("api/kernels/" + HTML.queryValue(k.id)))">\#(HTML.escape(k.id))</a></td>"#
            html += #"<td>\#(HTML.escape(k.displayName))<div class="sub">\#(HTML.escape(k.name))</div></td>"#
            html += #"<td class="user">\#(HTML.escape(k.user))</td>"#
            html += "<td>\(stateCell)</td>"
            html += #"<td class="num">\#(k.connections)</td>"#
            html += #"<td><time datetime="\#(HTML.escape(k.lastActivity))" title="\#(HTML.escape(k.lastActivity))">"#
                + "\(Self.duration(k.idleSeconds)) ago</time></td>"
            html += "<td>\(HTML.escape(Self.provisionerLabel(k.provisioner)))</td>"
            html += #"<td>\#(host)<span class="sub">\#(HTML.escape(k.process))</span></td>"#
            html += "<td>\(k.resources.map(HTML.escape) ?? "—")</td>"
            html += "</tr>\n"
        }
        html += "</tbody></table></section>\n"
        return html
    }

    /// A link to another route under the base URL, carrying the page's `?token=`.
    func link(_ path: String) -> String {
        var url = base + "/" + path
        if let token { url += "?token=" + HTML.queryValue(token) }
        return HTML.escape(url)
    }

    /// A CSS class from a fixed set: the state text itself never becomes markup.
    static func stateClass(_ state: String) -> String {
        switch state {
        case "idle": "st-idle"
        case "busy": "st-busy"
        case "starting", "restarting": "st-starting"
        case "dead", "terminating": "st-dead"
        default: "st-other"
        }
    }

    static func provisionerLabel(_ typeName: String) -> String {
        typeName == "LocalProvisioner" ? "local" : typeName
    }

    /// "42 s", "7 min", "3 h 5 min", "2 d 4 h".
    static func duration(_ seconds: Int) -> String {
        let s = max(0, seconds)
        if s < 60 { return "\(s) s" }
        if s < 3600 { return "\(s / 60) min" }
        if s < 86_400 { return s % 3600 / 60 == 0 ? "\(s / 3600) h" : "\(s / 3600) h \(s % 3600 / 60) min" }
        return s % 86_400 / 3600 == 0 ? "\(s / 86_400) d" : "\(s / 86_400) d \(s % 86_400 / 3600) h"
    }

    static let css = """
    :root{--fg:#1d2330;--muted:#6b7385;--line:#e3e6ec;--bg:#f6f7f9;--card:#fff;--accent:#3867d6;--busy:#e58e26;--ok:#20a162;--bad:#c0392b}
    *{box-sizing:border-box}body{margin:0;padding:20px 28px;font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;color:var(--fg);background:var(--bg)}
    header{display:flex;align-items:baseline;gap:16px;flex-wrap:wrap}h1{font-size:22px;margin:0}h2{font-size:16px;margin:22px 0 8px}
    .meta{color:var(--muted);margin:0}a{color:var(--accent);text-decoration:none}a:hover{text-decoration:underline}
    .cards{display:grid;grid-template-columns:repeat(4,minmax(0,1fr));gap:12px;margin:16px 0}
    .card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px 14px}
    .card .label{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.04em}.card .value{font-size:26px;font-weight:600}
    .card .detail{color:var(--muted);font-size:12px}
    .charts{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:12px}
    figure{margin:0;background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px 12px}
    figcaption{font-weight:600;margin-bottom:4px}.key{font-weight:400;color:var(--muted);font-size:12px;margin-left:8px}
    .key::before{content:"";display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:4px;vertical-align:-1px}
    .key.s-kernels::before{background:var(--accent)}.key.s-busy::before{background:var(--busy)}.key.s-rate::before{background:var(--ok)}
    svg.chart{width:100%;height:auto;display:block}.grid{stroke:var(--line);stroke-width:1}.axis{fill:var(--muted);font-size:10px}
    .note{fill:var(--muted);font-size:12px}.area{stroke:none;opacity:.25}.line{fill:none;stroke-width:1.6}
    path.s-kernels.area,circle.s-kernels{fill:var(--accent)}path.s-kernels.line{stroke:var(--accent)}
    path.s-busy.area,circle.s-busy{fill:var(--busy)}path.s-busy.line{stroke:var(--busy)}
    path.s-rate.area,circle.s-rate{fill:var(--ok)}path.s-rate.line{stroke:var(--ok)}
    table{width:100%;border-collapse:collapse;background:var(--card);border:1px solid var(--line);border-radius:8px}
    th,td{text-align:left;padding:7px 10px;border-bottom:1px solid var(--line);vertical-align:top}
    th{font-size:12px;color:var(--muted);font-weight:600;text-transform:uppercase;letter-spacing:.03em}
    td.id{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;white-space:nowrap}td.num{text-align:right}.sub{color:var(--muted);font-size:12px}
    td.empty{color:var(--muted);text-align:center;padding:18px}.reason{color:var(--bad);font-size:12px;max-width:28em;overflow-wrap:anywhere}
    .state{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;background:#eef0f4}
    .st-idle{background:#dff3e8;color:#17794a}.st-busy{background:#fdebd3;color:#a25c06}.st-starting{background:#e3ebfb;color:#2c53a8}
    .st-dead{background:#f8dedb;color:var(--bad)}footer{margin-top:18px;color:var(--muted)}
    @media (max-width:800px){.cards{grid-template-columns:repeat(2,1fr)}.charts{grid-template-columns:1fr}}
    """
}
