@testable import FlowVM
import Testing

@Suite struct VMTests {
    @Test func textThenEnd() throws {
        let h = try Harness("""
            flow: t
            start: hi
            blocks:
              hi:
                text: "Hello {{ contact.name }}"
                next: bye
              bye:
                end: "Bye"
            """)
        #expect(h.texts == ["Hello Ana", "Bye"])
        #expect(h.visited == ["hi", "bye"])
        #expect(h.isEnded)
    }

    @Test func fallingOffTheLastBlockEndsTheFlow() throws {
        let h = try Harness("flow: t\nstart: a\nblocks:\n  a:\n    text: \"only\"\n")
        #expect(h.isEnded)
        #expect(h.texts == ["only"])
    }

    static let askFlow = """
        flow: t
        start: age
        blocks:
          age:
            ask: "Age?"
            save: age
            validate: { type: integer, min: 18, max: 120 }
            invalid: "18 to 120, please"
            retries: 2
            on_invalid: human
            timeout: { after: 30m, next: nudge }
            next: ok
          ok:
            end: "ok {{ age + 1 }}"
          human:
            handoff: reception
            next: back
          back:
            end: "back"
          nudge:
            end: "still there?"
        """

    @Test func askSavesTypedValue() throws {
        var h = try Harness(Self.askFlow)
        #expect(h.texts == ["Age?"])
        #expect(h.continuation.wait == .input(timeoutAt: Harness.epoch.adding(seconds: 1800)))
        try h.say(" 42 ")
        #expect(h.variable("age") == .number(42))
        #expect(h.lastText == "ok 43")
        #expect(h.isEnded)
    }

    @Test func askRetriesThenGoesToOnInvalid() throws {
        var h = try Harness(Self.askFlow)
        try h.say("ten")
        try h.say("7")
        #expect(h.texts == ["Age?", "18 to 120, please", "18 to 120, please"])
        try h.say("17.5")
        #expect(h.visited.last == "human")
        #expect(h.continuation.wait == .handoff(queue: "reception"))
        #expect(h.effects.contains { if case .handoff(_, "reception") = $0 { true } else { false } })
    }

    @Test func askTimeoutFiresOnlyAtTheDeadline() throws {
        var h = try Harness(Self.askFlow)
        #expect(try h.advance(seconds: 1799) == false, "an early timer must be ignored")
        #expect(try h.advance(seconds: 1))
        #expect(h.lastText == "still there?")
        #expect(h.isEnded)
    }

    @Test func retriesWithoutExitFailTheConversation() throws {
        var h = try Harness("""
            flow: t
            start: n
            blocks:
              n:
                ask: "Number?"
                save: n
                validate: number
                retries: 1
            """)
        try h.say("x")
        try h.say("y")
        #expect(h.failure?.code == .inputInvalid)
        #expect(h.failure?.block == "n")
    }

    @Test func askWithoutRetriesReasksForever() throws {
        var h = try Harness("flow: t\nstart: n\nblocks:\n  n:\n    ask: \"Number?\"\n    save: n\n    validate: number\n")
        for _ in 0..<25 { try h.say("nope") }
        #expect(h.texts.count == 26)
        #expect(h.continuation.wait == .input(timeoutAt: nil))
    }

    @Test func buttonsMatchTitleNumberOrPayload() throws {
        let flow = """
            flow: t
            start: pick
            blocks:
              pick:
                ask: "Pick"
                buttons: [{ id: m, title: Manhã }, { id: t, title: Tarde }]
                save: p
                next: done
              done:
                end: "{{ p }}"
            """
        var a = try Harness(flow)
        #expect(a.sent[0].buttons == ["Manhã", "Tarde"])
        try a.say("manha")
        #expect(a.lastText == "Manhã")
        var b = try Harness(flow)
        try b.say("2")
        #expect(b.lastText == "Tarde")
        var c = try Harness(flow)
        try c.say("whatever the label said", payload: "t")
        #expect(c.lastText == "Tarde")
        var d = try Harness(flow)
        try d.say("Noite")
        #expect(d.texts == ["Pick", "Pick"], "a reply that is no choice re-asks")
    }

    @Test func listRowsSaveTheRowID() throws {
        var h = try Harness("""
            flow: t
            start: pick
            blocks:
              pick:
                ask: "Plan?"
                list: { button: Plans, rows: [{ id: basic, title: Basic }, { id: pro, title: Pro, description: "All in" }] }
                save: plan
                next: done
              done:
                end: "{{ plan }}"
            """)
        #expect(h.sent[0].listButton == "Plans")
        #expect(h.sent[0].rows.map(\.title) == ["Basic", "Pro"])
        #expect(h.sent[0].rows[1].description == "All in")
        try h.say("Pro")
        #expect(h.lastText == "pro")
    }

