import Connectors
import FlowCompiler
@testable import FlowVM
import Testing

/// Drives a compiled flow through the VM the way the engine will, checking on every suspension that the
/// continuation survives encode → decode exactly, and resuming from the decoded copy.
struct Harness {
    let vm: VM
    var continuation: Continuation
    var now: Timestamp
    var sent: [OutboundMessage] = []
    var effects: [Effect] = []
    var visited: [String] = []
    var suspensions = 0

    static let epoch = Timestamp(milliseconds: 1_767_614_400_000)  // 2026-01-05T12:00:00Z, a Monday

    static func compile(_ yaml: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> Program {
        let result = FlowCompiler(catalog: BuiltinActions.catalog).compile(source: yaml, file: "test.yaml")
        if result.hasErrors {
            Issue.record("flow does not compile: \(result.diagnostics.map(\.formatted))", sourceLocation: sourceLocation)
        }
        return try #require(result.program)
    }

    init(_ yaml: String, budget: Int = VM.defaultBudget, contact: Value = ["name": "Ana"],
         sourceLocation: SourceLocation = #_sourceLocation) throws {
        vm = VM(program: try Harness.compile(yaml, sourceLocation: sourceLocation), budget: budget)
        now = Harness.epoch
        continuation = Continuation(programHash: "", variableCount: 0)
        absorb(vm.start(VM.StartContext(contact: contact, conversation: ["id": "c1"]), now: now))
    }

    init(program: Program, budget: Int = VM.defaultBudget) {
        vm = VM(program: program, budget: budget)
        now = Harness.epoch
        continuation = Continuation(programHash: "", variableCount: 0)
        absorb(vm.start(VM.StartContext(), now: now))
    }

    private mutating func absorb(_ r: StepResult) {
        let bytes = r.continuation.encoded()
        let decoded = try? Continuation(decoding: bytes)
        #expect(decoded == r.continuation, "continuation must round-trip at every suspension")
        continuation = decoded ?? r.continuation
        suspensions += 1
        effects += r.effects
        visited += r.visited
        for case .send(_, let m) in r.effects { sent.append(m) }
    }

    /// Applies an event; returns whether it applied (false when the VM ignored it).
    @discardableResult
    mutating func step(_ event: Event) throws -> Bool {
        let r = try vm.step(continuation, event: event, now: now)
        if r.ignored { return false }
        absorb(r)
        return true
    }

    @discardableResult
    mutating func say(_ text: String, payload: String? = nil) throws -> Bool {
        try step(.message(InboundMessage(text: text, payload: payload)))
    }

    /// Moves the clock forward and delivers a timer event.
    @discardableResult
    mutating func advance(seconds: Int64) throws -> Bool {
        now = now.adding(seconds: seconds)
        return try step(.timer)
    }

    /// Answers the pending connector call.
    mutating func answer(_ result: EffectResult) throws {
        guard case .waiting(.effect(let id)) = continuation.status else {
            Issue.record("not waiting for an effect: \(continuation.status)")
            return
        }
        try step(.effectResult(id: id, result: result))
    }

    var texts: [String] { sent.map(\.text) }
    var lastText: String? { sent.last?.text }

    func variable(_ name: String) -> Value {
        guard let i = vm.program.variables.firstIndex(of: name) else { return .null }
        return continuation.variables[i]
    }

    var isEnded: Bool { continuation.status == .ended }
    var failure: FlowVMError? {
        if case .failed(let e) = continuation.status { return e }
        return nil
    }
}

/// Evaluates one expression by compiling a flow that sends it, so tests exercise parse, lowering and VM together.
func evaluate(_ expression: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> String? {
    let h = try Harness("""
        flow: expr
        start: a
        blocks:
          a:
            end: |-
              {{ \(expression) }}
        """, sourceLocation: sourceLocation)
    if let f = h.failure { return "error: \(f.code.rawValue)" }
    return h.lastText
}
