import FlowVM
import Foundation

/// The kinds of channel a tenant creates and the fields each takes. A channel is a tenant's account on an outside
/// service: `api` and `whatsapp` carry conversations; `stripe`, `email`, `ai` and `n8n` give connector actions
/// their credentials. Secret fields are write-only and sealed together at rest; the rest is the channel's
/// `config`, shown in answers.
struct ChannelKind: Sendable {
    /// How a field's value must look. Every field is checked by its form whatever the kind, so a request is valid
    /// or not on its own (as /openapi.json describes it).
    enum Form: Sendable {
        /// Sealed text of `min`…4096 characters.
        case secret(min: Int)
        /// An http or https URL.
        case url
        /// Text of 1…`max` characters without control characters.
        case text(max: Int)
        /// A host name or IP address.
        case host
        case port
        case digits
        case choice([String])
        /// A PEM certificate (a private CA for a self-hosted service).
        case pem
    }

    struct Field: Sendable {
        var name: String
        var required = false
    }

    let name: String
    let fields: [Field]

    static let forms: [String: Form] = [
        "verify_token": .secret(min: 8), "app_secret": .secret(min: 8), "access_token": .secret(min: 8),
        "secret_key": .secret(min: 8), "webhook_secret": .secret(min: 8), "api_key": .secret(min: 8),
        "password": .secret(min: 1), "auth_value": .secret(min: 1),
        "callback_url": .url, "graph_url": .url, "api_url": .url, "success_url": .url, "cancel_url": .url, "base_url": .url,
        "phone_number_id": .digits, "host": .host, "port": .port,
        "security": .choice(["starttls", "tls", "none"]), "auth": .choice(["none", "header", "basic"]),
        "from": .text(max: 320), "username": .text(max: 256), "model": .text(max: 200), "auth_header": .text(max: 100),
        "ca_certificate": .pem,
    ]

    static let all: [String: ChannelKind] = Dictionary(uniqueKeysWithValues: [
        ChannelKind(name: "api", fields: [Field(name: "callback_url")]),
        ChannelKind(name: "whatsapp", fields: [
            Field(name: "phone_number_id", required: true), Field(name: "verify_token", required: true),
            Field(name: "app_secret", required: true), Field(name: "access_token"), Field(name: "graph_url"),
        ]),
        ChannelKind(name: "stripe", fields: [
            Field(name: "secret_key", required: true), Field(name: "webhook_secret", required: true), Field(name: "api_url"),
            Field(name: "success_url"), Field(name: "cancel_url"),
        ]),
        ChannelKind(name: "email", fields: [
            Field(name: "host", required: true), Field(name: "port"), Field(name: "security"), Field(name: "from", required: true),
            Field(name: "username"), Field(name: "password"), Field(name: "ca_certificate"),
        ]),
        ChannelKind(name: "ai", fields: [Field(name: "api_key"), Field(name: "base_url"), Field(name: "model")]),
        ChannelKind(name: "n8n", fields: [
            Field(name: "base_url", required: true), Field(name: "auth"), Field(name: "auth_header"), Field(name: "auth_value"),
            Field(name: "username"), Field(name: "password"),
        ]),
    ].map { ($0.name, $0) })

    /// Kinds whose webhooks providers post to `/webhooks/<kind>/{id}`.
    static let webhookKinds: Set<String> = ["whatsapp", "stripe"]

    /// Checks every described field present in `body`; throws a 400 naming the first bad one.
    static func checkFields(_ body: [String: Value]) throws {
        for (name, form) in forms.sorted(by: { $0.key < $1.key }) {
            guard let value = body[name], value != .null else { continue }
            try check(value, name, form)
        }
    }

    private static func check(_ value: Value, _ name: String, _ form: Form) throws {
        switch form {
        case .url:
            _ = try ChannelRoutes.httpURL(value, name)
        case .port:
            guard case .number(let n) = value, n == n.rounded(), (1...65535).contains(n) else {
                throw Problem(.badRequest, "\(name) must be a port number (1 to 65535)")
            }
        default:
            guard case .string(let text) = value else { throw Problem(.badRequest, "\(name) must be text") }
            let ok: Bool
            let rule: String
            switch form {
            case .secret(let min):
                ok = (min...4096).contains(text.unicodeScalars.count)
                rule = "text of \(min) to 4096 characters"
            case .text(let max):
                ok = (1...max).contains(text.unicodeScalars.count) && !text.unicodeScalars.contains { $0.value < 0x20 || (0x7f...0x9f).contains($0.value) }
                rule = "text of 1 to \(max) characters"
            case .host:
                ok = (1...253).contains(text.unicodeScalars.count) && text.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-.:".contains($0)) }
                rule = "a host name or IP address"
            case .digits:
                ok = (1...32).contains(text.count) && text.allSatisfy { $0.isASCII && $0.isNumber }
                rule = "digits (the Cloud API's id of the business number)"
            case .choice(let options):
                ok = options.contains(text)
                rule = "one of " + options.joined(separator: ", ")
            case .pem:
                ok = text.unicodeScalars.count <= 65536 && text.contains("-----BEGIN CERTIFICATE-----")
                rule = "a PEM certificate"
            case .url, .port:
                ok = true
                rule = ""
            }
            guard ok else { throw Problem(.badRequest, "\(name) must be \(rule)") }
        }
    }

    /// Splits a checked body into sealed secrets and config for this kind; throws when a required field is missing.
    func split(_ body: [String: Value]) throws -> (secrets: [String: Value], config: [String: Value]) {
        var secrets: [String: Value] = [:], config: [String: Value] = [:]
        for field in fields {
            guard let value = body[field.name], value != .null else {
                if field.required { throw Problem(.badRequest, "\(field.name) is required for a \(name) channel") }
                continue
            }
            if case .secret = Self.forms[field.name] { secrets[field.name] = value } else { config[field.name] = value }
        }
        return (secrets, config)
    }
}
