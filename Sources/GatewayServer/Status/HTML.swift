import Foundation

/// Escaping for the server-rendered status page. Kernel names, users and reasons come from
/// clients and kernelspec files, so every dynamic string goes through `escape` (text and
/// quoted attribute values alike) and every URL query value through `queryValue`.
enum HTML {
    /// The five characters that matter in text and in quoted attributes (OWASP's rule #1).
    static func escape(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for c in s.unicodeScalars {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    private static let unreserved = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")

    /// Percent-encodes a query parameter value (RFC 3986 unreserved characters pass).
    static func queryValue(_ s: String) -> String {
        s.addingPercentEncoding(withAllowedCharacters: unreserved) ?? ""
    }
}
