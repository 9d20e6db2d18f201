import Testing
@testable import NotebookHTTP

/// Byte layouts as browsers send them (RFC 7578) and as tornado's `parse_multipart_form_data` reads them.
@Suite struct MultipartFormTests {
    /// The fields as the kernel would see them (Python's `json.dumps`).
    private func fields(_ text: String, boundary: String = "XyZ") throws -> String {
        try MultipartForm.fields(Array(text.utf8), contentType: "multipart/form-data; boundary=\(boundary)").pythonDumps()
    }

    @Test func fieldsInOrderRepeatedNamesAsLists() throws {
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"b\"\r\n\r\n2\r\n"
            + "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\nContent-Type: text/plain\r\n\r\nx\r\n"
            + "--XyZ\r\nContent-Disposition: form-data; name=\"b\"\r\n\r\n3\r\n--XyZ--\r\n"
        #expect(try fields(body) == #"{"b": ["2", "3"], "a": ["x"]}"#)
    }

    @Test func uploadsAreLeftOut() throws {
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a;b.txt\"\r\n\r\nfile\r\n"
            + "--XyZ\r\nContent-Disposition: form-data; name=\"k\"\r\n\r\nv\r\n--XyZ--"
        #expect(try fields(body) == #"{"k": ["v"]}"#)
    }

    @Test func quotedParametersAndSemicolonsInQuotes() {
        let p = MultipartForm.parameters(of: #"form-data; name="a;b"; filename="say \"hi\".txt""#)
        #expect(p["name"] == "a;b")
        #expect(p["filename"] == #"say "hi".txt"#)
    }

    @Test func missingFinalBoundaryIsRefused() {
        #expect(throws: (any Error).self) { try fields("--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nv\r\n") }
    }

    @Test func emptyFormIsAnEmptyObject() throws {
        #expect(try fields("--XyZ--\r\n") == "{}")
    }
}
