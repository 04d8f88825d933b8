// Channel drivers: what a kind of channel (WhatsApp, Stripe, email, a developer's own) is written against. A driver
// declares the fields its channels take, and does what its kind does: receive its provider's webhooks, send a
// conversation's messages, mark them read, perform actions with the tenant's account. The runtime routes every
// webhook, send, receipt and action to it by the channel's kind; the server knows only HTTP and auth.
import FlowVM
import Foundation

/// A field a kind of channel takes when a tenant creates one. Secret fields are write-only and sealed together at
/// rest; the rest is the channel's `config`, shown in answers.
public struct ChannelField: Sendable, Hashable {
    /// How a value must look.
    public enum Form: Sendable, Hashable {
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

    public var name: String
    public var summary: String
    public var form: Form
    public var required: Bool

    public init(_ name: String, _ form: Form, required: Bool = false, summary: String) {
        self.name = name
        self.form = form
        self.required = required
        self.summary = summary
    }

    public var isSecret: Bool { if case .secret = form { true } else { false } }

    /// Why `value` does not fit this field, or nil when it does. Never echoes the value (it may be a secret).
    public func problem(with value: Value) -> String? {
        switch form {
        case .url:
            guard case .string(let url) = value, Self.isHTTPURL(url) else { return "\(name) must be an http or https URL" }
            return nil
        case .port:
            guard case .number(let n) = value, n == n.rounded(), (1...65535).contains(n) else {
                return "\(name) must be a port number (1 to 65535)"
            }
            return nil
        default:
            guard case .string(let text) = value else { return "\(name) must be text" }
            let ok: Bool, rule: String
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
                rule = "digits"
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
            return ok ? nil : "\(name) must be \(rule)"
        }
    }

    /// An absolute http(s) URL of at most 2,000 ASCII characters with a plain host.
    public static func isHTTPURL(_ url: String) -> Bool {
        guard url.count <= 2000, url.allSatisfy(\.isASCII), let u = URL(string: url), ["http", "https"].contains(u.scheme ?? ""),
              let host = u.host, !host.isEmpty else { return false }
        return host.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-.:[]".contains($0)) }
    }

    /// The JSON Schema of this field's values, exactly as `problem(with:)` checks them (null is as absent), for
    /// `/v1/channels/kinds` and `/openapi.json`.
    public var schema: Value {
        var s: [String: Value]
        switch form {
        case .secret(let min): s = ["type": ["string", "null"], "minLength": .number(Double(min)), "maxLength": 4096, "writeOnly": true]
        case .url: s = ["type": ["string", "null"], "maxLength": 2000, "pattern": .string(Self.urlPattern)]
        case .text(let max): s = ["type": ["string", "null"], "minLength": 1, "maxLength": .number(Double(max)), "pattern": #"^[^\u0000-\u001f\u007f-\u009f]+$"#]
        case .host: s = ["type": ["string", "null"], "minLength": 1, "maxLength": 253, "pattern": "^[A-Za-z0-9.:-]+$"]
        case .port: s = ["type": ["integer", "null"], "minimum": 1, "maximum": 65535]
        case .digits: s = ["type": ["string", "null"], "pattern": "^[0-9]{1,32}$"]
        case .choice(let options): s = ["type": ["string", "null"], "enum": .list(options.map(Value.string) + [.null])]
        case .pem: s = ["type": ["string", "null"], "maxLength": 65536, "pattern": "-----BEGIN CERTIFICATE-----"]
        }
        s["description"] = .string(isSecret ? summary + " (write-only, sealed at rest)" : summary)
        return .map(s)
    }

    /// What `isHTTPURL` takes, as a pattern.
    public static let urlPattern = "^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?([/?#][A-Za-z0-9._~:/?#@!$&'()*+,;=%-]*)?$"
}

/// One tenant's channel of a driver's kind, with its secrets opened for the call at hand only.
public struct ChannelAccount: Sendable {
    public var id: String
    public var tenant: String
    public var kind: String
    /// The fields that are not secret.
    public var config: Value
    /// The secret fields, opened (an empty map when it has none).
    public var credentials: Value
    /// Where an `api` channel POSTs its messages, and the secret that signs them.
    public var callbackURL: String?
    public var signingSecret: String?
    /// The secret a rotation replaced, while it still signs beside `signingSecret`.
    public var retiringSigningSecret: String?

