import FlowEngine
import FlowStore
import FlowVM
import FlowlineTestKit
import Testing

/// The engine end to end on each database: ingest, turns, outbox, timers, events, failures, isolation.
@Suite struct EngineTests {
    static let greeter = TestFlows.greeter

    struct Rig {
        let store: SQLStore
        let engine: Engine
        let channel: RecordingChannel
        let clock: TestClock

        init(_ backend: Backend, connectors: [any Connector] = [], failFirst: Int = 0, maxAttempts: Int = 8) async throws {
            store = try await backend.makeStore()
            clock = TestClock()
            channel = RecordingChannel(failFirst: failFirst)
            var config = Engine.Configuration()
            config.delivery = DeliveryPolicy(maxAttempts: maxAttempts, baseDelay: 1, maxDelay: 10, lease: 30)
            engine = Engine(store: store, connectors: ConnectorRegistry([channel] + connectors), configuration: config,
                            clock: { [clock] in clock.now })
            try await store.ensureTenant(id: "t1", name: "Tenant 1")
            try await store.ensureTenant(id: "t2", name: "Tenant 2")
        }

        func publish(_ yaml: String, tenant: String = "t1") async throws {
            try await engine.publish(tenant: tenant, program: try Flows.compile(yaml), source: yaml)
        }
    }

    @Test(arguments: Backend.available)
    func aConversationRunsToItsEnd(_ backend: Backend) async throws {
        let rig = try await Rig(backend)
        try await rig.publish(Self.greeter)
        let r = try await rig.engine.ingest(inbound("oi", from: "5511", id: "m1"))
        guard case .accepted(let id, true) = r else {
            Issue.record("expected a new conversation, got \(r)")
            return
        }
        try await rig.engine.drain()
        #expect(rig.channel.texts(to: "5511") == ["Name?"])
        _ = try await rig.engine.ingest(inbound("Bia", from: "5511", id: "m2"))
        try await rig.engine.drain()
        #expect(rig.channel.texts(to: "5511") == ["Name?", "Hi Bia", "Bye Ana"])
        let c = try #require(try await rig.store.conversation(id: id, tenant: "t1"))
        #expect(c.status == .ended)
        let messages = try await rig.store.messages(conversation: id, tenant: "t1")
        #expect(messages.map(\.direction) == [.inbound, .outbound, .inbound, .outbound, .outbound])
        #expect(messages.map(\.text) == ["oi", "Name?", "Bia", "Hi Bia", "Bye Ana"])
        let traces = try await rig.store.traces(conversation: id, tenant: "t1")
        #expect(traces.map(\.visited) == [["ask"], ["hi", "bye"]])
        #expect(try await rig.store.backlog(now: rig.clock.now) == (0, 0))
        await rig.store.close()
    }

    /// Messages arriving while turns write their contacts' records, on several contacts at once and two workers:
    /// every writer takes conversations before contacts (in one order each), so none waits on another in a circle,
    /// and every edit lands once, in the order the flow made it.
    @Test(arguments: Backend.available)
    func contactEditsAndArrivingMessagesInterleave(_ backend: Backend) async throws {
        let rig = try await Rig(backend)
        try await rig.publish("""
            flow: counter
            trigger: { channel: api }
            start: count
            blocks:
              count:
                contact:
                  set: { seen: "{{ (contact.attributes.seen ?? 0) + 1 }}", last: "{{ message.text }}" }
                  tag: counted
                next: ask
              ask:
                ask: "More?"
                next: count
            """)
        let contacts = (1...6).map { "c\($0)" }, rounds = 8
        try await withThrowingTaskGroup(of: Void.self) { group in
            for c in contacts {
                group.addTask {
                    for i in 0..<rounds { _ = try await rig.engine.ingest(inbound("m\(i)", from: c, id: "\(c)-\(i)")) }
                }
            }
            for _ in 0..<2 { group.addTask { for _ in 0..<100 { _ = try await rig.engine.step() } } }
            try await group.waitForAll()
        }
        try await rig.engine.drain()
        for c in contacts {
            let record = try #require(try await rig.store.contact(tenant: "t1", channel: "api-main", address: c))
            #expect(record.attributes == ["seen": .number(Double(rounds)), "last": .string("m\(rounds - 1)")] && record.tags == ["counted"], "\(c)")
        }
        await rig.store.close()
    }