    @Test func branchesTakeTheFirstMatch() throws {
        let flow = """
            flow: t
            start: n
            blocks:
              n:
                ask: "n?"
                save: n
                validate: number
                next:
                  - when: n > 10
                    goto: big
                  - when: n > 5
                    goto: medium
                  - goto: small
              big: { end: big }
              medium: { end: medium }
              small: { end: small }
            """
        for (input, expected) in [("11", "big"), ("6", "medium"), ("5", "small")] {
            var h = try Harness(flow)
            try h.say(input)
            #expect(h.lastText == expected)
        }
    }

    @Test func branchesWithoutDefaultEndTheFlow() throws {
        var h = try Harness("""
            flow: t
            start: n
            blocks:
              n:
                ask: "n?"
                save: n
                validate: number
                next:
                  - when: n > 10
                    goto: big
              big: { end: big }
            """)
        try h.say("1")
        #expect(h.isEnded)
        #expect(h.texts == ["n?"])
    }

    @Test func waitForADuration() throws {
        var h = try Harness("flow: t\nstart: w\nblocks:\n  w:\n    wait: 1d2h\n    next: done\n  done:\n    end: later\n")
        #expect(h.continuation.wait == .timer(at: Harness.epoch.adding(seconds: 93_600)))
        #expect(try h.say("hello?") == false, "messages do not cut a wait short")
        #expect(try h.advance(seconds: 93_599) == false)
        #expect(try h.advance(seconds: 1))
        #expect(h.lastText == "later")
    }

    @Test func waitUntilALocalTime() throws {
        let h = try Harness("""
            flow: t
            start: w
            blocks:
              w:
                wait: { until: "09:00", timezone: America/Sao_Paulo }
            """)
        // 12:00Z is 09:00 in São Paulo (UTC-3): the next 09:00 is tomorrow, 2026-01-06T12:00:00Z.
        #expect(h.continuation.wait == .timer(at: Timestamp(milliseconds: 1_767_700_800_000)))
    }

    @Test func waitUntilAComputedDate() throws {
        let h = try Harness("""
            flow: t
            start: w
            blocks:
              w:
                wait: { until: "{{ date_add(now(), '90m') }}" }
            """)
        #expect(h.continuation.wait == .timer(at: Harness.epoch.adding(seconds: 5400)))
    }

    @Test func badWaitUntilIsARuntimeError() throws {
        let h = try Harness("flow: t\nstart: w\nblocks:\n  w:\n    wait: { until: \"{{ contact.name }}\" }\n")
        #expect(h.failure?.code == .expression)
    }

    static let paymentFlow = """
        flow: t
        start: pay
        blocks:
          pay:
            use: stripe.checkout
            with: { amount: 1500, currency: brl, description: "Order {{ contact.name }}" }
            save: checkout
            on_error: oops
            next: wait
          wait:
            wait_for: { event: stripe.paid, match: checkout.id, timeout: 2d, on_timeout: late }
            save: payment
            next: done
          done:
            end: "paid {{ payment.amount }}"
          late:
            end: "too late"
          oops:
            end: "failed: {{ error.code }} {{ error.block }}"
        """

    @Test func connectorCallAndExternalEvent() throws {
        var h = try Harness(Self.paymentFlow)
        guard case .perform(let id, let action, let parameters) = h.effects.last else {
            Issue.record("expected a perform effect")
            return
        }
        #expect(action == "stripe.checkout")
        #expect(parameters == ["amount": 1500, "currency": "brl", "description": "Order Ana"])
        #expect(h.continuation.wait == .effect(id: id))
        #expect(try h.step(.effectResult(id: id + 1, result: .success(.null))) == false, "results for other effects are ignored")
        try h.answer(.success(["id": "cs_1", "url": "https://pay"]))
        #expect(h.continuation.wait == .event(name: "stripe.paid", key: "cs_1", timeoutAt: Harness.epoch.adding(seconds: 172_800)))
        #expect(try h.step(.external(name: "stripe.paid", key: "cs_2", payload: [:])) == false)
        #expect(try h.step(.external(name: "stripe.failed", key: "cs_1", payload: [:])) == false)
        try h.step(.external(name: "stripe.paid", key: "cs_1", payload: ["amount": 1500]))
        #expect(h.lastText == "paid 1500")
    }

