/// The description of one connector action: what the compiler checks `with:` against and what the builder
/// draws a form from.
public struct ActionDefinition: Sendable, Hashable {
    /// `connector.action`, e.g. `stripe.checkout`.
    public var name: String
    public var summary: String
    /// JSON Schema (a subset: type, properties, required, additionalProperties, enum, items,
    /// minimum, maximum, minLength, maxLength) of the parameters.
    public var parameters: Value
    /// JSON Schema of the result a flow can `save`.
    public var result: Value

    public init(name: String, summary: String, parameters: Value, result: Value) {
        self.name = name
        self.summary = summary
        self.parameters = parameters
        self.result = result
    }
}

/// The actions flows may `use:`, by name.
public struct ActionCatalog: Sendable {
    public private(set) var actions: [String: ActionDefinition] = [:]
    /// The channel kinds conversations run on, which a flow's `trigger: { channel: }` may name (the runtime's channel
    /// drivers say which); any name when empty.
    public var channels: [String]

    public init(_ definitions: [ActionDefinition] = [], channels: [String] = []) {
        self.channels = channels
        for d in definitions { actions[d.name] = d }
    }

    /// Adds or replaces an action.
    public mutating func register(_ definition: ActionDefinition) { actions[definition.name] = definition }

    public subscript(name: String) -> ActionDefinition? { actions[name] }
}
