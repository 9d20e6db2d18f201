/// A validating, non-allocating scanner over UTF-8 JSON bytes.
///
/// The gateway's hot path never re-serialises message content: it only needs the byte
/// ranges of a message's top-level members (`header`, `content`, ...) and a few string
/// fields of the header. This scanner validates the JSON grammar (RFC 8259) while it
/// skips values, so malformed client input is rejected before it reaches a kernel.
public struct JSONScanner {
    public enum Failure: Error, Equatable, Sendable {
        case unexpectedEnd
        case unexpectedByte(offset: Int)
        case notAnObject
        case nestingTooDeep
    }

    /// Deep nesting is the classic stack-exhaustion attack on recursive parsers.
    public static let maxDepth = 512

    let bytes: [UInt8]
    var index: Int
    let end: Int

    public init(_ bytes: [UInt8], range: Range<Int>? = nil) {
        self.bytes = bytes
        self.index = range?.lowerBound ?? 0
        self.end = range?.upperBound ?? bytes.count
    }

    /// The members of the top-level object, in order, as `(key, byte range of the value)`.
    public static func topLevelMembers(
        of bytes: [UInt8], in range: Range<Int>? = nil
    ) throws(Failure) -> [(key: String, value: Range<Int>)] {
        var scanner = JSONScanner(bytes, range: range)
        scanner.skipWhitespace()
        guard scanner.index < scanner.end, bytes[scanner.index] == UInt8(ascii: "{") else {
            throw .notAnObject
        }
        var members: [(key: String, value: Range<Int>)] = []
        scanner.index += 1
        scanner.skipWhitespace()
        if try scanner.peek() == UInt8(ascii: "}") {
            scanner.index += 1
        } else {
            while true {
                scanner.skipWhitespace()
                let keyStart = scanner.index
                try scanner.skipString()
                let key = try JSONScanner.decodeString(bytes, keyStart..<scanner.index)
                scanner.skipWhitespace()
                try scanner.expect(UInt8(ascii: ":"))
                scanner.skipWhitespace()
                let valueStart = scanner.index
                try scanner.skipValue(depth: 1)
                members.append((key, valueStart..<scanner.index))
                scanner.skipWhitespace()
                let next = try scanner.next()
                if next == UInt8(ascii: "}") { break }
                guard next == UInt8(ascii: ",") else { throw .unexpectedByte(offset: scanner.index - 1) }
            }
        }
        scanner.skipWhitespace()
        guard scanner.index == scanner.end else { throw .unexpectedByte(offset: scanner.index) }
        return members
    }

    /// Validates that `range` holds exactly one JSON value.
    public static func validate(_ bytes: [UInt8], _ range: Range<Int>? = nil) throws(Failure) {
        var scanner = JSONScanner(bytes, range: range)
        scanner.skipWhitespace()
        try scanner.skipValue(depth: 0)
        scanner.skipWhitespace()
        guard scanner.index == scanner.end else { throw .unexpectedByte(offset: scanner.index) }
    }

