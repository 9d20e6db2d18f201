import GatewayServer

/// `multipart/form-data` bodies as Kernel Gateway hands them to a cell: KG's `parse_body` takes
/// tornado's `body_arguments` (`tornado.httputil.parse_multipart_form_data`), so each text field
/// becomes `name: [values…]` in order and parts with a `filename` (uploads) are left out of
/// `REQUEST` as KG leaves them out. Where tornado logs a warning and drops a malformed body or
/// part, this answers 400 with what is wrong: nothing a client sent disappears without a word.
enum MultipartForm {
    static func fields(_ body: [UInt8], contentType: String) throws(GatewayError) -> OrderedJSON {
        guard var boundary = parameters(of: contentType)["boundary"], !boundary.isEmpty else {
            throw GatewayError(.badRequest, "multipart/form-data request without a boundary parameter in its Content-Type")
        }
        if boundary.count >= 2, boundary.hasPrefix("\""), boundary.hasSuffix("\"") { boundary = String(boundary.dropFirst().dropLast()) }
        let delimiter = Array("--\(boundary)".utf8)
        guard let end = lastIndex(of: delimiter + Array("--".utf8), in: body) else {
            throw GatewayError(.badRequest, "multipart/form-data body has no final boundary (--\(boundary.prefix(70))--)")
        }
        var fields: [(key: String, value: OrderedJSON)] = []
        for (number, part) in split(Array(body[..<end]), on: delimiter + [13, 10]).enumerated() where !part.isEmpty {
            guard let headerEnd = firstIndex(of: [13, 10, 13, 10], in: part) else {
                throw GatewayError(.badRequest, "multipart/form-data part \(number) has no header block")
            }
            guard let headerText = String(validating: part[..<headerEnd], as: UTF8.self) else {
                throw GatewayError(.badRequest, "multipart/form-data part \(number) has headers that are not UTF-8")
            }
            var disposition = ""
            for line in headerText.split(separator: "\r\n") {
                let pair = line.split(separator: ":", maxSplits: 1)
                if pair.count == 2, pair[0].trimmingCharacters(in: .whitespaces).lowercased() == "content-disposition" {
                    disposition = pair[1].trimmingCharacters(in: .whitespaces)
                }
            }
            let kind = disposition.split(separator: ";", maxSplits: 1).first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
            guard kind == "form-data", part.count >= headerEnd + 4 + 2, part.suffix(2) == [13, 10] else {
                throw GatewayError(.badRequest, "multipart/form-data part \(number) is not a form-data part ending in CRLF")
            }
            let params = parameters(of: disposition)
            guard let name = params["name"], !name.isEmpty else {
                throw GatewayError(.badRequest, "multipart/form-data part \(number) has no name")
            }
            if let filename = params["filename"], !filename.isEmpty { continue }  // an upload: not in REQUEST (KG)
            guard let value = String(validating: part[(headerEnd + 4)..<(part.count - 2)], as: UTF8.self) else {
                throw GatewayError(.badRequest, "multipart/form-data field '\(name.prefix(64))' is not valid UTF-8")
            }
            RequestBundle.append(value, to: name, in: &fields)
        }
        return .object(fields)
    }

    /// `key=value` parameters after the first `;` of a header value (quoted values unquoted,
    /// `\"` inside them unescaped), keys lowercased, as tornado's `_parse_header`.
    static func parameters(of header: String) -> [String: String] {
        var result: [String: String] = [:]
        var pieces: [String] = []
        var current = ""
        var quoted = false
        var escaped = false
        for ch in header {
            if escaped { current.append(ch); escaped = false; continue }
            if quoted, ch == "\\" { current.append(ch); escaped = true; continue }
            if ch == "\"" { quoted.toggle() }
            if ch == ";", !quoted { pieces.append(current); current = ""; continue }
            current.append(ch)
        }
        pieces.append(current)
        for piece in pieces.dropFirst() {
            let kv = piece.split(separator: "=", maxSplits: 1)
            guard kv.count == 2 else { continue }
            var value = kv[1].trimmingCharacters(in: .whitespaces)
            if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") {
                value = String(value.dropFirst().dropLast()).replacingOccurrences(of: "\\\\", with: "\\").replacingOccurrences(of: "\\\"", with: "\"")
            }
            result[kv[0].trimmingCharacters(in: .whitespaces).lowercased()] = value
        }
        return result
    }

    static func firstIndex(of needle: [UInt8], in haystack: [UInt8], from start: Int = 0) -> Int? {
        guard !needle.isEmpty, haystack.count >= needle.count, start <= haystack.count - needle.count else { return nil }
        var i = start
        while i <= haystack.count - needle.count {
            if haystack[i] == needle[0], haystack[i..<(i + needle.count)].elementsEqual(needle) { return i }
            i += 1
        }
        return nil
    }

    static func lastIndex(of needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard !needle.isEmpty, haystack.count >= needle.count else { return nil }
        var i = haystack.count - needle.count
        while i >= 0 {
            if haystack[i] == needle[0], haystack[i..<(i + needle.count)].elementsEqual(needle) { return i }
            i -= 1
        }
        return nil
    }

    static func split(_ data: [UInt8], on separator: [UInt8]) -> [[UInt8]] {
        var parts: [[UInt8]] = []
        var start = 0
        while let i = firstIndex(of: separator, in: data, from: start) {
            parts.append(Array(data[start..<i]))
            start = i + separator.count
        }
        parts.append(Array(data[start...]))
        return parts
    }
}
