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
        do throws(JSONBody.Failure) {
            return try JSONBody.parseObject(Array(buffer.readableBytesView))
        } catch {
            switch error {
            case .invalidUTF8: throw GatewayError.badRequest("Request body is not valid UTF-8")
            case .invalidJSON: throw GatewayError.badRequest("Request body is not valid JSON")
            case .notAnObject: throw GatewayError.badRequest("Request body must be a JSON object")
            }
        }
    }

    static func optionalString(_ body: [String: Any]?, _ key: String) throws -> String? {
        guard let value = body?[key], !(value is NSNull) else { return nil }
        guard let s = value as? String else { throw GatewayError.badRequest("'\(key)' must be a string") }
        return s
    }
}
