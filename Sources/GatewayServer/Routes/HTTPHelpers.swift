import Foundation
import HTTPTypes
import Hummingbird
import JupyterProtocol
import NIOCore

enum HTTPHelpers {
    static let jsonHeaders: HTTPFields = [.contentType: "application/json"]

    static func json(_ object: Any, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) throws -> Response {
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
        var h = jsonHeaders
        h.append(contentsOf: headers)
        return Response(status: status, headers: h, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func json<T: Encodable>(encodable value: T, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = try encoder.encode(value)
        var h = jsonHeaders
        h.append(contentsOf: headers)
        return Response(status: status, headers: h, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// Reads a JSON object body. Empty body: nil. Anything else that is not a JSON object
    /// (bad UTF-8, bad JSON, an array, a string) is a 400 with the reason.
    static func jsonObject(_ request: Request, limit: Int) async throws -> [String: Any]? {
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: limit)
        } catch {
            throw GatewayError(.contentTooLarge, "Request body is larger than \(limit) bytes")
        }
        let bytes = Array(buffer.readableBytesView)
        if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) { return nil }
        guard String(validatingUTF8: bytes) != nil else {
            throw GatewayError.badRequest("Request body is not valid UTF-8")
        }
        let object: Any
        do {
            // Strict RFC 8259 first: Foundation's parser on Linux accepts trailing commas.
            try JSONScanner.validate(bytes)
            object = try JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])
        } catch {
            throw GatewayError.badRequest("Request body is not valid JSON")
        }
        if object is NSNull { return nil }
        guard let dict = object as? [String: Any] else {
            throw GatewayError.badRequest("Request body must be a JSON object")
        }
        return dict
    }

    static func optionalString(_ body: [String: Any]?, _ key: String) throws -> String? {
        guard let value = body?[key], !(value is NSNull) else { return nil }
        guard let s = value as? String else { throw GatewayError.badRequest("'\(key)' must be a string") }
        return s
    }
}

extension String {
    /// Strict UTF-8 decoding: nil for any invalid sequence.
    public init?(validatingUTF8 bytes: [UInt8]) {
        var iterator = bytes.makeIterator()
        var decoder = UTF8()
        var scalars = String.UnicodeScalarView()
        loop: while true {
            switch decoder.decode(&iterator) {
            case .scalarValue(let s): scalars.append(s)
            case .emptyInput: break loop
            case .error: return nil
            }
        }
        self = String(scalars)
    }
}
