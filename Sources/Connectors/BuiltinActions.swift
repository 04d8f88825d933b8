import FlowVM

/// The built-in connector actions: `webhook:`'s and every built-in channel kind's, each declared beside the code that
/// performs it. What `use:`, `ai:` and `webhook:` are checked against.
public enum BuiltinActions {
    public static let all: [ActionDefinition] = HTTPWebhookConnector.actions + BuiltinChannels.all.flatMap(\.actions)

    /// A catalog holding every built-in action, and the built-in channel kinds conversations run on.
    public static var catalog: ActionCatalog {
        ActionCatalog(all, channels: BuiltinChannels.all.filter(\.carriesConversations).map(\.kind))
    }
}

/// Helpers for actions' JSON Schemas.
public enum ActionSchema {
    public static func object(_ properties: [String: Value], required: [String] = []) -> Value {
        .map([
            "type": "object",
            "properties": .map(properties),
            "required": .list(required.map(Value.string)),
            "additionalProperties": false,
        ])
    }
    public static let string: Value = ["type": "string"]
    public static let nonEmpty: Value = ["type": "string", "minLength": 1]
    public static let anyObject: Value = ["type": "object"]
    public static let urlResult = object(["id": string, "url": string])
}
