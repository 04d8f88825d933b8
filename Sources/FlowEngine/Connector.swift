import FlowVM

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
