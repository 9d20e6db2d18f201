import JupyterProtocol

/// A JSON value that keeps the order of object members, as Python's `json` module does.
///
/// Kernel Gateway hands request bodies to notebooks and `execute_result` bundles back to clients
/// through `json.loads`/`json.dumps`; keeping member order (and Python's output format) keeps
/// both what a KG client would see.
public indirect enum OrderedJSON: Sendable {
    case null
    case bool(Bool)
    /// The number as written in the source (Python prints integers back unchanged).
    case number(String)
    case string(String)
    case array([OrderedJSON])
    case object([(key: String, value: OrderedJSON)])

    /// Parses exactly one RFC 8259 JSON value; nil when `bytes` is not one.
    public static func parse(_ bytes: [UInt8]) -> OrderedJSON? {
        do {
            try JSONScanner.validate(bytes)
        } catch {
            return nil
        }
        var parser = Parser(bytes: bytes)
        return parser.value()
    }

    public subscript(key: String) -> OrderedJSON? {
        guard case .object(let members) = self else { return nil }
        return members.last(where: { $0.key == key })?.value
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// `json.dumps(value)` with Python's defaults: `", "` and `": "` separators and
    /// `ensure_ascii` (non-ASCII as lowercase `\uXXXX`, surrogate pairs beyond the BMP).
    public func pythonDumps() -> String {
        var out = ""
        write(to: &out)
        return out
    }

    private func write(to out: inout String) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .number(let n): out += n
        case .string(let s): Self.writeString(s, to: &out)
        case .array(let items):
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += ", " }
                item.write(to: &out)
            }
            out += "]"
        case .object(let members):
            out += "{"
            for (i, member) in members.enumerated() {
                if i > 0 { out += ", " }
                Self.writeString(member.key, to: &out)
                out += ": "
                member.value.write(to: &out)
            }
            out += "}"
        }
    }

    /// A Python `json.dumps` string literal (`ensure_ascii=True`).
    public static func writeString(_ s: String, to out: inout String) {
        out += "\""
        for unit in s.utf16 {
            switch unit {
            case 0x22: out += "\\\""
            case 0x5C: out += "\\\\"
            case 0x0A: out += "\\n"
            case 0x0D: out += "\\r"
            case 0x09: out += "\\t"
            case 0x08: out += "\\b"
            case 0x0C: out += "\\f"
            case 0x20...0x7E: out.unicodeScalars.append(Unicode.Scalar(UInt8(unit)))
            default:
                let hex = String(unit, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            }
        }
        out += "\""
    }

    /// Recursive descent over input that `JSONScanner.validate` already accepted (so depth is
    /// bounded and the structure is sound); any surprise still ends in nil, never a trap.
    private struct Parser {
        let bytes: [UInt8]
        var i = 0

        mutating func skipWhitespace() {
            while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x0A || bytes[i] == 0x0D || bytes[i] == 0x09 { i += 1 }
        }

        mutating func value() -> OrderedJSON? {
            skipWhitespace()
            guard i < bytes.count else { return nil }
            switch bytes[i] {
            case UInt8(ascii: "{"): return object()
            case UInt8(ascii: "["): return array()
            case UInt8(ascii: "\""): return string().map { .string($0) }
            case UInt8(ascii: "t"):
                i += 4
                return .bool(true)
            case UInt8(ascii: "f"):
                i += 5
                return .bool(false)
            case UInt8(ascii: "n"):
                i += 4
                return .null
            default:
                let start = i
                while i < bytes.count, Self.isNumberByte(bytes[i]) { i += 1 }
                guard i > start else { return nil }
                return .number(String(decoding: bytes[start..<i], as: UTF8.self))
            }
        }

        static func isNumberByte(_ b: UInt8) -> Bool {
            (b >= 0x30 && b <= 0x39) || b == UInt8(ascii: "-") || b == UInt8(ascii: "+") || b == UInt8(ascii: ".")
                || b == UInt8(ascii: "e") || b == UInt8(ascii: "E")
        }

        mutating func object() -> OrderedJSON? {
            i += 1
            var members: [(key: String, value: OrderedJSON)] = []
            skipWhitespace()
            if i < bytes.count, bytes[i] == UInt8(ascii: "}") {
                i += 1
                return .object(members)
            }
            while i < bytes.count {
                skipWhitespace()
                guard let key = string() else { return nil }
                skipWhitespace()
                i += 1  // ':'
                guard let v = value() else { return nil }
                members.append((key, v))
                skipWhitespace()
                guard i < bytes.count else { return nil }
                let c = bytes[i]
                i += 1
                if c == UInt8(ascii: "}") { return .object(members) }
            }
            return nil
        }

        mutating func array() -> OrderedJSON? {
            i += 1
            var items: [OrderedJSON] = []
            skipWhitespace()
            if i < bytes.count, bytes[i] == UInt8(ascii: "]") {
                i += 1
                return .array(items)
            }
            while i < bytes.count {
                guard let v = value() else { return nil }
                items.append(v)
                skipWhitespace()
                guard i < bytes.count else { return nil }
                let c = bytes[i]
                i += 1
                if c == UInt8(ascii: "]") { return .array(items) }
            }
            return nil
        }

        mutating func string() -> String? {
            guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { return nil }
            let start = i
            i += 1
            while i < bytes.count {
                let b = bytes[i]
                if b == UInt8(ascii: "\\") {
                    i += 2
                    continue
                }
                i += 1
                if b == UInt8(ascii: "\"") { break }
            }
            guard i <= bytes.count else { return nil }
            return try? JSONScanner.decodeString(bytes, start..<i)
        }
    }
}