    /// A contact who writes one of the tenant's opt-out words is opted out on the channel, told so once, and their
    /// open conversation ends (a campaign's follow-up must not reach them); writing again still gets answers.
    @Test(arguments: Backend.available)
    func anOptOutWordOptsTheContactOutOnceAndEndsItsConversation(_ backend: Backend) async throws {
        let rig = try await Rig(backend)
        try await rig.publish(Self.greeter)
        let reply = TenantSettings.defaultOptOutReply
        guard case .accepted(let first, true) = try await rig.engine.ingest(inbound("oi", from: "1", id: "a1")) else {
            Issue.record("the greeter should start")
            return
        }
        try await rig.engine.drain()
        #expect(try await rig.engine.ingest(inbound(" Sair! ", from: "1", id: "a2")) == .optedOut)
        try await rig.engine.drain()
        #expect(rig.channel.texts(to: "1") == ["Name?", reply])
        let ended = try #require(try await rig.store.conversation(id: first, tenant: "t1"))
        #expect(ended.status == .ended && ended.continuation?.status == .ended)
        #expect(try await rig.store.messages(conversation: first, tenant: "t1").map(\.text) == ["oi", "Name?", " Sair! ", reply])
        let record = try #require(try await rig.store.contact(tenant: "t1", channel: "api-main", address: "1"))
        #expect(record.optedOutAt == rig.clock.now && record.revision == 1)

        // Told once; the word again changes nothing and reaches no flow.
        #expect(try await rig.engine.ingest(inbound("STOP", from: "1", id: "a3")) == .optedOut)
        try await rig.engine.drain()
        #expect(rig.channel.texts(to: "1").count == 2)
        #expect(try await rig.store.contact(tenant: "t1", channel: "api-main", address: "1")?.optedOutAt == record.optedOutAt)
        // Writing again is answered: opting out is from what the business starts, not from replies.
        guard case .accepted(_, true) = try await rig.engine.ingest(inbound("oi", from: "1", id: "a4")) else {
            Issue.record("a new message should start the greeter again")
            return
        }
        try await rig.engine.drain()
        #expect(rig.channel.texts(to: "1").last == "Name?")

        // A contact with no conversation at all is told too.
        #expect(try await rig.engine.ingest(inbound("parar", from: "2", id: "b1")) == .optedOut)
        try await rig.engine.drain()
        #expect(rig.channel.texts(to: "2") == [reply])

        // The tenant's own words, and no reply; another tenant keeps the defaults.
        try await rig.engine.saveSettings(TenantSettings(optOutWords: ["Cancelar"], optOutReply: nil), tenant: "t1")
        #expect(try await rig.engine.ingest(inbound("CANCELAR", from: "3", id: "c1")) == .optedOut)
        #expect(try await rig.engine.ingest(inbound("stop", from: "4", id: "d1")) == .unrouted, "no longer one of t1's words")
        #expect(try await rig.engine.ingest(inbound("stop", from: "5", id: "e1", tenant: "t2")) == .optedOut)
        try await rig.engine.drain()
        #expect(rig.channel.texts(to: "3").isEmpty && rig.channel.texts(to: "5") == [reply])
        #expect(try await rig.store.contact(tenant: "t1", channel: "api-main", address: "3")?.optedOutAt != nil)
        #expect(try await rig.store.contact(tenant: "t1", channel: "api-main", address: "4")?.optedOutAt == nil)
        #expect(try await rig.store.backlog(now: rig.clock.now) == (0, 0))
        await rig.store.close()
    }