    public init(id: String, tenant: String, kind: String, config: Value = [:], credentials: Value = [:], callbackURL: String? = nil,
                signingSecret: String? = nil) {
        self.id = id
        self.tenant = tenant
        self.kind = kind
        self.config = config
        self.credentials = credentials
        self.callbackURL = callbackURL
        self.signingSecret = signingSecret
    }
}

/// A provider's request to `/webhooks/{kind}/{id}`, as it arrived: the driver checks its signature on `body`'s raw
/// bytes before parsing anything.
public struct WebhookRequest: Sendable {
    public var method: String
    public var query: [String: String]
    /// Header names in lower case.
    public var headers: [String: String]
    public var body: [UInt8]

    public init(method: String, query: [String: String] = [:], headers: [String: String] = [:], body: [UInt8] = []) {
        self.method = method
        self.query = query
        self.headers = Dictionary(headers.map { ($0.key.lowercased(), $0.value) }) { first, _ in first }
        self.body = body
    }
}

/// What the driver answers the provider.
public struct WebhookResponse: Sendable, Equatable {
    public var status: Int
    public var contentType: String
    public var body: [UInt8]

    public init(status: Int = 200, contentType: String = "application/json", body: [UInt8]) {
        self.status = status
        self.contentType = contentType
        self.body = body
    }

    public static func json(_ value: Value, status: Int = 200) -> WebhookResponse {
        WebhookResponse(status: status, body: Array(value.jsonText.utf8))
    }

    public static func text(_ text: String) -> WebhookResponse {
        WebhookResponse(contentType: "text/plain", body: Array(text.utf8))
    }
}

/// A webhook the driver will not take: `status` is 400 (not the provider's format), 401 (a forged or missing
/// signature), 403 (a failed handshake) or 405 (a method the kind does not take); `message` is safe to show.
public struct WebhookRefusal: Error, Sendable, Equatable {
    public var status: Int
    public var message: String
    /// The methods the kind takes, for a 405's `Allow`.
    public var allow: String?

    public init(_ status: Int, _ message: String, allow: String? = nil) {
        self.status = status
        self.message = message
        self.allow = allow
    }
}

/// A contact's message as a driver parsed it; the channel and tenant are the account's, filled in by the inbox.
public struct ReceivedMessage: Sendable, Hashable {
    /// The contact's address on the channel (a phone number, a business-scoped user id).
    public var contact: String
    public var contactName: String?
    /// The contact's phone number when it is known and not already `contact`.
    public var contactPhone: String?
    /// The provider's id for the message: the de-duplication key.
    public var providerID: String
    public var message: InboundMessage

    public init(contact: String, contactName: String? = nil, contactPhone: String? = nil, providerID: String, message: InboundMessage) {
        self.contact = contact
        self.contactName = contactName
        self.contactPhone = contactPhone
        self.providerID = providerID
        self.message = message
    }
}

/// What storing a received message did.
public enum ReceiveOutcome: Sendable, Hashable {
    /// Stored, for this conversation (new or existing).
    case accepted(conversation: String, started: Bool)
    /// Stored, but no conversation is open and no published flow's trigger matched.
    case unrouted
    /// Seen before: nothing stored.
    case duplicate
    /// Stored: it was one of the tenant's opt-out words, so the contact is opted out on the channel (and told so,
    /// the first time) and no flow took it.
    case optedOut
}

/// An action the driver queues in the outbox (durable and retried like any send): a read receipt, a template sent
/// in place of a message the provider refused late.
public struct QueuedAction: Sendable, Hashable {
    /// Unique per action: a repeated notification queues nothing twice.
    public var key: String
    public var action: String
    public var payload: Value

