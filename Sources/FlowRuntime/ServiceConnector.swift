import Connectors
import FlowEngine
import FlowStore
import FlowVM
import Synchronization

/// Runs a service's actions (`stripe.*`, `email.send`, `ai.chat`, `n8n.trigger`) with the account of the tenant
/// running the flow: its newest channel of that kind, whose sealed credentials are opened for the call only.
struct ServiceConnector: Connector {
    /// The channel kind that holds the account.
    let kind: String
    let definitions: [ActionDefinition]
    let store: SQLStore
    let secrets: SecretBox?
    /// Builds the connector for one account from the channel's settings and opened credentials.
    let make: @Sendable (_ config: Value, _ credentials: Value) throws -> any Connector

    func perform(action: String, parameters: Value, context: ConnectorContext) async throws -> Value {
        guard let channel = try await store.newestChannel(tenant: context.tenant, kind: kind) else {
            throw ConnectorError(code: "no_\(kind)_channel", message: "the tenant has no \(kind) channel: create one with POST /v1/channels",
                                 retryable: false)
        }
        let credentials: Value
        do { credentials = try channel.credentials(secrets) } catch {
            throw ConnectorError(code: "secret", message: "\(error)", retryable: true)
        }
        return try await make(channel.config, credentials).perform(action: action, parameters: parameters, context: context)
    }

    /// The built-in services, each bound to its channel kind. `ai.chat` reads the conversation's history from the
    /// store and calls the registry's other actions as tools.
    static func builtins(store: SQLStore, secrets: SecretBox?, tools: ToolBox) -> [ServiceConnector] {
        func actions(_ prefix: String) -> [ActionDefinition] { BuiltinActions.all.filter { $0.name.hasPrefix(prefix) } }
        return [
            ServiceConnector(kind: "stripe", definitions: actions("stripe."), store: store, secrets: secrets) { config, credentials in
                StripeAPI(secretKey: credentials["secret_key"].text, apiURL: config["api_url"].nonEmptyText,
                          successURL: config["success_url"].nonEmptyText, cancelURL: config["cancel_url"].nonEmptyText)
            },
            ServiceConnector(kind: "email", definitions: actions("email."), store: store, secrets: secrets) { config, credentials in
                let security = SMTPClient.Security(rawValue: config["security"].nonEmptyText ?? "starttls") ?? .starttls
                let port: Int? = if case .number(let n) = config["port"] { Int(n) } else { nil }
                return EmailConnector(smtp: SMTPClient(.init(
                    host: config["host"].text, port: port, security: security, username: config["username"].nonEmptyText,
                    password: credentials["password"].nonEmptyText, trustedCertificatePEM: config["ca_certificate"].nonEmptyText)),
                    from: config["from"].text)
            },
            ServiceConnector(kind: "ai", definitions: actions("ai."), store: store, secrets: secrets) { config, credentials in
                AIConnector(baseURL: config["base_url"].nonEmptyText, apiKey: credentials["api_key"].nonEmptyText, model: config["model"].nonEmptyText,
                            history: { context, n in
                                try await store.messages(conversation: context.conversation, tenant: context.tenant).suffix(n)
                                    .map { AIConnector.Turn(fromContact: $0.direction == .inbound, text: $0.text) }
                            },
                            tools: tools.definitions, performTool: tools.perform)
            },
            ServiceConnector(kind: "n8n", definitions: actions("n8n."), store: store, secrets: secrets) { config, credentials in
                let auth: N8NConnector.Auth = switch config["auth"].nonEmptyText {
                case "header": .header(name: config["auth_header"].nonEmptyText ?? "Authorization", value: credentials["auth_value"].text)
                case "basic": .basic(user: config["username"].text, password: credentials["password"].text)
                default: .none
                }
                return N8NConnector(baseURL: config["base_url"].text, auth: auth)
            },
        ]
    }
}

/// Lets `ai.chat` call the other actions as tools; filled once the registry exists (it holds `ai.chat` itself).
final class ToolBox: Sendable {
    private let registry = Mutex<ConnectorRegistry?>(nil)

    func set(_ r: ConnectorRegistry) { registry.withLock { $0 = r } }

    /// Every action flows may `use:`, but the AI itself.
    var definitions: [ActionDefinition] {
        guard let r = registry.withLock({ $0 }) else { return [] }
        return r.catalog(adding: BuiltinActions.catalog).actions.values.filter { $0.name != "ai.chat" && r.connector(for: $0.name) != nil }
    }

    @Sendable func perform(_ action: String, _ parameters: Value, _ context: ConnectorContext) async throws -> Value {
        guard action != "ai.chat", let connector = registry.withLock({ $0 })?.connector(for: action) else {
            throw ConnectorError(code: "ai_tool_unknown", message: "no connector performs \(action)", retryable: false)
        }
        return try await connector.perform(action: action, parameters: parameters, context: context)
    }
}
