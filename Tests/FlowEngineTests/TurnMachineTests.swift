import FlowEngine
import FlowVM
import Testing

/// The turn lifecycle without any I/O.
@Suite struct TurnMachineTests {
    static let t0 = Timestamp(milliseconds: 1_767_614_400_000)

    static let flow = """
        flow: t
        start: ask
        blocks:
          ask:
            ask: "Name?"
            save: name
            timeout: { after: 10m, next: late }
            next: call
          call:
            webhook: { url: "https://example.com" }
            save: r
            next: done
          done:
            end: "Thanks {{ name }}"
          late:
            end: "Too late"
        """

    func vm() throws -> VM { VM(program: try Flows.compile(Self.flow)) }

    func conversation(_ c: Continuation? = nil) -> ConversationRecord {
        ConversationRecord(id: "c1", tenant: "t", channel: "api", contact: "5", flow: "t", programHash: "",
                           continuation: c, createdAt: Self.t0, updatedAt: Self.t0)
    }

    func message(_ seq: Int64, _ text: String, at seconds: Int64 = 0) -> PendingEvent {
        PendingEvent(sequence: seq, body: .message(InboundMessage(text: text)), receivedAt: Self.t0.adding(seconds: seconds))
    }

    @Test func theTriggerMessageStartsTheFlow() throws {
        let out = TurnMachine.run(.init(conversation: conversation(), events: [message(1, "oi")], now: Self.t0), vm: try vm())
        #expect(out.processed.map(\.disposition) == [.started])
        #expect(out.outbox.map(\.idempotencyKey) == ["c1:1"])
        #expect(out.outbox[0].payload["message"]["text"] == "Name?")
        #expect(out.conversation.status == .waiting)
        #expect(out.dueAt == Self.t0.adding(seconds: 600), "the ask's timeout is the next deadline")
        #expect(out.messages.map(\.direction) == [.inbound, .outbound])
    }

    @Test func messagesQueueBehindAConnectorCall() throws {
        let vm = try vm()
        let started = TurnMachine.run(.init(conversation: conversation(), events: [message(1, "oi")], now: Self.t0), vm: vm)
        // Three messages arrive together: the first answers the ask, the flow then waits on the webhook.
        let burst = TurnMachine.run(.init(conversation: started.conversation,
                                          events: [message(2, "Ana", at: 1), message(3, "extra", at: 2), message(4, "more", at: 3)],
                                          now: Self.t0.adding(seconds: 3)), vm: vm)
        #expect(burst.processed.map(\.sequence) == [2], "later messages stay queued while the flow waits on the connector")
        #expect(burst.outbox.last?.kind == .perform)
        #expect(burst.dueAt == nil, "only the result can move it now")
        let effectID = burst.outbox.last!.effectID
        let result = PendingEvent(sequence: 5, body: .effectResult(id: effectID, result: .success(["ok": true])),
                                  receivedAt: Self.t0.adding(seconds: 4))
        let after = TurnMachine.run(.init(conversation: burst.conversation,
                                          events: [message(3, "extra", at: 2), message(4, "more", at: 3), result],
                                          now: Self.t0.adding(seconds: 4)), vm: vm)
        #expect(after.processed.map(\.sequence) == [5, 3, 4], "the result goes first; the queued messages follow in order")
        #expect(after.processed.map(\.disposition) == [.applied, .reroute, .reroute])
        #expect(after.conversation.status == .ended)
    }

    @Test func aTimerDueBeforeAMessageFiresFirst() throws {
        let vm = try vm()
        let started = TurnMachine.run(.init(conversation: conversation(), events: [message(1, "oi")], now: Self.t0), vm: vm)
        let out = TurnMachine.run(.init(conversation: started.conversation, events: [message(2, "Ana", at: 700)],
                                        now: Self.t0.adding(seconds: 700)), vm: vm)
        #expect(out.traces.first?.event["kind"] == "timer")
        #expect(out.traces.first?.event["at"] == .string(Self.t0.adding(seconds: 600).iso8601), "fired at its deadline")
        #expect(out.outbox.map { $0.payload["message"]["text"] } == ["Too late"])
        #expect(out.processed.map(\.disposition) == [.reroute])
    }

    @Test func nothingFiresEarly() throws {
        let vm = try vm()
        let started = TurnMachine.run(.init(conversation: conversation(), events: [message(1, "oi")], now: Self.t0), vm: vm)
        let out = TurnMachine.run(.init(conversation: started.conversation, events: [], now: Self.t0.adding(seconds: 599)), vm: vm)
        #expect(out.traces.isEmpty && out.outbox.isEmpty)
        #expect(out.dueAt == Self.t0.adding(seconds: 600))
    }

    @Test func debounceGathersABurstIntoOneTurn() throws {
        let program = try Flows.compile(DebounceThroughTheStoreTests.flow)
        let vm = VM(program: program)
        let waiting = TurnMachine.run(.init(conversation: conversation(), events: [message(1, "oi")], now: Self.t0, debounce: 5), vm: vm)
        #expect(waiting.processed.isEmpty, "even the first message waits for the window")
        let started = TurnMachine.run(.init(conversation: conversation(), events: [message(1, "oi")], now: Self.t0.adding(seconds: 5),
                                            debounce: 5), vm: vm)
        #expect(started.processed.map(\.disposition) == [.started])
        let burst = [message(2, "one", at: 10), message(3, "two", at: 11)]
        let early = TurnMachine.run(.init(conversation: started.conversation, events: burst, now: Self.t0.adding(seconds: 12), debounce: 5), vm: vm)
        #expect(early.processed.isEmpty)
        #expect(early.dueAt == Self.t0.adding(seconds: 16), "waits for the window after the last message")
        let later = TurnMachine.run(.init(conversation: started.conversation, events: burst, now: Self.t0.adding(seconds: 16), debounce: 5), vm: vm)
        #expect(later.processed.map(\.sequence) == [2, 3])
        #expect(later.outbox.last?.payload["message"]["text"] == "one\ntwo")
    }

    @Test func aFailedFlowRecordsTheReason() throws {
        let vm = VM(program: try Flows.compile("flow: f\nstart: a\nblocks:\n  a:\n    end: \"{{ 1 - contact.name }}\"\n"))
        let out = TurnMachine.run(.init(conversation: conversation(), events: [message(1, "x")], now: Self.t0, contact: ["name": "Ana"]), vm: vm)
        #expect(out.conversation.status == .failed)
        #expect(out.conversation.failure?.hasPrefix("expression_error") == true)
        #expect(out.dueAt == nil)
    }
}
