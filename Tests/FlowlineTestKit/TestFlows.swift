import Connectors
import FlowCompiler
import FlowEngine
import FlowVM

/// Flows and messages several test targets use.
public enum TestFlows {
    /// Asks a name, greets and ends: the engine's and the store's tests publish it.
    public static let greeter = """
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

    /// Compiles a test flow against the built-in actions.
    public static func compile(_ yaml: String) throws -> Program {
        try FlowCompiler(catalog: BuiltinActions.catalog).program(source: yaml, file: "test.yaml")
    }

    /// A contact's message on an `api` channel.
    public static func inbound(_ text: String, from contact: String, id: String, tenant: String = "t1", channel: String = "api-main") -> Inbound {
        Inbound(tenant: tenant, channel: channel, channelKind: "api", contact: contact, contactName: "Ana", providerID: id,
                message: InboundMessage(text: text))
    }
}
