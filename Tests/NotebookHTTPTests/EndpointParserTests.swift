import Foundation
import NotebookHTTP
import Testing

/// Kernel Gateway's `tests/notebook_http/cell/test_parser.py` and `swagger/test_builders.py`,
/// ported to the Swift parser.
@Suite("Endpoint annotations")
struct EndpointParserTests {
    let parser = EndpointParser(language: "python")

    @Test func recognisesEndpointCells() {
        #expect(parser.endpoint(of: "# GET /yes")! == ("GET", "/yes"))
        #expect(parser.endpoint(of: "#   POST   /a/:b  \nprint(1)")! == ("POST", "/a/:b"))
        #expect(parser.endpoint(of: "# PUT /x/y\r\nprint(1)")! == ("PUT", "/x/y"))
        // re.match semantics: only at the very start, one of the four verbs, a path starting with /.
        #expect(parser.endpoint(of: "print(1)\n# GET /no") == nil)
        #expect(parser.endpoint(of: "#GET /no") == nil)
        #expect(parser.endpoint(of: "# PATCH /no") == nil)
        #expect(parser.endpoint(of: "# GET no") == nil)
        #expect(parser.endpoint(of: "# ResponseInfo GET /no") == nil)
        #expect(parser.endpoint(of: "// GET /no") == nil)
    }

    @Test func recognisesResponseInfoCells() {
        #expect(parser.responseInfo(of: "# ResponseInfo GET /yes")! == ("GET", "/yes"))
        #expect(parser.responseInfo(of: "# GET /yes") == nil)
        #expect(parser.isAnnotated("# ResponseInfo DELETE /x/:id"))
        #expect(!parser.isAnnotated("x = 1  # GET /x"))
    }

    @Test func commentPrefixFollowsTheLanguage() {
        let scala = EndpointParser(language: "scala")
        #expect(scala.endpoint(of: "// GET /yes")! == ("GET", "/yes"))
        #expect(scala.endpoint(of: "# GET /yes") == nil)
        #expect(EndpointParser(language: nil).commentPrefix == "#")
    }

    @Test func concatenatesCellsAndSortsByFirstParameterDepth() {
        let cells = ["# GET /:foo\nprint(1)", "# GET /hello/:name", "# GET /hello/world", "# POST /hello/world\nx = 2",
                     "# GET /hello/world\nprint(2)", "# GET /a/b/:c"]
        let endpoints = parser.endpoints(in: cells)
        #expect(endpoints.map(\.path) == ["/hello/world", "/a/b/:c", "/hello/:name", "/:foo"])
        #expect(endpoints[0].sources["GET"] == "# GET /hello/world\n# GET /hello/world\nprint(2)\n")
        #expect(endpoints[0].sources["POST"] == "# POST /hello/world\nx = 2\n")
    }

    @Test func firstParameterIndex() {
        #expect(EndpointParser.firstParamIndex("/foo/:bar") == 1)
        #expect(EndpointParser.firstParamIndex("/foo/quo/:bar") == 2)
        #expect(EndpointParser.firstParamIndex("/foo/quo/bar") == Int.max)
    }

    @Test func timeoutAnnotation() {
        #expect(parser.timeout(in: "# GET /x\n# Timeout: 2.5\nx") == .milliseconds(2500))
        #expect(parser.timeout(in: "# GET /x\n#Timeout 3s") == .seconds(3))
        #expect(parser.timeout(in: "# GET /x\n# Timeout: soon") == nil)
        #expect(parser.timeout(in: "# GET /x\nx = 1") == nil)
    }

    @Test func pathPatternsMatchWholeSegments() throws {
        let p = try PathPattern("/hello/:name/item-:id")
        #expect(p.parameterNames == ["name", "id"])
        let m = try #require(p.match(["hello", "bob", "item-7"]))
        #expect(m.map(\.name) == ["name", "id"])
        #expect(m.map(\.value) == ["bob", "7"])
        #expect(p.match(["hello", "bob"]) == nil)
        #expect(p.match(["hello", "", "item-7"]) == nil)
        #expect(p.match(["hello", "bob", "item-"]) == nil)
        #expect(p.match(["hello", "bob", "thing-7"]) == nil)
        #expect(throws: NotebookError.self) { try PathPattern("/a/:") }
    }
}

