import Foundation
import JupyterProtocol
import Provisioning

/// What each fuzz target feeds its input to: the decoders that take bytes from outside the
/// gateway. A target must never crash, trap or trip a sanitizer, whatever the input; where a
/// decode succeeds, what it produced is re-encoded and must decode again (the gateway re-frames
/// everything it accepts).
public enum FuzzTargets {
    /// Client WebSocket frames: the first byte picks legacy text, legacy binary or v1.
    public static func webSocket(_ input: [UInt8]) {
        guard let selector = input.first else { return }
        let body = Array(input.dropFirst())
        let (payload, proto): (WebSocketPayload, WebSocketProtocol) = switch selector % 3 {
        case 0: (.text(body), .legacy)
        case 1: (.binary(body), .legacy)
        default: (.binary(body), .v1)
        }
        guard let (channel, message) = try? WebSocketCodec.decode(payload, protocol: proto) else { return }
        let again = WebSocketCodec.encode(message, channel: channel, protocol: proto)
        guard let (channel2, message2) = try? WebSocketCodec.decode(again, protocol: proto) else {
            fatalError("a message the codec accepted does not decode after re-encoding")
        }
        precondition(channel2 == channel && message2.msgID == message.msgID && message2.msgType == message.msgType)
    }

    static let signer = MessageSigner(key: "fuzz-key")
    static let unsigned = MessageSigner(key: "")

    /// Kernel ZeroMQ multipart messages. Frames are the input split at 0x00 bytes; bit 0 of the
    /// first byte checks signatures with a key (then almost nothing passes the HMAC), otherwise
    /// unsigned so the parsing behind the check is reached; bit 1 prepends the delimiter.
    public static func wire(_ input: [UInt8]) {
        guard let selector = input.first else { return }
        var frames = input.dropFirst().split(separator: 0, omittingEmptySubsequences: false).map(Array.init)
        if selector & 2 != 0 { frames.insert(WireCodec.delimiter, at: 0) }
        let signer = selector & 1 != 0 ? Self.signer : Self.unsigned
        guard let message = try? WireCodec.decode(frames, signer: signer) else { return }
        let again = WireCodec.encode(message, signer: signer)
        guard let back = try? WireCodec.decode(again, signer: signer) else {
            fatalError("a wire message the codec accepted does not decode after re-encoding")
        }
        precondition(back == message)
    }

    static let keys = try! LauncherKeyPair()
    static let secret = LaunchSecret(base64: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")!

    /// Launcher payloads as the response listener receives them (EG v1 and Ganymede's
    /// authenticated v2, registered or not, required or not), and comm-port commands as
    /// Ganymede's launcher would open them.
    public static func launcher(_ input: [UInt8]) {
        for require in [false, true] {
            _ = try? LauncherPayloadDecoder.decode(input, keys: keys, requireAuthentication: require) { id in
                id == "fuzz-kernel" ? .some(secret) : (id.isEmpty ? nil : .some(nil))
            }
        }
        _ = try? secret.openCommand(String(decoding: input, as: UTF8.self), kernelID: "fuzz-kernel")
    }

    /// REST request bodies, and the strict scanner on its own (the WebSocket hot path uses it
    /// to find a message's members without parsing them).
    public static func restBody(_ input: [UInt8]) {
        _ = try? JSONBody.parseObject(input)
        if let members = try? JSONScanner.topLevelMembers(of: input) {
            for member in members {
                precondition(member.value.lowerBound >= 0 && member.value.upperBound <= input.count)
                _ = try? JSONScanner.validate(input, member.value)
            }
        }
    }
}
