import Foundation
import JupyterProtocol
import Testing

/// The ZeroMQ multipart encoding against jupyter_client's `Session`.
@Suite("Wire codec")
struct WireCodecTests {
    @Test("decode verifies jupyter_client Session frames", arguments: Fixtures.wire.cases)
    func decodeSessionFrames(_ c: WireFixture.Case) throws {
        let frames = c.frames.map(\.bytes)
        let signer = MessageSigner(key: c.key)
        let message = try WireCodec.decode(frames, signer: signer)
        let d = c.identities
        #expect(frames[d] == WireCodec.delimiter)
        #expect(message.header == frames[d + 2])
        #expect(message.parentHeader == frames[d + 3])
        #expect(message.metadata == frames[d + 4])
        #expect(message.content == frames[d + 5])
        #expect(message.buffers == Array(frames[(d + 6)...]))
        #expect(message.buffers.count == c.buffer_count)
        #expect(message.msgID == c.msg_id)
        #expect(message.msgType == c.msg_type)
        if c.key.isEmpty {
            #expect(frames[d + 1].isEmpty, "jupyter_client sends an empty signature without a key")
        }
    }

    @Test("encode reproduces jupyter_client's frames, signature included", arguments: Fixtures.wire.cases)
    func encodeMatchesSession(_ c: WireFixture.Case) throws {
        let frames = c.frames.map(\.bytes)
        let signer = MessageSigner(key: c.key)
        let message = try WireCodec.decode(frames, signer: signer)
        #expect(WireCodec.encode(message, signer: signer) == Array(frames[c.identities...]))
    }

