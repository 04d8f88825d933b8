import Connectors
import FlowCompiler
@testable import FlowVM
import Foundation
import Testing

/// Values are bounded where they are made, so a flow (or a contact) can fail only its own conversation, cleanly,
/// and everything a conversation keeps can be stored and read back.
@Suite struct ValueLimitsTests {
    /// `set: {x: "[x, x]"}` repeated: 2^24 leaves took 11 GB. Now the list is refused when it passes the node limit.
    @Test func exponentialValuesFailTheirConversation() throws {
        var blocks = ""
        for i in 0..<24 { blocks += "  d\(i):\n    set: {x: \"[x, x]\"}\n    next: d\(i + 1)\n" }
        let h = try Harness("""
            flow: grow
            variables: {x: {type: any, default: 1}}
            start: d0
            blocks:
            \(blocks)  d24:
                end: "never"
            """)
        let failure = try #require(h.failure)
        #expect(failure.code == .valueTooLarge)
        #expect(failure.block == "d15", "after d15 x holds 2^17 - 1 items, the first past \(ValueLimits.maxNodes)")
        #expect(h.texts.isEmpty)
    }

    @Test func deepValuesFailBeforeTheyCannotBeStored() throws {
        var blocks = ""
        for i in 0..<100 { blocks += "  d\(i):\n    set: {x: \"[x]\"}\n    next: d\(i + 1)\n" }
        let h = try Harness("""
            flow: deep
            start: d0
            blocks:
            \(blocks)  d100:
                end: "never"
            """)
        let failure = try #require(h.failure)
        #expect(failure.code == .valueTooLarge)
        #expect(failure.message.contains("nested more than \(ValueLimits.maxDepth)"))
        // The deepest list the flow could make is stored and read back (Harness round-trips every suspension).
        var deepest = Value.null
        for _ in 0..<(ValueLimits.maxDepth) { deepest = .list([deepest]) }
        var c = Continuation(programHash: "p", variableCount: 1)
        c.variables[0] = deepest
        #expect(try Continuation(decoding: c.encoded()) == c)
    }

    @Test func anOnErrorBlockCatchesAValueThatGrewTooLarge() throws {
        // Ten times larger per block: the fifth list holds 10^5 texts, past the node limit.
        var blocks = ""
        for i in 0..<5 {
            blocks += "  a\(i):\n    set: {x: \"[x, x, x, x, x, x, x, x, x, x]\"}\n    next: \(i < 4 ? "a\(i + 1)" : "done")\n    on_error: oops\n"
        }
        let h = try Harness("""
            flow: grow
            variables: {x: {type: any, default: "0123456789"}}
            start: a0
            blocks:
            \(blocks)  oops:
                end: "too big: {{ error.code }}"
              done:
                end: "never"
            """)
        #expect(h.lastText == "too big: value_too_large")
    }

    @Test func aConnectorResultPastTheLimitsFailsCleanly() throws {
        var h = try Harness("""
            flow: f
            start: call
            blocks:
              call:
                webhook: {url: "https://example.com/x"}
                save: answer
                next: done
              done:
                end: "ok"
            """)
        var deep = Value.string("leaf")
        for _ in 0..<100 { deep = .map(["a": deep]) }
        try h.answer(.success(deep))
        #expect(h.failure?.code == .valueTooLarge)
    }

