import Foundation
import JupyterProtocol
import Testing

@Suite("JSONScanner")
struct JSONScannerTests {
    static let jsonStrings: [MiscFixture.JSONString] = Fixtures.misc?.json_strings ?? []

    /// String literals as Python's `json.dumps` writes them (ASCII-escaped with surrogate
    /// pairs, and raw UTF-8), plus upper-case and `\/` escapes.
    @Test("decodeString of Python json literals", arguments: jsonStrings)
    func decodePythonLiterals(_ s: MiscFixture.JSONString) throws {
        let bytes = s.literal.bytes
        #expect(try JSONScanner.decodeString(bytes, 0..<bytes.count) == s.value)
        // Also through a header, where the gateway actually reads strings.
        let header = utf8(#"{"msg_type":"t","msg_id":"#) + bytes + utf8("}")
        if !s.value.isEmpty {
            let message = try JupyterMessage(header: header, parentHeader: utf8("{}"), metadata: utf8("{}"), content: utf8("{}"))
            #expect(message.msgID == s.value)
        }
    }

    @Test func decodeStringEscapes() throws {
        let cases: [(String, String)] = [
            (#""\u00e9""#, "é"),
            (#""\u00C9""#, "É"),
            (#""\ud83d\ude00""#, "😀"),
            (#""\uD834\uDD1E""#, "𝄞"),
            (#""a\ud83d\ude00b\ud83d\ude01c""#, "a😀b😁c"),
            (#""\"\\\/\b\f\n\r\t""#, "\"\\/\u{8}\u{C}\n\r\t"),
            (#""\u0000\u001f""#, "\u{0}\u{1F}"),
            (#""\u2028""#, "\u{2028}"),
            (#""plain ünï""#, "plain ünï"),
            (#""""#, ""),
        ]
        for (literal, expected) in cases {
            let bytes = utf8(literal)
            #expect(try JSONScanner.decodeString(bytes, 0..<bytes.count) == expected, "\(literal)")
            // Foundation agrees.
            #expect(try parseJSON(bytes) as? String == expected, "\(literal)")
        }
    }

    @Test func decodeStringInsideALargerBuffer() throws {
        let bytes = utf8(#"xx"a\u00e9\ud83d\ude00"yy"#)
        #expect(try JSONScanner.decodeString(bytes, 2..<(bytes.count - 2)) == "aé😀")
    }

    @Test func loneSurrogatesDoNotTrap() throws {
        // Foundation rejects these; the scanner substitutes U+FFFD. Either way, no trap.
        for literal in [#""\ud800""#, #""\udc00""#, #""\ud800x""#, #""\ud800\u0041""#, #""\udbff\udbff""#,
                        #""\ude00\ud83d""#, #""\ud800\""#] {
            let bytes = utf8(literal)
            if let decoded = try? JSONScanner.decodeString(bytes, 0..<bytes.count) {
                #expect(decoded.unicodeScalars.allSatisfy { !(0xD800...0xDFFF).contains($0.value) })
            }
        }
        let bytes = utf8(#""\ud800\u0041""#)
        #expect(try JSONScanner.decodeString(bytes, 0..<bytes.count) == "\u{FFFD}A")
    }

    @Test func decodeStringRejectsMalformedLiterals() {
        for literal in [#""\x""#, #""\u12""#, #""\u12G4""#, #""\""#, "x", #"""#, ""] {
            let bytes = utf8(literal)
            #expect(throws: JSONScanner.Failure.self, "\(literal)") {
                try JSONScanner.decodeString(bytes, 0..<bytes.count)
            }
        }
    }

    static let quotedSamples: [String] = [
        "", "plain", "with \"quotes\"", #"back\slash\\"#, "slash /", "new\nline", "cr\r tab\t",
        "\u{0}\u{1}\u{8}\u{B}\u{C}\u{1F}\u{7F}", "ünï ✓ 😀 𝄞", "\u{2028}\u{2029}", "\u{FEFF}bom",
        #"\u0041 is not an escape"#, "mixed \"\\\n\u{1}😀\"", String(repeating: "\\\"", count: 50),
    ]

    @Test("quoted() round-trips through JSONSerialization", arguments: quotedSamples)
    func quotedRoundTrip(_ s: String) throws {
        // JSONDecoder rather than JSONSerialization: corelibs JSONSerialization drops a
        // U+FEFF at the start of any string value.
        let literal = JSONScanner.quoted(s)
        #expect(try JSONDecoder().decode(String.self, from: Data(literal)) == s)
        #expect(try JSONScanner.decodeString(literal, 0..<literal.count) == s)
        try JSONScanner.validate(literal)
        // No raw control characters: the literal is valid in any JSON context.
        #expect(!literal.contains { $0 < 0x20 })

        var appended = utf8("[")
        JSONScanner.appendQuoted(s, to: &appended)
        appended.append(UInt8(ascii: "]"))
        #expect(try JSONDecoder().decode([String].self, from: Data(appended)) == [s])
    }

    @Test func allControlCharactersQuote() throws {
        let s = String(String.UnicodeScalarView((0..<0x20).map { Unicode.Scalar(UInt8($0)) }))
        let literal = JSONScanner.quoted(s)
        #expect(try parseJSON(literal) as? String == s)
    }

    @Test func topLevelMembersInOrder() throws {
        let bytes = utf8(#" { "b" : [1, {"x": "}"}] , "a\u00e9" : "s" , "c":{} , "d": null } "#)
        let members = try JSONScanner.topLevelMembers(of: bytes)
        #expect(members.map(\.key) == ["b", "aé", "c", "d"])
        #expect(members.map { String(decoding: bytes[$0.value], as: UTF8.self) } == [#"[1, {"x": "}"}]"#, #""s""#, "{}", "null"])
    }

    @Test func topLevelMembersOfASubrange() throws {
        let bytes = utf8(#"xx{"a":1}yy"#)
        let members = try JSONScanner.topLevelMembers(of: bytes, in: 2..<(bytes.count - 2))
        #expect(members.map(\.key) == ["a"])
        #expect(members.first?.value == 7..<8)
        #expect(throws: JSONScanner.Failure.self) { try JSONScanner.topLevelMembers(of: bytes) }
    }

    @Test func nonObjectsAreNotAnObject() {
        for text in ["[]", "1", #""s""#, "null", "", "   "] {
            #expect(throws: JSONScanner.Failure.notAnObject, "\(text)") { try JSONScanner.topLevelMembers(of: utf8(text)) }
        }
    }
}
