import FlowVM

/// The one table of block types: the parser's keys, the graph form's edges and `/v1/blocks` all read it. Each type
/// has its keys (the first is what the block does, except for a condition) and a JSON Schema of them, so a builder
/// can draw a block's form the way it draws a connector action's.
public struct BlockType: Sendable {
    public let name: String
    public let summary: String
    public let keys: [String]
    /// JSON Schema (2020-12) of the block's own keys.
    public let schema: Value
}

public enum BlockTypes {
    // Shapes shared by several blocks.
    static let text: Value = ["type": "string", "description": "text with {{ expressions }}"]
    static let identifier: Value = ["type": "string", "pattern": "^[\\p{L}_][\\p{L}\\p{N}_]*$"]
    static let duration: Value = ["type": "string", "description": "a duration such as 30s, 10m, 2h, 1d"]
    static let next: Value = ["description": "the next block, or branches taken in order", "anyOf": [
        identifier,
        ["type": "array", "items": ["type": "object", "additionalProperties": false,
                                    "properties": ["when": ["type": "string", "description": "an expression"], "goto": identifier]]],
    ]]
    /// A button or list row: its title, or an object with an id, a title and (rows only) a description, each as
    /// long as WhatsApp shows.
    static func choice(title: Int, description: Int? = nil) -> Value {
        var properties: [String: Value] = ["id": ["type": "string"], "title": ["type": "string", "maxLength": .number(Double(title))]]
        if let description { properties["description"] = ["type": "string", "maxLength": .number(Double(description))] }
        return ["anyOf": [
            ["type": "string", "maxLength": .number(Double(title))],
            ["type": "object", "required": ["title"], "additionalProperties": false, "properties": .map(properties)],
        ]]
    }
    static let buttons: Value = [
        "type": "array", "maxItems": .number(Double(WhatsApp.maxButtons)), "items": choice(title: WhatsApp.maxButtonTitle),
        "description": .string("WhatsApp shows at most \(WhatsApp.maxButtons) buttons of \(WhatsApp.maxButtonTitle) characters"),
    ]
    static let list: Value = object([
        "button": ["type": "string", "maxLength": .number(Double(WhatsApp.maxListButton)), "description": "the button that opens the list"],
        "rows": ["type": "array", "maxItems": .number(Double(WhatsApp.maxRows)),
                 "items": choice(title: WhatsApp.maxRowTitle, description: WhatsApp.maxRowDescription),
                 "description": .string("WhatsApp shows at most \(WhatsApp.maxRows) rows, titles of \(WhatsApp.maxRowTitle) characters")],
    ], required: ["rows"])

    /// Attribute names or tags: one, or a list (each may be a template).
    static let names: Value = ["anyOf": [["type": "string"], ["type": "array", "items": ["type": "string"], "maxItems": 50]]]

    static func object(_ properties: [String: Value], required: [String]) -> Value {
        ["type": "object", "additionalProperties": false, "required": .list(required.map(Value.string)), "properties": .map(properties)]
    }

    static func type(_ name: String, _ summary: String, _ properties: KeyValuePairs<String, Value>, required: [String]) -> BlockType {
        var all: [String: Value] = [:]
        for (k, v) in properties { all[k] = v }
        return BlockType(name: name, summary: summary, keys: properties.map(\.key), schema: object(all, required: required))
    }

    public static let all: [BlockType] = [
        type("text", "Send a message", ["text": text, "next": next, "on_error": identifier], required: ["text"]),
        type("ask", "Ask a question and wait for a valid reply", [
            "ask": text, "save": identifier,
            "validate": ["anyOf": [["type": "string", "description": "a type: text, number, email, phone, date, yes_no…"],
                                   object(["type": ["type": "string"], "min_length": ["type": "integer"], "max_length": ["type": "integer"],
                                           "min": ["type": "number"], "max": ["type": "number"], "pattern": ["type": "string"],
                                           "timezone": ["type": "string"]], required: [])]],
            "invalid": text, "retries": ["type": "integer", "minimum": 0], "buttons": buttons, "list": list,
            "timeout": object(["after": duration, "next": identifier], required: ["after", "next"]),
            "on_invalid": identifier, "next": next, "on_error": identifier,
        ], required: ["ask"]),
        type("wait", "Wait for a duration or until a time", [
            "wait": ["anyOf": [duration, object(["for": duration, "until": ["type": "string"], "timezone": ["type": "string"]], required: [])]],
            "on_message": identifier, "next": next, "on_error": identifier,
        ], required: ["wait"]),
        type("wait_for", "Wait for an external event", [
            "wait_for": object(["event": ["type": "string"], "match": ["type": "string", "description": "an expression"],
                                "timeout": duration, "on_timeout": identifier], required: ["event"]),
            "save": identifier, "on_message": identifier, "next": next, "on_error": identifier,
        ], required: ["wait_for"]),
        type("handoff", "Hand the chat to a human queue", [
            "handoff": ["anyOf": [["type": "string", "description": "the queue"], object(["queue": ["type": "string"], "message": text], required: [])]],
            "next": next, "on_error": identifier,
        ], required: ["handoff"]),
        type("ai", "Ask an AI model", [
            "ai": object(["prompt": text, "system": text, "model": ["type": "string"], "history": ["type": "integer", "minimum": 0],
                          "knowledge": text, "extract": ["type": "object"], "temperature": ["type": "number"],
                          "max_tokens": ["type": "integer", "minimum": 1]], required: ["prompt"]),
            "save": identifier, "next": next, "on_error": identifier,
        ], required: ["ai"]),
        type("webhook", "Call an HTTP endpoint", [
            "webhook": object(["url": text, "method": ["type": "string", "enum": ["GET", "POST", "PUT", "PATCH", "DELETE"]],
                               "headers": ["type": "object"], "query": ["type": "object"], "body": [:], "timeout": duration], required: ["url"]),
            "save": identifier, "next": next, "on_error": identifier,
        ], required: ["webhook"]),
        type("use", "Run a connector action", [
            "use": ["type": "string", "description": "an action of GET /v1/blocks' actions"], "with": ["type": "object"],
            "save": identifier, "next": next, "on_error": identifier,
        ], required: ["use"]),
        type("set", "Assign variables", ["set": ["type": "object", "description": "variable: expression"], "next": next, "on_error": identifier],
             required: ["set"]),
        type("contact", "Change the contact's attributes and tags", [
            "contact": object([
                "set": ["type": "object", "maxProperties": .number(Double(ContactAttributes.maxAttributes)),
                        "propertyNames": ["pattern": "^[A-Za-z][A-Za-z0-9_]{0,63}$"],
                        "description": "attribute: value or expression (null removes it)"],
                "unset": names, "tag": names, "untag": names,
            ], required: []),
            "next": next, "on_error": identifier,
        ], required: ["contact"]),
        type("goto", "Jump to a block", ["goto": identifier], required: ["goto"]),
        type("call", "Run a chain of blocks and come back", ["call": identifier, "next": next, "on_error": identifier], required: ["call"]),
        type("end", "End the conversation", [
            "end": ["anyOf": [text, ["type": "boolean", "enum": [true], "description": "end without a last message"], ["type": "null"]]],
        ], required: ["end"]),
        type("condition", "Branch on expressions", ["next": next, "on_error": identifier], required: ["next"]),
    ]

    /// The keys that say what a block does (every type but the condition, which has none).
    static let actionKeys: [String] = all.filter { $0.name != "condition" }.map(\.name)
    /// Each type's allowed keys.
    static let keys: [String: [String]] = Dictionary(uniqueKeysWithValues: all.map { ($0.name, $0.keys) })
}