    /// Past a tenant's retention period, ended conversations lose their messages and traces; open ones, recent ones
    /// and other tenants' keep theirs.
    @Test(arguments: Backend.available)
    func retentionPurgesEndedConversationsMessages(_ backend: Backend) async throws {
        let rig = try await Rig(backend)
        try await rig.publish(Self.greeter)
        try await rig.publish(Self.greeter, tenant: "t2")
        func talk(_ text: String, _ contact: String, _ id: String, tenant: String = "t1") async throws -> String {
            guard case .accepted(let c, _) = try await rig.engine.ingest(inbound(text, from: contact, id: id, tenant: tenant)) else { return "" }
            try await rig.engine.drain()
            return c
        }
        let old = try await talk("oi", "1", "a1")
        _ = try await talk("Bia", "1", "a2")
        let other = try await talk("oi", "9", "z1", tenant: "t2")
        _ = try await talk("Zé", "9", "z2", tenant: "t2")
        rig.clock.advance(seconds: 20 * 86_400)
        let recent = try await talk("oi", "2", "b1")
        _ = try await talk("Caio", "2", "b2")
        let open = try await talk("oi", "3", "c1")
        try await rig.engine.saveSettings(TenantSettings(messageRetentionDays: 15), tenant: "t1")
        rig.clock.advance(seconds: 10 * 86_400)

        #expect(try await rig.engine.maintain() == 5, "the first conversation's five messages")
        #expect(try await rig.store.messages(conversation: old, tenant: "t1").isEmpty)
        #expect(try await rig.store.traces(conversation: old, tenant: "t1").isEmpty)
        #expect(try await rig.store.conversation(id: old, tenant: "t1")?.status == .ended, "the conversation itself stays, for counts")
        #expect(try await rig.store.messages(conversation: recent, tenant: "t1").count == 5)
        #expect(try await rig.store.messages(conversation: open, tenant: "t1").count == 2)
        #expect(try await rig.store.messages(conversation: other, tenant: "t2").count == 5)
        #expect(try await rig.engine.maintain() == 0, "nothing is left to purge")
        await rig.store.close()
    }

    @Test(arguments: Backend.available)
    func duplicatesAndUnroutedMessages(_ backend: Backend) async throws {
        let rig = try await Rig(backend)
        try await rig.publish(Self.greeter)
        #expect(try await rig.engine.ingest(inbound("nothing matches", from: "1", id: "a")) == .unrouted)
        guard case .accepted = try await rig.engine.ingest(inbound("hello", from: "1", id: "b")) else {
            Issue.record("keyword should start the flow")
            return
        }
        #expect(try await rig.engine.ingest(inbound("hello", from: "1", id: "b")) == .duplicate)
        try await rig.engine.drain()
        #expect(rig.channel.texts(to: "1") == ["Name?"], "a repeated provider id is processed once")
        await rig.store.close()
    }

    @Test(arguments: Backend.available)
    func aBurstIsProcessedInOrderAndNothingIsLost(_ backend: Backend) async throws {
        let rig = try await Rig(backend)
        try await rig.publish("""
            flow: echo
            trigger: { channel: api }
            start: first
            blocks:
              first:
                text: "ready"
                next: loop
              loop:
                ask: "say"
                save: said
                next: echo
              echo:
                text: "echo {{ said }}"
                next: loop
            """)
        for i in 0..<30 { _ = try await rig.engine.ingest(inbound("m\(i)", from: "9", id: "b\(i)")) }
        try await rig.engine.drain()
        let texts = rig.channel.texts(to: "9")
        // The first message starts the flow; each later one is answered, in arrival order.
        #expect(texts.filter { $0.hasPrefix("echo") } == (1..<30).map { "echo m\($0)" })
        #expect(rig.channel.duplicates == 0)
        await rig.store.close()
    }

    @Test(arguments: Backend.available)
    func timersFireAtTheirDeadlineNotBefore(_ backend: Backend) async throws {
        let rig = try await Rig(backend)
        try await rig.publish("""
            flow: timer
            trigger: { channel: api }
            start: nap
            blocks:
              nap:
                wait: 1h
                next: up
              up:
                end: "awake"
            """)
        _ = try await rig.engine.ingest(inbound("go", from: "7", id: "t"))
        try await rig.engine.drain()
        rig.clock.advance(seconds: 3599)
        try await rig.engine.drain()
        #expect(rig.channel.texts(to: "7").isEmpty)
        rig.clock.advance(seconds: 1)
        try await rig.engine.drain()
        #expect(rig.channel.texts(to: "7") == ["awake"])
        await rig.store.close()
    }

