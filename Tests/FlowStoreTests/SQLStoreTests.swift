import FlowEngine
import FlowStore
import FlowVM
import FlowlineTestKit
import Testing

/// The server's list queries: filtered and paged in SQL, on both databases.
@Suite struct SQLStoreTests {
    @Test(arguments: Backend.available)
    func listsAreFilteredAndPagedInTheDatabase(_ backend: Backend) async throws {
        let store = try await backend.makeStore()
        for t in ["t1", "t2"] { try await store.ensureTenant(id: t, name: t) }
        let engine = Engine(store: store, connectors: ConnectorRegistry())
        let program = try TestFlows.compile(TestFlows.greeter)
        _ = try await engine.publish(tenant: "t1", program: program, source: TestFlows.greeter)
        for name in ["zeta", "alpha"] { _ = try await store.saveDraft(tenant: "t1", name: name, source: "x", at: engine.now) }
        _ = try await store.saveDraft(tenant: "t2", name: "other", source: "x", at: engine.now)

        let flows = try await store.flowNames(tenant: "t1", limit: 2, offset: 1)
        #expect(flows.total == 3, "drafts and published flows, each name once")
        #expect(flows.items == ["greeter", "zeta"])

        for (i, contact) in ["a", "b", "c", "d"].enumerated() {
            _ = try await engine.ingest(TestFlows.inbound("hello", from: contact, id: "m\(i)", channel: i < 3 ? "web" : "app"))
        }
        _ = try await engine.ingest(TestFlows.inbound("hello", from: "a", id: "x", tenant: "t2"))
        let web = try await store.conversations(tenant: "t1", filter: .init(channel: "web"), limit: 2, offset: 0)
        #expect(web.total == 3)
        #expect(web.items.map(\.contact) == ["a", "b"])
        let byFlow = try await store.conversations(tenant: "t1", filter: .init(contact: "d", flow: "greeter"), limit: 10, offset: 0)
        #expect(byFlow.items.map(\.contact) == ["d"])
        #expect(try await store.conversations(tenant: "t1", filter: .init(flow: "nope"), limit: 10, offset: 0).total == 0)
        #expect(try await store.conversations(tenant: "t1", filter: .init(status: .ended), limit: 10, offset: 0).total == 0)
        #expect(try await store.conversations(tenant: "t1", filter: .init(), limit: 1, offset: 3).items.map(\.contact) == ["d"])

        for (i, name) in ["one", "two", "three"].enumerated() {
            try await store.insertChannel(.init(id: "ch\(i)", tenant: "t1", kind: "api", name: name, callbackURL: nil,
                                                createdAt: Timestamp(milliseconds: Int64(i)), sealedSecret: i == 0 ? "v1:sealed" : nil))
        }
        let channels = try await store.channels(tenant: "t1", limit: 2, offset: 1)
        #expect(channels.total == 3)
        #expect(channels.items.map(\.name) == ["two", "three"])
        #expect(try await store.channel(id: "ch0", tenant: "t1")?.sealedSecret == "v1:sealed")
        #expect(try await store.channel(id: "ch0", tenant: "t2") == nil)
        await store.close()
    }

    @Test(arguments: Backend.available)
    func aBatchOfMessagesIsStoredInOneTransactionWithEachItemsOwnResult(_ backend: Backend) async throws {
        let store = try await backend.makeStore()
        try await store.ensureTenant(id: "t1", name: "t1")
        let program = try TestFlows.compile(TestFlows.greeter)
        let engine = Engine(store: store, connectors: ConnectorRegistry())
        _ = try await engine.publish(tenant: "t1", program: program, source: TestFlows.greeter)
        let start = try #require(try await store.publishedFlows(tenant: "t1").first)
        let items = [
            IngestItem(inbound: TestFlows.inbound("hello", from: "a", id: "1"), start: start, newConversationID: "conv-a"),
            IngestItem(inbound: TestFlows.inbound("Ana", from: "a", id: "2"), start: start, newConversationID: "conv-a2"),
            IngestItem(inbound: TestFlows.inbound("hello", from: "a", id: "1"), start: start, newConversationID: "conv-a3"),
            IngestItem(inbound: TestFlows.inbound("what", from: "b", id: "3"), start: nil, newConversationID: "conv-b"),
        ]
        let results = try await store.ingest(batch: items, now: engine.now)
        #expect(results == [.accepted(conversation: "conv-a", started: true), .accepted(conversation: "conv-a", started: false),
                            .duplicate, .unrouted], "later items see earlier ones of the same batch")
        #expect(try await store.conversations(tenant: "t1", status: nil, contact: nil).map(\.id) == ["conv-a"])
        try await engine.drain()
        #expect(try await store.messages(conversation: "conv-a", tenant: "t1").map(\.text) == ["hello", "Name?", "Ana", "Hi Ana", "Bye Ana"])
        await store.close()
    }

    /// Provider statuses only move a message forward, may arrive before the send's own answer, and stay per tenant.
    @Test(arguments: Backend.available)
    func messageStatusesMoveForwardOnly(_ backend: Backend) async throws {
        let store = try await backend.makeStore()
        let t = Timestamp(milliseconds: 1_000)
        // "sent" reported before the send's answer came back: kept, and the conversation filled in later.
        #expect(try await store.updateStatus(channel: "wa", providerID: "wamid.1", tenant: "t1", status: "sent", errorCode: nil, at: t) == .init(conversation: nil, changed: true))
        try await store.recordSent(channel: "wa", providerID: "wamid.1", tenant: "t1", conversation: "c1", at: t)
        #expect(try await store.statuses(conversation: "c1", tenant: "t1").map(\.status) == ["sent"], "the earlier report is not taken back")
        #expect(try await store.updateStatus(channel: "wa", providerID: "wamid.1", tenant: "t1", status: "read", errorCode: nil, at: t.adding(seconds: 2))
                == .init(conversation: "c1", changed: true))
        #expect(try await store.updateStatus(channel: "wa", providerID: "wamid.1", tenant: "t1", status: "delivered", errorCode: nil, at: t.adding(seconds: 3))
                == .init(conversation: "c1", changed: false), "a late delivered does not undo read")
        let fallback: Value = ["name": "reengage", "language": "pt_BR", "text": "hello"]
        try await store.recordSent(channel: "wa", providerID: "wamid.2", tenant: "t1", conversation: "c1", at: t, fallback: fallback)
        #expect(try await store.updateStatus(channel: "wa", providerID: "wamid.2", tenant: "t1", status: "failed", errorCode: "131047", at: t.adding(seconds: 4))
                == .init(conversation: "c1", changed: true, fallback: fallback), "a failure hands back what to send instead")
        #expect(try await store.updateStatus(channel: "wa", providerID: "wamid.2", tenant: "t1", status: "failed", errorCode: "131047", at: t.adding(seconds: 5))
                == .init(conversation: "c1", changed: false), "once")
        #expect(try await store.updateStatus(channel: "wa", providerID: "wamid.2", tenant: "t1", status: "bogus", errorCode: nil, at: t)
                == .init(conversation: nil, changed: false))
        let statuses = try await store.statuses(conversation: "c1", tenant: "t1")
        #expect(statuses.map(\.status) == ["read", "failed"] && statuses[1].errorCode == "131047")
        #expect(try await store.statuses(conversation: "c1", tenant: "t2").isEmpty, "another tenant sees nothing")
        await store.close()
    }
}
