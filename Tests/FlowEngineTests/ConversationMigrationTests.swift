import FlowEngine
import FlowVM
import Testing

@Suite struct ConversationMigrationTests {
    static let v1 = """
        flow: m
        start: a
        blocks:
          a:
            call: sub
            next: b
          sub:
            ask: "inside"
            save: x
          b:
            webhook: { url: "https://example.com" }
            next: c
          c:
            wait_for: { event: paid, match: "'k'" }
        """

    func start(_ yaml: String) throws -> (VM, Continuation) {
        let vm = VM(program: try Flows.compile(yaml))
        return (vm, vm.start(VM.StartContext(), now: Timestamp(milliseconds: 0)).continuation)
    }

    @Test func insideACallStays() throws {
        let (vm, c) = try start(Self.v1)
        let v2 = try Flows.compile(Self.v1.replacingOccurrences(of: "inside", with: "still inside"))
        guard case .failure(let r) = ConversationMigration.map(c, from: vm.program, to: v2) else {
            Issue.record("a conversation inside call: must stay")
            return
        }
        #expect(r.reason.contains("call:"))
    }

    @Test func midConnectorCallStaysAndEventNamesMustMatch() throws {
        let (vm, c0) = try start(Self.v1)
        let atWebhook = try vm.step(c0, event: .message(InboundMessage(text: "hi")), now: Timestamp(milliseconds: 1)).continuation
        let v2 = try Flows.compile(Self.v1.replacingOccurrences(of: "event: paid", with: "event: settled"))
        guard case .failure(let r) = ConversationMigration.map(atWebhook, from: vm.program, to: v2) else {
            Issue.record("mid-call must stay")
            return
        }
        #expect(r.reason.contains("connector call"))
        let atEvent = try vm.step(atWebhook, event: .effectResult(id: 2, result: .success(.null)), now: Timestamp(milliseconds: 2)).continuation
        #expect(atEvent.wait == .event(name: "paid", key: "k", timeoutAt: nil))
        guard case .failure(let r2) = ConversationMigration.map(atEvent, from: vm.program, to: v2) else {
            Issue.record("a different event is a different wait")
            return
        }
        #expect(r2.reason.contains("no longer waits the same way"))
        let same = try Flows.compile(Self.v1 + "\n  extra:\n    end: true\n")
        guard case .success(let moved) = ConversationMigration.map(atEvent, from: vm.program, to: same) else {
            Issue.record("an unchanged block moves")
            return
        }
        #expect(moved.wait == atEvent.wait)
        #expect(moved.programHash == same.hash)
    }
}