    public init(key: String, action: String, payload: Value) {
        self.key = key
        self.action = action
        self.payload = payload
    }
}

/// What a delivery status (sent, delivered, read, failed) changed.
public struct StatusChange: Sendable, Equatable {
    /// The conversation the message belongs to, when it was sent by one.
    public var conversation: String?
    /// False when the status was not newer than the one stored (statuses arrive out of order and repeated).
    public var changed: Bool
    /// What the driver kept with the message when it sent it (`ChannelStore.recordSent`).
    public var fallback: Value

    public init(conversation: String?, changed: Bool, fallback: Value = .null) {
        self.conversation = conversation
        self.changed = changed
        self.fallback = fallback
    }
}

/// What a driver's webhook may do, bound to the one channel the webhook is for: it cannot reach another tenant.
public protocol ChannelInbox: Sendable {
    /// The engine's clock.
    var now: Timestamp { get }
    /// Stores a contact's message durably (de-duplicated by its provider id) and routes it to its conversation.
    func receive(_ message: ReceivedMessage) async throws -> ReceiveOutcome
    /// Queues actions in the outbox, each in its own queue (a receipt that must wait holds up nothing else).
    func queue(_ actions: [QueuedAction]) async throws
    /// Records a delivery status of a message this channel sent; `followUp` may queue one action in the same
    /// transaction (so a crash cannot lose it).
    func updateStatus(providerID: String, status: String, errorCode: String?,
                      followUp: @escaping @Sendable (StatusChange) -> QueuedAction?) async throws -> StatusChange
    /// Resumes the conversation of this tenant waiting for `event` with `key` (`wait_for`), at most once per
    /// `providerID`; false when none waits.
    func resume(event: String, key: String, payload: Value, providerID: String) async throws -> Bool
}

/// What a driver reads and records about the conversation it sends for.
public protocol ChannelStore: Sendable {
    /// The engine's clock.
    var now: Timestamp { get }
    /// The conversation's contact.
    var contact: String { get }
    /// When the contact last wrote on this channel: in this conversation, or in an earlier one (the contact record's
    /// last message); nil when they never did, as for a conversation the business started for a new contact.
    func lastInboundAt() async throws -> Timestamp?
    /// The phone number stored for a contact of this channel.
    func contactPhone(_ contact: String) async throws -> String?
    /// Remembers a sent message by the provider's id, so its statuses reach the conversation; `fallback` comes back
    /// with them (`StatusChange.fallback`).
    func recordSent(providerID: String, fallback: Value) async throws
    /// A top-level setting of the flow version that sent the message (`whatsapp_template`), or null; `program` is
    /// the send's `program` hash, the conversation's version when nil.
    func flowSetting(_ name: String, program: String?) async throws -> Value
    /// The conversation's last `limit` messages, oldest first.
    func history(limit: Int) async throws -> [(fromContact: Bool, text: String)]
    /// The actions flows may use, for a model that calls them as tools, and a way to call one.
    var tools: [ActionDefinition] { get }
    func performTool(_ action: String, _ parameters: Value, _ context: ConnectorContext) async throws -> Value
}

/// A kind of channel: a tenant's account on an outside service. Conversation channels (`whatsapp`, `api`) carry
/// conversations; service channels (`stripe`, `email`, `ai`, `n8n`) give actions their credentials; some take
/// webhooks. Every capability but the declaration has a default that does nothing or refuses, so a driver
/// implements what its kind does and no more. Register it in `BuiltinChannels.all` or a runtime's configuration.
public protocol ChannelDriver: Sendable {
    /// The channel kind (`whatsapp`): what `POST /v1/channels` takes and what triggers name.
    var kind: String { get }
    var summary: String { get }
    /// The fields its channels take: the one list channel creation, validation and the catalog read.
    var fields: [ChannelField] { get }
    /// Whether conversations run on it (its driver sends their messages).
    var carriesConversations: Bool { get }
    /// Seconds after a contact's message during which anything may be sent (WhatsApp's 24-hour window); nil when
    /// the channel has none. Flows see it as `conversation.window_closes_at`.
    var replyWindow: Int64? { get }
    /// Whether providers post to `/webhooks/{kind}/{id}`.
    var receivesWebhooks: Bool { get }
    /// The methods its webhook takes (`POST`; WhatsApp's handshake adds `GET`): others get 405 before the driver sees them.
    var webhookMethods: [String] { get }
    /// The actions flows `use:` with this kind's account: the conversation's channel for a conversation channel,
    /// the tenant's newest channel of the kind otherwise.
    var actions: [ActionDefinition] { get }

