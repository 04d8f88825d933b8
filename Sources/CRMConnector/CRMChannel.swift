import FlowConnector
import FlowVM

/// The CRM as a channel kind, for one account per tenant: a tenant creates a `crm` channel with its CRM's address and
/// API key (`POST /v1/channels {"kind": "crm", "name", "base_url", "api_key"}`), and `crm.lookup` runs with the
/// tenant's newest one. Register it with `config.channels.append(CRMChannel())` instead of a process-wide
/// `CRMConnector`.
public struct CRMChannel: ChannelDriver {
    public init() {}

    public let kind = "crm"
    public let summary = "A CRM account, to look customers up"
    public let fields = [
        ChannelField("base_url", .url, required: true, summary: "where the CRM's API is"),
        ChannelField("api_key", .secret(min: 8), required: true, summary: "the CRM's API key"),
    ]
    public var actions: [ActionDefinition] { CRMConnector.actions }

    public func perform(action: String, parameters: Value, account: ChannelAccount, context: ConnectorContext,
                        store: any ChannelStore) async throws -> Value {
        try await CRMConnector(baseURL: account.config["base_url"].text, apiKey: account.credentials["api_key"].text)
            .perform(action: action, parameters: parameters, context: context)
    }
}
