import FlowEngine
import FlowStore
import FlowVM
import Testing

/// The server's list queries: filtered and paged in SQL, on both databases.
@Suite struct SQLStoreTests {
    @Test(arguments: Backend.available)
    func listsAreFilteredAndPagedInTheDatabase(_ backend: Backend) async throws {
        let store = try await backend.makeStore()
        for t in ["t1", "t2"] { try await store.ensureTenant(id: t, name: t) }
        let engine = Engine(store: store, connectors: ConnectorRegistry())
        let program = try Flows.compile(EngineTests.greeter)
        _ = try await engine.publish(tenant: "t1", program: program, source: EngineTests.greeter)
        for name in ["zeta", "alpha"] { _ = try await store.saveDraft(tenant: "t1", name: name, source: "x", at: engine.now) }
        _ = try await store.saveDraft(tenant: "t2", name: "other", source: "x", at: engine.now)

        let flows = try await store.flowNames(tenant: "t1", limit: 2, offset: 1)
        #expect(flows.total == 3, "drafts and published flows, each name once")
        #expect(flows.items == ["greeter", "zeta"])

        for (i, contact) in ["a", "b", "c", "d"].enumerated() {
            _ = try await engine.ingest(inbound("hello", from: contact, id: "m\(i)", channel: i < 3 ? "web" : "app"))
        }
        _ = try await engine.ingest(inbound("hello", from: "a", id: "x", tenant: "t2"))
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
}