    /// A message during a `wait:` with `on_message` is heard (the flow goes on from that block, the message in
    /// `message`); without `on_message` it is kept and the wait goes on, as before.
    @Test(arguments: Backend.available)
    func aMessageDuringAWaitGoesToOnMessage(_ backend: Backend) async throws {
        let rig = try await Rig(backend)
        try await rig.publish("""
            flow: patient
            trigger: { channel: api }
            start: pay
            blocks:
              pay:
                text: "Pay when you can"
                next: nap
              nap:
                wait: 2d
                on_message: heard
                next: later
              heard:
                text: "You said: {{ message.text }}"
                next: nap2
              nap2:
                wait: 1h
                next: later
              later:
                end: "Any news?"
            """)
        _ = try await rig.engine.ingest(inbound("go", from: "8", id: "a"))
        try await rig.engine.drain()
        _ = try await rig.engine.ingest(inbound("did my payment go through?", from: "8", id: "b"))
        try await rig.engine.drain()
        #expect(rig.channel.texts(to: "8") == ["Pay when you can", "You said: did my payment go through?"])
        // nap2 has no on_message: a message is kept unanswered and the wait keeps its deadline.
        _ = try await rig.engine.ingest(inbound("hello?", from: "8", id: "c"))
        try await rig.engine.drain()
        #expect(rig.channel.texts(to: "8").count == 2)
        rig.clock.advance(seconds: 3600)
        try await rig.engine.drain()
        #expect(rig.channel.texts(to: "8").last == "Any news?")
        let id = try #require(try await rig.store.conversations(tenant: "t1", status: nil, contact: "8").first?.id)
        #expect(try await rig.store.messages(conversation: id, tenant: "t1").map(\.text).contains("hello?"), "kept in the history")
        await rig.store.close()
    }

    static let payment = """
        flow: pay
        trigger: { channel: api }
        start: checkout
        blocks:
          checkout:
            use: stripe.checkout
            with: { amount: 100, currency: brl, description: "x" }
            save: session
            on_error: sorry
            next: link
          link:
            text: "pay {{ session.url }}"
            next: wait
          wait:
            wait_for: { event: stripe.paid, match: session.id }
            next: thanks
          thanks:
            end: "paid"
          sorry:
            end: "failed {{ error.code }}"
        """

