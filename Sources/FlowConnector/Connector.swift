// The connector SDK: what a connector (built in, or a developer's own in another package) is written against,
// and all it needs to depend on besides FlowVM's values and action definitions (docs/connectors.md).
import AsyncHTTPClient
import FlowVM
import Foundation
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

/// Something flows can reach: a channel that sends messages (`channel.send`) or a service with actions
/// (`crm.lookup`). Each action comes with JSON Schemas of its parameters and result, so a custom connector is
/// checked by the compiler and drawn by the builder exactly like a built-in one (docs/connectors.md).
///
/// `perform` runs at least once per effect, possibly more after a crash or a retry, always with the same
/// `context.idempotencyKey`. Throw `ConnectorError` to say whether a failure is worth retrying.
public protocol Connector: Sendable {
    /// The actions this connector performs, named `connector.action`.
    var definitions: [ActionDefinition] { get }
    func perform(action: String, parameters: Value, context: ConnectorContext) async throws -> Value
}

extension Connector {
    /// The names of `definitions`.
    public var actions: [String] { definitions.map(\.name) }
}

/// A connector's failure: whether trying again may help, and when.
public struct ConnectorError: Error, Sendable, Hashable, CustomStringConvertible {
    public var code: String
    /// Safe to show: never secrets.
    public var message: String
    public var retryable: Bool
    /// Seconds the service asked us to wait.
    public var retryAfter: Int64?

    public init(code: String, message: String, retryable: Bool, retryAfter: Int64? = nil) {
        self.code = code
        self.message = message
        self.retryable = retryable
        self.retryAfter = retryAfter
    }

    public var description: String { "\(code): \(message)" }
}

/// A single-use, unguessable URL that resumes one waiting conversation: any system (n8n's HTTP Request node, a
/// payment page, a script) POSTs to it once, and the conversation waiting with
/// `wait_for: { event: resume, match: <token> }` continues with the posted JSON.
public struct ResumeLink: Sendable, Hashable {
    /// `<conversation id>.<hex HMAC>`: the key the conversation waits on.
    public var token: String
    /// `<public base URL>/webhooks/resume/<token>`.
    public var url: String

    public init(token: String, url: String) {
        self.token = token
        self.url = url
    }
}
