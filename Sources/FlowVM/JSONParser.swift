/// A small strict JSON reader, so the VM needs no Foundation bridging to read JSON.
struct JSONParser {
    private let bytes: [UInt8]
    private var i = 0
    private var depth = 0
    /// Set when a document is refused for a reason worth telling (a repeated key, too deep).
    private(set) var problem: JSONProblem?
    var offset: Int { i }

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    /// Below the VM's own limit, so what arrives still fits once the engine wraps it (a message in `message`).
    static let maxDepth = ValueLimits.maxDepth - 4

    mutating func parseDocument() -> Value? {
        guard let v = parseValue() else { return nil }
        skipSpace()
        return i == bytes.count ? v : nil
    }

    private mutating func skipSpace() {
        while i < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[i]) { i += 1 }
    }

    private mutating func parseValue() -> Value? {
        skipSpace()
        guard i < bytes.count else { return nil }
        switch bytes[i] {
        case UInt8(ascii: "{"): return parseObject()
        case UInt8(ascii: "["): return parseArray()
        case UInt8(ascii: "\""): return parseString().map(Value.string)
        case UInt8(ascii: "t"): return literal("true", .bool(true))
        case UInt8(ascii: "f"): return literal("false", .bool(false))
        case UInt8(ascii: "n"): return literal("null", .null)
        default: return parseNumber()
        }
    }

    private mutating func literal(_ word: String, _ value: Value) -> Value? {
        let w = Array(word.utf8)
        guard i + w.count <= bytes.count, Array(bytes[i..<i + w.count]) == w else { return nil }
        i += w.count
        return value
    }

    private mutating func parseNumber() -> Value? {
        let start = i
        while i < bytes.count, "+-0123456789.eE".utf8.contains(bytes[i]) { i += 1 }
        guard i > start, let n = Double(String(decoding: bytes[start..<i], as: UTF8.self)) else { return nil }
        return .number(n)
    }

    private mutating func parseString() -> String? {
        i += 1
        var scalars = String.UnicodeScalarView()
        var raw: [UInt8] = []
        func flush(_ raw: inout [UInt8], _ scalars: inout String.UnicodeScalarView) {
            scalars.append(contentsOf: String(decoding: raw, as: UTF8.self).unicodeScalars)
            raw.removeAll()
        }
        while i < bytes.count {
            let c = bytes[i]
            if c == UInt8(ascii: "\"") {
                i += 1
                flush(&raw, &scalars)
                return String(scalars)
            }
            if c == UInt8(ascii: "\\") {
                flush(&raw, &scalars)
                i += 1
                guard i < bytes.count else { return nil }
                let e = bytes[i]
                i += 1
                switch e {
                case UInt8(ascii: "n"): scalars.append("\n")
                case UInt8(ascii: "t"): scalars.append("\t")
                case UInt8(ascii: "r"): scalars.append("\r")
                case UInt8(ascii: "b"): scalars.append("\u{08}")
                case UInt8(ascii: "f"): scalars.append("\u{0C}")
                case UInt8(ascii: "u"):
                    guard var code = hex4() else { return nil }
                    if (0xD800..<0xDC00).contains(code), i + 1 < bytes.count, bytes[i] == UInt8(ascii: "\\"),
                       bytes[i + 1] == UInt8(ascii: "u") {
                        i += 2
                        guard let low = hex4() else { return nil }
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    }
                    guard let s = Unicode.Scalar(code) else { return nil }
                    scalars.append(s)
                default: scalars.append(Unicode.Scalar(e))
                }
                continue
            }
            if c < 0x20 { return nil }
            raw.append(c)
            i += 1
        }
        return nil
    }

    private mutating func hex4() -> UInt32? {
        guard i + 4 <= bytes.count, let v = UInt32(String(decoding: bytes[i..<i + 4], as: UTF8.self), radix: 16)
        else { return nil }
        i += 4
        return v
    }

    private mutating func parseArray() -> Value? {
        i += 1
        depth += 1
        defer { depth -= 1 }
        guard depth <= JSONParser.maxDepth else {
            problem = JSONProblem(reason: "arrays and objects nested more than \(JSONParser.maxDepth) deep", offset: i)
            return nil
        }
        var items: [Value] = []
        skipSpace()
        if i < bytes.count, bytes[i] == UInt8(ascii: "]") { i += 1; return .list(items) }
        while true {
            guard let v = parseValue() else { return nil }
            items.append(v)
            skipSpace()
            guard i < bytes.count else { return nil }
            if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
            if bytes[i] == UInt8(ascii: "]") { i += 1; return .list(items) }
            return nil
        }
    }

    private mutating func parseObject() -> Value? {
        i += 1
        depth += 1
        defer { depth -= 1 }
        guard depth <= JSONParser.maxDepth else {
            problem = JSONProblem(reason: "arrays and objects nested more than \(JSONParser.maxDepth) deep", offset: i)
            return nil
        }
        var map: [String: Value] = [:]
        skipSpace()
        if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; return .map(map) }
        while true {
            skipSpace()
            let keyOffset = i
            guard i < bytes.count, bytes[i] == UInt8(ascii: "\""), let key = parseString() else { return nil }
            if map[key] != nil {
                problem = JSONProblem(reason: "the key \"\(key.prefix(40))\" appears twice in one object", offset: keyOffset)
                return nil
            }
            skipSpace()
            guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { return nil }
            i += 1
            guard let v = parseValue() else { return nil }
            map[key] = v
            skipSpace()
            guard i < bytes.count else { return nil }
            if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
            if bytes[i] == UInt8(ascii: "}") { i += 1; return .map(map) }
            return nil
        }
    }
}
