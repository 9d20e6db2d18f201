import Foundation

/// Small inline SVG area charts for the status page, drawn on the server so the page needs
/// no JavaScript. The x axis is a fixed window ending now (an hour by default): a gateway
/// that started ten minutes ago fills the right sixth of the chart, which reads truthfully.
struct StatusChart {
    /// One filled series; later series are drawn over earlier ones.
    struct Series {
        var name: String
        var cssClass: String
        var points: [(time: Date, value: Double)]
    }

    var title: String
    var series: [Series]
    var now: Date
    var window: TimeInterval = 3600
    var width = 560.0
    var height = 150.0
    /// Smallest top of the y axis, so a flat zero line is drawn at the bottom, not the middle.
    var minimumTop = 1.0
    var format: (Double) -> String = { StatusChart.number($0) }
    /// Shown instead of the plot while there is nothing to draw.
    var emptyNote = "no samples yet"

    // Plot margins: room for the y labels on the left and the time labels below.
    let left = 44.0, right = 8.0, top = 10.0, bottom = 20.0

    func svg() -> String {
        let plotW = width - left - right
        let plotH = height - top - bottom
        let start = now.addingTimeInterval(-window)
        let visible = series.map { s in s.points.filter { $0.time >= start && $0.time <= now } }
        let peak = visible.flatMap { $0 }.map(\.value).filter(\.isFinite).max() ?? 0
        let yTop = Self.niceCeiling(max(peak, minimumTop))
        func x(_ t: Date) -> Double { left + plotW * (t.timeIntervalSince(start) / window) }
        func y(_ v: Double) -> Double { top + plotH * (1 - min(max(v.isFinite ? v : 0, 0), yTop) / yTop) }

        var out = #"<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 \#(f(width)) \#(f(height))" "#
            + #"width="\#(f(width))" height="\#(f(height))" role="img" aria-label="\#(HTML.escape(title))">"#
        out += "<title>\(HTML.escape(title))</title>"
        // Grid: top, middle and baseline.
        for fraction in [0.0, 0.5, 1.0] {
            let gy = top + plotH * fraction
            out += #"<line class="grid" x1="\#(f(left))" y1="\#(f(gy))" x2="\#(f(width - right))" y2="\#(f(gy))"/>"#
            out += #"<text class="axis" x="\#(f(left - 6))" y="\#(f(gy + 4))" text-anchor="end">"#
                + HTML.escape(format(yTop * (1 - fraction))) + "</text>"
        }
        let axisY = f(height - 5)
        out += #"<text class="axis" x="\#(f(left))" y="\#(axisY)">\#(Self.ago(window))</text>"#
        out += #"<text class="axis" x="\#(f(left + plotW / 2))" y="\#(axisY)" text-anchor="middle">\#(Self.ago(window / 2))</text>"#
        out += #"<text class="axis" x="\#(f(width - right))" y="\#(axisY)" text-anchor="end">now</text>"#

        if visible.allSatisfy(\.isEmpty) {
            out += #"<text class="note" x="\#(f(left + plotW / 2))" y="\#(f(top + plotH / 2))" text-anchor="middle">"#
                + HTML.escape(emptyNote) + "</text>"
        }
        let baseline = f(y(0))
        for (s, points) in zip(series, visible) where !points.isEmpty {
            let cls = HTML.escape(s.cssClass)
            if points.count == 1 {
                let p = points[0]
                out += #"<circle class="\#(cls)" cx="\#(f(x(p.time)))" cy="\#(f(y(p.value)))" r="3"><title>"#
                    + HTML.escape("\(s.name): \(format(p.value))") + "</title></circle>"
                continue
            }
            let line = points.map { "\(f(x($0.time))),\(f(y($0.value)))" }.joined(separator: " L")
            let first = f(x(points[0].time)), last = f(x(points[points.count - 1].time))
            out += #"<path class="\#(cls) area" d="M\#(first),\#(baseline) L\#(line) L\#(last),\#(baseline) Z"><title>"#
                + HTML.escape("\(s.name): now \(format(points[points.count - 1].value)), peak \(format(points.map(\.value).max() ?? 0))")
                + "</title></path>"
            out += #"<path class="\#(cls) line" d="M\#(line)"/>"#
        }
        out += "</svg>"
        return out
    }

    /// An x-axis label: "−60 min", "−90 s".
    static func ago(_ seconds: TimeInterval) -> String {
        seconds >= 120 ? "−\(Int((seconds / 60).rounded())) min" : "−\(Int(seconds.rounded())) s"
    }

    /// 1, 2, 5 × 10ⁿ at or above `v`, so axis labels are round.
    static func niceCeiling(_ v: Double) -> Double {
        guard v.isFinite, v > 0 else { return 1 }
        let magnitude = pow(10, floor(log10(v)))
        for step in [1.0, 2.0, 5.0, 10.0] where step * magnitude >= v * (1 - 1e-9) {
            return step * magnitude
        }
        return 10 * magnitude
    }

    /// Integers as integers, small rates with one decimal.
    static func number(_ v: Double) -> String {
        guard v.isFinite else { return "0" }
        if v == v.rounded() || v >= 100 { return String(Int(v.rounded())) }
        return String(format: "%.1f", v)
    }

    private func f(_ v: Double) -> String { String(format: "%.1f", v) }
}