    @Test(arguments: Backend.available)
    func connectorResultsAndExternalEventsResumeTheFlow(_ backend: Backend) async throws {
        let stripe = ScriptedConnector(action: "stripe.checkout", plan: [
            .failure(ConnectorError(code: "rate_limited", message: "slow down", retryable: true, retryAfter: 5)),
            .success(["id": "cs_1", "url": "https://pay/cs_1"]),
        ])
        let rig = try await Rig(backend, connectors: [stripe])
        try await rig.publish(Self.payment)
        guard case .accepted(let id, _) = try await rig.engine.ingest(inbound("buy", from: "3", id: "p")) else {
            Issue.record("not accepted")
            return
        }
        try await rig.engine.drain()
        #expect(stripe.keys.count == 1)
        rig.clock.advance(seconds: 4)
        try await rig.engine.drain()
        #expect(stripe.keys.count == 1, "retry-after is honoured")
        rig.clock.advance(seconds: 1)
        try await rig.engine.drain()
        #expect(stripe.keys == ["\(id):1", "\(id):1"], "retries reuse the idempotency key")
        #expect(rig.channel.texts(to: "3") == ["pay https://pay/cs_1"])
        #expect(try await rig.engine.deliverEvent(tenant: "t1", name: "stripe.paid", key: "cs_other", payload: [:], providerID: "evt_0") == false)
        #expect(try await rig.engine.deliverEvent(tenant: "t2", name: "stripe.paid", key: "cs_1", payload: [:], providerID: "evt_1") == false,
                "another tenant cannot resume this conversation")
        #expect(try await rig.engine.deliverEvent(tenant: "t1", name: "stripe.paid", key: "cs_1", payload: [:], providerID: "evt_1"))
        try await rig.engine.drain()
        #expect(rig.channel.texts(to: "3") == ["pay https://pay/cs_1", "paid"])
        await rig.store.close()
    }

    @Test(arguments: Backend.available)
    func deadLetteredActionsGoToOnError(_ backend: Backend) async throws {
        let stripe = ScriptedConnector(action: "stripe.checkout", plan: [
            .failure(ConnectorError(code: "card_declined", message: "declined", retryable: false)),
        ])
        let rig = try await Rig(backend, connectors: [stripe])
        try await rig.publish(Self.payment)
        _ = try await rig.engine.ingest(inbound("buy", from: "4", id: "d"))
        try await rig.engine.drain()
        #expect(rig.channel.texts(to: "4") == ["failed effect_failed"])
        let dead = try await rig.store.deliveries(tenant: "t1", state: .dead)
        #expect(dead.count == 1 && dead[0].action == "stripe.checkout" && dead[0].lastError?.contains("declined") == true)
        await rig.store.close()
    }

    @Test(arguments: Backend.available)
    func undeliverableMessagesFailTheConversationVisibly(_ backend: Backend) async throws {
        let rig = try await Rig(backend, failFirst: 100, maxAttempts: 3)
        try await rig.publish(Self.greeter)
        let id = try accepted(try await rig.engine.ingest(inbound("oi", from: "5", id: "x"))).conversation
        for _ in 0..<5 {
            try await rig.engine.drain()
            rig.clock.advance(seconds: 20)
        }
        let c = try #require(try await rig.store.conversation(id: id, tenant: "t1"))
        #expect(c.status == .failed)
        #expect(c.failure?.contains("delivery failed") == true)
        #expect(try await rig.store.deliveries(tenant: "t1", state: .dead).first?.attempts == 3)
        await rig.store.close()
    }

    @Test(arguments: Backend.available)
    func runtimeErrorsFailTheConversationWithTheReason(_ backend: Backend) async throws {
        let rig = try await Rig(backend)
        try await rig.publish("""
            flow: broken
            trigger: { channel: api }
            start: a
            blocks:
              a:
                text: "{{ contact.name - 1 }}"
            """)
        let id = try accepted(try await rig.engine.ingest(inbound("x", from: "6", id: "e"))).conversation
        try await rig.engine.drain()
        let c = try #require(try await rig.store.conversation(id: id, tenant: "t1"))
        #expect(c.status == .failed)
        #expect(c.failure?.contains("expression_error") == true)
        #expect(try await rig.store.conversations(tenant: "t1", status: .failed, contact: nil).map(\.id) == [id])
        await rig.store.close()
    }

    @Test(arguments: Backend.available)
    func tenantsAreIsolated(_ backend: Backend) async throws {
        let rig = try await Rig(backend)
        try await rig.publish(Self.greeter)
        let id = try accepted(try await rig.engine.ingest(inbound("oi", from: "8", id: "i"))).conversation
        #expect(try await rig.engine.ingest(inbound("oi", from: "8", id: "i", tenant: "t2")) == .unrouted,
                "t2 has no flows; the same provider id in another tenant is another message")
        #expect(try await rig.store.conversation(id: id, tenant: "t2") == nil)
        #expect(try await rig.store.conversations(tenant: "t2", status: nil, contact: nil).isEmpty)
        #expect(try await rig.store.messages(conversation: id, tenant: "t2").isEmpty)
        #expect(try await rig.store.traces(conversation: id, tenant: "t2").isEmpty)
        await #expect(throws: EngineError.self) { try await rig.engine.handBack(conversation: id, tenant: "t2") }
        await rig.store.close()
    }

    @Test(arguments: Backend.available)
    func handoffAndHandback(_ backend: Backend) async throws {
        let rig = try await Rig(backend)
        try await rig.publish("""
            flow: human
            trigger: { channel: api }
            start: h
            blocks:
              h:
                handoff: { queue: sales, message: "hold on" }
                next: back
              back:
                end: "bot again"
            """)
        let id = try accepted(try await rig.engine.ingest(inbound("help", from: "2", id: "h1"))).conversation
        try await rig.engine.drain()
        #expect(try await rig.store.conversation(id: id, tenant: "t1")?.status == .handoff)
        _ = try await rig.engine.ingest(inbound("is anyone there?", from: "2", id: "h2"))
        try await rig.engine.drain()
        #expect(try await rig.store.messages(conversation: id, tenant: "t1").map(\.text).contains("is anyone there?"),
                "messages to the agent are kept")
        try await rig.engine.handBack(conversation: id, tenant: "t1")
        try await rig.engine.drain()
        #expect(rig.channel.texts(to: "2") == ["hold on", "bot again"])
        await rig.store.close()
    }

    @Test(arguments: Backend.available)
    func messagesAfterTheEndStartANewConversation(_ backend: Backend) async throws {
        let rig = try await Rig(backend)
        try await rig.publish(Self.greeter)
        let (first, started) = try accepted(try await rig.engine.ingest(inbound("oi", from: "5", id: "q1")))
        #expect(started)
        try await rig.engine.drain()
        // Both arrive while the first conversation is open; the first reply ends it, so "hello" is routed afresh.
        _ = try await rig.engine.ingest(inbound("Bia", from: "5", id: "q2"))
        _ = try await rig.engine.ingest(inbound("hello", from: "5", id: "q3"))
        try await rig.engine.drain()
        let all = try await rig.store.conversations(tenant: "t1", status: nil, contact: "5")
        #expect(all.count == 2)
        #expect(all.first { $0.id == first }?.status == .ended)
        #expect(all.contains { $0.id != first && $0.status == .waiting })
        // Sends are ordered per conversation, not across the two, so compare each conversation's own sequence.
        let texts = rig.channel.texts(to: "5")
        #expect(texts.count == 4)
        #expect(texts.filter { $0 != "Name?" } == ["Hi Bia", "Bye Ana"])
        #expect(texts.first == "Name?" && texts.filter { $0 == "Name?" }.count == 2)
        await rig.store.close()
    }

    @Test(arguments: Backend.available)
    func publishingKeepsRunningConversationsOnTheirProgram(_ backend: Backend) async throws {
        let rig = try await Rig(backend)
        try await rig.publish(Self.greeter)
        let id = try accepted(try await rig.engine.ingest(inbound("oi", from: "11", id: "v1"))).conversation
        try await rig.engine.drain()
        let v2 = Self.greeter.replacingOccurrences(of: "Hi {{ name }}", with: "Hello {{ name }}")
        try await rig.publish(v2)
        #expect(try await rig.store.publishedFlows(tenant: "t1").map(\.version) == [2])
        _ = try await rig.engine.ingest(inbound("Caio", from: "11", id: "v2"))
        try await rig.engine.drain()
        #expect(rig.channel.texts(to: "11").contains("Hi Caio"), "the running conversation keeps version 1")
        #expect(try await rig.store.conversation(id: id, tenant: "t1")?.programHash == (try Flows.compile(Self.greeter)).hash)
        await rig.store.close()
    }

    @Test(arguments: Backend.available)
    func migrationsAreIdempotentAndRefuseNewerSchemas(_ backend: Backend) async throws {
        let store = try await backend.makeStore()
        try await store.migrate()
        try await store.markSchemaForTesting(version: SQLStore.schemaVersion + 1)
        do {
            try await store.migrate()
            Issue.record("a newer schema must be refused")
        } catch let e as StoreError {
            #expect(e.code == .schemaTooNew)
        }
        await store.close()
    }

    @Test(arguments: Backend.available)
    func oldTracesArePurged(_ backend: Backend) async throws {
        let rig = try await Rig(backend)
        try await rig.publish(Self.greeter)
        let id = try accepted(try await rig.engine.ingest(inbound("oi", from: "12", id: "tr"))).conversation
        try await rig.engine.drain()
        #expect(try await rig.store.purgeTraces(before: rig.clock.now) == 0)
        #expect(try await rig.store.purgeTraces(before: rig.clock.now.adding(seconds: 1)) == 1)
        #expect(try await rig.store.traces(conversation: id, tenant: "t1").isEmpty)
        await rig.store.close()
    }

    @Test(arguments: Backend.available)
    func failedConversationsCanBeRetriedOrCancelled(_ backend: Backend) async throws {
        let stripe = ScriptedConnector(action: "stripe.checkout", plan: [
            .failure(ConnectorError(code: "invalid", message: "bad key", retryable: false)),
            .success(["id": "cs_9", "url": "https://pay/cs_9"]),
        ])
        let rig = try await Rig(backend, connectors: [stripe])
        try await rig.publish("""
            flow: pay
            trigger: { channel: api }
            start: checkout
            blocks:
              checkout:
                use: stripe.checkout
                with: { amount: 100, currency: brl, description: "x" }
                save: session
                next: link
              link:
                ask: "pay {{ session.url }}"
            """)
        let id = try accepted(try await rig.engine.ingest(inbound("buy", from: "r", id: "r1"))).conversation
        try await rig.engine.drain()
        let failed = try #require(try await rig.store.conversation(id: id, tenant: "t1"))
        #expect(failed.status == .failed)
        #expect(failed.failure?.contains("bad key") == true)
        await #expect(throws: EngineError.self) { try await rig.engine.retry(conversation: id, tenant: "t2") }
        // The operator fixed the key: retry runs the failed block again.
        try await rig.engine.retry(conversation: id, tenant: "t1")
        try await rig.engine.drain()
        #expect(rig.channel.texts(to: "r") == ["pay https://pay/cs_9"])
        #expect(try await rig.store.conversation(id: id, tenant: "t1")?.status == .waiting)
        await #expect(throws: EngineError.self) { try await rig.engine.retry(conversation: id, tenant: "t1") }
        try await rig.engine.cancel(conversation: id, tenant: "t1")
        try await rig.engine.drain()
        #expect(try await rig.store.conversation(id: id, tenant: "t1")?.status == .ended)
        await #expect(throws: EngineError.self) { try await rig.engine.cancel(conversation: id, tenant: "t1") }
        await rig.store.close()
    }

    @Test(arguments: Backend.available)
    func waitingConversationsMigrateByBlockID(_ backend: Backend) async throws {
        let rig = try await Rig(backend)
        let v1 = """
            flow: survey
            trigger: { channel: api }
            start: q1
            blocks:
              q1:
                ask: "Score?"
                save: score
                validate: number
                next: q2
              q2:
                ask: "Why?"
                save: why
                next: done
              done:
                end: "thanks {{ score }}"
            """
        try await rig.publish(v1)
        let atQ2 = try accepted(try await rig.engine.ingest(inbound("go", from: "a", id: "a1"))).conversation
        _ = try await rig.engine.ingest(inbound("9", from: "a", id: "a2"))
        let atQ1 = try accepted(try await rig.engine.ingest(inbound("go", from: "b", id: "b1"))).conversation
        try await rig.engine.drain()
        // v2 rewords q2 and drops q1 altogether.
        let v2 = """
            flow: survey
            trigger: { channel: api }
            variables: { score: number }
            start: q2
            blocks:
              q2:
                ask: "What made you give that score?"
                save: why
                next: done
              done:
                end: "thank you, {{ score ?? 'friend' }}: {{ why }}"
            """
        try await rig.publish(v2)
        let report = try await rig.engine.migrateConversations(tenant: "t1", flow: "survey")
        #expect(report.version == 2)
        #expect(report.moved == [atQ2])
        #expect(report.stayed.map(\.id) == [atQ1])
        #expect(report.stayed.first?.reason.contains("'q1' does not exist") == true)
        _ = try await rig.engine.ingest(inbound("tasty", from: "a", id: "a3"))
        try await rig.engine.drain()
        #expect(rig.channel.texts(to: "a").last == "thank you, 9: tasty", "variables carried over, new program used")
        #expect(try await rig.store.traces(conversation: atQ2, tenant: "t1").contains { $0.event["kind"] == "migrated" })
        await rig.store.close()
    }
}
