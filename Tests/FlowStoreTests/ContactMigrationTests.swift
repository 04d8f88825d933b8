import FlowEngine
@testable import FlowStore
import FlowVM
import FlowlineTestKit
import Testing

/// Schema v12 makes contacts records: the contacts a database already held get ids and empty attributes and tags, and
/// keep them when they write again.
@Suite struct ContactMigrationTests {
    @Test(arguments: Backend.available)
    func existingContactsGetIdsAndKeepThem(_ backend: Backend) async throws {
        let store = try await backend.makeStore(migratedThrough: 11)
        try await store.ensureTenant(id: "t1", name: "t1")
        try await store.driver.transaction { db in
            _ = try await db.execute("INSERT INTO contacts (tenant_id, channel, address, name, created_at) VALUES ('t1', 'web', 'a', 'Ana', 5), ('t1', 'web', 'b', NULL, 6)")
        }
        try await store.migrate()
        let (items, total) = try await store.contacts(tenant: "t1", filter: ContactFilter(), limit: 10, offset: 0)
        #expect(total == 2 && items.map(\.address) == ["a", "b"] && items.map(\.name) == ["Ana", nil])
        #expect(Set(items.map(\.id)).count == 2 && items.allSatisfy { $0.id.hasPrefix("ct_") && $0.id.count == 23 }, "\(items.map(\.id))")
        #expect(items.allSatisfy { $0.attributes.isEmpty && $0.tags.isEmpty && $0.updatedAt == $0.createdAt && $0.lastSeenAt == nil && !$0.optedIn })

        let engine = Engine(store: store, connectors: ConnectorRegistry())
        _ = try await engine.ingest(TestFlows.inbound("hello", from: "a", id: "m1", tenant: "t1", channel: "web"))
        let again = try #require(try await store.contact(tenant: "t1", channel: "web", address: "a"))
        #expect(again.id == items[0].id && again.lastSeenAt != nil && again.name == "Ana", "the id stays; writing marks when")
        await store.close()
    }
}
