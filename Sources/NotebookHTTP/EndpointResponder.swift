import Foundation
import GatewayServer
import HTTPTypes
import Hummingbird
import NIOCore

/// Answers one request on one notebook generation, as KG's `NotebookAPIHandler._handle_request`:
/// borrow a kernel, run `REQUEST = …`, run the endpoint's cells, run its ResponseInfo cell if
/// any, and return the output (200, `Content-Type: text/plain` unless ResponseInfo says
/// otherwise). A failing cell is a 500 with `Error <ename>: <evalue> \n` as the body.
struct EndpointResponder {
    let settings: NotebookHTTPConfiguration

    func respond(_ request: Request, subpath: [String], generation: NotebookMount.Generation) async throws -> Response {
        let definition = generation.definition
        guard let (endpoint, parameters) = definition.match(subpath) else {
            throw GatewayError(.notFound, "No endpoint at \(request.uri.path)")
        }
        let verb = request.method.rawValue
        guard let source = endpoint.sources[verb] else {
            let allowed = EndpointParser.verbs.filter { endpoint.sources[$0] != nil }.joined(separator: ", ")
            throw GatewayError(.methodNotAllowed, "\(verb) is not supported by \(endpoint.pattern.path) (allowed: \(allowed))")
        }
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: settings.maxBodySize)
        } catch {
            throw GatewayError(.contentTooLarge, "Request body is larger than \(settings.maxBodySize) bytes")
        }
        let bundle = try RequestBundle.make(body: Array(body.readableBytesView), query: request.uri.query,
                                            pathParameters: parameters, headers: request.headers,
                                            hiding: settings.gatewayToken)
        let timeout = endpoint.timeouts[verb] ?? settings.requestTimeout
        let deadline = ContinuousClock.now + timeout
        let runner = try await generation.pool.acquire(timeout: timeout)
        do {
            let response = try await run(runner, bundle: bundle, source: source, responseSource: endpoint.responseSources[verb],
                                         language: definition.language, deadline: deadline)
            await generation.pool.release(runner, .healthy)
            return response
        } catch ExecutionFailure.timedOut {
            await generation.pool.release(runner, .overran)
            throw GatewayError(.gatewayTimeout, reason: "Gateway Timeout",
                               "\(verb) \(endpoint.pattern.path) did not finish within \(timeout)")
        } catch ExecutionFailure.kernelDied(let why) {
            await generation.pool.release(runner, .dead)
            throw GatewayError(.internalServerError, reason: "Kernel died", "The kernel running \(verb) \(endpoint.pattern.path) stopped: \(why)")
        } catch {
            await generation.pool.release(runner, .healthy)
            throw error
        }
    }

    private func run(_ runner: KernelRunner, bundle: OrderedJSON, source: String, responseSource: String?, language: String,
                     deadline: ContinuousClock.Instant) async throws -> Response {
        func remaining() -> Duration { max(.milliseconds(1), deadline - ContinuousClock.now) }
        let assigned = try await runner.execute(RequestBundle.assignment(bundle, language: language), timeout: remaining())
        if let error = assigned.error { return failure(error) }
        let output = try await runner.execute(source, timeout: remaining())
        if let error = output.error { return failure(error) }
        var status = HTTPResponse.Status.ok
        var headers: HTTPFields = [.contentType: "text/plain"]
        if let responseSource {
            let info = try await runner.execute(responseSource, timeout: remaining())
            if let error = info.error { return failure(error) }
            try apply(responseInfo: info.stdout.joined(), status: &status, headers: &headers)
        }
        let text = output.body
        // 204, 304 and 1xx carry no body (tornado asserts the same).
        let bodyless = status.code == 204 || status.code == 304 || status.code < 200
        return Response(status: status, headers: headers,
                        body: .init(byteBuffer: ByteBuffer(string: bodyless ? "" : text)))
    }

    /// The 500 KG sends for a cell error (`CodeExecutionError`), plus the traceback when allowed.
    private func failure(_ error: CellOutput.Failure) -> Response {
        var text = "Error \(error.ename): \(error.evalue) \n"
        if settings.exposeTracebacks, !error.traceback.isEmpty {
            text += Self.strippingANSI(error.traceback.joined(separator: "\n")) + "\n"
        }
        return Response(status: .internalServerError, headers: [.contentType: "text/plain"],
                        body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    static func strippingANSI(_ s: String) -> String {
        var out = ""
        var iterator = s.unicodeScalars.makeIterator()
        while let c = iterator.next() {
            if c == "\u{1B}" {
                // CSI: ESC [ parameters final-byte (0x40–0x7E)
                guard let next = iterator.next() else { break }
                if next == "[" {
                    while let p = iterator.next(), !(0x40...0x7E).contains(p.value) {}
                }
                continue
            }
            out.unicodeScalars.append(c)
        }
        return out
    }

    /// Applies a ResponseInfo cell's stdout: `{"headers": {...}, "status": int}`. Output that is
    /// not such JSON is a 500 naming the problem (KG fails the same way, with a bare 500).
    private func apply(responseInfo text: String, status: inout HTTPResponse.Status, headers: inout HTTPFields) throws {
        guard let info = OrderedJSON.parse(Array(text.utf8)), case .object = info else {
            throw GatewayError(.internalServerError, reason: "Bad ResponseInfo",
                               "The ResponseInfo cell must print a JSON object, got: \(text.prefix(200))")
        }
        if let h = info["headers"] {
            guard case .object(let members) = h else {
                throw GatewayError(.internalServerError, reason: "Bad ResponseInfo", "ResponseInfo 'headers' must be an object")
            }
            for (name, value) in members {
                let text: String
                switch value {
                case .string(let s): text = s
                case .number(let n): text = n
                default:
                    throw GatewayError(.internalServerError, reason: "Bad ResponseInfo", "ResponseInfo header '\(name)' must be a string or number")
                }
                guard let field = HTTPField.Name(name), !text.unicodeScalars.contains(where: { $0 == "\r" || $0 == "\n" || $0 == "\0" }) else {
                    throw GatewayError(.internalServerError, reason: "Bad ResponseInfo", "ResponseInfo header '\(name)' is not a valid HTTP header")
                }
                headers[field] = text
            }
        }
        if let s = info["status"] {
            guard case .number(let n) = s, let code = Int(n), (100...599).contains(code) else {
                throw GatewayError(.internalServerError, reason: "Bad ResponseInfo", "ResponseInfo 'status' must be an integer from 100 to 599")
            }
            status = HTTPResponse.Status(code: code)
        }
    }
}
