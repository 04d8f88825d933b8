import Connectors
import FlowCompiler
import FlowRuntime
import FlowVM
import Testing

@Suite struct ChatSessionTests {
    static let start = Timestamp(milliseconds: 1_767_614_400_000)

    func session(_ yaml: String, mocks: Value = .null) throws -> ChatSession {
        let program = try FlowCompiler(catalog: BuiltinActions.catalog).program(source: yaml, file: "t.yaml")
        return ChatSession(program: program, simulator: Simulator(mocks: mocks), now: Self.start)
    }

    static let flow = """
        flow: t
        start: ask
        blocks:
          ask:
            ask: "Color?"
            buttons: [Red, Blue]
            save: color
            timeout: { after: 10m, next: nudge }
            next: pay
          nudge:
            wait: 1h
            next: ask
          pay:
            use: stripe.checkout
            with: { amount: 100, currency: usd, description: "{{ color }}" }
            save: s
            on_error: human
            next: wait_paid
          wait_paid:
            wait_for: { event: stripe.paid, match: s.id }
            next: done
          human:
            handoff: billing
            next: done
          done:
            end: "Thanks, {{ color }}"
        """

    @Test func printsEverythingOnePerLine() throws {
        var s = try session(Self.flow)
        #expect(s.start() == ["bot: Color? [Red] [Blue]"])
        #expect(s.waitingLine == "waiting: input")
        #expect(s.input("/wait") == [
            "wait: 10m pass with no reply",
            "wait: 1h until 2026-01-05T13:10:00Z",
            "bot: Color? [Red] [Blue]",
        ])
        let lines = s.input("blue")
        #expect(lines.count == 1 && lines[0].hasPrefix("call: stripe.checkout "))
        #expect(lines[0].contains(#""description":"Blue""#))
        #expect(s.waitingLine?.hasPrefix("waiting: event stripe.paid (cs_test_sim") == true)
        #expect(s.input("/event stripe.failed")[0].hasPrefix("note:"))
        #expect(s.input("/event stripe.paid") == ["bot: Thanks, Blue", "end: the flow finished"])
        #expect(s.isFinished)
        #expect(s.waitingLine == nil)
    }

    @Test func mocksOverrideAndFail() throws {
        var s = try session(Self.flow, mocks: ["stripe.checkout": ["error": "card declined"]])
        _ = s.start()
        let lines = s.input("Red")
        #expect(lines == [
            #"call: stripe.checkout {"amount":100,"currency":"usd","description":"Red"} -> error: card declined"#,
            "handoff: queue billing",
        ])
        #expect(s.input("anyone?") == ["note: the flow is not waiting for that"])
        #expect(s.input("/handback") == ["bot: Thanks, Red", "end: the flow finished"])
    }

    @Test func mockSequencesAreUsedInTurn() {
        var sim = Simulator(mocks: ["ai.chat": ["first", "second"]])
        #expect(sim.perform(action: "ai.chat", parameters: [:], id: 1) == .success("first"))
        #expect(sim.perform(action: "ai.chat", parameters: [:], id: 2) == .success("second"))
        #expect(sim.perform(action: "ai.chat", parameters: [:], id: 3) == .success("second"))
        #expect(sim.perform(action: "http.request", parameters: [:], id: 4) != .success("second"))
    }

    @Test func unknownCommandsAreExplained() throws {
        var s = try session(Self.flow)
        _ = s.start()
        #expect(s.input("/dance")[0].hasPrefix("note: unknown command /dance"))
        #expect(s.input("/handback") == ["note: the flow is not waiting for that"])
    }

    @Test func multiLineMessagesStayOnOneLine() throws {
        var s = try session("flow: t\nstart: a\nblocks:\n  a:\n    end: \"one\\ntwo\"\n")
        #expect(s.start() == [#"bot: one\ntwo"#, "end: the flow finished"])
    }

    @Test func builtinActionsHaveObjectSchemas() {
        for a in BuiltinActions.all {
            #expect(a.parameters["type"] == "object", "\(a.name)")
            #expect(a.name.split(separator: ".").count == 2)
        }
    }
}
