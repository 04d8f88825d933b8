import Connectors
import FlowEngine
import FlowStore
import FlowVM

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

    /// The built-in services, each bound to its channel kind.
    static func builtins(store: SQLStore, secrets: SecretBox?) -> [ServiceConnector] {
        func actions(_ prefix: String) -> [ActionDefinition] { BuiltinActions.all.filter { $0.name.hasPrefix(prefix) } }
        return [
            ServiceConnector(kind: "stripe", definitions: actions("stripe."), store: store, secrets: secrets) { config, credentials in
                StripeAPI(secretKey: credentials["secret_key"].text, apiURL: config["api_url"].optionalText,
                          successURL: config["success_url"].optionalText, cancelURL: config["cancel_url"].optionalText)
            },
            ServiceConnector(kind: "email", definitions: actions("email."), store: store, secrets: secrets) { config, credentials in
                let security = SMTPClient.Security(rawValue: config["security"].optionalText ?? "starttls") ?? .starttls
                let port: Int? = if case .number(let n) = config["port"] { Int(n) } else { nil }
                return EmailConnector(smtp: SMTPClient(.init(
                    host: config["host"].text, port: port, security: security, username: config["username"].optionalText,
                    password: credentials["password"].optionalText, trustedCertificatePEM: config["ca_certificate"].optionalText)),
                    from: config["from"].text)
            },
        ]
    }
}

extension Value {
    /// The text of a string value, nil for anything else.
    var optionalText: String? {
        if case .string(let s) = self { return s }
        return nil
    }
}
