import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// Every error the gateway reports to a client, with its HTTP status.
///
/// Rendered in one place, as EG and KG do (`JSONErrorsMixin.write_error`):
/// `{"reason": <short reason>, "message": <detail>}` with `Content-Type: application/json`.
public struct GatewayError: Error, HTTPResponseError, CustomStringConvertible {
    public let status: HTTPResponse.Status
    public let reason: String
    public let message: String

    public init(_ status: HTTPResponse.Status, reason: String? = nil, _ message: String) {
        self.status = status
        self.reason = reason ?? status.reasonPhrase
        self.message = message
    }

    public var description: String { "\(status.code) \(reason): \(message)" }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        Self.render(status: status, reason: reason, message: message)
    }

    static func render(status: HTTPResponse.Status, reason: String, message: String) -> Response {
        Response(status: status, headers: [.contentType: "application/json"],
                 body: .init(byteBuffer: jsonBody(reason: reason, message: message)))
    }

    static func jsonBody(reason: String, message: String) -> ByteBuffer {
        let body = (try? JSONSerialization.data(withJSONObject: ["reason": reason, "message": message], options: [.sortedKeys]))
            ?? Data(#"{"reason":"Internal Server Error","message":""}"#.utf8)
        return ByteBuffer(bytes: body)
    }

    // Common cases.
    static func notFound(_ message: String) -> GatewayError { .init(.notFound, message) }
    static func badRequest(_ message: String) -> GatewayError { .init(.badRequest, message) }
    static func forbidden(_ message: String) -> GatewayError { .init(.forbidden, message) }
    static func kernelNotFound(_ id: String) -> GatewayError { .init(.notFound, "Kernel does not exist: \(id)") }
    static let unauthorized = GatewayError(.unauthorized, reason: "Unauthorized",
                                           "A valid token is required (Authorization: token <t>, Bearer <t>, or ?token=).")
}

/// Turns every error, including the router's own 404/405 and anything unexpected, into the
/// JSON error body. Nothing leaves the gateway as an empty or HTML error.
struct JSONErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            return Self.render(error, request: request, context: context)
        }
    }

    static func render(_ error: any Error, request: Request, context: Context) -> Response {
        do {
            throw error
        } catch let error as GatewayError {
            // With the request id (hb.request.id) that ties a client's failure to the gateway's log.
            context.logger.log(level: error.status.code >= 500 ? .warning : .debug, "request failed", metadata: [
                "status": "\(error.status.code)", "method": "\(request.method)", "path": "\(request.uri.path)",
                "reason": "\(error.reason)", "detail": "\(error.message)",
            ])
            return GatewayError.render(status: error.status, reason: error.reason, message: error.message)
        } catch let error as HTTPError {
            let message: String = switch error.status {
            case .notFound: "No route for \(request.method) \(request.uri.path)"
            case .methodNotAllowed: "\(request.method) is not allowed on \(request.uri.path)"
            case .contentTooLarge: "Request body is larger than the limit"
            default: error.body ?? ""
            }
            return GatewayError.render(status: error.status, reason: error.status.reasonPhrase, message: message)
        } catch let error as any HTTPResponseError {
            return GatewayError.render(status: error.status, reason: error.status.reasonPhrase, message: "\(error)")
        } catch {
            context.logger.error("unhandled error", metadata: ["error": "\(error)", "path": "\(request.uri.path)"])
            return GatewayError.render(status: .internalServerError, reason: "Internal Server Error", message: "\(error)")
        }
    }
}