    /// Decodes the JSON string literal (with its quotes) found at `range`.
    public static func decodeString(_ bytes: [UInt8], _ range: Range<Int>) throws(Failure) -> String {
        guard range.count >= 2, bytes[range.lowerBound] == UInt8(ascii: "\"") else {
            throw .unexpectedByte(offset: range.lowerBound)
        }
        let inner = (range.lowerBound + 1)..<(range.upperBound - 1)
        if !bytes[inner].contains(UInt8(ascii: "\\")) {
            return String(decoding: bytes[inner], as: UTF8.self)
        }
        var out: [UInt8] = []
        out.reserveCapacity(inner.count)
        var i = inner.lowerBound
        while i < inner.upperBound {
            let b = bytes[i]
            if b != UInt8(ascii: "\\") {
                out.append(b)
                i += 1
                continue
            }
            i += 1
            guard i < inner.upperBound else { throw .unexpectedEnd }
            switch bytes[i] {
            case UInt8(ascii: "\""): out.append(UInt8(ascii: "\""))
            case UInt8(ascii: "\\"): out.append(UInt8(ascii: "\\"))
            case UInt8(ascii: "/"): out.append(UInt8(ascii: "/"))
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                guard i + 4 < inner.upperBound else { throw .unexpectedEnd }
                var scalar = try hex4(bytes, i + 1)
                i += 4
                if (0xD800..<0xDC00).contains(scalar), i + 6 < inner.upperBound,
                   bytes[i + 1] == UInt8(ascii: "\\"), bytes[i + 2] == UInt8(ascii: "u") {
                    let low = try hex4(bytes, i + 3)
                    if (0xDC00..<0xE000).contains(low) {
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        i += 6
                    }
                }
                let unicode = Unicode.Scalar(scalar) ?? "\u{FFFD}"
                out.append(contentsOf: Array(String(Character(unicode)).utf8))
            default:
                throw .unexpectedByte(offset: i)
            }
            i += 1
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static func hex4(_ bytes: [UInt8], _ at: Int) throws(Failure) -> UInt32 {
        var value: UInt32 = 0
        for j in at..<(at + 4) {
            let c = bytes[j]
            let digit: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(c - UInt8(ascii: "A") + 10)
            default: throw .unexpectedByte(offset: j)
            }
            value = value << 4 | digit
        }
        return value
    }

    // MARK: - Skipping

    mutating func skipWhitespace() {
        while index < end {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    func peek() throws(Failure) -> UInt8 {
        guard index < end else { throw .unexpectedEnd }
        return bytes[index]
    }

    mutating func next() throws(Failure) -> UInt8 {
        guard index < end else { throw .unexpectedEnd }
        defer { index += 1 }
        return bytes[index]
    }

    mutating func expect(_ byte: UInt8) throws(Failure) {
        guard try next() == byte else { throw .unexpectedByte(offset: index - 1) }
    }

    mutating func skipValue(depth: Int) throws(Failure) {
        guard depth <= JSONScanner.maxDepth else { throw .nestingTooDeep }
        switch try peek() {
        case UInt8(ascii: "{"):
            index += 1
            skipWhitespace()
            if try peek() == UInt8(ascii: "}") { index += 1; return }
            while true {
                skipWhitespace()
                try skipString()
                skipWhitespace()
                try expect(UInt8(ascii: ":"))
                skipWhitespace()
                try skipValue(depth: depth + 1)
                skipWhitespace()
                let n = try next()
                if n == UInt8(ascii: "}") { return }
                guard n == UInt8(ascii: ",") else { throw .unexpectedByte(offset: index - 1) }
            }
        case UInt8(ascii: "["):
            index += 1
            skipWhitespace()
            if try peek() == UInt8(ascii: "]") { index += 1; return }
            while true {
                skipWhitespace()
                try skipValue(depth: depth + 1)
                skipWhitespace()
                let n = try next()
                if n == UInt8(ascii: "]") { return }
                guard n == UInt8(ascii: ",") else { throw .unexpectedByte(offset: index - 1) }
            }
        case UInt8(ascii: "\""):
            try skipString()
        case UInt8(ascii: "t"): try skipLiteral("true")
        case UInt8(ascii: "f"): try skipLiteral("false")
        case UInt8(ascii: "n"): try skipLiteral("null")
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            try skipNumber()
        default:
            throw .unexpectedByte(offset: index)
        }
    }

    mutating func skipLiteral(_ literal: StaticString) throws(Failure) {
        let count = literal.utf8CodeUnitCount
        guard index + count <= end else { throw .unexpectedEnd }
        let p = literal.utf8Start
        for j in 0..<count where bytes[index + j] != p[j] {
            throw .unexpectedByte(offset: index + j)
        }
        index += count
    }

    mutating func skipNumber() throws(Failure) {
        if bytes[index] == UInt8(ascii: "-") { index += 1 }
        guard index < end else { throw .unexpectedEnd }
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
        } else {
            try skipDigits()
        }
        if index < end, bytes[index] == UInt8(ascii: ".") {
            index += 1
            try skipDigits()
        }
        if index < end, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            index += 1
            if index < end, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
            try skipDigits()
        }
    }

    mutating func skipDigits() throws(Failure) {
        let start = index
        while index < end, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9") { index += 1 }
        guard index > start else {
            if index >= end { throw .unexpectedEnd }
            throw .unexpectedByte(offset: index)
        }
    }

    /// Skips a string literal, rejecting raw control characters and bad escapes.
    /// UTF-8 validity of the whole frame is checked by the caller (WebSocket text
    /// frames are validated by the WebSocket layer; binary parts by `validateUTF8`).
    mutating func skipString() throws(Failure) {
        try expect(UInt8(ascii: "\""))
        while true {
            // Plain bytes (the bulk of a large output's text) are skipped in a tight loop without
            // bounds checks; the profile of 100 KB display_data bursts had this function at 16 %
            // of the gateway's time when every byte went through the bounds-checked switch.
            index = bytes.withUnsafeBufferPointer { p in
                var i = index
                while i < end {
                    let c = p[i]
                    if c == 0x22 || c == 0x5C || c < 0x20 { break }
                    i &+= 1
                }
                return i
            }
            guard index < end else { throw .unexpectedEnd }
            let b = bytes[index]
            index += 1
            switch b {
            case UInt8(ascii: "\""):
                return
            case UInt8(ascii: "\\"):
                guard index < end else { throw .unexpectedEnd }
                let e = bytes[index]
                index += 1
                switch e {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"),
                     UInt8(ascii: "f"), UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    continue
                case UInt8(ascii: "u"):
                    guard index + 4 <= end else { throw .unexpectedEnd }
                    _ = try JSONScanner.hex4(bytes, index)
                    index += 4
                default:
                    throw .unexpectedByte(offset: index - 1)
                }
            case 0x00..<0x20:
                throw .unexpectedByte(offset: index - 1)
            default:
                continue
            }
        }
    }
}

extension JSONScanner {
    /// Appends `string` to `out` as a JSON string literal (quotes included).
    public static func appendQuoted(_ string: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for b in string.utf8 {
            switch b {
            case UInt8(ascii: "\""): out.append(contentsOf: [0x5C, 0x22])
            case UInt8(ascii: "\\"): out.append(contentsOf: [0x5C, 0x5C])
            case 0x0A: out.append(contentsOf: [0x5C, UInt8(ascii: "n")])
            case 0x0D: out.append(contentsOf: [0x5C, UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [0x5C, UInt8(ascii: "t")])
            case 0x00..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out.append(contentsOf: [0x5C, UInt8(ascii: "u"), 0x30, 0x30, hex[Int(b >> 4)], hex[Int(b & 0xF)]])
            default: out.append(b)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    /// `string` as a JSON string literal.
    public static func quoted(_ string: String) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(string.utf8.count + 2)
        appendQuoted(string, to: &out)
        return out
    }
}