    /// A webhook for `account`. Check its signature on the raw bytes first; throw `WebhookRefusal` to refuse it.
    func receive(_ request: WebhookRequest, account: ChannelAccount, inbox: any ChannelInbox) async throws -> WebhookResponse
    /// Sends a conversation's message (`{text, buttons?, list?}`) to `contact`; `parameters` is the whole send
    /// (`message`, `contact`, `program`). Returns what the provider answered.
    func send(_ parameters: Value, account: ChannelAccount, context: ConnectorContext, store: any ChannelStore) async throws -> Value
    /// Tells the provider an inbound message was read; false when the kind has no receipts.
    func markRead(_ messageID: String, account: ChannelAccount, context: ConnectorContext) async throws -> Bool
    /// One of `actions`.
    func perform(action: String, parameters: Value, account: ChannelAccount, context: ConnectorContext,
                 store: any ChannelStore) async throws -> Value
}

extension ChannelDriver {
    public var carriesConversations: Bool { false }
    public var replyWindow: Int64? { nil }
    public var receivesWebhooks: Bool { false }
    public var webhookMethods: [String] { ["POST"] }
    public var actions: [ActionDefinition] { [] }

    public func receive(_ request: WebhookRequest, account: ChannelAccount, inbox: any ChannelInbox) async throws -> WebhookResponse {
        throw WebhookRefusal(404, "\(kind) channels take no webhooks")
    }

    public func send(_ parameters: Value, account: ChannelAccount, context: ConnectorContext, store: any ChannelStore) async throws -> Value {
        throw ConnectorError(code: "not_a_conversation_channel", message: "a \(kind) channel does not carry conversations", retryable: false)
    }

    public func markRead(_ messageID: String, account: ChannelAccount, context: ConnectorContext) async throws -> Bool { false }

    public func perform(action: String, parameters: Value, account: ChannelAccount, context: ConnectorContext,
                        store: any ChannelStore) async throws -> Value {
        throw ConnectorError(code: "unknown_action", message: "\(kind) has no action \(action)", retryable: false)
    }

    /// Why `body` (a channel creation request) is not valid for this kind, or nil: every declared field present
    /// is checked by its form, and the required ones must be there.
    public func problem(with body: [String: Value]) -> String? {
        for field in fields {
            guard let value = body[field.name], value != .null else {
                if field.required { return "\(field.name) is required for a \(kind) channel" }
                continue
            }
            if let problem = field.problem(with: value) { return problem }
        }
        return nil
    }

    /// A creation request's fields, split into secrets (sealed together) and config (shown).
    public func split(_ body: [String: Value]) -> (secrets: [String: Value], config: [String: Value]) {
        var secrets: [String: Value] = [:], config: [String: Value] = [:]
        for field in fields {
            guard let value = body[field.name], value != .null else { continue }
            if field.isSecret { secrets[field.name] = value } else { config[field.name] = value }
        }
        return (secrets, config)
    }
}
