import Connectors
import FlowCompiler
import FlowEngine
import FlowStore
import FlowVM
import FlowlineTestKit
import Testing

/// A flow the store tests publish: it asks, greets and ends.
enum StoreFlows {
    static let greeter = """
        flow: greeter
        trigger: { channel: api, keywords: [oi, hello] }
        start: ask
        blocks:
          ask:
            ask: "Name?"
            save: name
            next: hi
          hi:
            text: "Hi {{ name }}"
            next: bye
          bye:
            end: "Bye {{ contact.name }}"
        """

    static func compile(_ yaml: String) throws -> Program {
        try FlowCompiler(catalog: BuiltinActions.catalog).program(source: yaml, file: "test.yaml")
    }
}

func inbound(_ text: String, from contact: String, id: String, tenant: String = "t1", channel: String = "api-main") -> Inbound {
    Inbound(tenant: tenant, channel: channel, channelKind: "api", contact: contact, contactName: "Ana", providerID: id,
            message: InboundMessage(text: text))
}

/// Reported as skipped when the backend-parameterized tests ran on SQLite only.
@Suite struct BackendTests {
    @Test func theStoreTestsRunOnPostgreSQLToo() throws {
        _ = try Backend.postgresURL()
    }
}
