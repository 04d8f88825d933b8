/// Appends the compact binary form of programs and continuations: LEB128 integers, length-prefixed text.
struct ByteWriter {
    var bytes: [UInt8] = []

    mutating func u8(_ v: UInt8) { bytes.append(v) }

    mutating func uvarint(_ v: UInt64) {
        var v = v
        while v >= 0x80 {
            bytes.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    mutating func uvarint(_ v: Int) { uvarint(UInt64(v)) }
    mutating func uvarint(_ v: UInt32) { uvarint(UInt64(v)) }

    /// Zig-zag encoded signed integer.
    mutating func svarint(_ v: Int64) { uvarint(UInt64(bitPattern: (v << 1) ^ (v >> 63))) }

    mutating func string(_ s: String) {
        let utf8 = Array(s.utf8)
        uvarint(utf8.count)
        bytes.append(contentsOf: utf8)
    }

    mutating func double(_ d: Double) {
        let bits = d.bitPattern
        for i in 0..<8 { bytes.append(UInt8((bits >> (UInt64(i) * 8)) & 0xFF)) }
    }

    mutating func bool(_ b: Bool) { bytes.append(b ? 1 : 0) }

    mutating func value(_ v: Value) {
        switch v {
        case .null: u8(0)
        case .bool(let b): u8(b ? 2 : 1)
        case .number(let n): u8(3); double(n)
        case .string(let s): u8(4); string(s)
        case .list(let items):
            u8(5)
            uvarint(items.count)
            for item in items { value(item) }
        case .map(let m):
            u8(6)
            uvarint(m.count)
            // Sorted keys keep the encoding, and so a program's hash, deterministic.
            for key in m.keys.sorted() {
                string(key)
                value(m[key]!)
            }
        }
    }
}

/// Reads what `ByteWriter` wrote; every read is bounds-checked and throws `FlowVMError` on bad data.
struct ByteReader {
    let bytes: [UInt8]
    var offset = 0
    private var depth = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var isAtEnd: Bool { offset == bytes.count }

    private func corrupt(_ what: String) -> FlowVMError {
        FlowVMError(.corruptEncoding, "truncated or invalid \(what) at byte \(offset)")
    }

    mutating func u8() throws -> UInt8 {
        guard offset < bytes.count else { throw corrupt("byte") }
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func uvarint() throws -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let b = try u8()
            guard shift < 64 else { throw corrupt("integer") }
            result |= UInt64(b & 0x7F) << shift
            if b & 0x80 == 0 { return result }
            shift += 7
        }
    }

    mutating func u32() throws -> UInt32 {
        let v = try uvarint()
        guard v <= UInt64(UInt32.max) else { throw corrupt("operand") }
        return UInt32(v)
    }

    mutating func int() throws -> Int {
        let v = try uvarint()
        guard v <= UInt64(Int32.max) else { throw corrupt("count") }
        return Int(v)
    }

    mutating func svarint() throws -> Int64 {
        let u = try uvarint()
        return Int64(bitPattern: (u >> 1) ^ (0 &- (u & 1)))
    }

    mutating func string() throws -> String {
        let n = try int()
        guard offset + n <= bytes.count else { throw corrupt("text") }
        defer { offset += n }
        return String(decoding: bytes[offset..<offset + n], as: UTF8.self)
    }

    mutating func double() throws -> Double {
        guard offset + 8 <= bytes.count else { throw corrupt("number") }
        var bits: UInt64 = 0
        for i in 0..<8 { bits |= UInt64(bytes[offset + i]) << (UInt64(i) * 8) }
        offset += 8
        return Double(bitPattern: bits)
    }

    mutating func bool() throws -> Bool { try u8() != 0 }

    mutating func value() throws -> Value {
        depth += 1
        defer { depth -= 1 }
        guard depth < 256 else { throw corrupt("value nesting") }
        switch try u8() {
        case 0: return .null
        case 1: return .bool(false)
        case 2: return .bool(true)
        case 3: return .number(try double())
        case 4: return .string(try string())
        case 5:
            let n = try int()
            var items: [Value] = []
            items.reserveCapacity(Swift.min(n, 1024))
            for _ in 0..<n { items.append(try value()) }
            return .list(items)
        case 6:
            let n = try int()
            var m: [String: Value] = [:]
            for _ in 0..<n {
                let k = try string()
                m[k] = try value()
            }
            return .map(m)
        default: throw corrupt("value tag")
        }
    }
}
