import AsyncHTTPClient
import FlowVM
import Logging
import NIOCore

/// What a connector knows about the call it is making.
public struct ConnectorContext: Sendable {
    public var tenant: String
    public var conversation: String
    /// Stable across retries and crashes: pass it to the service (Stripe `Idempotency-Key`) or de-duplicate on it.
    public var idempotencyKey: String
    /// This attempt's number, from 1.
    public var attempt: Int
    /// Carries the tenant, conversation and key as metadata. Never log parameters that may hold personal data
    /// or secrets.
    public var logger: Logger
    /// A shared HTTP client (no redirects followed); pass `deadline` as the request's deadline.
    public var http: HTTPClient
    /// When the engine gives up on this attempt (and retries it later as `timeout`).
    public var deadline: ContinuousClock.Instant
    /// A URL that resumes this conversation once, when the server can make them (`FLOWLINE_SECRET_KEY` set): hand
    /// it to a system that answers later; the flow waits with `wait_for: { event: resume, match: <token> }`.
    public var resume: ResumeLink?

    /// Time left until `deadline`, as AsyncHTTPClient's `timeout:` takes it.
    public var remaining: TimeAmount { .nanoseconds(max(0, Int64((deadline - .now) / .nanoseconds(1)))) }

    /// Sends `request` through `http` within the time left and reads at most `limit` bytes of the answer. A timeout,
    /// a refused or dropped connection is a retryable `unreachable` naming `service` (never the URL, which may
    /// carry a token).
    public func send(_ request: HTTPClientRequest, to service: String, limit: Int = 1 << 20)
        async throws -> (response: HTTPClientResponse, body: ByteBuffer)
    {
        do {
            let response = try await http.execute(request, timeout: remaining)
            return (response, try await response.body.collect(upTo: limit))
        } catch {
            throw ConnectorError(code: "unreachable", message: "\(service) did not answer in time or refused the connection", retryable: true)
        }
    }

    public init(tenant: String, conversation: String, idempotencyKey: String, attempt: Int,
                logger: Logger = Logger(label: "flowline.connector"), http: HTTPClient = .shared,
                deadline: ContinuousClock.Instant = .now + .seconds(30), resume: ResumeLink? = nil) {
        self.resume = resume
        self.tenant = tenant
        self.conversation = conversation
        self.idempotencyKey = idempotencyKey
        self.attempt = attempt
        self.logger = logger
        self.http = http
        self.deadline = deadline
    }
}

/// A credential a connector needs (an API key, an app secret): the builder asks for it, the server keeps it
/// write-only and sealed at rest, and it never reaches a log or an error message.
public struct CredentialDefinition: Sendable, Hashable {
    public var name: String
    public var summary: String

    public init(name: String, summary: String) {
        self.name = name
        self.summary = summary
    }
}

/// Something flows can reach: a channel that sends messages (`channel.send`) or a service with actions
/// (`crm.lookup`). Each action comes with JSON Schemas of its parameters and result, so a custom connector is
/// checked by the compiler and drawn by the builder exactly like a built-in one (docs/connectors.md).
///
/// `perform` runs at least once per effect, possibly more after a crash or a retry, always with the same
/// `context.idempotencyKey`. Throw `ConnectorError` to say whether a failure is worth retrying.
public protocol Connector: Sendable {
    /// The actions this connector performs, named `connector.action`.
    var definitions: [ActionDefinition] { get }
    /// The credentials it needs (none by default).
    var credentials: [CredentialDefinition] { get }
    func perform(action: String, parameters: Value, context: ConnectorContext) async throws -> Value
}

extension Connector {
    public var credentials: [CredentialDefinition] { [] }
    /// The names of `definitions`.
    public var actions: [String] { definitions.map(\.name) }
}

extension ActionDefinition {
    /// The engine's own action for outbound messages; every channel performs it. Not for `use:`.
    public static let channelSend = ActionDefinition(
        name: "channel.send", summary: "Send a message to the conversation's contact on its channel",
        parameters: [
            "type": "object", "required": ["channel", "contact", "message"],
            "properties": ["channel": ["type": "string"], "contact": ["type": "string"], "message": ["type": "object"]],
        ],
        result: ["type": "object"])

    /// The engine's own action for read receipts (WhatsApp's blue ticks): `{channel, message_id}`. Not for `use:`.
    public static let channelRead = ActionDefinition(
        name: "channel.read", summary: "Tell the channel an inbound message was read",
        parameters: [
            "type": "object", "required": ["channel", "message_id"],
            "properties": ["channel": ["type": "string"], "message_id": ["type": "string"]],
        ],
        result: ["type": "object"])
}

/// The connectors of one engine, by action name.
public struct ConnectorRegistry: Sendable {
    private var byAction: [String: any Connector] = [:]

    public init(_ connectors: [any Connector] = []) {
        for c in connectors { register(c) }
    }

    /// Adds a connector; a later one replaces an earlier one for the same action name.
    public mutating func register(_ connector: any Connector) {
        for a in connector.actions { byAction[a] = connector }
    }

    public func connector(for action: String) -> (any Connector)? { byAction[action] }

    /// `base` (the built-in actions) with every registered action flows may `use:`, so the compiler checks
    /// parameters against their schemas and the catalog API lists them. Engine actions (`channel.*`) stay out.
    public func catalog(adding base: ActionCatalog) -> ActionCatalog {
        var catalog = base
        for connector in byAction.values {
            for d in connector.definitions where !d.name.hasPrefix("channel.") { catalog.register(d) }
        }
        return catalog
    }
}
