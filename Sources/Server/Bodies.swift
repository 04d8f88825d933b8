import FlowEngine
import FlowVM
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

// Typed request and response bodies. A request body is read strictly first (a key repeated in one object, nesting
// past 60 or text that is not UTF-8 JSON is refused, which Foundation's decoder would let through), then decoded
// from that `Value` into its type by `ValueDecoder`, which names the field it refuses; what a field's type cannot
// say (lengths, control characters, NUL) each body checks in `validated()`. Responses encode with sorted keys.
// Errors stay problem+json.

/// A request body: decoded, then checked as a whole.
protocol JSONRequest: Decodable {
    /// The body, checked; throws a 400 `Problem` naming the field.
    func validated() throws -> Self
}

extension JSONRequest {
    func validated() throws -> Self { self }
}

extension Request {
    /// The body as `T`: strict JSON, decoded and validated; a 400 that says which field and why otherwise.
    func decode<T: JSONRequest>(_ type: T.Type, context: FlowlineRequestContext) async throws -> T {
        let value = try Problem.json(try await text(context: context))
        guard case .map = value else { throw Problem(.badRequest, "the body must be a JSON object") }
        return try ValueDecoder().decode(T.self, from: value).validated()
    }
}

/// A response, encoded as JSON with sorted keys; its `CodingKeys` give the API's snake-case names (a key
/// strategy would rename the keys inside `Value` fields too, which are data).
protocol JSONResponse: Encodable {}

extension JSONResponse {
    func response(status: HTTPResponse.Status = .ok) throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Response(status: status, headers: [.contentType: "application/json"],
                        body: .init(byteBuffer: ByteBuffer(bytes: try encoder.encode(self))))
    }
}

// MARK: Decoding a Value

/// Decodes a `Decodable` from a parsed JSON `Value`. Keys are the JSON's own (snake case) unless a type's `CodingKeys`
/// say otherwise. A field given as `null` is refused unless its type takes null (`Value`): an optional field may be
/// left out, not sent empty, so an identifier is never silently nothing. Failures are `Problem(.badRequest)`
/// naming the field's path.
struct ValueDecoder {
    func decode<T: Decodable>(_ type: T.Type, from value: Value) throws -> T {
        if let v = value as? T { return v }
        return try T(from: Node(value: value, codingPath: []))
    }

