import FlowVM

/// The built-in connector actions and their JSON Schemas: what `use:`, `ai:` and `webhook:` are checked against.
public enum BuiltinActions {
    private static func object(_ properties: [String: Value], required: [String] = []) -> Value {
        .map([
            "type": "object",
            "properties": .map(properties),
            "required": .list(required.map(Value.string)),
            "additionalProperties": false,
        ])
    }
    private static let string: Value = ["type": "string"]
    private static let nonEmpty: Value = ["type": "string", "minLength": 1]
    private static let anyObject: Value = ["type": "object"]
    private static let urlResult = object(["id": string, "url": string])

    public static let all: [ActionDefinition] = [
        ActionDefinition(
            name: "ai.chat",
            summary: "Ask an OpenAI-compatible model, with the conversation's history and optional knowledge",
            parameters: object([
                "prompt": nonEmpty,
                "system": string,
                "model": string,
                "history": ["type": "integer", "minimum": 0, "maximum": 50],
                "knowledge": string,
                "extract": ["type": "object", "description": "fields to extract, name: type"],
                "variables": ["type": "object", "description": "what the model should know about the conversation"],
                "tools": ["type": "array", "items": ["type": "string"], "description": "actions the model may call"],
                "temperature": ["type": "number", "minimum": 0, "maximum": 2],
                "max_tokens": ["type": "integer", "minimum": 1, "maximum": 32000],
            ], required: ["prompt"]),
            result: string
        ),
        ActionDefinition(
            name: "http.request",
            summary: "Call an HTTP endpoint (webhook:)",
            parameters: object([
                "url": nonEmpty,
                "method": ["type": "string", "enum": ["GET", "POST", "PUT", "PATCH", "DELETE"]],
                "headers": anyObject,
                "query": anyObject,
                "body": [:],
                "timeout": ["type": "string", "format": "duration"],
            ], required: ["url"]),
            result: object(["status": ["type": "integer"], "body": [:], "headers": anyObject])
        ),
        ActionDefinition(
            name: "stripe.checkout",
            summary: "Create a Stripe Checkout Session; its url is the payment page",
            parameters: object([
                "amount": ["type": "integer", "minimum": 1, "description": "in the currency's smallest unit (cents)"],
                "currency": ["type": "string", "minLength": 3, "maxLength": 3],
                "description": nonEmpty,
                "customer_email": string,
                "success_url": string,
                "cancel_url": string,
                "quantity": ["type": "integer", "minimum": 1],
            ], required: ["amount", "currency", "description"]),
            result: urlResult
        ),
        ActionDefinition(
            name: "stripe.payment_link",
            summary: "Create a reusable Stripe Payment Link",
            parameters: object([
                "amount": ["type": "integer", "minimum": 1],
                "currency": ["type": "string", "minLength": 3, "maxLength": 3],
                "description": nonEmpty,
            ], required: ["amount", "currency", "description"]),
            result: urlResult
        ),
        ActionDefinition(
            name: "whatsapp.template",
            summary: "Send an approved WhatsApp template (works outside the 24-hour window)",
            parameters: object([
                "name": nonEmpty,
                "language": ["type": "string", "minLength": 2],
                "parameters": ["type": "array", "items": string],
            ], required: ["name", "language"]),
            result: object(["id": string])
        ),
        ActionDefinition(
            name: "whatsapp.media",
            summary: "Send an image, audio, video, document or sticker on WhatsApp, by uploaded media id or public link",
            parameters: object([
                "type": ["type": "string", "enum": ["image", "audio", "video", "document", "sticker"]],
                "id": nonEmpty,
                "link": ["type": "string", "pattern": "^https://"],
                "caption": string,
                "filename": string,
            ], required: ["type"]),
            result: object(["id": string])
        ),
        ActionDefinition(
            name: "email.send",
            summary: "Send an email over SMTP",
            parameters: object([
                "to": nonEmpty,
                "subject": nonEmpty,
                "text": string,
                "html": string,
                "reply_to": string,
            ], required: ["to", "subject"]),
            result: object(["id": string])
        ),
        ActionDefinition(
            name: "n8n.trigger",
            summary: "Start an n8n workflow through its Webhook node",
            parameters: object([
                "webhook": ["type": "string", "minLength": 1, "description": "the Webhook node's path"],
                "mode": ["type": "string", "enum": ["production", "test"]],
                "data": anyObject,
                "wait": ["type": "string", "enum": ["response", "callback"]],
            ], required: ["webhook"]),
            result: [:]
        ),
    ]

    /// A catalog holding every built-in action.
    public static var catalog: ActionCatalog { ActionCatalog(all) }
}
