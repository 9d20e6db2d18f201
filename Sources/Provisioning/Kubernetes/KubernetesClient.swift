import AsyncHTTPClient
import Foundation
import JupyterProtocol
import NIOCore
import NIOHTTP1
import NIOSSL

/// The few Kubernetes API calls the pod backend makes (core/v1 Pods and Namespaces), over
/// async-http-client with the service account's or kubeconfig's bearer token.
///
/// Paths, verbs, list/watch parameters and the `Status` error body follow the API reference
/// (https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/pod-v1/ and
/// "API Concepts: efficient detection of changes"): a watch is a chunked stream of
/// newline-delimited `{"type": ADDED|MODIFIED|DELETED|ERROR|BOOKMARK, "object": ...}`.
public final class KubernetesClient: Sendable {
    public let configuration: KubernetesConfiguration
    private let http: HTTPClient

    public init(configuration: KubernetesConfiguration) throws {
        self.configuration = configuration
        var tls = TLSConfiguration.makeClientConfiguration()
        if configuration.insecureSkipTLSVerify {
            tls.certificateVerification = .none
        } else if let pem = configuration.caCertificatePEM {
            tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(pem.utf8)))
        }
        var config = HTTPClient.Configuration(tlsConfiguration: tls)
        config.timeout.connect = .seconds(10)
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
    }

    public func shutdown() async {
        try? await http.shutdown()
    }

    /// A failed call: the API's `Status` (reason, message, code) or a transport error.
    public struct APIError: Error, CustomStringConvertible, Sendable {
        public var code: Int
        public var reason: String
        public var message: String
        public var description: String { "Kubernetes API \(code) \(reason): \(message)" }
    }

    // MARK: Pods

    public func createPod(_ pod: JSONValue, namespace: String) async throws -> JSONValue {
        try await call(.POST, "/api/v1/namespaces/\(namespace)/pods", body: pod)
    }

    public func pod(_ name: String, namespace: String) async throws -> JSONValue? {
        do {
            return try await call(.GET, "/api/v1/namespaces/\(namespace)/pods/\(name)")
        } catch let error as APIError where error.code == 404 {
            return nil
        }
    }

    public func pods(namespace: String, labelSelector: String) async throws -> [JSONValue] {
        let list = try await call(.GET, "/api/v1/namespaces/\(namespace)/pods", query: ["labelSelector": labelSelector])
        return list["items"]?.arrayValue ?? []
    }

    /// Deletes a pod; false when it was already gone.
    @discardableResult
    public func deletePod(_ name: String, namespace: String, gracePeriod: Int) async throws -> Bool {
        do {
            _ = try await call(.DELETE, "/api/v1/namespaces/\(namespace)/pods/\(name)",
                               query: ["gracePeriodSeconds": String(gracePeriod)])
            return true
        } catch let error as APIError where error.code == 404 {
            return false
        }
    }

    /// Watches one pod from `resourceVersion` on: each event's type and object, until the
    /// server ends the stream (its `timeoutSeconds`) or the task is cancelled.
    public func watchPod(_ name: String, namespace: String, resourceVersion: String?) -> AsyncThrowingStream<(String, JSONValue), any Error> {
        var query = ["watch": "true", "fieldSelector": "metadata.name=\(name)", "timeoutSeconds": "3600",
                     "allowWatchBookmarks": "false"]
        if let resourceVersion { query["resourceVersion"] = resourceVersion }
        let request = makeRequest(.GET, "/api/v1/namespaces/\(namespace)/pods", query: query, body: nil)
        let http = self.http
        return AsyncThrowingStream { continuation in
            let task = Task {
                do {
                    let response = try await http.execute(request, timeout: .hours(2))
                    guard response.status == .ok else {
                        let body = try await response.body.collect(upTo: 1 << 20)
                        throw Self.apiError(response.status, body)
                    }
                    var pending: [UInt8] = []
                    for try await chunk in response.body {
                        pending += chunk.readableBytesView
                        while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                            let line = Array(pending[..<newline])
                            pending.removeFirst(newline + 1)
                            guard !line.isEmpty, let event = try? JSONDecoder().decode(JSONValue.self, from: Data(line)),
                                  let type = event["type"]?.stringValue, let object = event["object"] else { continue }
                            continuation.yield((type, object))
                        }
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    // MARK: Namespaces

    public func createNamespace(_ name: String, labels: [String: String]) async throws {
        let body: JSONValue = .object([
            "apiVersion": .string("v1"), "kind": .string("Namespace"),
            "metadata": .object(["name": .string(name), "labels": .object(labels.mapValues { .string($0) })]),
        ])
        _ = try await call(.POST, "/api/v1/namespaces", body: body)
    }

    public func deleteNamespace(_ name: String) async throws {
        do {
            _ = try await call(.DELETE, "/api/v1/namespaces/\(name)")
        } catch let error as APIError where error.code == 404 {}
    }

    // MARK: Plumbing

    private func makeRequest(_ method: HTTPMethod, _ path: String, query: [String: String], body: JSONValue?) -> HTTPClientRequest {
        var components = URLComponents(url: configuration.server, resolvingAgainstBaseURL: false)!
        components.percentEncodedPath = components.percentEncodedPath.trimmingSuffix("/") + path
        if !query.isEmpty { components.queryItems = query.sorted { $0.key < $1.key }.map { URLQueryItem(name: $0.key, value: $0.value) } }
        var request = HTTPClientRequest(url: components.string!)
        request.method = method
        request.headers.add(name: "Accept", value: "application/json")
        if let token = configuration.token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        if let body, let data = try? JSONEncoder().encode(body) {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: data))
        }
        return request
    }

    private func call(_ method: HTTPMethod, _ path: String, query: [String: String] = [:], body: JSONValue? = nil) async throws -> JSONValue {
        let response: HTTPClientResponse
        do {
            response = try await http.execute(makeRequest(method, path, query: query, body: body), timeout: .seconds(30))
        } catch {
            throw APIError(code: 0, reason: "Unreachable", message: "\(configuration.server.absoluteString): \(error)")
        }
        let bytes = try await response.body.collect(upTo: 16 << 20)
        guard (200..<300).contains(Int(response.status.code)) else { throw Self.apiError(response.status, bytes) }
        do {
            return try JSONDecoder().decode(JSONValue.self, from: Data(bytes.readableBytesView))
        } catch {
            throw APIError(code: Int(response.status.code), reason: "InvalidResponse", message: "\(method) \(path) answered non-JSON")
        }
    }

    private static func apiError(_ status: HTTPResponseStatus, _ body: ByteBuffer) -> APIError {
        let status400 = Int(status.code)
        if let object = try? JSONDecoder().decode(JSONValue.self, from: Data(body.readableBytesView)), object["kind"]?.stringValue == "Status" {
            return APIError(code: object["code"]?.intValue ?? status400, reason: object["reason"]?.stringValue ?? status.reasonPhrase,
                            message: object["message"]?.stringValue ?? "")
        }
        return APIError(code: status400, reason: status.reasonPhrase, message: String(buffer: body).prefix(300).description)
    }
}

extension JSONValue {
    var arrayValue: [JSONValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    var objectValue: [String: JSONValue]? {
        if case .object(let o) = self { return o }
        return nil
    }

    var intValue: Int? {
        switch self {
        case .int(let i): i
        case .double(let d): Int(exactly: d)
        case .string(let s): Int(s)
        default: nil
        }
    }

    /// `self[a][b][c]`, through objects and (for numeric keys) arrays.
    subscript(path keys: String...) -> JSONValue? {
        var value: JSONValue? = self
        for key in keys {
            if case .array(let a)? = value, let i = Int(key) { value = a.indices.contains(i) ? a[i] : nil } else { value = value?[key] }
        }
        return value
    }
}

private extension String {
    func trimmingSuffix(_ suffix: String) -> String { hasSuffix(suffix) ? String(dropLast(suffix.count)) : self }
}