    @Test func externalEventTimeout() throws {
        var h = try Harness(Self.paymentFlow)
        try h.answer(.success(["id": "cs_1"]))
        try h.advance(seconds: 172_800)
        #expect(h.lastText == "too late")
    }

    @Test func connectorFailureGoesToOnError() throws {
        var h = try Harness(Self.paymentFlow)
        try h.answer(.failure(code: "card_declined", message: "declined"))
        #expect(h.lastText == "failed: effect_failed pay")
    }

    @Test func connectorFailureWithoutOnErrorFails() throws {
        var h = try Harness("""
            flow: t
            start: hook
            blocks:
              hook:
                webhook: { url: "https://example.com" }
            """)
        try h.answer(.failure(code: "timeout", message: "no answer in 10s"))
        #expect(h.failure?.code == .effectFailed)
        #expect(h.failure?.message.contains("no answer") == true)
    }

    @Test func aiBlockPassesItsParameters() throws {
        var h = try Harness("""
            flow: t
            start: ai
            blocks:
              ai:
                ai: { prompt: "{{ contact.name }} asks", system: "Be brief", history: 5 }
                save: answer
                next: say
              say:
                end: "{{ answer }}"
            """)
        guard case .perform(_, "ai.chat", let p) = h.effects.last else {
            Issue.record("expected ai.chat")
            return
        }
        #expect(p == ["prompt": "Ana asks", "system": "Be brief", "history": 5])
        try h.answer(.success("Hi Ana"))
        #expect(h.lastText == "Hi Ana")
    }

    @Test func handoffWaitsForHandback() throws {
        var h = try Harness("""
            flow: t
            start: human
            blocks:
              human:
                handoff: { queue: sales, message: "Connecting you" }
                next: after
              after:
                end: "back with the bot"
            """)
        #expect(h.texts == ["Connecting you"])
        #expect(h.continuation.wait == .handoff(queue: "sales"))
        #expect(try h.say("hello agent") == false, "messages during a handoff are for the agent")
        try h.step(.handback)
        #expect(h.lastText == "back with the bot")
    }

    @Test func setGotoAndCall() throws {
        var h = try Harness("""
            flow: t
            start: init
            variables: { total: { type: number, default: 10 } }
            blocks:
              init:
                set: { total: total * 2, label: "'x'" }
                next: sub
              sub:
                call: add_tax
                next: show
              show:
                goto: finish
              add_tax:
                set: { total: total + 1 }
                next: tag
              tag:
                set: { label: "Total {{ total }}" }
              finish:
                end: "{{ label }}"
            """)
        #expect(h.lastText == "Total 21")
        #expect(h.visited == ["init", "sub", "add_tax", "tag", "show", "finish"])
    }

    @Test func runtimeExpressionErrorRoutesToOnError() throws {
        let h = try Harness("""
            flow: t
            start: calc
            blocks:
              calc:
                set: { x: "contact.age / (contact.age - 30)" }
                on_error: oops
                next: done
              done:
                end: "fine"
              oops:
                end: "{{ error.code }}: {{ error.message }}"
            """, contact: ["age": 30])
        #expect(h.lastText == "expression_error: division by zero")
    }

    @Test func runtimeExpressionErrorWithoutOnErrorFails() throws {
        let h = try Harness("flow: t\nstart: a\nblocks:\n  a:\n    end: \"{{ contact.name - 1 }}\"\n")
        #expect(h.failure?.code == .expression)
        #expect(h.failure?.block == "a")
    }

    @Test func theBudgetEndsARunawayTurn() throws {
        // The compiler refuses loops without a wait, so build the runaway program by hand.
        let program = Program(
            name: "spin", sourceFile: "spin", metadata: .null,
            instructions: [.enterBlock(0), .jump(0)],
            constants: [], variables: Program.builtinVariables,
            blocks: [.init(id: "spin", pc: 0, errorHandler: 0)], sourceMap: []
        )
        let h = Harness(program: program, budget: 1000)
        #expect(h.failure?.code == .budgetExhausted, "the budget is not routed to on_error, which could loop again")
        #expect(h.failure?.block == "spin")
    }

    @Test func aSmallBudgetStopsALongButFiniteTurn() throws {
        let h = try Harness("flow: t\nstart: a\nblocks:\n  a:\n    end: \"{{ join(split('abcdefghij', ''), '-') }}\"\n", budget: 3)
        #expect(h.failure?.code == .budgetExhausted)
    }