    static func path(_ codingPath: [any CodingKey]) -> String {
        codingPath.isEmpty ? "the body" : codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }
            .joined(separator: ".").replacingOccurrences(of: ".[", with: "[")
    }

    static func mismatch(_ codingPath: [any CodingKey], _ what: String) -> Problem {
        Problem(.badRequest, "\(path(codingPath)) must be \(what)")
    }

    struct Node: Decoder {
        let value: Value
        let codingPath: [any CodingKey]
        var userInfo: [CodingUserInfoKey: Any] { [:] }

        func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
            guard case .map(let map) = value else { throw ValueDecoder.mismatch(codingPath, "an object") }
            return KeyedDecodingContainer(Keyed<Key>(map: map, codingPath: codingPath))
        }

        func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
            guard case .list(let list) = value else { throw ValueDecoder.mismatch(codingPath, "a list") }
            return Unkeyed(list: list, codingPath: codingPath)
        }

        func singleValueContainer() throws -> any SingleValueDecodingContainer { Single(value: value, codingPath: codingPath) }
    }

    struct Index: CodingKey {
        var intValue: Int?
        var stringValue: String { "\(intValue ?? 0)" }
        init(_ i: Int) { intValue = i }
        init?(intValue: Int) { self.intValue = intValue }
        init?(stringValue: String) { nil }
    }

    struct Keyed<Key: CodingKey>: KeyedDecodingContainerProtocol {
        let map: [String: Value]
        let codingPath: [any CodingKey]

        var allKeys: [Key] { map.keys.compactMap { Key(stringValue: $0) } }
        func contains(_ key: Key) -> Bool { map[key.stringValue] != nil }
        /// Null is not "left out": the field's type decides whether it takes null.
        func decodeNil(forKey key: Key) throws -> Bool { false }

        func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
            guard let value = map[key.stringValue] else {
                throw Problem(.badRequest, "\(ValueDecoder.path(codingPath + [key])) is required")
            }
            if let v = value as? T { return v }
            return try T(from: Node(value: value, codingPath: codingPath + [key]))
        }

        func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
            try Node(value: map[key.stringValue] ?? .null, codingPath: codingPath + [key]).container(keyedBy: type)
        }

        func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
            try Node(value: map[key.stringValue] ?? .null, codingPath: codingPath + [key]).unkeyedContainer()
        }

        func superDecoder() throws -> any Decoder { Node(value: .map(map), codingPath: codingPath) }
        func superDecoder(forKey key: Key) throws -> any Decoder { Node(value: map[key.stringValue] ?? .null, codingPath: codingPath + [key]) }
    }

    struct Unkeyed: UnkeyedDecodingContainer {
        let list: [Value]
        let codingPath: [any CodingKey]
        var currentIndex = 0

        init(list: [Value], codingPath: [any CodingKey]) {
            self.list = list
            self.codingPath = codingPath
        }

        var count: Int? { list.count }
        var isAtEnd: Bool { currentIndex >= list.count }

        mutating func decodeNil() throws -> Bool { false }

        mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
            guard !isAtEnd else { throw Problem(.badRequest, "\(ValueDecoder.path(codingPath)) has too few items") }
            let value = list[currentIndex]
            let path = codingPath + [Index(currentIndex)]
            currentIndex += 1
            if let v = value as? T { return v }
            return try T(from: Node(value: value, codingPath: path))
        }

        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
            let node = Node(value: isAtEnd ? .null : list[currentIndex], codingPath: codingPath + [Index(currentIndex)])
            currentIndex += 1
            return try node.container(keyedBy: type)
        }

        mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
            let node = Node(value: isAtEnd ? .null : list[currentIndex], codingPath: codingPath + [Index(currentIndex)])
            currentIndex += 1
            return try node.unkeyedContainer()
        }

        mutating func superDecoder() throws -> any Decoder {
            let node = Node(value: isAtEnd ? .null : list[currentIndex], codingPath: codingPath + [Index(currentIndex)])
            currentIndex += 1
            return node
        }
    }

    struct Single: SingleValueDecodingContainer {
        let value: Value
        let codingPath: [any CodingKey]

        func decodeNil() -> Bool { value == .null }

        func decode(_ type: Bool.Type) throws -> Bool {
            guard case .bool(let b) = value else { throw ValueDecoder.mismatch(codingPath, "true or false") }
            return b
        }

        func decode(_ type: String.Type) throws -> String {
            guard case .string(let s) = value else { throw ValueDecoder.mismatch(codingPath, "text") }
            return s
        }

        func decode(_ type: Double.Type) throws -> Double {
            guard case .number(let n) = value else { throw ValueDecoder.mismatch(codingPath, "a number") }
            return n
        }

        func decode(_ type: Float.Type) throws -> Float { Float(try decode(Double.self)) }

        func integer<I: FixedWidthInteger>(_ type: I.Type) throws -> I {
            guard case .number(let n) = value, n == n.rounded(), let i = I(exactly: n) else {
                throw ValueDecoder.mismatch(codingPath, "a whole number")
            }
            return i
        }

        func decode(_ type: Int.Type) throws -> Int { try integer(type) }
        func decode(_ type: Int8.Type) throws -> Int8 { try integer(type) }
        func decode(_ type: Int16.Type) throws -> Int16 { try integer(type) }
        func decode(_ type: Int32.Type) throws -> Int32 { try integer(type) }
        func decode(_ type: Int64.Type) throws -> Int64 { try integer(type) }
        func decode(_ type: UInt.Type) throws -> UInt { try integer(type) }
        func decode(_ type: UInt8.Type) throws -> UInt8 { try integer(type) }
        func decode(_ type: UInt16.Type) throws -> UInt16 { try integer(type) }
        func decode(_ type: UInt32.Type) throws -> UInt32 { try integer(type) }
        func decode(_ type: UInt64.Type) throws -> UInt64 { try integer(type) }

        func decode<T: Decodable>(_ type: T.Type) throws -> T {
            if let v = value as? T { return v }
            return try T(from: Node(value: value, codingPath: codingPath))
        }
    }
}

// MARK: Value as a body field

/// Any JSON, kept as it came (a simulation's mocks, a schema) or sent as it is.
extension Value: Codable {
    struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(_ s: String) { stringValue = s }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    public init(from decoder: any Decoder) throws {
        if let node = decoder as? ValueDecoder.Node {
            self = node.value
            return
        }
        if let keyed = try? decoder.container(keyedBy: AnyKey.self) {
            var map: [String: Value] = [:]
            for key in keyed.allKeys { map[key.stringValue] = try keyed.decode(Value.self, forKey: key) }
            self = .map(map)
        } else if var list = try? decoder.unkeyedContainer() {
            var items: [Value] = []
            while !list.isAtEnd { items.append(try list.decode(Value.self)) }
            self = .list(items)
        } else {
            let single = try decoder.singleValueContainer()
            if single.decodeNil() { self = .null }
            else if let b = try? single.decode(Bool.self) { self = .bool(b) }
            else if let n = try? single.decode(Double.self) { self = .number(n) }
            else { self = .string(try single.decode(String.self)) }
        }
    }

    public func encode(to encoder: any Encoder) throws {
        switch self {
        case .null:
            var c = encoder.singleValueContainer()
            try c.encodeNil()
        case .bool(let b):
            var c = encoder.singleValueContainer()
            try c.encode(b)
        case .number(let n):
            var c = encoder.singleValueContainer()
            if n == n.rounded(), abs(n) < 1e15 { try c.encode(Int64(n)) } else { try c.encode(n) }
        case .string(let s):
            var c = encoder.singleValueContainer()
            try c.encode(s)
        case .list(let items):
            var c = encoder.unkeyedContainer()
            for item in items { try c.encode(item) }
        case .map(let map):
            // Keys as they are: a map's keys are data, not Swift names for the encoder to convert.
            var c = encoder.container(keyedBy: AnyKey.self)
            for (key, value) in map { try c.encode(value, forKey: AnyKey(key)) }
        }
    }
}
