import FlowVM

/// What a connector knows about the call it is making.
public struct ConnectorContext: Sendable {
    public var tenant: String
    public var conversation: String
    /// Stable across retries and crashes: pass it to the service (Stripe `Idempotency-Key`) or de-duplicate on it.
    public var idempotencyKey: String
    /// This attempt's number, from 1.
    public var attempt: Int

    public init(tenant: String, conversation: String, idempotencyKey: String, attempt: Int) {
        self.tenant = tenant
        self.conversation = conversation
        self.idempotencyKey = idempotencyKey
        self.attempt = attempt
    }
}

/// Something flows can reach: a channel that sends messages (`channel.send`) or a service with actions
/// (`stripe.checkout`). Implementations throw `ConnectorError` to say whether a failure is worth retrying.
public protocol Connector: Sendable {
    /// The action names this connector performs.
    var actions: [String] { get }
    func perform(action: String, parameters: Value, context: ConnectorContext) async throws -> Value
}

/// The connectors of one engine, by action name.
public struct ConnectorRegistry: Sendable {
    private var byAction: [String: any Connector] = [:]

    public init(_ connectors: [any Connector] = []) {
        for c in connectors { register(c) }
    }

    public mutating func register(_ connector: any Connector) {
        for a in connector.actions { byAction[a] = connector }
    }

    public func connector(for action: String) -> (any Connector)? { byAction[action] }
}
