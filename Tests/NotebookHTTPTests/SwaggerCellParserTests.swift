import Testing
@testable import NotebookHTTP

/// The cases of KG's `tests/notebook_http/swagger/test_parser.py`, on Ganymede's parser.
@Suite struct SwaggerCellParserTests {
    private let fooDoc = "```\n{\"swagger\":\"2.0\", \"paths\": {\"/foo\": {\"put\": {\"operationId\":\"putFoo\",\"parameters\": [{\"name\": \"bar\"}]},"
        + "\"post\":{\"operationId\":\"postFooBody\"},\"get\": {\"operationId\":\"getFoo\",\"parameters\": [{\"name\": \"bar\"}]}}}}\n```\n"

    @Test func operationAnnotations() throws {
        let p = try SwaggerCellParser(commentPrefix: "#", cells: [fooDoc])
        #expect(p.operationID(of: "#operationId:foo") == "foo")
        #expect(p.operationID(of: "# operationId:foo") == "foo")
        #expect(p.operationID(of: "#operationId: foo ") == "foo")
        #expect(p.operationID(of: "no") == nil)
        #expect(p.operationID(of: "# another comment") == nil)
        #expect(p.responseOperationID(of: "#ResponseInfo operationId:foo") == "foo")
        #expect(p.responseOperationID(of: "# ResponseInfo  operationId: foo") == "foo")
        #expect(p.responseOperationID(of: "# operationId: foo") == nil)
        #expect(p.operationID(of: "# ResponseInfo operationId: foo") == nil)
    }

    @Test func concatenationAndParameterPaths() throws {
        let cells = [fooDoc, "# operationId: postFooBody ", "# unrelated comment ", "# operationId: putFoo",
                     "# operationId: puttFoo", "# operationId: getFoo", "# operationId: putFoo"]
        let p = try SwaggerCellParser(commentPrefix: "#", cells: cells)
        let endpoints = Dictionary(uniqueKeysWithValues: p.endpoints(in: cells).map { ($0.path, $0.sources) })
        #expect(endpoints.count == 2)
        #expect(endpoints["/foo"] == ["POST": "# operationId: postFooBody \n"])
        #expect(endpoints["/foo/:bar"]?["GET"] == "# operationId: getFoo\n")
        #expect(endpoints["/foo/:bar"]?["PUT"] == "# operationId: putFoo\n# operationId: putFoo\n")
        #expect(p.warnings.contains("Operation puttFoo was referenced in a cell but not declared"))
    }

    @Test func sortOrderAsKG() throws {
        let doc = "\n```\n{\"swagger\":\"2.0\",\"paths\":{\"\":{\"post\":{\"operationId\":\"postRoot\",\"parameters\":[{\"name\":\"foo\"}]}},"
            + "\"/hello\":{\"post\":{\"operationId\":\"postHello\",\"parameters\":[{\"name\":\"foo\"}]},\"get\":{\"operationId\":\"getHello\",\"parameters\":[{\"name\":\"foo\"}]}},"
            + "\"/hello/world\":{\"put\":{\"operationId\":\"putWorld\"}}}}\n```\n"
        let cells = [doc, "# operationId:putWorld", "# operationId:getHello", "# operationId:postHello", "# operationId:postRoot"]
        let p = try SwaggerCellParser(commentPrefix: "#", cells: cells)
        #expect(p.endpoints(in: cells).map(\.path) == ["/hello/world", "/hello/:foo", "/:foo"])
    }

    @Test func queryParametersStayOutOfThePath() throws {
        let doc = "```\n{\"swagger\":\"2.0\",\"paths\":{\"/s\":{\"get\":{\"operationId\":\"s\",\"parameters\":[{\"name\":\"q\",\"in\":\"query\"},{\"name\":\"id\",\"in\":\"path\"}]}}}}\n```"
        let p = try SwaggerCellParser(commentPrefix: "#", cells: [doc, "# operationId: s"])
        #expect(p.endpoints(in: ["# operationId: s"]).map(\.path) == ["/s/:id"])
    }

    @Test func laterDocumentsWinMemberByMember() throws {
        let a = "```\n{\"swagger\":\"2.0\",\"info\":{\"title\":\"A\"},\"paths\":{}}\n```"
        let b = "```\n{\"swagger\":\"2.0\",\"paths\":{\"/x\":{\"get\":{\"operationId\":\"x\"}}}}\n```"
        let p = try SwaggerCellParser(commentPrefix: "#", cells: [a, b])
        #expect(p.document["info"]?["title"]?.stringValue == "A")
        #expect(p.endpoints(in: ["# operationId: x"]).map(\.path) == ["/x"])
        #expect(p.swaggerDocument(title: "nb").contains("\"title\": \"A\""))
    }

    @Test func noDocumentIsAnError() {
        #expect(throws: NotebookError.self) { try SwaggerCellParser(commentPrefix: "#", cells: ["# operationId: x", "print(1)"]) }
    }
}
