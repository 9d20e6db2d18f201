import Foundation

/// The REST API's JSON request bodies (`POST /api/kernels`, `/api/sessions`...), parsed the
/// way every route parses them: strict RFC 8259 (`JSONScanner`) before Foundation, whose Linux
/// parser accepts trailing commas; whitespace only or `null` means "no body" (EG and KG treat an
/// empty POST as "defaults").
public enum JSONBody {
    public enum Failure: Error, Equatable, Sendable {
        case invalidUTF8, invalidJSON, notAnObject
    }

    public static func parseObject(_ bytes: [UInt8]) throws(Failure) -> [String: Any]? {
        if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) { return nil }
        guard String(validatingUTF8: bytes) != nil else { throw .invalidUTF8 }
        let object: Any
        do {
            try JSONScanner.validate(bytes)
            object = try JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])
        } catch {
            throw .invalidJSON
        }
        if object is NSNull { return nil }
        guard let dict = object as? [String: Any] else { throw .notAnObject }
        return dict
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