    @Test("a changed byte in a signed part is rejected", arguments: Fixtures.wire.cases.filter { !$0.key.isEmpty })
    func tamperingIsDetected(_ c: WireFixture.Case) {
        let frames = c.frames.map(\.bytes)
        let signer = MessageSigner(key: c.key)
        let d = c.identities
        for index in (d + 2)...(d + 5) where !frames[index].isEmpty {
            for position in Set([0, frames[index].count / 2, frames[index].count - 1]) {
                var tampered = frames
                tampered[index][position] ^= 0x01
                #expect(throws: ProtocolError.badSignature, "part \(index - d - 2) byte \(position)") {
                    try WireCodec.decode(tampered, signer: signer)
                }
            }
        }
        // A flipped signature character, an upper/lower swap that changes the value, and
        // truncated/extended/empty signatures.
        var sig = frames
        sig[d + 1][10] = sig[d + 1][10] == UInt8(ascii: "0") ? UInt8(ascii: "1") : UInt8(ascii: "0")
        var short = frames
        short[d + 1].removeLast()
        var long = frames
        long[d + 1].append(UInt8(ascii: "0"))
        var empty = frames
        empty[d + 1] = []
        var nonHex = frames
        nonHex[d + 1][0] = UInt8(ascii: "g")
        for bad in [sig, short, long, empty, nonHex] {
            #expect(throws: ProtocolError.badSignature) { try WireCodec.decode(bad, signer: signer) }
        }
        // Verified with the wrong key.
        #expect(throws: ProtocolError.badSignature) {
            try WireCodec.decode(frames, signer: MessageSigner(key: c.key + "x"))
        }
        // A signed message with the parts swapped.
        var swapped = frames
        swapped.swapAt(d + 4, d + 5)
        if swapped[d + 4] != swapped[d + 5] {
            #expect(throws: ProtocolError.badSignature) { try WireCodec.decode(swapped, signer: signer) }
        }
    }

    @Test("buffers are not signed", arguments: Fixtures.wire.cases.filter { $0.buffer_count > 0 && !$0.key.isEmpty })
    func buffersAreNotSigned(_ c: WireFixture.Case) throws {
        var frames = c.frames.map(\.bytes)
        let signer = MessageSigner(key: c.key)
        let first = c.identities + 6
        frames[first] = frames[first].isEmpty ? [0x42] : frames[first].map { $0 ^ 0xFF }
        frames.append(utf8("an extra buffer"))
        let message = try WireCodec.decode(frames, signer: signer)
        #expect(message.buffers == Array(frames[first...]))
    }

    @Test func emptyKeyAcceptsEmptySignature() throws {
        let signer = MessageSigner(key: "")
        #expect(!signer.isSigning)
        #expect(signer.signature(Sample.header, Sample.parent, Sample.metadata, Sample.content).isEmpty)
        let frames = [WireCodec.delimiter, []] + Sample.parts
        let message = try WireCodec.decode(frames, signer: signer)
        #expect(message.msgID == "m-1")
        #expect(WireCodec.encode(message, signer: signer) == frames)
    }

    @Test func keyedSignerRejectsUnsignedMessages() {
        let frames = [WireCodec.delimiter, []] + Sample.parts
        #expect(throws: ProtocolError.badSignature) {
            try WireCodec.decode(frames, signer: MessageSigner(key: "secret"))
        }
    }

    @Test("HMAC vectors from Session.sign", arguments: Fixtures.wire.hmac)
    func hmacVectors(_ v: WireFixture.HMACVector) {
        let signer = MessageSigner(key: v.key)
        let p = v.parts.map(\.bytes)
        #expect(signer.signature(p[0], p[1], p[2], p[3]) == utf8(v.signature))
        #expect(signer.verify(utf8(v.signature), p[0], p[1], p[2], p[3]))
        if !v.key.isEmpty {
            #expect(v.signature.count == 64)
            #expect(!signer.verify(utf8(v.signature), p[0], p[1], p[2], p[3] + [0]))
            // The HMAC is over the concatenation, so moving a byte across a part boundary
            // does not change it: the same as jupyter_client (documented, not a bug).
            if !p[0].isEmpty {
                #expect(signer.verify(utf8(v.signature), Array(p[0].dropLast()), [p[0].last!] + p[1], p[2], p[3]))
            }
        }
    }

    @Test func missingDelimiter() {
        #expect(throws: ProtocolError.missingDelimiter) { try WireCodec.decode([], signer: MessageSigner(key: "")) }
        #expect(throws: ProtocolError.missingDelimiter) {
            try WireCodec.decode([utf8("topic"), []] + Sample.parts, signer: MessageSigner(key: ""))
        }
        #expect(throws: ProtocolError.missingDelimiter) {
            try WireCodec.decode([utf8("<IDS|MSG> "), []] + Sample.parts, signer: MessageSigner(key: ""))
        }
    }

    @Test func tooFewParts() {
        let signer = MessageSigner(key: "")
        for count in 0..<5 {
            let frames = [utf8("id"), WireCodec.delimiter] + Array(([[]] + Sample.parts).prefix(count))
            #expect(throws: ProtocolError.tooFewParts(count)) { try WireCodec.decode(frames, signer: signer) }
        }
    }

    @Test func identitiesUpToTheFirstDelimiterAreDropped() throws {
        let signer = MessageSigner(key: "k")
        let message = try Sample.message(buffers: [WireCodec.delimiter])
        let frames = WireCodec.encode(message, signer: signer)
        let decoded = try WireCodec.decode([utf8("a"), [], [0, 255]] + frames, signer: signer)
        #expect(decoded == message)
        // A buffer equal to the delimiter is still a buffer.
        #expect(decoded.buffers == [WireCodec.delimiter])
    }

    @Test func invalidJSONPartsAreRejectedAfterVerification() {
        let signer = MessageSigner(key: "k")
        let cases: [([UInt8], [UInt8], [UInt8], [UInt8])] = [
            (utf8("{"), Sample.parent, Sample.metadata, Sample.content),
            (utf8(#"{"msg_id":"a"}"#), Sample.parent, Sample.metadata, Sample.content),
            (Sample.header, utf8("[]"), Sample.metadata, Sample.content),
            (Sample.header, Sample.parent, utf8("{,}"), Sample.content),
            (Sample.header, Sample.parent, Sample.metadata, utf8(#"{"a":1} x"#)),
            (Sample.header, Sample.parent, Sample.metadata, []),
        ]
        for (h, p, m, c) in cases {
            let frames = [WireCodec.delimiter, signer.signature(h, p, m, c), h, p, m, c]
            #expect(throws: ProtocolError.self) { try WireCodec.decode(frames, signer: signer) }
        }
    }
}