    @Test func whatAConversationKeepsIsBoundedAsAWhole() throws {
        // 64 KiB texts pass one by one; kept together across a wait they would pass the continuation's limit.
        var blocks = ""
        for i in 0..<70 {
            blocks += "  s\(i):\n    set: {v\(i): \"{{ pad }}\"}\n    next: s\(i + 1)\n"
        }
        let h = try Harness("""
            flow: keep
            start: p0
            blocks:
              p0:
                set: {pad: "{{ 'x' }}"}
                next: p1
              p1:
                set: {pad: "{{ pad + pad + pad + pad + pad + pad + pad + pad }}"}
                next: p2
              p2:
                set: {pad: "{{ pad + pad + pad + pad + pad + pad + pad + pad }}"}
                next: p3
              p3:
                set: {pad: "{{ pad + pad + pad + pad + pad + pad + pad + pad }}"}
                next: p4
              p4:
                set: {pad: "{{ pad + pad + pad + pad + pad + pad + pad + pad }}"}
                next: p5
              p5:
                set: {pad: "{{ pad + pad + pad + pad + pad + pad + pad + pad }}"}
                next: p6
              p6:
                set: {pad: "{{ pad + pad }}"}
                next: s0
            \(blocks)  s70:
                ask: "wait here"
                save: reply
                next: end
              end:
                end: "bye"
            """)
        let failure = try #require(h.failure)
        #expect(failure.code == .valueTooLarge)
        #expect(failure.message.contains("between turns"))
    }

    @Test func measuringStopsAtTheLimitWithoutRecursion() {
        // A list nested 100,000 deep (built without recursion) is refused at the depth limit, not by a crash.
        var v = Value.null
        for _ in 0..<100_000 { v = .list([v]) }
        #expect(throws: FlowVMError.self) { try ValueLimits.measure(v) }
        // Dropping such a value recurses in Swift's own deinit; unwrap it iteratively instead.
        while case .list(let items) = v, let inner = items.first { v = inner }
    }

    @Test func jsonRefusesRepeatedKeysAndDepth() {
        guard case .failure(let p) = Value.parse(json: #"{"role": "agent", "role": "admin"}"#) else {
            Issue.record("a repeated key must be refused")
            return
        }
        #expect(p.reason.contains("\"role\" appears twice"))
        #expect(Value(json: #"{"a": {"b": 1, "b": 2}}"#) == nil)
        #expect(Value(json: #"[{"b": 1}, {"b": 2}]"#) != nil, "the same key in two objects is fine")
        let deep = String(repeating: "[", count: 61) + String(repeating: "]", count: 61)
        guard case .failure(let d) = Value.parse(json: deep) else {
            Issue.record("61 levels must be refused")
            return
        }
        #expect(d.reason.contains("nested more than"))
        #expect(Value(json: String(repeating: "[", count: 50) + String(repeating: "]", count: 50)) != nil)
    }

    @Test func catastrophicPatternsMeetTheirBudget() throws {
        let subject = String(repeating: "x", count: 1_000)
        let started = ContinuousClock.now
        #expect(throws: FlowVMError.self) { try Operators.regexMatch(subject, "(x+x+)+y") }
        #expect(ContinuousClock.now - started < .seconds(2), "stopped at its budget, not after the heat death of the universe")
        // Quadratic on a long reply: also stopped.
        #expect(throws: FlowVMError.self) { try Operators.regexMatch(String(repeating: "a", count: 9_990) + "!", ".*@.*") }
        // Linear patterns on the longest subject are well within it.
        #expect(try Operators.regexMatch(String(repeating: "a", count: 9_990) + "@b", "^[^@]+@[a-z]+$").matched)
        #expect(try Operators.regexMatch("12345", #"^\d{5}$"#).matched)
        #expect(try !Operators.regexMatch("1234", #"^\d{5}$"#).matched)
    }

    /// An ask whose pattern blows its budget treats the reply as invalid (asks again); the conversation goes on.
    /// The compiler refuses such a pattern, so the spec is built as an older program might hold it.
    @Test func aReplyThePatternCannotJudgeInTimeIsInvalid() throws {
        let spec: Value = ["type": "text", "pattern": "(x+x+)+y"]
        let started = ContinuousClock.now
        #expect(Validation.check(["text": .string(String(repeating: "x", count: 2_000))], spec: spec) == nil)
        #expect(ContinuousClock.now - started < .seconds(2))
        #expect(Validation.check(["text": "xxy"], spec: spec) == .string("xxy"))
    }
}