    @Test func effectIDsKeepGrowingAcrossTurns() throws {
        var h = try Harness("""
            flow: t
            start: a
            blocks:
              a:
                ask: "one"
                save: x
                next: b
              b:
                text: "two {{ x }}"
                next: c
              c:
                webhook: { url: "https://example.com" }
                next: d
              d:
                end: "three"
            """)
        try h.say("hi")
        try h.answer(.success(.null))
        let ids = h.effects.map(\.id)
        #expect(ids == Array(1...UInt64(ids.count)))
        #expect(h.continuation.step == UInt64(ids.count))
    }

    @Test func stepIsDeterministic() throws {
        var a = try Harness(Self.askFlow)
        var b = try Harness(Self.askFlow)
        try a.say("44")
        try b.say("44")
        #expect(a.continuation.encoded() == b.continuation.encoded())
        #expect(a.effects == b.effects)
    }

    @Test func aContinuationFromAnotherProgramIsRefused() throws {
        let a = try Harness("flow: a\nstart: x\nblocks:\n  x:\n    ask: \"?\"\n")
        let b = try Harness("flow: b\nstart: x\nblocks:\n  x:\n    ask: \"!\"\n")
        #expect(throws: FlowVMError.self) { try b.vm.step(a.continuation, event: .message(InboundMessage(text: "hi")), now: Harness.epoch) }
    }

    @Test func eventsAfterTheEndAreIgnored() throws {
        var h = try Harness("flow: t\nstart: a\nblocks:\n  a:\n    end: bye\n")
        #expect(try h.say("hello") == false)
        #expect(h.isEnded)
    }

    /// A `contact:` block changes what the flow sees of its contact at once, and asks the engine to commit the edit.
    @Test func aContactBlockEditsTheContactAndSaysSo() throws {
        let h = try Harness("""
            flow: t
            start: mark
            blocks:
              mark:
                contact:
                  set: { plan: gold, visits: "{{ (contact.attributes.visits ?? 0) + 1 }}", old: null, joined: "2026-12-02" }
                  tag: [vip, "lead-{{ 'x' }}"]
                  untag: prospect
                next: say
              say:
                end: "{{ contact.attributes.plan }} {{ contact.attributes.visits }} {{ join(contact.tags, ',') }} {{ contact.attributes.old ?? 'gone' }} {{ contact.name }}"
            """, contact: ["name": "Ana", "attributes": ["visits": 2, "old": "x"], "tags": ["prospect", "a"]])
        #expect(h.lastText == "gold 3 a,vip,lead-x gone Ana")
        let edits = h.effects.compactMap { e -> ContactPatch? in if case .contact(_, let p) = e { p } else { nil } }
        #expect(edits == [ContactPatch(set: ["plan": "gold", "visits": 3, "joined": "2026-12-02"], unset: ["old"], tag: ["vip", "lead-x"],
                                       untag: ["prospect"])])
    }

    /// A computed tag or name that breaks the rules is a runtime error the block's `on_error` takes, without the
    /// text in the message (it may be what the contact wrote); nothing is edited.
    @Test func aContactEditTheRulesRefuseGoesToOnError() throws {
        var h = try Harness("""
            flow: t
            start: ask
            blocks:
              ask:
                ask: "Interest?"
                save: interest
                next: mark
              mark:
                contact:
                  tag: "interest-{{ interest }}"
                next: ok
                on_error: oops
              ok:
                end: "tagged {{ join(contact.tags, ',') }}"
              oops:
                end: "{{ error.code }}: {{ error.message }}"
            """)
        #expect(try h.say("my secret diagnosis"))
        #expect(h.lastText == "contact_invalid: a tag must be 1 to 64 ASCII letters, digits, '_' or '-', starting with a letter or digit")
        #expect(!h.effects.contains { if case .contact = $0 { true } else { false } })
        var ok = Harness(program: h.vm.program)
        #expect(try ok.say("dental"))
        #expect(ok.lastText == "tagged interest-dental")
    }

    @Test func variablesStartWithTheirDefaults() throws {
        let h = try Harness("""
            flow: t
            start: a
            variables: { tries: { type: number, default: 3 }, tags: { type: list, default: [a, b] }, plan: string }
            blocks:
              a:
                end: "{{ tries }} {{ join(tags, '+') }} {{ plan ?? 'none' }}"
            """)
        #expect(h.lastText == "3 a+b none")
    }
}
