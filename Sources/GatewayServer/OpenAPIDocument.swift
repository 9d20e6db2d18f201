import Foundation
import Yams

/// The Swagger 2.0 description of what this gateway implements, served at
/// `/api/swagger.yaml` and `/api/swagger.json` (EG and KG serve theirs there, untokened).
/// Unlike theirs, interrupt and restart are listed under `/api/kernels` where they live.
enum OpenAPIDocument {
    static let yaml = """
    swagger: "2.0"
    info:
      title: Ganymede kernel gateway
      description: Jupyter Enterprise Gateway and Kernel Gateway compatible REST API for kernels, kernelspecs and sessions.
      version: "6"
    basePath: /
    produces: [application/json]
    consumes: [application/json]
    securityDefinitions:
      tokenHeader:
        type: apiKey
        name: Authorization
        in: header
        description: "`token <t>` or `Bearer <t>`"
      tokenParam:
        type: apiKey
        name: token
        in: query
    security:
      - tokenHeader: []
      - tokenParam: []
    definitions:
      Error:
        type: object
        required: [reason, message]
        properties:
          reason: {type: string}
          message: {type: string}
      Shares:
        type: object
        properties:
          owner: {type: string}
          users: {type: array, items: {type: string}}
      Kernel:
        type: object
        required: [id, name, last_activity, execution_state, connections]
        properties:
          id: {type: string, format: uuid}
          name: {type: string}
          last_activity: {type: string, description: "YYYY-MM-DDTHH:MM:SS.ffffffZ"}
          execution_state: {type: string}
          connections: {type: integer}
          reason: {type: string}
      KernelSpec:
        type: object
        properties:
          name: {type: string}
          spec:
            type: object
            properties:
              argv: {type: array, items: {type: string}}
              display_name: {type: string}
              language: {type: string}
              interrupt_mode: {type: string}
              env: {type: object, additionalProperties: {type: string}}
              metadata: {type: object}
          resources: {type: object, additionalProperties: {type: string}}
      Session:
        type: object
        properties:
          id: {type: string}
          path: {type: string}
          name: {type: string}
          type: {type: string}
          kernel: {$ref: "#/definitions/Kernel"}
    paths:
      /api:
        get:
          summary: Version information
          responses:
            200:
              description: Versions
              schema: {type: object, properties: {version: {type: string}, gateway_version: {type: string}}}
      /api/kernelspecs:
        get:
          summary: All kernelspecs
          responses:
            200:
              description: Kernelspecs
              schema:
                type: object
                properties:
                  default: {type: string}
                  kernelspecs: {type: object, additionalProperties: {$ref: "#/definitions/KernelSpec"}}
      /api/kernelspecs/{name}:
        parameters: [{name: name, in: path, required: true, type: string}]
        get:
          responses:
            200: {description: The kernelspec, schema: {$ref: "#/definitions/KernelSpec"}}
            404: {description: Unknown kernelspec, schema: {$ref: "#/definitions/Error"}}
      /kernelspecs/{name}/{file}:
        parameters:
          - {name: name, in: path, required: true, type: string}
          - {name: file, in: path, required: true, type: string}
        get:
          produces: [image/png, image/svg+xml, application/octet-stream]
          responses:
            200: {description: The file}
            404: {description: Not found, schema: {$ref: "#/definitions/Error"}}
      /api/kernels:
        get:
          summary: Running kernels (403 when EG_LIST_KERNELS=false)
          responses:
            200: {description: Kernels, schema: {type: array, items: {$ref: "#/definitions/Kernel"}}}
            403: {description: Listing disabled, schema: {$ref: "#/definitions/Error"}}
        post:
          summary: Start a kernel; returns once it answers kernel_info
          parameters:
            - name: body
              in: body
              schema:
                type: object
                properties:
                  name: {type: string}
                  env: {type: object, additionalProperties: {type: string}}
          responses:
            201: {description: Started, headers: {Location: {type: string}}, schema: {$ref: "#/definitions/Kernel"}}
            400: {description: Invalid body or env, schema: {$ref: "#/definitions/Error"}}
            404: {description: Unknown kernelspec, schema: {$ref: "#/definitions/Error"}}
            500: {description: The kernel failed to start, schema: {$ref: "#/definitions/Error"}}
      /api/kernels/{kernel_id}:
        parameters: [{name: kernel_id, in: path, required: true, type: string, format: uuid}]
        get:
          responses:
            200: {description: The kernel, schema: {$ref: "#/definitions/Kernel"}}
            404: {description: Unknown kernel, schema: {$ref: "#/definitions/Error"}}
        delete:
          responses:
            204: {description: Shut down}
            403: {description: The kernel is only shared with the caller, schema: {$ref: "#/definitions/Error"}}
            404: {description: Unknown kernel, schema: {$ref: "#/definitions/Error"}}
      /api/kernels/{kernel_id}/shares:
        parameters: [{name: kernel_id, in: path, required: true, type: string, format: uuid}]
        get:
          summary: Whom the kernel is shared with (Ganymede; named users only)
          responses:
            200: {description: Owner and users, schema: {$ref: "#/definitions/Shares"}}
            404: {description: Unknown kernel, schema: {$ref: "#/definitions/Error"}}
        put:
          summary: Replace whom the kernel is shared with (its owner or an admin)
          parameters:
            - name: body
              in: body
              schema: {type: object, required: [users], properties: {users: {type: array, items: {type: string}, maxItems: 1000}}}
          responses:
            200: {description: Owner and users, schema: {$ref: "#/definitions/Shares"}}
            400: {description: Invalid body, or no named users configured, schema: {$ref: "#/definitions/Error"}}
            403: {description: The kernel is only shared with the caller, schema: {$ref: "#/definitions/Error"}}
            404: {description: Unknown kernel, schema: {$ref: "#/definitions/Error"}}
      /api/kernels/{kernel_id}/interrupt:
        parameters: [{name: kernel_id, in: path, required: true, type: string, format: uuid}]
        post:
          responses:
            204: {description: Interrupted}
            404: {description: Unknown kernel, schema: {$ref: "#/definitions/Error"}}
      /api/kernels/{kernel_id}/restart:
        parameters: [{name: kernel_id, in: path, required: true, type: string, format: uuid}]
        post:
          responses:
            200: {description: Restarted, schema: {$ref: "#/definitions/Kernel"}}
            404: {description: Unknown kernel, schema: {$ref: "#/definitions/Error"}}
      /api/kernels/{kernel_id}/channels:
        parameters:
          - {name: kernel_id, in: path, required: true, type: string, format: uuid}
          - {name: session_id, in: query, type: string}
        get:
          summary: WebSocket to the kernel's channels (legacy JSON, or v1.kernel.websocket.jupyter.org when offered)
          responses:
            101: {description: Switching protocols}
            404: {description: Unknown kernel, schema: {$ref: "#/definitions/Error"}}
      /api/sessions:
        get:
          responses:
            200: {description: Sessions, schema: {type: array, items: {$ref: "#/definitions/Session"}}}
            403: {description: Listing disabled, schema: {$ref: "#/definitions/Error"}}
        post:
          parameters:
            - name: body
              in: body
              schema:
                type: object
                required: [path]
                properties:
                  path: {type: string}
                  type: {type: string}
                  name: {type: string}
                  kernel: {type: object, properties: {name: {type: string}, id: {type: string}}}
          responses:
            201: {description: Created, schema: {$ref: "#/definitions/Session"}}
            400: {description: Invalid body, schema: {$ref: "#/definitions/Error"}}
      /api/sessions/{session_id}:
        parameters: [{name: session_id, in: path, required: true, type: string}]
        get:
          responses:
            200: {description: The session, schema: {$ref: "#/definitions/Session"}}
            404: {description: Unknown session, schema: {$ref: "#/definitions/Error"}}
        patch:
          responses:
            200: {description: Updated, schema: {$ref: "#/definitions/Session"}}
            404: {description: Unknown session, schema: {$ref: "#/definitions/Error"}}
        delete:
          responses:
            204: {description: Deleted}
            404: {description: Unknown session, schema: {$ref: "#/definitions/Error"}}
            410: {description: The session's kernel was already gone, schema: {$ref: "#/definitions/Error"}}
    """

    static func json() throws -> Data {
        let object = try Yams.load(yaml: yaml)
        return try JSONSerialization.data(withJSONObject: jsonCompatible(object as Any), options: [.sortedKeys])
    }

    /// Yams yields Int keys for status codes; JSON wants strings.
    private static func jsonCompatible(_ value: Any) -> Any {
        if let dict = value as? [AnyHashable: Any] {
            var out: [String: Any] = [:]
            for (k, v) in dict { out["\(k)"] = jsonCompatible(v) }
            return out
        }
        if let array = value as? [Any] { return array.map(jsonCompatible) }
        return value
    }
}
