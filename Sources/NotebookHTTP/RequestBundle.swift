import Foundation
import GatewayServer
import HTTPTypes

/// The `REQUEST` value KG injects before an endpoint cell (`notebook_http/handlers.py` and
/// `request_utils.py`): `{"body", "args", "path", "headers"}` JSON-encoded, then assigned as a
/// JSON string literal, so a notebook does `json.loads(REQUEST)`.
public enum RequestBundle {
    /// Builds the bundle. Body rules (`parse_body`): `application/json` (exactly) is parsed,
    /// falling back to the text; `application/x-www-form-urlencoded` (exactly) and
    /// `multipart/form-data; boundary=…` become a dict of lists (see `MultipartForm`); anything
    /// else, or no Content-Type, is the text. A body that is not UTF-8 is a 400
    /// (KG answers 500 to it).
    ///
    /// Unlike KG, the gateway's own token never reaches the kernel: an `Authorization` header or a
    /// `token` query argument carrying `hiding` is left out (other credentials pass unchanged).
    public static func make(body: [UInt8], query: String?, pathParameters: [(name: String, value: String)],
                            headers: HTTPFields, hiding token: String = "") throws(GatewayError) -> OrderedJSON {
        let contentType = headers[values: .contentType].joined(separator: ",")
        var bodyValue: OrderedJSON
        if contentType.hasPrefix("multipart/form-data") {
            // Parsed from bytes: an uploaded file need not be text (it is left out, as KG does).
            bodyValue = try MultipartForm.fields(body, contentType: contentType)
        } else if let text = String(validating: body, as: UTF8.self) {
            bodyValue = .string(text)
        } else {
            throw GatewayError(.badRequest, "Request body is not valid UTF-8")
        }
        if case .string(let text) = bodyValue, contentType == "application/x-www-form-urlencoded" {
            bodyValue = try formFields(text, what: "form field")
        } else if contentType == "application/json", let parsed = OrderedJSON.parse(body) {
            bodyValue = parsed
        }
        var args = try formFields(query ?? "", what: "query argument")
        var visible = headers
        if !token.isEmpty {
            if case .object(let fields) = args {
                args = .object(fields.compactMap { field in
                    guard field.key == "token", case .array(let values) = field.value else { return field }
                    let kept = values.filter { $0.stringValue != token }
                    return kept.isEmpty ? nil : (field.key, .array(kept))
                })
            }
            visible = HTTPFields(headers.filter { field in
                guard field.name == .authorization else { return true }
                let parts = field.value.split(separator: " ", maxSplits: 1)
                return !(parts.count == 2 && parts[1].trimmingCharacters(in: .whitespaces) == token)
            })
        }
        let path = OrderedJSON.object(pathParameters.map { ($0.name, OrderedJSON.string($0.value)) })
        return .object([("body", bodyValue), ("args", args), ("path", path), ("headers", headerObject(visible))])
    }

    /// The assignment statement (`format_request`): `my $REQUEST = "…"` for Perl, `REQUEST="…"`
    /// for bash, `REQUEST = "…"` otherwise.
    public static func assignment(_ bundle: OrderedJSON, language: String) -> String {
        var literal = ""
        OrderedJSON.writeString(bundle.pythonDumps(), to: &literal)
        switch language.lowercased() {
        case "perl": return "my $REQUEST = \(literal)"
        case "bash": return "REQUEST=\(literal)"
        default: return "REQUEST = \(literal)"
        }
    }

    /// Query strings and urlencoded forms as tornado parses them (`parse_qs_bytes`,
    /// `keep_blank_values=True`): `+` is a space, each name maps to the list of its values.
    static func formFields(_ text: String, what: String) throws(GatewayError) -> OrderedJSON {
        var fields: [(key: String, value: OrderedJSON)] = []
        for pair in text.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = try decodeComponent(parts[0], what: what)
            var value = ""
            if parts.count > 1 { value = try decodeComponent(parts[1], what: what) }
            append(value, to: name, in: &fields)
        }
        return .object(fields)
    }

    /// tornado's `arguments.setdefault(name, []).append(value)`, keeping first-seen order.
    static func append(_ value: String, to name: String, in fields: inout [(key: String, value: OrderedJSON)]) {
        if let i = fields.firstIndex(where: { $0.key == name }), case .array(var values) = fields[i].value {
            values.append(.string(value))
            fields[i].value = .array(values)
        } else {
            fields.append((name, .array([.string(value)])))
        }
    }

    static func decodeComponent(_ raw: Substring, what: String) throws(GatewayError) -> String {
        let bytes = percentDecoded(Array(raw.utf8), plusIsSpace: true)
        guard let s = String(validatingUTF8: bytes) else {
            throw GatewayError(.badRequest, "A \(what) is not valid UTF-8 after percent-decoding")
        }
        return s
    }

    /// Percent-decoding that leaves malformed `%` sequences as they are (Python's `unquote`).
    static func percentDecoded(_ bytes: [UInt8], plusIsSpace: Bool) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = 0
        while i < bytes.count {
            let b = bytes[i]
            if b == UInt8(ascii: "%"), i + 2 < bytes.count, let hi = hexValue(bytes[i + 1]), let lo = hexValue(bytes[i + 2]) {
                out.append(hi << 4 | lo)
                i += 3
                continue
            }
            out.append(plusIsSpace && b == UInt8(ascii: "+") ? UInt8(ascii: " ") : b)
            i += 1
        }
        return out
    }

    static func hexValue(_ b: UInt8) -> UInt8? {
        switch b {
        case 0x30...0x39: b - 0x30
        case 0x41...0x46: b - 0x41 + 10
        case 0x61...0x66: b - 0x61 + 10
        default: nil
        }
    }

    /// Header names in tornado's `Http-Header-Case`; a repeated header becomes a list
    /// (`headers_to_dict`).
    static func headerObject(_ headers: HTTPFields) -> OrderedJSON {
        var members: [(key: String, value: OrderedJSON)] = []
        for field in headers {
            let name = field.name.rawName.split(separator: "-", omittingEmptySubsequences: false)
                .map { $0.prefix(1).uppercased() + $0.dropFirst().lowercased() }
                .joined(separator: "-")
            if let i = members.firstIndex(where: { $0.key == name }) {
                switch members[i].value {
                case .array(var values):
                    values.append(.string(field.value))
                    members[i].value = .array(values)
                default:
                    members[i].value = .array([members[i].value, .string(field.value)])
                }
            } else {
                members.append((name, .string(field.value)))
            }
        }
        return .object(members)
    }
}
