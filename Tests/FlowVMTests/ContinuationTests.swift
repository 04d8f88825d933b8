@testable import FlowVM
import Testing

/// Continuations encode to bytes and back exactly, for any values (checked on seeded random values).
@Suite struct ContinuationTests {
    /// A small deterministic generator, so failures reproduce.
    struct SplitMix: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    static func randomValue(_ g: inout SplitMix, depth: Int = 0) -> Value {
        switch Int.random(in: 0..<(depth > 2 ? 4 : 6), using: &g) {
        case 0: return .null
        case 1: return .bool(Bool.random(using: &g))
        case 2:
            let specials: [Double] = [0, -0.0, .infinity, -.infinity, .greatestFiniteMagnitude, 1e-300, 3.25]
            return .number(Bool.random(using: &g) ? specials.randomElement(using: &g)! : Double.random(in: -1e9...1e9, using: &g))
        case 3:
            let alphabet = Array("aé\u{1F600}\n\"\\0ç漢")
            return .string(String((0..<Int.random(in: 0..<12, using: &g)).map { _ in alphabet.randomElement(using: &g)! }))
        case 4: return .list((0..<Int.random(in: 0..<4, using: &g)).map { _ in randomValue(&g, depth: depth + 1) })
        default:
            var m: [String: Value] = [:]
            for i in 0..<Int.random(in: 0..<4, using: &g) { m["k\(i)"] = randomValue(&g, depth: depth + 1) }
            return .map(m)
        }
    }

    @Test func randomContinuationsRoundTrip() throws {
        var g = SplitMix(state: 42)
        let waits: [Continuation.Status] = [
            .waiting(.input(timeoutAt: nil)), .waiting(.input(timeoutAt: Timestamp(milliseconds: 1_767_614_400_123))),
            .waiting(.timer(at: Timestamp(milliseconds: -5))), .waiting(.event(name: "stripe.paid", key: "cs_1", timeoutAt: nil)),
            .waiting(.handoff(queue: "recepção")), .waiting(.effect(id: UInt64.max)), .ended,
            .failed(FlowVMError(.budgetExhausted, "loop", block: "a")), .failed(FlowVMError(.expression, "x")),
            .failed(FlowVMError(.effectFailed, "http_404: the endpoint answered 404", block: "call", reason: "http_404")),
        ]
        for i in 0..<500 {
            var c = Continuation(programHash: "hash\(i)", variableCount: Int.random(in: 0..<8, using: &g))
            c.variables = c.variables.map { _ in Self.randomValue(&g) }
            c.stack = (0..<Int.random(in: 0..<3, using: &g)).map { _ in Self.randomValue(&g) }
            c.pc = Int.random(in: 0..<100_000, using: &g)
            c.callStack = (0..<Int.random(in: 0..<3, using: &g)).map { _ in Int.random(in: 0..<1000, using: &g) }
            c.block = Int.random(in: -1..<50, using: &g)
            c.step = UInt64.random(in: 0...UInt64.max, using: &g)
            c.status = waits[i % waits.count]
            let decoded = try Continuation(decoding: c.encoded())
            #expect(decoded == c)
            #expect(decoded.encoded() == c.encoded())
        }
    }

    /// A failure's reason is a field of its own: kept as the connector gave it, never cut out of the message; a
    /// continuation written before it existed still reads, without one.
    @Test func aFailuresReasonIsKeptAndOlderFailuresStillRead() throws {
        var c = Continuation(programHash: "h", variableCount: 0)
        c.status = .failed(FlowVMError(.effectFailed, "stripe: card declined: insufficient funds", block: "pay", reason: "stripe_card_declined"))
        let decoded = try Continuation(decoding: c.encoded())
        guard case .failed(let e) = decoded.status else { Issue.record("not failed"); return }
        #expect(e.reason == "stripe_card_declined" && e.value["reason"] == "stripe_card_declined")
        #expect(FlowVMError(.effectFailed, "http_404: not found").value["reason"] == .null, "no reason is read out of a message")

        var old = c
        old.status = .failed(FlowVMError(.effectFailed, "http_404: not found", block: "pay"))
        let bytes = old.encoded()
        guard case .failed(let o) = try Continuation(decoding: bytes).status else { Issue.record("not failed"); return }
        #expect(o.reason == nil && o.message == "http_404: not found" && o.block == "pay")
    }

    @Test func negativeZeroAndNaNKeepTheirBits() throws {
        var c = Continuation(programHash: "h", variableCount: 2)
        c.variables = [.number(-0.0), .number(.nan)]
        let d = try Continuation(decoding: c.encoded())
        guard case .number(let z) = d.variables[0], case .number(let n) = d.variables[1] else {
            Issue.record("numbers expected")
            return
        }
        #expect(z.sign == .minus)
        #expect(n.isNaN)
    }

    @Test func truncatedOrGarbageBytesAreRefused() {
        var c = Continuation(programHash: "h", variableCount: 3)
        c.variables = ["a", ["b": [1, 2]], .null]
        c.status = .waiting(.event(name: "n8n.callback", key: "k", timeoutAt: Timestamp(milliseconds: 9)))
        let bytes = c.encoded()
        for n in 0..<bytes.count {
            #expect(throws: FlowVMError.self) { try Continuation(decoding: Array(bytes.prefix(n))) }
        }
        #expect(throws: FlowVMError.self) { try Continuation(decoding: bytes + [0]) }
        #expect(throws: FlowVMError.self) { try Continuation(decoding: [99] + bytes.dropFirst()) }
    }
}