@Suite("Notebook definition")
struct NotebookDefinitionTests {
    func notebook(_ cells: [String], kernel: String? = "python3") -> NotebookDocument {
        var object: [String: Any] = [
            "nbformat": 4, "nbformat_minor": 5,
            "cells": cells.map { ["cell_type": "code", "source": $0, "metadata": [:], "outputs": []] as [String: Any] }
                + [["cell_type": "markdown", "source": ["# GET /markdown\n", "not an endpoint"], "metadata": [:]]],
            "metadata": ["language_info": ["name": "python"]],
        ]
        if let kernel { object["metadata"] = ["kernelspec": ["name": kernel], "language_info": ["name": "python"]] }
        let data = try! JSONSerialization.data(withJSONObject: object)
        return try! NotebookDocument.parse(Array(data))
    }

    @Test func swaggerAsKernelGatewayBuildsIt() throws {
        let doc = notebook(["import json", "name = 'x'", "# GET /name\nprint(name)", "# POST /name\nprint(1)"])
        let def = try NotebookDefinition(document: doc, source: "/srv/simple_api.ipynb", forceKernelName: "")
        #expect(def.swagger == #"{"swagger": "2.0", "paths": {"/name": {"get": {"responses": {"200": {"description": "Success"}}}, "#
            + #""post": {"responses": {"200": {"description": "Success"}}}}}, "info": {"version": "0.0.0", "title": "simple_api"}}"#)
        #expect(def.seedCells == ["import json", "name = 'x'"])
        #expect(def.kernelName == "python3")
    }

    @Test func refusesNotebooksWithoutEndpointsOrKernel() {
        #expect(throws: NotebookError.self) { try NotebookDefinition(document: notebook(["x = 1"]), source: "a.ipynb", forceKernelName: "") }
        #expect(throws: NotebookError.self) {
            try NotebookDefinition(document: notebook(["# GET /x"], kernel: nil), source: "a.ipynb", forceKernelName: "")
        }
        let forced = try? NotebookDefinition(document: notebook(["# GET /x"], kernel: nil), source: "a.ipynb", forceKernelName: "python3")
        #expect(forced?.kernelName == "python3")
    }

    @Test func refusesMalformedNotebooks() {
        for bad in ["", "[]", #"{"nbformat": 3, "cells": []}"#, #"{"nbformat": 4}"#, #"{"nbformat": 4, "cells": [{"source": "x"}]}"#,
                    #"{"nbformat": 4, "cells": [{"cell_type": "code", "source": 7}]}"#] {
            #expect(throws: NotebookError.self, "\(bad)") { try NotebookDocument.parse(Array(bad.utf8)) }
        }
    }
}

@Suite("REQUEST and JSON")
struct RequestBundleTests {
    @Test func pythonDumpsMatchesPython() throws {
        let value = try #require(OrderedJSON.parse(Array(#"{"b": [1, 2.5, true, null], "a": "x\"\\\n\u00e9😀/"}"#.utf8)))
        #expect(value.pythonDumps() == #"{"b": [1, 2.5, true, null], "a": "x\"\\\n\u00e9\ud83d\ude00/"}"#)
        #expect(OrderedJSON.parse(Array("{,}".utf8)) == nil)
        #expect(OrderedJSON.parse(Array("[1,]".utf8)) == nil)
    }

    @Test func assignmentPerLanguage() {
        let bundle = OrderedJSON.object([("body", .string("say \"hi\""))])
        #expect(RequestBundle.assignment(bundle, language: "python") == #"REQUEST = "{\"body\": \"say \\\"hi\\\"\"}""#)
        #expect(RequestBundle.assignment(bundle, language: "Perl").hasPrefix("my $REQUEST = \""))
        #expect(RequestBundle.assignment(bundle, language: "bash").hasPrefix("REQUEST=\""))
    }
}
